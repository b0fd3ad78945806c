"""``natal serve`` through the official ``openai`` client, on a tiny local model, in Ray Serve."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from conftest import free_port
from tiny_model import build_tiny_model

from cluster.config import load_config
from cluster.config.errors import ConfigError, InputError
from serving import openai_app

pytestmark = pytest.mark.ray

API_KEY = "sk-natal-test"
MODEL = "tiny-natal"
MAX_MODEL_LEN = 256


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model") / MODEL)


@pytest.fixture(scope="module")
def server(ray_cluster: None, model_dir: Path) -> Iterator[str]:
    """The app on its own port, with an API key; yields the ``/v1`` base URL."""
    from ray import serve

    cfg = load_config(
        values={
            "serve.port": free_port(),
            "serve.api_key": API_KEY,
            "serve.max_model_len": MAX_MODEL_LEN,
            "serve.kv_cache_mb": 64,
        }
    )
    url = openai_app.start(cfg, str(model_dir))
    yield url
    serve.shutdown()


@pytest.fixture
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server, api_key=API_KEY, max_retries=0, timeout=60)


def test_models_and_health(client: openai.OpenAI, server: str) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    health = httpx.get(server.removesuffix("/v1") + "/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_completion_n_max_tokens_and_usage(client: openai.OpenAI) -> None:
    reply = client.completions.create(
        model=MODEL, prompt="The quick brown", max_tokens=7, n=3, temperature=1.0, seed=3
    )
    assert reply.object == "text_completion"
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert reply.usage.completion_tokens <= 21 and reply.usage.prompt_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert all(c.finish_reason in ("stop", "length") for c in reply.choices)


def test_seed_reproduces_and_greedy_is_deterministic(client: openai.OpenAI) -> None:
    def ask(**kw: object) -> str:
        return client.completions.create(model=MODEL, prompt="Rain fell", max_tokens=12, **kw)

    assert (
        ask(seed=7, temperature=1.0).choices[0].text == ask(seed=7, temperature=1.0).choices[0].text
    )
    texts = {ask(seed=s, temperature=1.0).choices[0].text for s in range(4)}
    assert len(texts) > 1, "different seeds gave identical samples"
    assert ask(temperature=0.0).choices[0].text == ask(temperature=0.0, top_p=0.5).choices[0].text


def test_greedy_answers_equal_transformers_token_for_token(
    client: openai.OpenAI, model_dir: Path
) -> None:
    """What the server says is what the model says: the same tokens as transformers' greedy
    ``generate`` on the same weights, for plain prompts and for a chat through its template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    def generate(ids: list[int], n: int) -> list[int]:
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False)
        return out[0, len(ids) :].tolist()

    for prompt in ("The quick brown", "Rain fell on the quiet", "def add(a, b):"):
        ids = tok(prompt).input_ids
        expected = generate(ids, 16)
        reply = client.completions.create(model=MODEL, prompt=prompt, max_tokens=16, temperature=0)
        assert reply.usage.prompt_tokens == len(ids)
        assert reply.choices[0].text == tok.decode(expected, skip_special_tokens=True), prompt
        assert reply.usage.completion_tokens == len(expected)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = list(tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=False))
    expected = generate(ids, 12)
    chat = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=12, temperature=0
    )
    assert chat.usage.prompt_tokens == len(ids)
    assert chat.choices[0].message.content == tok.decode(expected, skip_special_tokens=True)


def test_stop_sequence_cuts_the_text(client: openai.OpenAI) -> None:
    full = client.completions.create(model=MODEL, prompt="Hello", max_tokens=24, temperature=0)
    text = full.choices[0].text
    cut = next((text[:i] for i in range(2, len(text)) if text[:i].strip() and text[i:].strip()), "")
    if not cut:
        pytest.skip("greedy text too short to place a stop sequence")
    stop = text[len(cut) : len(cut) + 2]
    stopped = client.completions.create(
        model=MODEL, prompt="Hello", max_tokens=24, temperature=0, stop=[stop]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert stop not in stopped.choices[0].text and text.startswith(stopped.choices[0].text)


def test_chat_uses_the_template_and_max_tokens(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_tokens=5,
        n=2,
        top_p=0.9,
    )
    assert reply.object == "chat.completion" and len(reply.choices) == 2
    assert all(c.message.role == "assistant" for c in reply.choices)
    assert reply.usage.completion_tokens <= 10
    # the template wraps each turn: more prompt tokens than the two words alone
    assert reply.usage.prompt_tokens > 6


def test_chat_stream_matches_openai_chunks(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Tell me"}],
        max_tokens=10,
        n=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts, reasons, usage = {0: "", 1: ""}, {}, None
    first_delta: dict[int, object] = {}
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            first_delta.setdefault(choice.index, choice.delta.role)
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                reasons[choice.index] = choice.finish_reason
    assert first_delta == {0: "assistant", 1: "assistant"}
    assert set(reasons) == {0, 1}
    assert usage is not None and usage.completion_tokens <= 20 and usage.completion_tokens > 0


def test_completion_stream_equals_non_stream(client: openai.OpenAI) -> None:
    kw = {"model": MODEL, "prompt": "Numbers:", "max_tokens": 16, "temperature": 0}
    whole = client.completions.create(**kw).choices[0].text
    pieces = [c.choices[0].text for c in client.completions.create(stream=True, **kw) if c.choices]
    assert len(pieces) > 1 and "".join(pieces) == whole


def test_api_key_is_required(server: str) -> None:
    wrong = openai.OpenAI(base_url=server, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        wrong.models.list()
    assert err.value.status_code == 401
    assert err.value.body["code"] == "invalid_api_key"
    bare = httpx.post(f"{server}/chat/completions", json={"model": MODEL, "messages": []})
    assert bare.status_code == 401 and "error" in bare.json()


def test_errors_are_openai_shaped(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.completions.create(model="gpt-9", prompt="x", max_tokens=2)
    assert err.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL, prompt="x", max_tokens=-1)
    assert err.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "word " * 400}], max_tokens=4
        )
    assert err.value.body["code"] == "context_length_exceeded"


def _bad_requests(url: str) -> list[tuple[str, bytes]]:
    """Four kinds of malformed request, 250 of each."""
    chat, comp = f"{url}/chat/completions", f"{url}/completions"
    kinds = [
        (chat, b'{"model": "tiny-natal", "messages": [{"role": "user", "content": "hi"'),
        (
            chat,
            json.dumps({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}).encode(),
        ),
        (comp, json.dumps({"model": MODEL, "prompt": "hi", "max_tokens": -5}).encode()),
        (comp, json.dumps({"model": MODEL, "prompt": "tok " * 600, "max_tokens": 4}).encode()),
    ]
    return [kinds[i % 4] for i in range(1000)]


def test_load_200_concurrent_chats_and_1000_malformed(server: str) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    good = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}

    async def main() -> tuple[list[int], list[httpx.Response], list[int]]:
        limits = httpx.Limits(max_connections=256)
        async with httpx.AsyncClient(timeout=120, headers=headers, limits=limits) as http:
            chats = await asyncio.gather(
                *(http.post(f"{server}/chat/completions", json=good) for _ in range(200))
            )
            gate = asyncio.Semaphore(64)

            async def bad(target: str, body: bytes) -> httpx.Response:
                async with gate:
                    return await http.post(target, content=body)

            async def good_during() -> list[int]:
                codes = []
                for _ in range(5):
                    r = await http.post(f"{server}/chat/completions", json=good)
                    codes.append(r.status_code)
                return codes

            results = await asyncio.gather(
                asyncio.gather(*(bad(t, b) for t, b in _bad_requests(server))), good_during()
            )
            after = await http.post(f"{server}/chat/completions", json=good)
            return [r.status_code for r in chats], results[0], results[1] + [after.status_code]

    chat_codes, malformed, good_codes = asyncio.run(main())
    assert chat_codes == [200] * 200
    assert all(400 <= r.status_code < 500 for r in malformed), {r.status_code for r in malformed}
    assert all(set(r.json()["error"]) >= {"message", "type", "code"} for r in malformed)
    assert {r.status_code for r in malformed} == {400, 404}
    assert good_codes == [200] * 6


def test_check_chat_is_the_demo_step(server: str) -> None:
    reply = openai_app.check_chat(server, MODEL, API_KEY, "Hello!")
    assert isinstance(reply, str)


def _running_replicas(app: str) -> int:
    from ray import serve

    states = serve.status().applications[app].deployments["openai"].replica_states
    return sum(n for state, n in states.items() if getattr(state, "value", state) == "RUNNING")


def test_replicas_scale_up_under_load_and_back_down(server: str, tmp_path: Path) -> None:
    """A second app (1..2 replicas): sustained requests add a replica, idleness removes it."""
    from ray import serve

    model_dir = build_tiny_model(tmp_path / "scaling")
    args = {
        "model": str(model_dir),
        "served_model_name": "scaling",
        "min_replicas": 1,
        "max_replicas": 2,
        "target_ongoing_requests": 2,
        "upscale_delay_s": 1,
        "downscale_delay_s": 2,
        "look_back_period_s": 4,  # Serve's 30 s average would hold both changes back
        "num_cpus": 0.25,
        "kv_cache_mb": 32,
        "max_model_len": MAX_MODEL_LEN,
    }
    serve.run(openai_app.build_app(args), name="natal-scaling", route_prefix="/scaling")
    base = server.removesuffix("/v1") + "/scaling/v1"
    stop, codes = threading.Event(), []

    def load() -> None:  # 8 long requests in flight at any time, until told to stop
        body = {"model": "scaling", "prompt": "Once", "max_tokens": 64, "ignore_eos": True}

        async def main() -> None:
            async with httpx.AsyncClient(timeout=120) as http:
                while not stop.is_set():
                    replies = await asyncio.gather(
                        *(http.post(f"{base}/completions", json=body) for _ in range(8))
                    )
                    codes.extend(r.status_code for r in replies)

        asyncio.run(main())

    try:
        seen = [_running_replicas("natal-scaling")]
        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        deadline = time.monotonic() + 120
        while seen[-1] < 2 and time.monotonic() < deadline:
            time.sleep(1)
            seen.append(_running_replicas("natal-scaling"))
        stop.set()
        loader.join(timeout=120)
        deadline = time.monotonic() + 120
        while _running_replicas("natal-scaling") > 1 and time.monotonic() < deadline:
            time.sleep(1)
        after = _running_replicas("natal-scaling")
    finally:
        stop.set()
        serve.delete("natal-scaling")
    print(f"replicas while loaded: {seen}; after: {after}")
    assert seen[0] == 1 and seen[-1] == 2 and after == 1
    assert codes and set(codes) == {200}  # no request failed while replicas came and went


def test_build_app_takes_autoscaling_from_the_config(tmp_path: Path) -> None:
    args = {
        "min_replicas": 0,
        "max_replicas": 3,
        "target_ongoing_requests": 5,
        "upscale_delay_s": 2,
        "downscale_delay_s": 20,
        "look_back_period_s": 7,
        "num_cpus": 0.5,
    }
    (tmp_path / "config.json").write_text("{}")
    deployment = openai_app.build_app({"model": str(tmp_path), **args})._bound_deployment
    assert deployment.ray_actor_options == {"num_cpus": 0.5, "num_gpus": 0}
    autoscaling = deployment._deployment_config.autoscaling_config
    assert (autoscaling.min_replicas, autoscaling.max_replicas) == (0, 3)
    assert autoscaling.target_ongoing_requests == 5 and autoscaling.initial_replicas == 1
    assert (autoscaling.upscale_delay_s, autoscaling.downscale_delay_s) == (2, 20)
    assert autoscaling.look_back_period_s == 7
    with pytest.raises(ConfigError):
        openai_app.build_app({"model": str(tmp_path), "min_replicas": 4, "max_replicas": 2})
    with pytest.raises(ConfigError):
        openai_app.build_app({"model": str(tmp_path), "max_replica": 2})
    with pytest.raises(InputError, match="no config.json.* nor a LoRA adapter"):
        openai_app.build_app({"model": str(tmp_path / "missing")})
    adapter = tmp_path / "final-adapter"  # an adapter alone is servable: merged per replica
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    assert openai_app.build_app({"model": str(adapter)})._bound_deployment.name == "openai"

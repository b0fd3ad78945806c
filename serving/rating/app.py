"""``natal rate``: the rating page as a Ray Serve app (FastAPI ingress) over the SQLite store.

Prompts with their responses are loaded into the store first: from a rollout file
(``{"prompt", "responses"}`` per line), or generated here by a natal model through the vLLM
engine from a prompts file. The page then asks each signed-in rater for a ranking of every
prompt they have not rated yet. ``--add-rater`` issues tokens, ``--export`` writes the
preference data that ``natal reward`` reads.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from ray import serve

from cluster.config import NatalConfig
from cluster.config.errors import InputError
from pipelines.data.stats import StageStats
from pipelines.posttrain.chat_data import read_records
from serving.rating.database import RatingError, RatingStore

STATIC = Path(__file__).resolve().parent / "static"

page = FastAPI(title="natal rating page")
page.mount("/static", StaticFiles(directory=STATIC), name="static")


def _unauthorized() -> JSONResponse:
    return JSONResponse({"error": "sign in with your rater token"}, status_code=401)


@serve.deployment(name="rating-page", num_replicas=1, ray_actor_options={"num_cpus": 0})
@serve.ingress(page)
class RatingPage:
    """The page and its JSON API; every API call needs ``Authorization: Bearer <token>``."""

    def __init__(self, db_path: str) -> None:
        self.store = RatingStore(db_path)

    async def _rater(self, request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return await asyncio.to_thread(self.store.rater, token.strip())

    @page.get("/")
    async def index(self) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @page.get("/api/next")
    async def next_item(self, request: Request) -> Any:
        rater = await self._rater(request)
        if rater is None:
            return _unauthorized()
        return await asyncio.to_thread(self._state, rater)

    @page.post("/api/ratings")
    async def submit(self, request: Request) -> Any:
        rater = await self._rater(request)
        if rater is None:
            return _unauthorized()
        try:
            body = await request.json()
            await asyncio.to_thread(
                self.store.submit,
                rater,
                str(body["item_id"]),
                body["ranking"],
                body.get("ties") or [],
                bool(body.get("all_bad", False)),
            )
        except (ValueError, KeyError, TypeError) as exc:  # RatingError, bad JSON, bad fields
            message = str(exc) if isinstance(exc, RatingError) else f"malformed rating: {exc!r}"
            return JSONResponse({"error": message}, status_code=400)
        return await asyncio.to_thread(self._state, rater)

    def _state(self, rater: str) -> dict[str, Any]:
        return {
            "rater": rater,
            "item": self.store.next_item(rater),
            "progress": self.store.progress(rater),
        }


# --- loading prompts and responses -----------------------------------------------------------


def load_rollouts(path: str, stats: StageStats) -> list[dict[str, Any]]:
    """Items from a rollout file: ``prompt`` (text or chat messages) + 2..9 ``responses``
    (texts or ``{"text"|"content": ...}``). Unusable records are counted and skipped."""
    items = []
    for record in read_records(path, stats):
        prompt = _prompt_text(record)
        responses = [_response_text(r) for r in record.get("responses") or []]
        if prompt is None or not 2 <= len(responses) <= 9 or None in responses:
            stats.add_to("skipped_by_reason", "unusable_rollout")
            continue
        items.append({"prompt": prompt, "responses": responses, "source": f"rollouts:{path}"})
    return items


def _prompt_text(record: dict[str, Any]) -> str | None:
    prompt = record.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        return prompt
    messages = record.get("messages") if prompt is None else prompt
    if isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages):
        return "\n\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in messages)
    return None


def _response_text(response: Any) -> str | None:
    if isinstance(response, dict):
        response = response.get("text", response.get("content"))
    return response if isinstance(response, str) else None


def generate_items(
    cfg: NatalConfig, prompts_path: str, model_dir: str, stats: StageStats
) -> list[dict[str, Any]]:
    """N responses per prompt from a natal model, sampled through the vLLM engine (chat
    template of the model's tokenizer)."""
    from vllm import SamplingParams

    from actors.engine import make_llm

    prompts = []
    for record in read_records(prompts_path, stats):
        text = _prompt_text(record)
        if text is None:
            stats.add_to("skipped_by_reason", "no_prompt")
            continue
        prompts.append(text)
    if not prompts:
        raise InputError(f"{prompts_path}: no usable prompt (records need a 'prompt' field)")
    llm = make_llm(model_dir, kv_cache_mb=cfg.serve.kv_cache_mb)
    params = SamplingParams(
        n=cfg.rate.responses_per_prompt,
        temperature=cfg.rate.temperature,
        max_tokens=cfg.rate.max_new_tokens,
        seed=0,
    )
    chats = [[{"role": "user", "content": p}] for p in prompts]
    outputs = llm.chat(chats, params, use_tqdm=True)
    source = f"model:{Path(model_dir).name}"
    return [
        {"prompt": p, "responses": [c.text for c in out.outputs], "source": source}
        for p, out in zip(prompts, outputs, strict=True)
    ]


# --- the CLI ---------------------------------------------------------------------------------


def start(cfg: NatalConfig) -> str:
    """Serve the page on ``rate.host:port``; returns its URL."""
    from cluster.runtime import ensure_ray

    ensure_ray(cfg.runtime)
    serve.start(http_options={"host": cfg.rate.host, "port": cfg.rate.port})
    db_path = str(Path(cfg.rate.db_path).resolve())
    serve.run(RatingPage.bind(db_path), name="natal-rate", route_prefix="/")
    return f"http://{cfg.rate.host}:{cfg.rate.port}/"


def run(
    cfg: NatalConfig,
    add_rater: str | None = None,
    export_path: str | None = None,
    prompts: str | None = None,
    rollouts: str | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """``natal rate``: issue a token, export, or load prompts and serve the page until Ctrl-C."""
    from serving.rating.database import export

    store = RatingStore(cfg.rate.db_path)
    if add_rater:
        token = store.add_rater(add_rater)
        print(f"rater {add_rater!r}: token {token}  (give it to them; it is not shown again)")
        return {"stage": "rate", "rater": add_rater, "db": cfg.rate.db_path}
    if export_path:
        return export(store, export_path)
    stats = StageStats("rate")
    if rollouts:
        items = load_rollouts(rollouts, stats)
    elif prompts:
        if not model:
            raise InputError("--prompts needs --model DIR to generate the responses")
        items = generate_items(cfg, prompts, model, stats)
    else:
        items = []
    stats.add("items_loaded", len(items))
    stats.add("items_new", store.add_items(items))
    url = start(cfg)
    print(
        f"natal rate: rating page at {url} (Ctrl-C stops; ratings are kept in {cfg.rate.db_path})",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return stats.to_dict() | {"url": url}
    finally:
        serve.shutdown()

"""``natal serve``: an OpenAI-compatible Ray Serve application whose replicas run vLLM.

Each replica owns one in-process vLLM engine (:mod:`serving.async_engine`) and answers
``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions`` (streamed as
server-sent events when asked) and ``GET /health``. Ray Serve scales replicas between
``serve.min_replicas`` and ``serve.max_replicas`` on requests in flight. The request and
response shapes live in :mod:`serving.openai_protocol`; this module only wires them to the
engine. ``build_app`` is the import path a KubeRay RayService points at.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve
from ray.serve import Application

from cluster.config import NatalConfig, ServeConfig, build_config
from cluster.config.errors import ConfigError, InputError
from serving import openai_protocol as proto

api = FastAPI(title="natal OpenAI-compatible API")


@api.exception_handler(proto.ProtocolError)
async def _protocol_error(_: Request, exc: proto.ProtocolError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


@api.exception_handler(Exception)
async def _server_error(_: Request, exc: Exception) -> JSONResponse:
    """Even a bug answers in OpenAI's shape, so clients raise ``InternalServerError``."""
    body = proto.error_body(f"{type(exc).__name__}: {exc}", type="server_error")
    return JSONResponse(body, status_code=500)


@serve.deployment(name="openai", health_check_period_s=10)
@serve.ingress(api)
class OpenAIServer:
    """One replica: a vLLM engine on ``model_dir`` behind OpenAI's routes."""

    def __init__(self, model_dir: str, model_name: str, api_key: str | None, engine: dict) -> None:
        import tempfile

        from pipelines.posttrain import lora
        from serving.async_engine import ThreadedEngine

        if lora.is_adapter_dir(model_dir):  # merged once per replica, on the replica's node
            model_dir = lora.merge_adapter(model_dir, tempfile.mkdtemp(prefix="natal-merged-"))
        self.engine = ThreadedEngine(model_dir, **engine)
        self.model_name = model_name
        self.api_key = api_key
        self.created = int(time.time())

    def check_health(self) -> None:
        """Ray Serve restarts a replica whose engine thread died."""
        if not self.engine.is_alive():
            raise RuntimeError("vLLM engine thread is not running")

    @api.get("/health")
    async def health(self) -> dict[str, str]:
        self.check_health()
        return {"status": "ok", "model": self.model_name}

    @api.get("/v1/models")
    async def models(self, request: Request) -> dict[str, Any]:
        proto.check_api_key(request.headers.get("authorization"), self.api_key)
        return proto.models_list(self.model_name, self.created)

    @api.post("/v1/completions")
    async def completions(self, request: Request) -> Any:
        req = await self._parse(request, proto.CompletionRequest)
        prompts = [self._encode_text(p) if isinstance(p, str) else p for p in req.prompts()]
        params = [self._params(req, ids, req.max_tokens) for ids in prompts]
        rid = proto.new_id("cmpl")
        if req.stream:
            return StreamingResponse(
                self._stream(req, rid, prompts, params, chat=False), media_type=proto.SSE_MEDIA_TYPE
            )
        results = await asyncio.gather(
            *(self._final(ids, p) for ids, p in zip(prompts, params, strict=True))
        )
        choices = [choice for result in results for choice in proto.choices_of(result)]
        used = sum(proto.completion_tokens(r) for r in results)
        return proto.completion_response(
            rid, self.model_name, choices, proto.total_prompt_tokens(prompts), used
        )

    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Any:
        req = await self._parse(request, proto.ChatRequest)
        ids = self._encode_chat(req.turns())
        params = self._params(req, ids, req.token_limit())
        rid = proto.new_id("chatcmpl")
        if req.stream:
            return StreamingResponse(
                self._stream(req, rid, [ids], [params], chat=True), media_type=proto.SSE_MEDIA_TYPE
            )
        result = await self._final(ids, params)
        return proto.chat_response(
            rid,
            self.model_name,
            proto.choices_of(result),
            len(ids),
            proto.completion_tokens(result),
        )

    # --- helpers --------------------------------------------------------------------------

    async def _parse(self, request: Request, kind: type) -> Any:
        proto.check_api_key(request.headers.get("authorization"), self.api_key)
        req = proto.parse_request(kind, proto.parse_json(await request.body()))
        proto.check_model(req.model, self.model_name)
        return req

    def _encode_text(self, text: str) -> list[int]:
        return self.engine.tokenizer.encode(text)

    def _encode_chat(self, turns: list[dict[str, str]]) -> list[int]:
        tokenizer = self.engine.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise proto.ProtocolError(
                "this model's tokenizer has no chat template: use /v1/completions"
            )
        try:
            text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # the template refuses these turns (order, roles)
            raise proto.ProtocolError(f"messages do not fit the chat template: {exc}") from None
        return tokenizer.encode(text, add_special_tokens=False)

    def _params(self, req: Any, ids: list[int], max_tokens: int | None) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        if not ids:
            raise proto.ProtocolError("prompt must not be empty", param="prompt")
        budget = proto.completion_budget(len(ids), max_tokens, self.engine.max_model_len)
        kind = RequestOutputKind.DELTA if req.stream else RequestOutputKind.FINAL_ONLY
        return SamplingParams(**proto.sampling_kwargs(req, budget), output_kind=kind)

    async def _final(self, ids: list[int], params: Any) -> Any:
        result = None
        try:
            async for output in self.engine.generate({"prompt_token_ids": ids}, params):
                result = output
        except ValueError as exc:  # refused by the engine's own input checks
            raise proto.ProtocolError(str(exc)) from None
        return result

    async def _stream(
        self, req: Any, rid: str, prompts: list[list[int]], params: list[Any], chat: bool
    ) -> AsyncIterator[str]:
        """Chunks of every choice as the engine makes them; usage last if asked; [DONE]."""
        used = 0
        try:
            for p, (ids, param) in enumerate(zip(prompts, params, strict=True)):
                started: set[int] = set()
                async for output in self.engine.generate({"prompt_token_ids": ids}, param):
                    for c in output.outputs:
                        index = p * req.n + c.index
                        used += len(c.token_ids)
                        reason = proto.finish_reason(c.finish_reason)
                        for event in self._chunks(rid, index, c.text, reason, chat, started):
                            yield proto.sse(event)
            if req.include_usage():
                obj = "chat.completion.chunk" if chat else "text_completion"
                tokens = proto.total_prompt_tokens(prompts)
                yield proto.sse(proto.usage_chunk(rid, self.model_name, obj, tokens, used))
        except Exception as exc:  # the status line is sent already: report in-band
            yield proto.sse(proto.error_body(str(exc), type="server_error"))
        yield proto.sse("[DONE]")

    def _chunks(
        self, rid: str, index: int, text: str, reason: str | None, chat: bool, started: set[int]
    ) -> list[dict[str, Any]]:
        if not chat:
            return [proto.completion_chunk(rid, self.model_name, index, text, reason)]
        events = []
        if index not in started:
            started.add(index)
            events.append(
                proto.chat_chunk(
                    rid, self.model_name, index, {"role": "assistant", "content": ""}, None
                )
            )
        if text:
            events.append(proto.chat_chunk(rid, self.model_name, index, {"content": text}, None))
        if reason is not None:
            events.append(proto.chat_chunk(rid, self.model_name, index, {}, reason))
        return events


# --- building and running the application ---------------------------------------------------


def deployment_options(cfg: ServeConfig) -> dict[str, Any]:
    """Ray Serve options of the replicas: autoscaling bounds and target, resources."""
    return {
        "autoscaling_config": {
            "min_replicas": cfg.min_replicas,
            "initial_replicas": max(cfg.min_replicas, 1),
            "max_replicas": cfg.max_replicas,
            "target_ongoing_requests": cfg.target_ongoing_requests,
            "upscale_delay_s": cfg.upscale_delay_s,
            "downscale_delay_s": cfg.downscale_delay_s,
            "look_back_period_s": cfg.look_back_period_s,
        },
        "max_ongoing_requests": cfg.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus},
    }


def build_app(args: dict[str, Any]) -> Application:
    """Ray Serve app builder (``serving.openai_app:build_app``): ``model`` + ServeConfig fields."""
    args = dict(args)
    model_dir = args.pop("model", None)
    if not model_dir:
        raise ConfigError("serve: 'model' (a Hugging Face model directory) is required")
    cfg = build_config({"serve": args}, origin="serve app args").serve
    if cfg.min_replicas > cfg.max_replicas:
        raise ConfigError("serve.min_replicas must not exceed serve.max_replicas")
    if not any((Path(model_dir) / f).is_file() for f in ("config.json", "adapter_config.json")):
        raise InputError(
            f"{model_dir}: not a model directory (no config.json) nor a LoRA adapter "
            "(no adapter_config.json)"
        )
    engine: dict[str, Any] = {"kv_cache_mb": cfg.kv_cache_mb, "max_model_len": cfg.max_model_len}
    if cfg.dtype:
        engine["dtype"] = cfg.dtype
    deployment = OpenAIServer.options(**deployment_options(cfg))
    name = cfg.served_model_name or Path(model_dir).resolve().name
    return deployment.bind(str(Path(model_dir).resolve()), name, cfg.api_key, engine)


def start(cfg: NatalConfig, model_dir: str) -> str:
    """Start Serve on ``serve.host:port`` and deploy the app; returns the base URL."""
    from cluster.runtime import ensure_ray

    ensure_ray(cfg.runtime)
    args = {"model": model_dir, **cfg.serve.model_dump()}
    app = build_app(args)
    serve.start(http_options={"host": cfg.serve.host, "port": cfg.serve.port})
    serve.run(app, name="natal-openai", route_prefix="/")
    return f"http://{cfg.serve.host}:{cfg.serve.port}/v1"


def check_chat(base_url: str, model: str, api_key: str | None, prompt: str) -> str:
    """One chat request with the official ``openai`` client: the demo's last step."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=api_key or "none")
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=32
    )
    return reply.choices[0].message.content or ""


def run(cfg: NatalConfig, model_dir: str, check: str | None = None) -> dict[str, Any]:
    """``natal serve``: serve until Ctrl-C, or (``check``) answer one chat request and stop."""
    t0 = time.perf_counter()
    url = start(cfg, model_dir)
    model = cfg.serve.served_model_name or Path(model_dir).resolve().name
    ready = round(time.perf_counter() - t0, 1)
    print(f"natal serve: {model} at {url} (OpenAI API; Ctrl-C stops)", flush=True)
    stats: dict[str, Any] = {"stage": "serve", "url": url, "model": model, "ready_s": ready}
    try:
        if check is not None:
            stats["question"] = check
            stats["reply"] = check_chat(url, model, cfg.serve.api_key, check)
            return stats
        while True:
            time.sleep(3600)
    finally:
        serve.shutdown()

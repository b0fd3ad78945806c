"""OpenAI's HTTP API, as data: request validation and response shaping, without Ray or vLLM.

Scripts written against the official ``openai`` client must work unchanged, so every shape
here follows OpenAI's: the request fields it sends, the ``choices``/``usage`` objects it
parses, the ``chat.completion.chunk`` stream events and the ``{"error": {...}}`` body.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_N = 16
MAX_STOP = 4


class ProtocolError(Exception):
    """A request the client must fix (or a missing/wrong key): an HTTP status + OpenAI error."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.type, self.code, self.param = (
            message,
            status,
            type,
            code,
            param,
        )

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param)


def error_body(
    message: str,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """OpenAI's error object, which the ``openai`` client turns into ``APIStatusError``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


# --- requests -------------------------------------------------------------------------------


class _Sampling(BaseModel):
    """Fields shared by completions and chat completions (OpenAI names and ranges)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    n: int = Field(1, ge=1, le=MAX_N)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    user: str | None = None
    # vLLM extensions that benchmarks use to fix the output length
    ignore_eos: bool = False
    min_tokens: int = Field(0, ge=0)

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stops

    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=1)
    echo: bool = False

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool) -> bool:
        if value:
            raise ValueError("echo is not supported by this server")
        return value

    def prompts(self) -> list[str | list[int]]:
        """The batch of prompts: OpenAI accepts text, token ids, or a list of either."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if prompt and all(isinstance(p, int) for p in prompt):
            return [list(prompt)]  # type: ignore[arg-type]
        if not prompt:
            raise ProtocolError("prompt must not be empty", param="prompt")
        return list(prompt)  # type: ignore[arg-type]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text; content parts other than text are refused."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        texts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ProtocolError(
                    "only text content parts are supported", param="messages.content"
                )
            texts.append(part["text"])
        return "".join(texts)


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    def turns(self) -> list[dict[str, str]]:
        """Messages as the tokenizer's chat template takes them (``developer`` = system)."""
        return [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in self.messages
        ]

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


def parse_json(raw: bytes) -> Any:
    """The request body as JSON, or a 400 that says what is wrong with it."""
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"request body is not valid JSON: {exc}") from None


def parse_request(kind: type[_Sampling], body: Any) -> Any:
    """Validate a decoded body into ``kind``; the first problem becomes a 400 naming the field."""
    if not isinstance(body, dict):
        raise ProtocolError("request body must be a JSON object")
    try:
        return kind.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        if err["type"] == "extra_forbidden":
            message = f"Unrecognized request argument supplied: {param}"
        elif err["type"] == "missing":
            message = f"Missing required parameter: '{param}'"
        else:
            message = f"Invalid value for '{param}': {err['msg']}"
        raise ProtocolError(message, param=param) from None


def check_model(requested: str, served: str) -> None:
    if requested != served:
        raise ProtocolError(
            f"The model '{requested}' does not exist (this server serves '{served}')",
            status=404,
            code="model_not_found",
            param="model",
        )


def completion_budget(prompt_tokens: int, requested: int | None, max_model_len: int) -> int:
    """Tokens to generate: as requested, or what the context leaves; 400 if it cannot fit."""
    room = max_model_len - prompt_tokens
    if room < 1 or (requested is not None and requested > room):
        want = requested if requested is not None else 1
        raise ProtocolError(
            f"This model's maximum context length is {max_model_len} tokens. However, you "
            f"requested {prompt_tokens + want} tokens ({prompt_tokens} in the messages, "
            f"{want} in the completion). Please reduce the length of the messages or completion.",
            code="context_length_exceeded",
            param="messages" if requested is None else "max_tokens",
        )
    return requested if requested is not None else room


def sampling_kwargs(request: _Sampling, max_tokens: int) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for a validated request."""
    return {
        "n": request.n,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": max_tokens,
        "stop": request.stop or None,
        "seed": request.seed,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "ignore_eos": request.ignore_eos,
        "min_tokens": min(request.min_tokens, max_tokens),
    }


def check_api_key(authorization: str | None, api_key: str | None) -> None:
    """401 unless ``Authorization: Bearer <api_key>`` (no key configured: everyone is let in)."""
    if api_key is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or token.strip() != api_key:
        raise ProtocolError(
            "Incorrect API key provided. Pass it as 'Authorization: Bearer <key>'.",
            status=401,
            code="invalid_api_key",
        )


# --- responses ------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def finish_reason(vllm_reason: str | None) -> str | None:
    """vLLM's reasons (``stop``, ``length``, ``abort``) as OpenAI's."""
    if vllm_reason is None:
        return None
    return "length" if vllm_reason == "length" else "stop"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def models_list(model: str, created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": model, "object": "model", "created": created, "owned_by": "natal"}],
    }


def completion_response(
    rid: str,
    model: str,
    choices: list[tuple[str, str | None]],
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    """``text_completion``: ``choices`` are (text, finish reason) in OpenAI's index order."""
    return {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": i, "text": text, "logprobs": None, "finish_reason": reason}
            for i, (text, reason) in enumerate(choices)
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chat_response(
    rid: str,
    model: str,
    choices: list[tuple[str, str | None]],
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    """``chat.completion``: one assistant message per choice."""
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": reason,
            }
            for i, (text, reason) in enumerate(choices)
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def completion_chunk(
    rid: str, model: str, index: int, text: str, reason: str | None
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": reason}],
    }


def chat_chunk(
    rid: str, model: str, index: int, delta: dict[str, str], reason: str | None
) -> dict[str, Any]:
    """``chat.completion.chunk``: the first delta of a choice carries the role."""
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}],
    }


def usage_chunk(rid: str, model: str, obj: str, prompt_tokens: int, completion_tokens: int) -> dict:
    """The last event when ``stream_options.include_usage`` is set: no choices, the usage."""
    return {
        "id": rid,
        "object": obj,
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def choices_of(result: Any) -> list[tuple[str, str | None]]:
    """(text, OpenAI finish reason) of a vLLM ``RequestOutput``'s completions, by index."""
    ordered = sorted(result.outputs, key=lambda c: c.index)
    return [(c.text, finish_reason(c.finish_reason)) for c in ordered]


def completion_tokens(result: Any) -> int:
    return sum(len(c.token_ids) for c in result.outputs)


def total_prompt_tokens(prompts: list[list[int]]) -> int:
    return sum(len(ids) for ids in prompts)


SSE_MEDIA_TYPE = "text/event-stream"


def sse(event: dict[str, Any] | str) -> str:
    """One server-sent event; the stream ends with ``data: [DONE]``."""
    data = event if isinstance(event, str) else json.dumps(event, ensure_ascii=False)
    return f"data: {data}\n\n"

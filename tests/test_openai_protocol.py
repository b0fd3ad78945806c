"""OpenAI request validation and response shapes, without Ray or vLLM."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from serving import openai_protocol as proto


def _error(fn, *args) -> proto.ProtocolError:
    with pytest.raises(proto.ProtocolError) as err:
        fn(*args)
    return err.value


def test_bad_json_and_non_objects_are_400() -> None:
    err = _error(proto.parse_json, b'{"model": "m", ')
    assert err.status == 400 and "not valid JSON" in err.message
    assert _error(proto.parse_json, b"\xff\xfe").status == 400
    assert _error(proto.parse_request, proto.ChatRequest, [1, 2]).status == 400


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "prompt": "x", "max_tokens": -1}, "max_tokens"),
        ({"model": "m", "prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "prompt": "x", "temperature": 2.5}, "temperature"),
        ({"model": "m", "prompt": "x", "top_p": 0}, "top_p"),
        ({"model": "m", "prompt": "x", "n": 0}, "n"),
        ({"model": "m", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": "m", "prompt": "x", "best_of": 2}, "best_of"),
        ({"model": "m", "prompt": "x", "echo": True}, "echo"),
        ({"model": "m"}, "prompt"),
        ({"prompt": "x"}, "model"),
    ],
)
def test_completion_fields_are_checked(body: dict, param: str) -> None:
    err = _error(proto.parse_request, proto.CompletionRequest, body)
    assert err.status == 400 and err.param == param and param in err.message


def test_chat_messages_are_checked() -> None:
    assert _error(proto.parse_request, proto.ChatRequest, {"model": "m", "messages": []}).param == (
        "messages"
    )
    bad_role = {"model": "m", "messages": [{"role": "wizard", "content": "x"}]}
    assert _error(proto.parse_request, proto.ChatRequest, bad_role).param.startswith("messages")
    image = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
    }
    req = proto.parse_request(proto.ChatRequest, image)
    assert _error(req.turns).status == 400


def test_chat_request_turns_and_limits() -> None:
    req = proto.parse_request(
        proto.ChatRequest,
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "be kind"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}],
                },
            ],
            "max_completion_tokens": 9,
            "max_tokens": 50,
            "stop": "END",
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert req.turns() == [
        {"role": "system", "content": "be kind"},
        {"role": "user", "content": "hi there"},
    ]
    assert req.token_limit() == 9 and req.stop == ["END"] and req.include_usage()


def test_completion_prompt_forms() -> None:
    def prompts(prompt: object) -> list:
        return proto.parse_request(
            proto.CompletionRequest, {"model": "m", "prompt": prompt}
        ).prompts()

    assert prompts("hi") == ["hi"]
    assert prompts(["a", "b"]) == ["a", "b"]
    assert prompts([5, 6, 7]) == [[5, 6, 7]]
    assert prompts([[1], [2, 3]]) == [[1], [2, 3]]
    assert _error(prompts, []).status == 400


def test_model_and_api_key_checks() -> None:
    err = _error(proto.check_model, "gpt-4", "natal")
    assert err.status == 404 and err.code == "model_not_found"
    proto.check_model("natal", "natal")
    proto.check_api_key(None, None)
    proto.check_api_key("Bearer k", "k")
    proto.check_api_key("bearer k", "k")
    for header in (None, "Bearer x", "k", "Basic k"):
        err = _error(proto.check_api_key, header, "k")
        assert err.status == 401 and err.code == "invalid_api_key"


def test_completion_budget_fills_or_refuses_the_context() -> None:
    assert proto.completion_budget(10, None, 64) == 54
    assert proto.completion_budget(10, 54, 64) == 54
    err = _error(proto.completion_budget, 10, 55, 64)
    assert err.code == "context_length_exceeded" and err.param == "max_tokens"
    assert "64" in err.message and "65" in err.message
    assert _error(proto.completion_budget, 64, None, 64).code == "context_length_exceeded"


def test_sampling_kwargs() -> None:
    req = proto.parse_request(
        proto.CompletionRequest,
        {
            "model": "m",
            "prompt": "x",
            "n": 3,
            "temperature": 0.5,
            "top_p": 0.9,
            "seed": 4,
            "min_tokens": 99,
        },
    )
    kw = proto.sampling_kwargs(req, 20)
    assert kw["n"] == 3 and kw["temperature"] == 0.5 and kw["top_p"] == 0.9
    assert kw["seed"] == 4 and kw["max_tokens"] == 20 and kw["stop"] is None
    assert kw["min_tokens"] == 20  # never more than the budget


def _output(index: int, text: str, tokens: int, reason: str | None) -> SimpleNamespace:
    return SimpleNamespace(
        index=index, text=text, token_ids=list(range(tokens)), finish_reason=reason
    )


def test_response_shapes_follow_openai() -> None:
    result = SimpleNamespace(outputs=[_output(1, "b", 2, "length"), _output(0, "a", 3, "stop")])
    choices = proto.choices_of(result)
    assert choices == [("a", "stop"), ("b", "length")]
    chat = proto.chat_response("chatcmpl-1", "m", choices, 4, proto.completion_tokens(result))
    assert chat["object"] == "chat.completion"
    assert chat["choices"][1] == {
        "index": 1,
        "message": {"role": "assistant", "content": "b"},
        "logprobs": None,
        "finish_reason": "length",
    }
    assert chat["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}
    comp = proto.completion_response("cmpl-1", "m", choices, 4, 5)
    assert comp["object"] == "text_completion" and comp["choices"][0]["text"] == "a"
    assert proto.finish_reason("abort") == "stop" and proto.finish_reason(None) is None
    assert proto.total_prompt_tokens([[1, 2], [3]]) == 3


def test_stream_events() -> None:
    chunk = proto.chat_chunk("c", "m", 0, {"content": "hé"}, None)
    event = proto.sse(chunk)
    assert event.startswith("data: ") and event.endswith("\n\n")
    assert json.loads(event[6:]) == chunk and chunk["object"] == "chat.completion.chunk"
    assert proto.sse("[DONE]") == "data: [DONE]\n\n"
    usage = proto.usage_chunk("c", "m", "chat.completion.chunk", 3, 4)
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 7


def test_error_body_is_openai_shaped() -> None:
    err = proto.ProtocolError("bad", code="x", param="p")
    assert err.body() == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": "p", "code": "x"}
    }
    assert proto.models_list("m", 1)["data"][0] == {
        "id": "m",
        "object": "model",
        "created": 1,
        "owned_by": "natal",
    }

"""Label masks token by token, truncation policies, and packing without attention leaks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from tiny_chat import build_chat_model, build_tokenizer

from cluster.config.errors import ConfigError
from pipelines.posttrain.chat_data import RecordError
from pipelines.posttrain.sft_data import (
    IGNORE,
    Example,
    as_row,
    check_template,
    collate,
    encode_conversation,
    last_turn_only,
    make_example,
    model_inputs,
    pack,
    response_example,
    sft_example,
)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def turn(role, content):
    return {"role": role, "content": content}


MULTI_TURN = [
    turn("system", "Be brief."),
    turn("user", "What is two plus three?"),
    turn("assistant", "The answer is 5."),
    turn("user", "And seven minus four?"),
    turn("assistant", "3"),
    turn("user", "Tell me a colour."),
    turn("assistant", "blue"),
]


def expected_labels(tokenizer, ids):
    """Independent of the template's generation blocks: a token is trained on iff it lies
    after an ``<|assistant|>`` marker and its newline, up to and including that turn's ``<|end|>``."""
    assistant, end = tokenizer.convert_tokens_to_ids(["<|assistant|>", "<|end|>"])
    newline = tokenizer.convert_tokens_to_ids("Ċ")
    labels, inside, previous = [], False, None
    for token in ids:
        if previous == assistant and token == newline:
            labels.append(IGNORE)
            inside = True
        elif inside:
            labels.append(token)
            inside = token != end
        else:
            labels.append(IGNORE)
        previous = token
    return labels


def test_label_mask_is_exactly_the_assistant_tokens(tokenizer):
    example = sft_example(tokenizer, MULTI_TURN, max_len=1000)
    assert example.labels == expected_labels(tokenizer, example.input_ids)
    assert not example.truncated
    trained = [t for t in example.labels if t != IGNORE]
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    assert trained.count(end) == 3  # every assistant turn teaches its own end of turn
    text = tokenizer.decode(trained)
    assert text == "The answer is 5.<|end|>3<|end|>blue<|end|>"
    for user_text in ("two plus three", "seven minus four", "Be brief", "colour"):
        assert user_text not in text


def test_response_example_trains_on_the_last_turn_only(tokenizer):
    example = response_example(tokenizer, MULTI_TURN, max_len=1000)
    trained = tokenizer.decode([t for t in example.labels if t != IGNORE])
    assert trained == "blue<|end|>"
    assert last_turn_only([0, 1, 1, 0, 1, 1, 0, 0]) == [0, 0, 0, 0, 1, 1, 0, 0]
    assert last_turn_only([0, 0]) == [0, 0]


def test_truncation_keeps_start_for_sft_and_end_for_responses(tokenizer):
    full = sft_example(tokenizer, MULTI_TURN, max_len=1000)
    short = sft_example(tokenizer, MULTI_TURN, max_len=30)
    assert short.truncated and short.input_ids == full.input_ids[:30]
    tail = response_example(tokenizer, MULTI_TURN, max_len=12)
    assert tail.truncated and tail.input_ids == full.input_ids[-12:]
    assert tokenizer.decode([t for t in tail.labels if t != IGNORE]) == "blue<|end|>"
    with pytest.raises(RecordError) as err:  # the cut removed every assistant token
        sft_example(tokenizer, MULTI_TURN, max_len=10)
    assert err.value.reason == "no_assistant_tokens_in_context"
    with pytest.raises(RecordError):
        make_example([1, 2, 3], [0, 0, 0], max_len=10)


TEMPLATES = Path(__file__).parent / "chat_templates"
TWO_TURNS = MULTI_TURN[1:5]  # user, assistant, user, assistant: every family takes it
FAMILIES = {  # template → its markers (added as special tokens), what each assistant run is
    "chatml_qwen2": (["<|im_start|>", "<|im_end|>"], ["The answer is 5.<|im_end|>", "3<|im_end|>"]),
    "llama3": (
        ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        ["The answer is 5.<|eot_id|>", "3<|eot_id|>"],
    ),
    "mistral": ([], ["The answer is 5.{eos}", "3{eos}"]),
    "gemma": (
        ["<start_of_turn>", "<end_of_turn>"],
        ["The answer is 5.<end_of_turn>", "3<end_of_turn>"],
    ),
    "phi3": ([], ["The answer is 5.<|end|>", "3<|end|>\n{eos}"]),  # it ends a chat with eos
    "zephyr": ([], ["The answer is 5.{eos}", "3{eos}"]),
}


def runs(tokenizer, example):
    """The decoded stretches of consecutive trained tokens."""
    out, current = [], []
    for label in [*example.labels, IGNORE]:
        if label != IGNORE:
            current.append(label)
        elif current:
            out.append(tokenizer.decode(current).strip())
            current = []
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_stock_templates_without_generation_tags_mask_exactly_the_assistant_turns(family):
    markers, expected = FAMILIES[family]
    tok = build_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": markers})
    tok.chat_template = (TEMPLATES / f"{family}.jinja").read_text()
    example = sft_example(tok, TWO_TURNS, max_len=1000)
    rendered = tok.apply_chat_template(TWO_TURNS, tokenize=True, return_dict=True)
    assert example.input_ids == list(rendered["input_ids"])  # the template's own tokens
    assert runs(tok, example) == [e.format(eos=tok.eos_token) for e in expected]
    last = response_example(tok, TWO_TURNS, max_len=1000)
    assert runs(tok, last) == [expected[-1].format(eos=tok.eos_token)]


def test_prefix_masks_equal_the_generation_tags_of_natal_template(tokenizer):
    untagged = build_tokenizer()
    untagged.chat_template = re.sub(r"{%-? ?(end)?generation ?-?%}", "", tokenizer.chat_template)
    assert "endgeneration" not in untagged.chat_template
    for conversation in (MULTI_TURN, TWO_TURNS, MULTI_TURN[:3]):
        tagged = encode_conversation(tokenizer, conversation)
        assert encode_conversation(untagged, conversation) == tagged


def test_templates_that_cannot_mark_assistant_turns_are_config_errors():
    plain = build_tokenizer()
    plain.chat_template = None
    with pytest.raises(ConfigError, match="no chat template.*--chat-template FILE"):
        encode_conversation(plain, MULTI_TURN)
    plain.chat_template = "{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}{% endif %}{% endfor %}"
    with pytest.raises(ConfigError, match="does not render assistant turn 2.*--chat-template"):
        encode_conversation(plain, MULTI_TURN)
    plain.chat_template = (
        "{{ messages | length }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    )
    with pytest.raises(ConfigError, match="renders a conversation's start differently"):
        encode_conversation(plain, MULTI_TURN)


def test_packing_positions_and_first_labels():
    examples = [
        Example([1, 2, 3], [IGNORE, 2, 3]),
        Example([4, 5], [4, 5]),
        Example([6] * 4, [6] * 4),
    ]
    rows = pack(examples, max_len=6)
    assert [r.input_ids for r in rows] == [[1, 2, 3, 4, 5], [6, 6, 6, 6]]
    assert rows[0].position_ids == [0, 1, 2, 0, 1]
    assert rows[0].labels == [IGNORE, 2, 3, IGNORE, 5]  # 4 would be predicted across the seam
    assert rows[0].segments == 2
    batch = collate(rows, pad_id=0)
    assert batch["input_ids"].tolist()[1] == [6, 6, 6, 6, 0]
    assert batch["labels"].tolist()[1][-1] == IGNORE
    assert batch["position_ids"].tolist()[1] == [0, 1, 2, 3, 0]


def test_packed_rows_do_not_attend_across_conversations(tokenizer, tmp_path):
    """Logits of a conversation packed behind another equal its logits alone."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(build_chat_model(tmp_path, tokenizer)).eval()
    first = sft_example(tokenizer, MULTI_TURN[:3], max_len=1000)
    second = sft_example(tokenizer, [turn("user", "Hi")] + MULTI_TURN[4:5], max_len=1000)
    [row] = pack([first, second], max_len=1000)
    with torch.no_grad():
        packed = model(**model_inputs(collate([row], tokenizer.pad_token_id))).logits[0]
        alone = model(**model_inputs(collate([as_row(second)], tokenizer.pad_token_id))).logits[0]
        # Control: without the position restarts the second conversation sees the first.
        leaky = model(input_ids=torch.tensor([row.input_ids])).logits[0]
    n = len(first.input_ids)
    torch.testing.assert_close(packed[n:], alone, atol=1e-5, rtol=1e-4)
    assert (leaky[n:] - alone).abs().max() > 1e-3


@pytest.mark.parametrize("family", [*FAMILIES, "natal"])
def test_template_check_passes_every_stock_template_and_refuses_broken_ones(family, tokenizer):
    tok = build_tokenizer()
    tok.chat_template = (
        tokenizer.chat_template
        if family == "natal"
        else (TEMPLATES / f"{family}.jinja").read_text()
    )
    check_template(tok, family)  # renders each assistant turn once
    twice = "{% for m in messages %}{{ m['content'] }}{% if m['role'] == 'assistant' %}{{ m['content'] }}{% endif %}{% endfor %}"
    tok.chat_template = twice
    with pytest.raises(ConfigError, match=r"t.jinja: .* assistant turn 1 2 times, not once"):
        check_template(tok, "t.jinja")
    tok.chat_template = "{{ raise_exception('Conversation roles must alternate') }}"
    with pytest.raises(ConfigError, match=r"cannot render .*roles must alternate.*--chat-template"):
        check_template(tok, "t.jinja")

"""Token ids and labels of conversations: loss on assistant tokens only, optional packing.

The tokenizer's chat template formats a conversation; the assistant tokens become the labels,
every other token -100. A template with ``{% generation %}`` blocks marks them itself
(``return_assistant_tokens_mask``); any other template (the stock ones of Qwen2, Llama 3,
Mistral, Gemma, Phi-3...) is rendered prefix by prefix: an assistant turn is the text between
the conversation before it (with the generation prompt) and the conversation through it, end
of turn included, mapped to tokens by their character offsets (:func:`assistant_spans`). Truncation policy: SFT keeps the *start* of a conversation (right truncation),
preference examples keep the *end* (left truncation, so the response being judged stays whole);
an example left with no assistant token is skipped under ``no_assistant_tokens_in_context``.

Packing puts several conversations in one row; ``position_ids`` restart at 0 for each, which
is how transformers' attention (sdpa, eager, flash) isolates them: with no 2D attention mask it
derives a block-diagonal causal mask from the position restarts, so no token attends to another
conversation. Rows are right-padded with a pad segment that has its own positions. The
forward pass must not build a KV cache (``use_cache=False``, see :func:`model_inputs`): with a
cache transformers does not look for position restarts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from cluster.config.errors import ConfigError
from pipelines.posttrain.chat_data import Conversation, RecordError

IGNORE = -100
GENERATION_TAG = re.compile(r"{%-?\s*generation\s*-?%}")


@dataclass
class Example:
    """One sequence: token ids and labels (-100 where no loss is taken)."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False


def encode_conversation(tokenizer, conversation: Conversation) -> tuple[list[int], list[int]]:
    """(token ids, assistant mask) of a conversation rendered by the tokenizer's chat template."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ConfigError(
            "the tokenizer has no chat template: give one with --chat-template FILE (Jinja)"
        )
    if not GENERATION_TAG.search(template):
        return encode_by_prefixes(tokenizer, conversation)
    encoded = tokenizer.apply_chat_template(
        conversation,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    return list(encoded["input_ids"]), list(encoded["assistant_masks"])


PROBES = ("\u2063natal-probe-one\u2063", "\u2063natal-probe-two\u2063")


def check_template(tokenizer, source: str) -> None:
    """Before any data is read: the chat template renders a two-exchange conversation, with
    each assistant turn exactly once (a template that repeats or drops a turn would put the
    loss on the wrong tokens). ``source`` names where the template came from."""
    conversation = [
        {"role": "user", "content": "natal probe question one"},
        {"role": "assistant", "content": PROBES[0]},
        {"role": "user", "content": "natal probe question two"},
        {"role": "assistant", "content": PROBES[1]},
    ]
    try:
        text = _render(tokenizer, conversation, False)
    except Exception as exc:  # jinja raises anything: undefined names, raise_exception(...)
        raise ConfigError(
            f"{source}: the chat template cannot render a user/assistant conversation ({exc}): "
            "give one that can with --chat-template FILE"
        ) from exc
    for i, probe in enumerate(PROBES):
        if text.count(probe) != 1:
            raise ConfigError(
                f"{source}: the chat template renders assistant turn {2 * i + 1} "
                f"{text.count(probe)} times, not once: give one that renders each turn once "
                "with --chat-template FILE"
            )


def _render(tokenizer, turns: Conversation, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        turns, tokenize=False, add_generation_prompt=generation_prompt
    )


def assistant_spans(tokenizer, conversation: Conversation) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn in it.

    A turn starts where the conversation before it, rendered with the generation prompt,
    ends; it ends where the conversation through it stops agreeing with the whole (a template
    may close a conversation differently from a turn, e.g. Phi-3's end-of-text); the spans
    keep the end-of-turn marker and lose surrounding whitespace.
    """
    full = _render(tokenizer, conversation, False)
    spans = []
    for i, turn in enumerate(conversation):
        if turn["role"] != "assistant":
            continue
        before = _render(tokenizer, conversation[:i], True)
        through = _render(tokenizer, conversation[: i + 1], False)
        if not full.startswith(before):
            raise ConfigError(
                "the chat template renders a conversation's start differently once it goes on "
                "(turn-dependent text): give one that does with --chat-template FILE"
            )
        end = _common_end(tokenizer, full, through, len(before))
        start = len(before)
        while start < end and full[start].isspace():
            start += 1
        while end > start and full[end - 1].isspace():
            end -= 1
        if turn["content"].strip() not in full[start:end]:
            raise ConfigError(
                f"the chat template does not render assistant turn {i} after the generation "
                "prompt: give one that does with --chat-template FILE"
            )
        spans.append((start, end))
    return full, spans


def _common_end(tokenizer, full: str, through: str, start: int) -> int:
    """Where ``through`` stops agreeing with ``full``, backed off to the end of its last
    token that agrees whole (``…<|end|>\\n<|eos|>`` and ``…<|end|>\\n<|user|>`` share ``<|``)."""
    common = start
    while common < min(len(full), len(through)) and full[common] == through[common]:
        common += 1
    offsets = tokenizer(through, add_special_tokens=False, return_offsets_mapping=True)
    ends = [hi for _, hi in offsets["offset_mapping"] if start < hi <= common]
    return max(ends, default=start)


def encode_by_prefixes(tokenizer, conversation: Conversation) -> tuple[list[int], list[int]]:
    """(token ids, assistant mask) for a template without generation tags."""
    text, spans = assistant_spans(tokenizer, conversation)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(encoded["input_ids"]), encoded["offset_mapping"]
    mask = [
        int(any(lo < end and hi > start for start, end in spans) and hi > lo) for lo, hi in offsets
    ]
    return ids, mask


def last_turn_only(mask: Sequence[int]) -> list[int]:
    """The mask restricted to its last run of ones: the final assistant turn."""
    out = [0] * len(mask)
    end = len(mask)
    while end > 0 and not mask[end - 1]:
        end -= 1
    start = end
    while start > 0 and mask[start - 1]:
        start -= 1
    out[start:end] = [1] * (end - start)
    return out


def make_example(
    ids: Sequence[int], mask: Sequence[int], max_len: int, keep: str = "start"
) -> Example:
    """Labels from a mask, truncated to ``max_len`` keeping the ``start`` or the ``end``."""
    labels = [tok if m else IGNORE for tok, m in zip(ids, mask, strict=True)]
    truncated = len(ids) > max_len
    if truncated:
        window = slice(0, max_len) if keep == "start" else slice(len(ids) - max_len, len(ids))
        ids, labels = ids[window], labels[window]
    if all(label == IGNORE for label in labels):
        raise RecordError("no_assistant_tokens_in_context")
    return Example(list(ids), labels, truncated)


def sft_example(tokenizer, conversation: Conversation, max_len: int) -> Example:
    """An SFT example: loss on every assistant turn, right-truncated."""
    ids, mask = encode_conversation(tokenizer, conversation)
    return make_example(ids, mask, max_len, keep="start")


def response_example(tokenizer, conversation: Conversation, max_len: int) -> Example:
    """A prompt + response example: labels on the final assistant turn, left-truncated."""
    ids, mask = encode_conversation(tokenizer, conversation)
    return make_example(ids, last_turn_only(mask), max_len, keep="end")


@dataclass
class Row:
    """One training row: one or more examples side by side, each with positions from 0."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    segments: int = 1


def as_row(example: Example) -> Row:
    n = len(example.input_ids)
    return Row(list(example.input_ids), list(example.labels), list(range(n)))


def pack(examples: Iterable[Example], max_len: int) -> list[Row]:
    """Greedy packing in order: append while the row has room, else start a new row.

    A segment's first label is forced to -100: it would be predicted from the previous
    conversation's last token.
    """
    rows: list[Row] = []
    current: Row | None = None
    for example in examples:
        n = len(example.input_ids)
        if current is None or len(current.input_ids) + n > max_len:
            current = Row([], [], [], segments=0)
            rows.append(current)
        current.input_ids += example.input_ids
        current.labels += [IGNORE] + example.labels[1:]
        current.position_ids += range(n)
        current.segments += 1
    return rows


def collate(rows: Sequence[Row], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad rows into tensors. The padding is its own segment (positions from 0), so the
    position restarts keep real tokens from attending to it; no attention mask is passed."""
    width = max(len(row.input_ids) for row in rows)
    ids, labels, positions = [], [], []
    for row in rows:
        pad = width - len(row.input_ids)
        ids.append(row.input_ids + [pad_id] * pad)
        labels.append(row.labels + [IGNORE] * pad)
        positions.append(row.position_ids + list(range(pad)))
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "position_ids": torch.tensor(positions, dtype=torch.long),
    }


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | bool]:
    """The forward-pass arguments of a collated batch (no labels: losses are computed apart)."""
    return {
        "input_ids": batch["input_ids"],
        "position_ids": batch["position_ids"],
        "use_cache": False,
    }

"""Prompt sets of the RLHF loop and evaluation: JSONL rows with ``prompt`` or chat ``messages``.

Other fields of a row (e.g. ``answer``) are kept: reward rules may use them.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

from cluster.config.errors import InputError
from pipelines.data import storage


def read_prompts(uri: str) -> list[dict[str, Any]]:
    """Rows with a ``prompt`` string (or ``messages``); bad rows raise naming file and line."""
    rows: list[dict[str, Any]] = []
    for path in storage.expand_inputs([uri], suffixes=(".jsonl", ".json")):
        fs, local = storage.filesystem(path)
        with fs.open(local, "rt", compression="infer", encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{line_no}: not JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise InputError(f"{path}:{line_no}: expected a JSON object")
                rows.append(normalize_prompt(row, f"{path}:{line_no}"))
    if not rows:
        raise InputError(f"{uri}: the prompt set is empty")
    return rows


HELDOUT = "heldout_prompts.jsonl"  # in natal rlhf's output: the prompts it never trained on


def split_heldout(
    rows: list[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held-out): a seeded ``fraction`` of the rows (at least one when > 0), in order.

    The same rows, fraction and seed give the same split, so a resumed run trains on the
    same prompts and ``natal eval`` judges on the ones it never saw.
    """
    count = round(len(rows) * fraction) or (1 if fraction > 0 else 0)
    if count >= len(rows):
        raise InputError(
            f"rlhf.heldout_fraction={fraction} holds out all {len(rows)} prompts: none left "
            "to train on (lower it, or give more prompts)"
        )
    held = set(random.Random(seed).sample(range(len(rows)), count))
    return (
        [row for i, row in enumerate(rows) if i not in held],
        [row for i, row in enumerate(rows) if i in held],
    )


def write_prompts(path: str, rows: list[dict[str, Any]]) -> None:
    """Rows as JSONL that :func:`read_prompts` reads back unchanged."""
    storage.write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def normalize_prompt(row: dict[str, Any], where: str) -> dict[str, Any]:
    """Give every row both ``messages`` (for the chat template) and ``prompt`` (for rules)."""
    if isinstance(row.get("messages"), list) and row["messages"]:
        messages = list(row["messages"])
        while messages and messages[-1].get("role") == "assistant":  # a reference answer
            messages.pop()  # earlier assistant turns stay: they are the conversation so far
        if not any(m.get("role") == "user" for m in messages):
            raise InputError(f"{where}: messages hold no user turn")
        prompt = row.get("prompt") or messages[-1].get("content", "")
    elif isinstance(row.get("prompt"), str):
        prompt = row["prompt"]
        messages = [{"role": "user", "content": prompt}]
    else:
        raise InputError(f"{where}: a prompt row needs a 'prompt' string or 'messages'")
    return {**row, "prompt": prompt, "messages": messages}


def encode_prompts(
    rows: list[dict[str, Any]], tokenizer: Any, max_tokens: int
) -> tuple[list[list[int]], Counter]:
    """Token ids of each prompt (chat template when the tokenizer has one).

    Empty prompts and prompts longer than ``max_tokens`` get an empty list and are counted.
    """
    encoded: list[list[int]] = []
    skipped: Counter = Counter()
    for row in rows:
        if not row["prompt"].strip():
            skipped["empty_prompt"] += 1
            encoded.append([])
            continue
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template(
                row["messages"], add_generation_prompt=True, tokenize=True
            )
            if isinstance(ids, dict) or hasattr(ids, "input_ids"):
                ids = ids["input_ids"]
        else:
            ids = tokenizer(row["prompt"])["input_ids"]
        if len(ids) > max_tokens:
            skipped["prompt_too_long"] += 1
            encoded.append([])
            continue
        encoded.append(list(ids))
    return encoded, skipped


class PromptCursor:
    """Deterministic pass over the usable prompts: a seeded shuffle per epoch, a position.

    The position is part of the loop's checkpoint, so a resumed run draws the same prompts.
    """

    def __init__(self, usable: list[int], seed: int, position: int = 0) -> None:
        if not usable:
            raise InputError("no usable prompt (all empty or longer than max_prompt_tokens)")
        self.usable, self.seed, self.position = usable, seed, position
        self._epoch, self._cached = -1, list(usable)

    def _order(self, epoch: int) -> list[int]:
        if self._epoch != epoch:
            order = list(self.usable)
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
            self._epoch, self._cached = epoch, order
        return self._cached

    def take(self, count: int) -> list[int]:
        out = []
        for _ in range(count):
            epoch, offset = divmod(self.position, len(self.usable))
            out.append(self._order(epoch)[offset])
            self.position += 1
        return out

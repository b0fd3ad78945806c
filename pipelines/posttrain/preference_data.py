"""Preference pairs for the reward model and DPO, from every format people have them in.

A pair is a prompt (the conversation so far, ending with a user turn) and two assistant
responses, ``chosen`` preferred over ``rejected``. Ranked lists (OpenAssistant sibling ranks,
natal's rating-page export) become every ordered pair of differently ranked responses. Pairs
that teach nothing (identical responses, an empty response, a malformed prompt) are counted
by reason and skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from pipelines.data.stats import StageStats
from pipelines.posttrain.chat_data import (
    Conversation,
    RecordError,
    conversation_problem,
    has_keys,
    is_oasst_tree,
    load_records,
    message,
    oasst_turn,
    usable_node,
)


@dataclass(frozen=True)
class PreferencePair:
    prompt: tuple[tuple[str, str], ...]  # (role, content) turns, hashable; ends with a user turn
    chosen: str
    rejected: str

    @property
    def prompt_messages(self) -> Conversation:
        return [{"role": role, "content": content} for role, content in self.prompt]

    def chosen_conversation(self) -> Conversation:
        return self.prompt_messages + [{"role": "assistant", "content": self.chosen}]

    def rejected_conversation(self) -> Conversation:
        return self.prompt_messages + [{"role": "assistant", "content": self.rejected}]


def make_pair(prompt: Conversation, chosen: Any, rejected: Any) -> PreferencePair:
    """A pair from a prompt conversation and two response texts (or assistant turns)."""
    chosen, rejected = _response_text(chosen), _response_text(rejected)
    turns = tuple((turn["role"], turn["content"]) for turn in prompt)
    return PreferencePair(turns, chosen, rejected)


def _response_text(response: Any) -> Any:
    if isinstance(response, dict):  # {"role"/"from": "assistant", "content"/"value": ...}
        return response.get("content", response.get("value"))
    if isinstance(response, list):  # a one-turn assistant conversation (TRL conversational)
        if len(response) != 1:
            raise RecordError("multi_turn_response")
        return _response_text(response[0])
    return response


def pair_problem(pair: PreferencePair) -> str | None:
    """Why a pair cannot be trained on, or None."""
    for text in (pair.chosen, pair.rejected):
        if not isinstance(text, str) or not text.strip():
            return "empty_response"
    if pair.chosen.strip() == pair.rejected.strip():
        return "identical_pair"
    prompt = pair.prompt_messages
    if not prompt or prompt[-1]["role"] != "user":
        return "prompt_not_ending_with_user"
    # A prompt is a conversation whose last turn is the user's: validate it with a stand-in
    # assistant reply appended.
    problem = conversation_problem(prompt + [{"role": "assistant", "content": "."}])
    return problem


# --- hh-rlhf: two whole transcripts that share everything up to the last assistant turn ------

_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")


def parse_hh_transcript(text: str) -> Conversation:
    """``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` → chat turns."""
    parts = _HH_TURN.split(text)
    if parts[0].strip():
        raise RecordError("hh_text_before_first_turn")
    return [
        message("user" if speaker == "Human" else "assistant", content.strip())
        for speaker, content in zip(parts[1::2], parts[2::2], strict=True)
    ]


def from_hh_rlhf(record: dict[str, Any]) -> list[PreferencePair]:
    """Anthropic hh-rlhf: ``{"chosen", "rejected"}`` full dialogues, differing in the last turn."""
    chosen, rejected = (
        parse_hh_transcript(record["chosen"]),
        parse_hh_transcript(record["rejected"]),
    )
    if not chosen or not rejected or chosen[-1]["role"] != "assistant":
        raise RecordError("hh_no_final_assistant_turn")
    if rejected[-1]["role"] != "assistant" or chosen[:-1] != rejected[:-1]:
        raise RecordError("hh_prompts_differ")
    return [make_pair(chosen[:-1], chosen[-1]["content"], rejected[-1]["content"])]


def from_prompt_pairs(record: dict[str, Any]) -> list[PreferencePair]:
    """TRL style: ``{"prompt", "chosen", "rejected"}``; prompt a string or chat turns."""
    prompt = record["prompt"]
    if isinstance(prompt, str):
        prompt = [message("user", prompt)]
    else:
        prompt = [message(turn["role"], turn["content"]) for turn in prompt]
    return [make_pair(prompt, record["chosen"], record["rejected"])]


def from_chat_pairs(record: dict[str, Any]) -> list[PreferencePair]:
    """TRL conversational, implicit prompt: ``chosen``/``rejected`` full chat-turn lists."""
    chosen = [message(t["role"], t["content"]) for t in record["chosen"]]
    rejected = [message(t["role"], t["content"]) for t in record["rejected"]]
    if chosen[:-1] != rejected[:-1]:
        raise RecordError("prompts_differ")
    return [make_pair(chosen[:-1], chosen[-1], rejected[-1])]


def from_llamafactory(record: dict[str, Any]) -> list[PreferencePair]:
    """LLaMA-Factory DPO: ShareGPT ``conversations`` + ``chosen``/``rejected`` turns, or the
    Alpaca flavour ``instruction`` (+ ``input``) + ``chosen``/``rejected`` strings."""
    if "conversations" in record:
        prompt = [message(turn["from"], turn["value"]) for turn in record["conversations"]]
        if record.get("system"):
            prompt.insert(0, message("system", record["system"]))
    else:
        extra = record.get("input")
        text = f"{record['instruction']}\n\n{extra}" if extra else record["instruction"]
        prompt = [message("user", text)]
    return [make_pair(prompt, record["chosen"], record["rejected"])]


def ranked_pairs(
    prompt: Conversation, responses: list[str], ties: set[frozenset[int]] | None = None
) -> list[PreferencePair]:
    """Every (better, worse) pair of a best-first list, except pairs marked as ties."""
    ties = ties or set()
    return [
        make_pair(prompt, responses[i], responses[j])
        for i, j in combinations(range(len(responses)), 2)
        if frozenset((i, j)) not in ties
    ]


def from_rating_export(record: dict[str, Any]) -> list[PreferencePair]:
    """natal's rating page: ``{"prompt", "responses" (best first), "ties", "rater", "source"}``."""
    prompt = record["prompt"]
    if isinstance(prompt, str):
        prompt = [message("user", prompt)]
    else:
        prompt = [message(turn["role"], turn["content"]) for turn in prompt]
    responses = record["responses"]
    if not isinstance(responses, list) or len(responses) < 2:
        raise RecordError("fewer_than_two_responses")
    ties = {frozenset(map(int, tie)) for tie in record.get("ties") or []}
    return ranked_pairs(prompt, responses, ties)


def from_oasst_ranks(record: dict[str, Any]) -> list[PreferencePair]:
    """OpenAssistant tree: for every user turn with 2+ ranked assistant replies, all pairs of
    replies with different human ranks, the prompt being the path from the root."""
    pairs: list[PreferencePair] = []

    def visit(node: dict[str, Any], path: Conversation) -> None:
        path = path + [oasst_turn(node)]
        replies = [r for r in node.get("replies", []) if usable_node(r)]
        ranked = sorted(
            (r for r in replies if isinstance(r.get("rank"), int) and r["role"] == "assistant"),
            key=lambda r: r["rank"],
        )
        for better, worse in combinations(ranked, 2):
            if better["rank"] < worse["rank"]:
                pairs.append(make_pair(path, better["text"], worse["text"]))
        for reply in replies:
            visit(reply, path)

    root = record["prompt"]
    if usable_node(root):
        visit(root, [])
    if not pairs:
        raise RecordError("oasst_no_ranked_replies")
    return pairs


def _is_hh(record: dict[str, Any]) -> bool:
    chosen = record.get("chosen")
    return isinstance(chosen, str) and "prompt" not in record and "\n\nHuman:" in chosen


PREFERENCE_ADAPTERS: dict[str, Callable[[dict], list[PreferencePair]]] = {
    "hh_rlhf": from_hh_rlhf,
    "llamafactory": from_llamafactory,
    "prompt_pairs": from_prompt_pairs,
    "chat_pairs": from_chat_pairs,
    "rating_export": from_rating_export,
    "oasst": from_oasst_ranks,
}

PREFERENCE_DETECTORS: dict[str, Callable[[dict], bool]] = {
    "oasst": is_oasst_tree,
    "rating_export": has_keys("prompt", "responses"),
    "hh_rlhf": _is_hh,
    "llamafactory": lambda r: (
        ("conversations" in r or "instruction" in r) and has_keys("chosen", "rejected")(r)
    ),
    "prompt_pairs": has_keys("prompt", "chosen", "rejected"),
    "chat_pairs": lambda r: (
        isinstance(r.get("chosen"), list) and isinstance(r.get("rejected"), list)
    ),
}


def load_pairs(uris: list[str], fmt: str | None, stats: StageStats) -> list[PreferencePair]:
    """Every usable pair of the files; duplicates and unusable pairs counted and skipped."""
    pairs: list[PreferencePair] = []
    seen: set[PreferencePair] = set()
    for _, pair in load_records(uris, PREFERENCE_ADAPTERS, PREFERENCE_DETECTORS, fmt, stats):
        problem = pair_problem(pair)
        if problem is None and pair in seen:
            problem = "duplicate_pair"
        if problem:
            stats.add_to("skipped_by_reason", problem)
            continue
        seen.add(pair)
        stats.add("pairs")
        pairs.append(pair)
    return pairs

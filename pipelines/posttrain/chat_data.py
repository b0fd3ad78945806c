"""Conversations for SFT from the formats people have: chat messages, Alpaca, Dolly, OASST trees.

A conversation is a list of ``{"role", "content"}`` turns with roles ``system`` (first turn
only), ``user`` and ``assistant``, user and assistant alternating. Each adapter turns one raw
record into conversations; :func:`conversation_problem` names what makes one unusable (no
assistant turn, roles out of order, an empty turn) so that the loader counts it and skips it.
The format of a file is detected from its first record, or forced by the caller.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from cluster.config.errors import InputError
from pipelines.data import storage
from pipelines.data.stats import StageStats

Message = dict[str, str]
Conversation = list[Message]

ROLES = ("system", "user", "assistant")
# Names other datasets give the three roles (ShareGPT, OpenAssistant, Gemini-style exports).
ROLE_ALIASES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "prompter": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
}


class RecordError(ValueError):
    """One record cannot be used; ``reason`` is the counter it is skipped under."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- reading ----------------------------------------------------------------------------------


def read_records(uri: str, stats: StageStats) -> Iterator[dict[str, Any]]:
    """Records of a JSON array file or a JSONL file (optionally compressed), local or fsspec.

    A JSONL line that is not a JSON object is counted under ``corrupt_record`` and skipped; a
    JSON array file that does not parse is an InputError (no record of it can be trusted).
    """
    fs, path = storage.filesystem(uri)
    try:
        with fs.open(path, "rt", compression="infer", encoding="utf-8") as fh:
            head = fh.read(1)
            while head and head.isspace():
                head = fh.read(1)
            if head == "[":
                try:
                    records = json.loads(head + fh.read())
                except json.JSONDecodeError as exc:
                    raise InputError(f"{uri}: not valid JSON: {exc}") from None
                for record in records:
                    if isinstance(record, dict):
                        yield record
                    else:
                        stats.add_to("skipped_by_reason", "corrupt_record")
                return
            first = True
            for line in fh:
                if first:
                    line, first = head + line, False
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    record = None
                if isinstance(record, dict):
                    yield record
                else:
                    stats.add_to("skipped_by_reason", "corrupt_record")
    except (FileNotFoundError, IsADirectoryError):
        raise InputError(f"{uri}: no such file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{uri}: not UTF-8 text ({exc.reason})") from None


def detect_format(record: dict[str, Any], detectors: dict[str, Callable[[dict], bool]]) -> str:
    """The name of the first format whose detector accepts ``record``, or an InputError."""
    for name, accepts in detectors.items():
        if accepts(record):
            return name
    keys = ", ".join(sorted(record)[:8])
    known = ", ".join(detectors)
    raise InputError(f"unknown data format (record keys: {keys}); known formats: {known}")


def load_records(
    uris: list[str],
    adapters: dict[str, Callable[[dict], list]],
    detectors: dict[str, Callable[[dict], bool]],
    fmt: str | None,
    stats: StageStats,
) -> Iterator[tuple[str, Any]]:
    """(format, item) for every item the adapters make of every record of every file.

    The format is forced by ``fmt`` or detected per file from its first record. A record the
    adapter rejects is counted under its reason and skipped.
    """
    if fmt is not None and fmt not in adapters:
        raise InputError(f"--format {fmt!r}: known formats are {', '.join(adapters)}")
    for uri in storage.expand_inputs(uris, suffixes=(".json", ".jsonl")):
        file_fmt = fmt
        for record in read_records(uri, stats):
            if file_fmt is None:
                file_fmt = detect_format(record, detectors)
                stats.add_to("files_by_format", file_fmt)
            stats.add("records")
            try:
                items = adapters[file_fmt](record)
            except RecordError as exc:
                stats.add_to("skipped_by_reason", exc.reason)
                continue
            except (KeyError, TypeError, AttributeError):
                stats.add_to("skipped_by_reason", f"not_{file_fmt}")
                continue
            for item in items:
                yield file_fmt, item


# --- validation -------------------------------------------------------------------------------


def conversation_problem(conversation: Conversation) -> str | None:
    """Why a conversation cannot be trained on, or None.

    Allowed: an optional system turn, then user/assistant alternating from a user turn, with
    at least one assistant turn. A trailing user turn is not a problem here (see
    :func:`clean_conversation`).
    """
    if not conversation:
        return "empty_conversation"
    for turn in conversation:
        if turn.get("role") not in ROLES:
            return "unknown_role"
        content = turn.get("content")
        if not isinstance(content, str) or not content.strip():
            return "empty_turn"
    turns = conversation[1:] if conversation[0]["role"] == "system" else conversation
    for index, turn in enumerate(turns):
        if turn["role"] != ("user" if index % 2 == 0 else "assistant"):
            return "roles_out_of_order"
    if not any(turn["role"] == "assistant" for turn in turns):
        return "no_assistant_turn"
    return None


def clean_conversation(conversation: Conversation) -> tuple[Conversation | None, str | None]:
    """(conversation without a trailing user turn, None) or (None, the reason to skip it)."""
    problem = conversation_problem(conversation)
    if problem:
        return None, problem
    if conversation[-1]["role"] == "user":
        conversation = conversation[:-1]
    return conversation, None


def message(role: str, content: Any) -> Message:
    """A turn with the role's alias resolved (unknown roles stay, for validation to count)."""
    name = str(role).lower()
    return {"role": ROLE_ALIASES.get(name, name), "content": content}


# --- adapters: one raw record → conversations ------------------------------------------------


def from_messages(record: dict[str, Any]) -> list[Conversation]:
    """Chat format: ``{"messages": [{"role", "content"}, ...]}`` (OpenAI / TRL / HF chat)."""
    return [[message(turn["role"], turn["content"]) for turn in record["messages"]]]


def from_sharegpt(record: dict[str, Any]) -> list[Conversation]:
    """ShareGPT: ``{"conversations": [{"from", "value"}, ...]}`` (LLaMA-Factory, Vicuna)."""
    turns = [message(turn["from"], turn["value"]) for turn in record["conversations"]]
    if record.get("system"):
        turns.insert(0, message("system", record["system"]))
    return [turns]


def _instruction_turns(instruction: str, extra: str | None, response: str) -> Conversation:
    prompt = f"{instruction}\n\n{extra}" if extra and str(extra).strip() else instruction
    return [message("user", prompt), message("assistant", response)]


def from_alpaca(record: dict[str, Any]) -> list[Conversation]:
    """Alpaca: ``{"instruction", "input", "output"}``; ``input`` is appended to the prompt."""
    return [_instruction_turns(record["instruction"], record.get("input"), record["output"])]


def from_dolly(record: dict[str, Any]) -> list[Conversation]:
    """Dolly: ``{"instruction", "context", "response"}``; ``context`` follows the question."""
    return [_instruction_turns(record["instruction"], record.get("context"), record["response"])]


def from_self_instruct(record: dict[str, Any]) -> list[Conversation]:
    """Self-Instruct seed tasks: one instruction, several ``instances`` of input/output."""
    return [
        _instruction_turns(record["instruction"], inst.get("input"), inst["output"])
        for inst in record["instances"]
    ]


def usable_node(node: dict[str, Any]) -> bool:
    return not node.get("deleted") and node.get("review_result") is not False


def _rank_key(node: dict[str, Any]) -> tuple[int, int]:
    rank = node.get("rank")
    return (0, rank) if isinstance(rank, int) else (1, 0)


def oasst_turn(node: dict[str, Any]) -> Message:
    return message(node["role"], node["text"])


def from_oasst(record: dict[str, Any]) -> list[Conversation]:
    """OpenAssistant tree: the path from the root that takes the best-ranked reply each turn.

    Deleted or review-rejected messages are never followed; unranked replies come after
    ranked ones. A tree whose root is unusable yields no conversation.
    """
    node = record.get("prompt", record)
    if not usable_node(node):
        raise RecordError("oasst_root_rejected")
    path = [oasst_turn(node)]
    while True:
        replies = sorted((r for r in node.get("replies", []) if usable_node(r)), key=_rank_key)
        if not replies:
            return [path]
        node = replies[0]
        path.append(oasst_turn(node))


def from_prompt_response(record: dict[str, Any]) -> list[Conversation]:
    """``{"prompt", "response" | "answer" | "completion"}``: one single-turn conversation."""
    for key in ("response", "answer", "completion"):
        if isinstance(record.get(key), str):
            return [[message("user", record["prompt"]), message("assistant", record[key])]]
    raise RecordError("no_response")


def has_keys(*keys: str) -> Callable[[dict], bool]:
    return lambda record: all(key in record for key in keys)


def is_oasst_tree(record: dict[str, Any]) -> bool:
    root = record.get("prompt")
    return isinstance(root, dict) and "replies" in root and "role" in root


CHAT_ADAPTERS: dict[str, Callable[[dict], list[Conversation]]] = {
    "messages": from_messages,
    "sharegpt": from_sharegpt,
    "alpaca": from_alpaca,
    "dolly": from_dolly,
    "self_instruct": from_self_instruct,
    "oasst": from_oasst,
    "prompt_response": from_prompt_response,
}

CHAT_DETECTORS: dict[str, Callable[[dict], bool]] = {
    "oasst": is_oasst_tree,
    "messages": has_keys("messages"),
    "sharegpt": has_keys("conversations"),
    "alpaca": has_keys("instruction", "output"),
    "dolly": has_keys("instruction", "response"),
    "self_instruct": has_keys("instruction", "instances"),
    "prompt_response": lambda r: (
        isinstance(r.get("prompt"), str)
        and any(isinstance(r.get(k), str) for k in ("response", "answer", "completion"))
    ),
}


def load_conversations(uris: list[str], fmt: str | None, stats: StageStats) -> list[Conversation]:
    """Every usable conversation of the files; unusable ones counted by reason and skipped."""
    conversations = []
    for _, conversation in load_records(uris, CHAT_ADAPTERS, CHAT_DETECTORS, fmt, stats):
        cleaned, problem = clean_conversation(conversation)
        if problem:
            stats.add_to("skipped_by_reason", problem)
            continue
        if len(cleaned) < len(conversation):
            stats.add("trailing_user_turn_dropped")
        stats.add("conversations")
        conversations.append(cleaned)
    return conversations

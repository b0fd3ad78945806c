"""SFT data adapters: every format on generated records and on its real sample file."""

from __future__ import annotations

import gzip
import json

import pytest

from cluster.config.errors import InputError
from pipelines.data.stats import StageStats
from pipelines.posttrain.chat_data import (
    CHAT_DETECTORS,
    clean_conversation,
    conversation_problem,
    detect_format,
    from_oasst,
    load_conversations,
)


def write_jsonl(path, records, gz=False):
    text = "".join(json.dumps(r) + "\n" for r in records)
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return str(path)


def turn(role, content):
    return {"role": role, "content": content}


def test_each_format_is_detected_and_adapted(tmp_path):
    records = {
        "messages": {"messages": [turn("user", "hi"), turn("assistant", "hello")]},
        "sharegpt": {
            "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}],
            "system": "be brief",
        },
        "alpaca": {"instruction": "Add", "input": "2 and 3", "output": "5"},
        "dolly": {"instruction": "Who?", "context": "Ann wrote it.", "response": "Ann"},
        "self_instruct": {
            "instruction": "Negate",
            "instances": [{"input": "yes", "output": "no"}, {"input": "up", "output": "down"}],
        },
        "prompt_response": {"prompt": "2+2?", "answer": "4"},
    }
    for fmt, record in records.items():
        assert detect_format(record, CHAT_DETECTORS) == fmt
    stats = StageStats("sft")
    path = write_jsonl(tmp_path / "alpaca.jsonl", [records["alpaca"]])
    [conversation] = load_conversations([path], None, stats)
    assert conversation == [turn("user", "Add\n\n2 and 3"), turn("assistant", "5")]
    path = write_jsonl(tmp_path / "si.jsonl.gz", [records["self_instruct"]], gz=True)
    assert len(load_conversations([path], None, stats)) == 2
    path = write_jsonl(tmp_path / "sg.jsonl", [records["sharegpt"]])
    [conversation] = load_conversations([path], None, stats)
    assert [t["role"] for t in conversation] == ["system", "user", "assistant"]


def test_json_array_files_and_forced_format(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"instruction": "Q", "context": "", "response": "A"}]))
    stats = StageStats("sft")
    [conversation] = load_conversations([str(path)], "dolly", stats)
    assert conversation == [turn("user", "Q"), turn("assistant", "A")]
    # Forcing a format the records do not fit: counted, not crashed.
    assert load_conversations([str(path)], "alpaca", stats) == []
    assert stats.breakdown["skipped_by_reason"]["not_alpaca"] == 1
    with pytest.raises(InputError, match="known formats"):
        load_conversations([str(path)], "nonsense", stats)


def test_unknown_format_and_corrupt_lines(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"foo": 1}\n')
    with pytest.raises(InputError, match="unknown data format"):
        load_conversations([str(path)], None, StageStats("sft"))
    good = {"messages": [turn("user", "hi"), turn("assistant", "hello")]}
    path.write_text(json.dumps(good) + "\n{not json\n[1, 2]\n" + json.dumps(good) + "\n")
    stats = StageStats("sft")
    assert len(load_conversations([str(path)], None, stats)) == 2
    assert stats.breakdown["skipped_by_reason"]["corrupt_record"] == 2


@pytest.mark.parametrize(
    "conversation, reason",
    [
        ([turn("user", "hi")], "no_assistant_turn"),
        ([turn("system", "s"), turn("user", "hi")], "no_assistant_turn"),
        ([turn("assistant", "hello"), turn("user", "hi")], "roles_out_of_order"),
        ([turn("user", "a"), turn("user", "b"), turn("assistant", "c")], "roles_out_of_order"),
        ([turn("user", "a"), turn("assistant", "b"), turn("system", "c")], "roles_out_of_order"),
        ([turn("user", "a"), turn("assistant", "  ")], "empty_turn"),
        ([turn("user", "a"), turn("wizard", "b")], "unknown_role"),
        ([], "empty_conversation"),
    ],
)
def test_bad_conversations_have_reasons(conversation, reason):
    assert conversation_problem(conversation) == reason


def test_bad_conversations_are_counted_and_good_ones_kept(tmp_path):
    records = [
        {"messages": [turn("user", "only a question")]},
        {"messages": [turn("assistant", "hello"), turn("user", "hi")]},
        {"messages": [turn("user", "q"), turn("assistant", "a"), turn("user", "more?")]},
        {"messages": [turn("user", "q"), turn("assistant", "a")]},
    ]
    stats = StageStats("sft")
    kept = load_conversations([write_jsonl(tmp_path / "m.jsonl", records)], None, stats)
    assert kept == [[turn("user", "q"), turn("assistant", "a")]] * 2
    assert stats.breakdown["skipped_by_reason"] == {"no_assistant_turn": 1, "roles_out_of_order": 1}
    assert stats.counts["trailing_user_turn_dropped"] == 1
    cleaned, problem = clean_conversation([turn("user", "q"), turn("assistant", "a")])
    assert problem is None and len(cleaned) == 2


def node(role, text, rank=None, replies=(), deleted=False):
    return {
        "role": role,
        "text": text,
        "rank": rank,
        "deleted": deleted,
        "review_result": True,
        "replies": list(replies),
    }


def test_oasst_follows_the_best_ranked_path():
    tree = {
        "message_tree_id": "t",
        "prompt": node(
            "prompter",
            "Q1",
            replies=[
                node("assistant", "worse", rank=1),
                node("assistant", "deleted best", rank=0, deleted=True),
                node(
                    "assistant",
                    "best",
                    rank=0,
                    replies=[node("prompter", "Q2", replies=[node("assistant", "A2")])],
                ),
            ],
        ),
    }
    [path] = from_oasst(tree)
    assert path == [
        turn("user", "Q1"),
        turn("assistant", "best"),
        turn("user", "Q2"),
        turn("assistant", "A2"),
    ]


def test_real_sft_samples(shared_data):
    expected = {
        "sft/dolly-151.jsonl": ("dolly", 151),
        "sft/llamafactory-alpaca_en_demo.json": ("alpaca", 999),
        "sft/llamafactory-identity.json": ("alpaca", 91),
        "sft/self-instruct-seed_tasks.jsonl": ("self_instruct", 175),
        "sft/dolly-151-alpaca-prompt-format.jsonl": ("prompt_response", 151),
        "oasst-en100/en_100_tree.jsonl": ("oasst", 100),
    }
    for name, (fmt, count) in expected.items():
        stats = StageStats("sft")
        conversations = load_conversations([str(shared_data / name)], None, stats)
        assert stats.breakdown["files_by_format"] == {fmt: 1}, name
        assert len(conversations) == count, (name, stats.to_dict())
        for conversation in conversations:
            assert conversation_problem(conversation) is None
            assert conversation[-1]["role"] == "assistant"
    # OpenAssistant trees are multi-turn: the best path goes deeper than one exchange.
    oasst = load_conversations([str(shared_data / "oasst-en100/en_100_tree.jsonl")], None, stats)
    assert max(len(c) for c in oasst) >= 4
    dolly = load_conversations([str(shared_data / "sft/dolly-151.jsonl")], None, stats)
    assert dolly[0][0]["content"].startswith("Why is Citizen Kane")

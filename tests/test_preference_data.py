"""Preference adapters: pairs from every format, ranked lists to ordered pairs, bad pairs counted."""

from __future__ import annotations

import json

from pipelines.data.stats import StageStats
from pipelines.posttrain.chat_data import RecordError, detect_format
from pipelines.posttrain.preference_data import (
    PREFERENCE_DETECTORS,
    from_hh_rlhf,
    from_oasst_ranks,
    from_rating_export,
    load_pairs,
    parse_hh_transcript,
)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def turn(role, content):
    return {"role": role, "content": content}


HH = {
    "chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: 2+2?\n\nAssistant: 4",
    "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: 2+2?\n\nAssistant: 5",
}


def test_hh_rlhf_splits_shared_prompt_from_final_turns():
    assert parse_hh_transcript(HH["chosen"])[:2] == [turn("user", "hi"), turn("assistant", "hello")]
    [pair] = from_hh_rlhf(HH)
    assert pair.prompt_messages == [
        turn("user", "hi"),
        turn("assistant", "hello"),
        turn("user", "2+2?"),
    ]
    assert (pair.chosen, pair.rejected) == ("4", "5")
    assert pair.chosen_conversation()[-1] == turn("assistant", "4")
    different = dict(HH, rejected="\n\nHuman: bye\n\nAssistant: 5")
    try:
        from_hh_rlhf(different)
    except RecordError as exc:
        assert exc.reason == "hh_prompts_differ"
    else:
        raise AssertionError("differing prompts were accepted")


def test_formats_are_detected():
    records = {
        "hh_rlhf": HH,
        "llamafactory": {
            "conversations": [{"from": "human", "value": "q"}],
            "chosen": {"from": "gpt", "value": "a"},
            "rejected": {"from": "gpt", "value": "b"},
        },
        "prompt_pairs": {"prompt": "q", "chosen": "a", "rejected": "b"},
        "chat_pairs": {
            "chosen": [turn("user", "q"), turn("assistant", "a")],
            "rejected": [turn("user", "q"), turn("assistant", "b")],
        },
        "rating_export": {"prompt": "q", "responses": ["a", "b"], "ties": []},
        "oasst": {"prompt": {"role": "prompter", "text": "q", "replies": []}},
    }
    for fmt, record in records.items():
        assert detect_format(record, PREFERENCE_DETECTORS) == fmt


def test_rating_export_gives_every_ordered_pair_but_ties():
    record = {"prompt": "q", "responses": ["best", "mid", "low"], "ties": [[1, 2]], "rater": "r"}
    pairs = from_rating_export(record)
    assert [(p.chosen, p.rejected) for p in pairs] == [("best", "mid"), ("best", "low")]
    try:
        from_rating_export({"prompt": "q", "responses": ["only"]})
    except RecordError as exc:
        assert exc.reason == "fewer_than_two_responses"
    else:
        raise AssertionError("a single response made pairs")


def test_oasst_sibling_ranks_become_ordered_pairs():
    def node(role, text, rank=None, replies=()):
        replies = list(replies)
        return {"role": role, "text": text, "rank": rank, "review_result": True, "replies": replies}

    tree = {
        "prompt": node(
            "prompter",
            "Q",
            replies=[
                node("assistant", "second", 1),
                node(
                    "assistant",
                    "first",
                    0,
                    [
                        node(
                            "prompter",
                            "Q2",
                            replies=[node("assistant", "x", 0), node("assistant", "y", 1)],
                        )
                    ],
                ),
                node("assistant", "third", 2),
            ],
        )
    }
    pairs = from_oasst_ranks(tree)
    assert {(p.chosen, p.rejected) for p in pairs} == {
        ("first", "second"),
        ("first", "third"),
        ("second", "third"),
        ("x", "y"),
    }
    deep = next(p for p in pairs if p.chosen == "x")
    assert [t["content"] for t in deep.prompt_messages] == ["Q", "first", "Q2"]


def test_bad_pairs_are_counted_and_skipped(tmp_path):
    records = [
        {"prompt": "q", "chosen": "same", "rejected": "same "},
        {"prompt": "q", "chosen": "", "rejected": "b"},
        {"prompt": [turn("assistant", "hi")], "chosen": "a", "rejected": "b"},
        {"prompt": "q", "chosen": "a", "rejected": "b"},
        {"prompt": "q", "chosen": "a", "rejected": "b"},
        {"prompt": "q2", "chosen": "a", "rejected": "b"},
    ]
    stats = StageStats("reward")
    pairs = load_pairs([write_jsonl(tmp_path / "p.jsonl", records)], None, stats)
    assert [(p.prompt_messages[0]["content"], p.chosen) for p in pairs] == [("q", "a"), ("q2", "a")]
    assert stats.breakdown["skipped_by_reason"] == {
        "identical_pair": 1,
        "empty_response": 1,
        "prompt_not_ending_with_user": 1,
        "duplicate_pair": 1,
    }


def test_real_preference_samples(shared_data):
    expected = {
        "preference/hh-rlhf-harmless-base-test.jsonl.gz": ("hh_rlhf", 2312),
        "preference/llamafactory-dpo_en_demo.json": ("llamafactory", 300),
        "oasst-en100/en_100_tree.jsonl": ("oasst", 100),
    }
    counts = {}
    for name, (fmt, records) in expected.items():
        stats = StageStats("reward")
        pairs = load_pairs([str(shared_data / name)], None, stats)
        assert stats.breakdown["files_by_format"] == {fmt: 1}
        assert stats.counts["records"] == records
        skipped = sum(stats.breakdown.get("skipped_by_reason", {}).values())
        counts[fmt] = len(pairs)
        for pair in pairs:
            assert pair.chosen.strip() != pair.rejected.strip()
            assert pair.prompt_messages[-1]["role"] == "user"
        if fmt != "oasst":
            assert len(pairs) + skipped == records  # nothing lost silently
    # PROVENANCE.md: 754 (better, worse) pairs from the 212 ranked sibling sets.
    assert counts["oasst"] == 754
    assert counts["hh_rlhf"] > 2250
    assert counts["llamafactory"] > 290

"""Decontamination: n-gram overlap with evaluation sets, generated and real (shared eval-sets)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cluster.config import load_config
from pipelines.data.decontaminate import EvalNgrams, load_eval_sets, run_decontaminate, strings_in

QUESTION = (
    "Janet has seventeen ducks that lay eggs every single morning and she sells "
    "the remainder at the farmers market for two dollars each"
)


def test_strings_in_nested_records() -> None:
    record = {"q": "a", "turns": ["b", "c"], "meta": {"x": "d", "n": 3}}
    assert list(strings_in(record)) == ["a", "b", "c", "d"]


def test_match_needs_a_full_ngram() -> None:
    ngrams = EvalNgrams({"gsm": [QUESTION], "other": ["short eval text"]}, ngram=13)
    words = QUESTION.split()
    docs = [
        "Intro text. " + " ".join(words[2:15]) + " and then something else",  # 13 words shared
        "Intro text. " + " ".join(words[2:14]) + " and then something else",  # only 12
        "SHORT eval, text!",  # a short eval text matches a document that is exactly it
        "",
    ]
    assert ngrams.match(docs) == ["gsm", "", "other", ""]


def _docs(tmp_path: Path, texts: list[str]) -> Path:
    path = tmp_path / "docs.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )
    return path


@pytest.mark.ray
@pytest.mark.parametrize("mode", ["remove", "flag"])
def test_stage_removes_or_flags(ray_cluster, tmp_path, mode) -> None:
    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"question": QUESTION, "answer": "34"}) + "\n")
    clean = "a web page about gardening with tomatoes and basil in the summer months " * 3
    docs = _docs(tmp_path, [clean, "Solve this: " + QUESTION + ". Answer: 34", "  "])
    cfg = load_config(values={"data.decontaminate.mode": mode})
    stats = run_decontaminate(cfg, [str(docs)], str(tmp_path / "out"), [str(evals)])
    kept = pq.read_table(tmp_path / "out" / "documents").to_pylist()
    removed = pq.read_table(tmp_path / "out" / "removed").to_pylist()
    assert stats["counts"]["contaminated"] == 1
    assert stats["breakdown"]["contaminated_by_eval_set"] == {"eval.jsonl": 1}
    if mode == "remove":
        assert [d["id"] for d in kept] == ["d0"]
        assert sorted(r["reason"] for r in removed) == ["contaminated=eval.jsonl", "empty_text"]
    else:
        assert [(d["id"], d["contaminated"]) for d in kept] == [("d0", None), ("d1", "eval.jsonl")]
        assert [r["reason"] for r in removed] == ["empty_text"]


@pytest.mark.ray
def test_real_eval_sets(shared_data, ray_cluster, tmp_path) -> None:
    eval_dir = shared_data / "eval-sets"
    files = [
        str(eval_dir / n)
        for n in ("gsm8k-test.jsonl", "HumanEval.jsonl.gz", "mt_bench-question.jsonl")
    ]
    gsm = json.loads((eval_dir / "gsm8k-test.jsonl").read_text().splitlines()[5])["question"]
    humaneval = json.loads(
        __import__("gzip").open(eval_dir / "HumanEval.jsonl.gz", "rt").readline()
    )["prompt"]
    c4 = [
        json.loads(line)["text"]
        for line in (shared_data / "pretrain-text" / "llamafactory-c4_demo.jsonl")
        .read_text()
        .splitlines()[:40]
    ]
    texts = c4 + ["Homework help: " + gsm, "def helper():\n    pass\n\n" + humaneval]
    docs = _docs(tmp_path, texts)
    assert len(load_eval_sets(files, 13)) > 100_000
    stats = run_decontaminate(load_config(), [str(docs)], str(tmp_path / "out"), files)
    removed = pq.read_table(tmp_path / "out" / "removed").to_pylist()
    by_id = {r["id"]: r["reason"] for r in removed}
    assert by_id[f"d{len(c4)}"] == "contaminated=gsm8k-test.jsonl"
    assert by_id[f"d{len(c4) + 1}"] == "contaminated=HumanEval.jsonl.gz"
    assert stats["counts"]["kept"] >= len(c4) - 1  # real web text rarely overlaps the evals

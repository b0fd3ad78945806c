"""``natal dedup`` on the session Ray cluster: quality on known Jaccard, the output contract,
incremental ``--against``, S3 paths, and bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cluster.cli import main
from cluster.config import load_config
from pipelines.data.dedup.deduplicate import run
from pipelines.data.dedup.synthetic import make_corpus, pair_quality, vocabulary

pytestmark = pytest.mark.ray


def _write_jsonl(path: Path, docs: list[dict]) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as fh:
        for doc in docs:
            fh.write(json.dumps(doc) + "\n")


def _config(**dedup):
    values = {f"data.dedup.{k}": v for k, v in dedup.items()}
    return load_config(values={"data.dedup.partitions": 4, **values})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[list[dict], object, Path]:
    """1,500 documents (30% near-duplicate variants, Jaccard 0.3–1) in 3 JSONL.gz files."""
    text_dir = Path(__file__).resolve().parents[2] / "shared" / "data" / "pretrain-text"
    docs, family = make_corpus(1500, vocabulary(text_dir), seed=11)
    for i, doc in enumerate(docs):
        doc["url"] = f"https://example.org/{i}"
    folder = tmp_path_factory.mktemp("dedup-in")
    for k in range(3):
        _write_jsonl(folder / f"part-{k}.jsonl.gz", docs[k::3])
    return docs, family, folder


@pytest.fixture(scope="module")
def result(corpus, ray_cluster, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("dedup-out")
    return run(_config(), [str(corpus[2])], str(out)), out


def test_quality_on_known_jaccard(corpus, result) -> None:
    docs, family, _ = corpus
    clusters = pq.read_table(result[1] / "clusters.parquet").to_pylist()
    quality = pair_quality(docs, family, {r["id"]: r["cluster"] for r in clusters}, 0.8)
    assert quality["pairs_high"] > 100
    assert quality["recall_high"] >= 0.95
    assert quality["low_fraction"] < 0.01


def test_output_contract(corpus, result) -> None:
    docs, _, _ = corpus
    stats, out = result
    kept = pq.read_table(out / "documents").to_pylist()
    removed = pq.read_table(out / "removed").to_pylist()
    clusters = pq.read_table(out / "clusters.parquet")
    assert clusters.schema.names == ["id", "cluster"]
    counts = stats["counts"]
    assert len(kept) + len(removed) == len(docs) == counts["input"]
    assert counts["kept"] == len(kept)
    assert counts["exact_duplicates"] + counts["fuzzy_duplicates"] == len(removed)
    assert counts["exact_duplicates"] > 0 and counts["fuzzy_duplicates"] > 0
    assert {"url", "text", "id"} <= set(kept[0])  # other columns carried through
    kept_ids = {d["id"] for d in kept}
    cluster_of = dict(zip(clusters["id"].to_pylist(), clusters["cluster"].to_pylist(), strict=True))
    members: dict[int, list[str]] = {}
    for doc_id, c in cluster_of.items():
        members.setdefault(c, []).append(doc_id)
    assert min(len(m) for m in members.values()) >= 2
    assert len(members) == counts["clusters"]
    assert max(len(m) for m in members.values()) == counts["largest_cluster"]
    text_of = {d["id"]: d["text"] for d in docs}
    for doc in removed:
        kind, kept_id = doc["reason"].split("=", 1)
        assert kind in ("duplicate_of", "exact_duplicate_of")
        assert kept_id in kept_ids and cluster_of[kept_id] == cluster_of[doc["id"]]
        # the default rule keeps the longest member of a cluster
        assert len(text_of[kept_id]) >= len(doc["text"])
    sizes = {int(k): n for k, n in stats["breakdown"]["cluster_sizes"].items()}
    assert sum(sizes.values()) == counts["clusters"] and max(sizes) == counts["largest_cluster"]
    assert (out / "cluster_sizes.png").read_bytes()[:4] == b"\x89PNG"
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["counts"] == counts and set(on_disk["seconds"]) >= {"read_sign", "components"}


def _clusters(out: Path) -> list[list[str]]:
    members: dict[int, list[str]] = {}
    for row in pq.read_table(out / "clusters.parquet").to_pylist():
        members.setdefault(row["cluster"], []).append(row["id"])
    return sorted(sorted(ids) for ids in members.values())


def test_partition_count_does_not_change_the_outcome(corpus, result, tmp_path) -> None:
    """2 partitions for 3 read units: meta routers merge units, the clusters stay the same."""
    stats = run(_config(partitions=2), [str(corpus[2])], str(tmp_path))
    assert _clusters(tmp_path) == _clusters(result[1])
    same = ("input", "kept", "exact_duplicates", "fuzzy_duplicates", "clusters", "largest_cluster")
    assert {k: stats["counts"][k] for k in same} == {k: result[0]["counts"][k] for k in same}


def test_against_an_earlier_run_keeps_what_it_admitted(corpus, result, tmp_path) -> None:
    docs, _, _ = corpus
    _, first = result
    kept = pq.read_table(first / "documents").to_pylist()[:40]
    words = [d["text"].split() for d in kept]
    for w in words:
        w[len(w) // 2] = "recrawled"  # one word changed: Jaccard ≈ 0.94
    second_batch = [{"id": f"new-{i}", "text": " ".join(w)} for i, w in enumerate(words)]
    second_batch += [{"id": "fresh", "text": "an entirely new page " * 20}]
    _write_jsonl(tmp_path / "crawl2.jsonl", second_batch)
    stats = run(_config(), [str(tmp_path / "crawl2.jsonl")], str(tmp_path / "out"), str(first))
    removed = pq.read_table(tmp_path / "out" / "removed").to_pylist()
    old_ids = {d["id"] for d in kept}
    assert len(removed) >= 38
    assert all(r["reason"].split("=", 1)[1] in old_ids for r in removed)
    assert "fresh" in pq.read_table(tmp_path / "out" / "documents")["id"].to_pylist()
    assert stats["counts"]["earlier"] == len(pq.read_table(first / "documents"))


def test_s3_input_and_output(ray_cluster, s3_bucket) -> None:
    import s3fs

    base = " ".join(f"word{i}" for i in range(60))
    table = pa.table({"id": ["a", "b", "c"], "text": [base, base + " tail", "unrelated text here"]})
    fs = s3fs.S3FileSystem()
    with fs.open(f"{s3_bucket}/in/docs.parquet", "wb") as fh:
        pq.write_table(table, fh)
    stats = run(_config(), [f"{s3_bucket}/in"], f"{s3_bucket}/out")
    assert stats["counts"]["kept"] == 2 and stats["counts"]["fuzzy_duplicates"] == 1
    with fs.open(f"{s3_bucket}/out/clusters.parquet", "rb") as fh:
        assert sorted(pq.read_table(fh)["id"].to_pylist()) == ["a", "b"]


def test_bad_input_is_counted_not_fatal(ray_cluster, tmp_path, capsys) -> None:
    big = " ".join(f"w{i % 50000}" for i in range(1_700_000))  # ~10 MB, one document
    lines = [
        json.dumps({"id": "ok-1", "text": "a perfectly normal document with enough words in it"}),
        json.dumps({"id": "empty", "text": "   "}),
        json.dumps({"text": "this row has no id at all"}),
        json.dumps({"id": "dup", "text": "first document that shares its id with another one"}),
        json.dumps({"id": "dup", "text": "second and different text under the very same id"}),
        json.dumps({"id": "big", "text": big}),
        "{not json",
    ]
    path = tmp_path / "bad.jsonl"
    with open(path, "wb") as fh:
        fh.write("\n".join(lines).encode() + b"\n")
        fh.write(b'{"id": "latin1", "text": "caf\xe9 au lait and more words here"}\n')
    assert (
        main(
            [
                "dedup",
                "--input",
                str(path),
                "--output",
                str(tmp_path / "out"),
                "--set",
                "data.dedup.partitions=2",
            ]
        )
        == 0
    )
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    problems = stats["breakdown"]["problems"]
    assert problems == {"empty_text": 1, "missing_id": 1, "bad_json": 1, "non_utf8": 1}
    assert stats["counts"]["duplicate_ids"] == 2
    assert any("bad.jsonl: line 3" in e for e in stats["errors"])
    kept = pq.read_table(tmp_path / "out" / "documents")["id"].to_pylist()
    assert sorted(kept) == ["big", "dup", "dup", "latin1", "ok-1"]
    reasons = pq.read_table(tmp_path / "out" / "removed")["reason"].to_pylist()
    assert sorted(reasons) == ["empty_text", "missing_id"]

    pq.write_table(pa.table({"id": ["x"], "body": ["no text column"]}), tmp_path / "bad.parquet")
    assert (
        main(["dedup", "--input", str(tmp_path / "bad.parquet"), "--output", str(tmp_path / "o2")])
        == 2
    )
    err = capsys.readouterr().err
    assert "bad.parquet: row 0 onwards has no 'text' column" in err and "Traceback" not in err

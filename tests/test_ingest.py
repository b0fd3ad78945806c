"""``natal ingest``: file formats → documents, the Ray run, S3, the CLI's errors."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from ingest_samples import write_mixed_warc, write_pages_warc

from cluster import cli
from cluster.config import IngestConfig, NatalConfig
from pipelines.data import ingest
from pipelines.data.stats import StageStats

ROWS = [
    {"id": "doc-1", "text": "Bees dance to tell the hive where flowers are.", "source": "books"},
    {"text": "A row without an id gets a stable one.", "url": "https://x.example/2"},
    {"text": 5},
    {"id": "doc-4", "text": "   "},
]


def write_jsonl(path: Path, rows: list, bad_line: bool = True) -> Path:
    lines = [json.dumps(row) for row in rows] + (["{not json"] if bad_line else [])
    data = ("\n".join(lines) + "\n").encode()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    elif path.suffix == ".zst":
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


def documents(path: Path | str, cfg: IngestConfig | None = None) -> tuple[list[dict], StageStats]:
    stats = StageStats("ingest")
    return list(ingest.iter_file_documents(str(path), cfg or IngestConfig(), stats)), stats


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("CC-MAIN-1.warc.gz", "warc"),
        ("x.warc.wet.gz", "warc"),
        ("s3://b/part.jsonl.zst", "jsonl"),
        ("c4.json.gz", "jsonl"),
        ("d/part-0.parquet", "parquet"),
        ("books.tar.gz", "tar"),
        ("moby.txt", "text"),
        ("main.go", "code"),
        ("image.jpg", None),
    ],
)
def test_input_format(name: str, fmt: str | None) -> None:
    assert ingest.input_format(name) == fmt


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_jsonl_keeps_ids_and_counts_bad_rows(tmp_path: Path, suffix: str) -> None:
    docs, stats = documents(write_jsonl(tmp_path / f"rows{suffix}", ROWS))
    assert [doc["id"] for doc in docs][0] == "doc-1"
    assert len(docs[1]["id"]) == 32 and docs[1]["url"] == "https://x.example/2"
    assert [doc["source"] for doc in docs] == ["books", "web"]
    assert [doc["record_offset"] for doc in docs] == [0, 1]
    assert all(doc["lang"] == "en" and doc["lang_score"] > 0.5 for doc in docs)
    assert stats.counts["records_read"] == 5
    assert stats.breakdown["errors_by_kind"] == {"missing_text_field": 1, "bad_json": 1}
    assert stats.breakdown["skipped_by_reason"] == {"empty_text": 1}
    assert stats.breakdown["errors_by_file"] == {f"rows{suffix}": 2}


def test_parquet_rows_keep_ids_and_a_file_without_text_is_an_error(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS[:2]), good)
    docs, _ = documents(good, IngestConfig(source="mix"))
    assert [doc["id"] for doc in docs][0] == "doc-1"
    assert {doc["source"] for doc in docs} == {"mix"}  # the flag wins over the row's column
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"body": ["a", "b"]}), bad)
    docs, stats = documents(bad)
    assert docs == [] and stats.breakdown["errors_by_kind"] == {"no_text_column": 2}


def test_warc_documents_have_the_schema_and_stable_ids(tmp_path: Path) -> None:
    path = write_mixed_warc(tmp_path / "crawl.warc.gz")
    docs, stats = documents(path)
    again, _ = documents(path)
    assert [doc["id"] for doc in docs] == [doc["id"] for doc in again]
    assert len({doc["id"] for doc in docs}) == 4
    assert set(docs[0]) == set(ingest.SCHEMA.names)
    assert [doc["lang"] for doc in docs] == ["en", "ja", "en", "en"]
    assert all(doc["crawl_date"] == "2024-05-18T01:58:10Z" for doc in docs)
    assert docs[0]["record_offset"] == 0 and docs[1]["record_offset"] > 0
    assert stats.breakdown["documents_by_source"] == {"web": 4}
    assert pa.Table.from_pylist(docs, schema=ingest.SCHEMA).num_rows == 4


def test_tarball_of_papers_is_one_document_per_member(tmp_path: Path) -> None:
    path = tmp_path / "papers.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, text in [("p/a.md", "# Bees\n\nBees dance."), ("p/b.txt", "Flowers bloom.")]:
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            archive.addfile(info, io.BytesIO(text.encode()))
    docs, stats = documents(path)
    assert [(doc["url"], doc["source"]) for doc in docs] == [
        ("p/a.md", "text"),
        ("p/b.txt", "text"),
    ]
    assert {doc["input_file"] for doc in docs} == {str(path)}
    assert docs[0]["id"] != docs[1]["id"] and stats.counts["records_read"] == 2


def test_min_text_chars_and_unreadable_file_are_counted(tmp_path: Path) -> None:
    docs, stats = documents(
        write_mixed_warc(tmp_path / "c.warc.gz"), IngestConfig(min_text_chars=60)
    )
    assert len(docs) == 3 and stats.breakdown["skipped_by_reason"]["short_text"] == 1
    docs, stats = documents(tmp_path / "vanished.jsonl")
    assert docs == [] and stats.breakdown["errors_by_kind"] == {"read:FileNotFoundError": 1}


def test_write_documents_streams_batches_and_writes_nothing_for_nothing(tmp_path: Path) -> None:
    docs, _ = documents(write_pages_warc(tmp_path / "p.warc.gz", 7))
    out = tmp_path / "part.parquet"
    assert ingest.write_documents(iter(docs), str(out), batch_size=3) == 7
    table = pq.read_table(out)
    assert table.schema == ingest.SCHEMA and table.num_rows == 7
    assert pq.ParquetFile(out).metadata.num_row_groups == 3
    assert ingest.write_documents(iter([]), str(tmp_path / "none.parquet"), 3) == 0
    assert not (tmp_path / "none.parquet").exists()


def test_plan_units_one_archive_per_task_small_files_grouped(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"m{i}.py").write_text("x = 1\n" * 100)  # 600 bytes each
    files = [str(tmp_path / f"m{i}.py") for i in range(5)] + ["a.warc.gz", "b.jsonl"]
    units = ingest.plan_units(files, task_bytes=1300)
    assert ["a.warc.gz"] in units and ["b.jsonl"] in units
    assert [len(unit) for unit in units if unit[0].endswith(".py")] == [2, 2, 1]
    assert sorted(path for unit in units for path in unit) == sorted(files)


# --- the Ray run --------------------------------------------------------------------------------

# Ray workers importing trafilatura cost seconds on a loaded machine; these tests are about
# distribution, so they extract with resiliparse (trafilatura runs in the tests above).
FAST = NatalConfig.model_validate({"data": {"ingest": {"extractor": "resiliparse"}}})


def make_inputs(root: Path) -> list[str]:
    root.mkdir()
    write_mixed_warc(root / "crawl-0.warc.gz")
    write_pages_warc(root / "crawl-1.warc.gz", 6)
    write_jsonl(root / "rows.jsonl.gz", ROWS)
    code = root / "repo"
    code.mkdir()
    (code / "wc.py").write_text("def count(text):\n    return len(text.split())\n")
    (code / "min.js").write_text("var a=1;" * 300)
    return [str(root / "crawl-*.warc.gz"), str(root / "rows.jsonl.gz"), str(code)]


def test_run_writes_parts_and_stats_and_a_rerun_replaces(ray_cluster, tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    stats = ingest.run(FAST, inputs, str(out))
    assert stats["documents"] == 4 + 6 + 2 + 1
    assert stats["tasks"] == 4  # two WARCs, one JSONL, one group of small code files
    assert stats["ray_tasks"] == 4  # distinct Ray task ids that ran the units
    assert stats["errors"] == 2
    assert stats["breakdown"]["skipped_by_reason"]["code_max_line_length"] == 1
    assert stats["breakdown"]["documents_by_source"] == {"web": 11, "books": 1, "code": 1}
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["documents"] == 13 and on_disk["counts"]["records_read"] == stats["records_read"]
    table = pq.read_table(out / "documents")
    assert table.num_rows == 13 and len(set(table["id"].to_pylist())) == 13
    assert sorted(p.name for p in (out / "documents").iterdir()) == [
        f"part-{i:05d}.parquet" for i in range(4)
    ]

    ingest.run(FAST, [str(tmp_path / "in" / "crawl-0.warc.gz")], str(out))
    rerun = pq.read_table(out / "documents")
    assert rerun.num_rows == 4  # replaced, not appended
    assert set(rerun["id"].to_pylist()) <= set(table["id"].to_pylist())  # same ids as before


def test_s3_round_trip(ray_cluster, s3_bucket: str, tmp_path: Path) -> None:
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.put_file(str(write_mixed_warc(tmp_path / "a.warc.gz")), f"{s3_bucket}/crawl/a.warc.gz")
    fs.put_file(str(write_pages_warc(tmp_path / "b.warc.gz", 3)), f"{s3_bucket}/crawl/b.warc.gz")
    stats = ingest.run(FAST, [f"{s3_bucket}/crawl/*.warc.gz"], f"{s3_bucket}/out")
    assert stats["documents"] == 7 and stats["tasks"] == 2
    table = pq.read_table(f"{s3_bucket.removeprefix('s3://')}/out/documents", filesystem=fs)
    assert table.num_rows == 7
    assert set(table["input_file"].to_pylist()) == {f"{s3_bucket}/crawl/{n}.warc.gz" for n in "ab"}
    assert json.loads(fs.cat(f"{s3_bucket}/out/stats.json"))["documents"] == 7


def test_empty_result_still_writes_the_schema(ray_cluster, tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text('{"text": ""}\n')
    stats = ingest.run(FAST, [str(path)], str(tmp_path / "out"))
    assert stats["documents"] == 0 and stats["breakdown"]["skipped_by_reason"] == {"empty_text": 1}
    assert pq.read_table(tmp_path / "out" / "documents").schema == ingest.SCHEMA


# --- the CLI's errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["/nonexistent/crawl.warc.gz", "ftp2://host/x.warc.gz", "http://127.0.0.1:9/x.warc.gz"]
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys, bad: str) -> None:
    code = cli.main(["ingest", "--input", bad, "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("natal ingest: error:") and bad in err
    assert "Traceback" not in err


def test_cli_directory_without_ingestible_files(tmp_path: Path, capsys) -> None:
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8")
    assert cli.main(["ingest", "--input", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    assert "no input file" in capsys.readouterr().err


# --- real crawl files ---------------------------------------------------------------------------


def test_ingests_every_real_crawl_file(ray_cluster, shared_data: Path, tmp_path: Path) -> None:
    inputs = [str(shared_data / "cc-warc" / "*.gz"), str(shared_data / "web-html-warc" / "*.gz")]
    stats = ingest.run(NatalConfig(), inputs, str(tmp_path / "out"))
    assert stats["input_files"] == 15 and stats["tasks"] == stats["ray_tasks"] == 15
    assert stats["errors"] == 1  # the clipped record; every other file is fine
    assert stats["breakdown"]["errors_by_kind"] == {"truncated_record": 1}
    assert stats["breakdown"]["skipped_by_reason"]["revisit"] == 1
    assert stats["breakdown"]["warnings"] == {"invalid_warc_date": 29}
    # 85 readable real HTML pages + 1 WET record + 528 pages with ground truth, minus empty ones
    assert 600 <= stats["documents"] <= 614
    assert stats["breakdown"]["documents_by_lang"]["ja"] >= 29
    table = pq.read_table(tmp_path / "out" / "documents", columns=["id", "lang", "url"])
    assert table.num_rows == stats["documents"]
    assert len(set(table["id"].to_pylist())) == table.num_rows

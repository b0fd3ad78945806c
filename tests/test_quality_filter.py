"""``natal filter`` over Ray: nothing lost, reasons and values kept, stats agree, reruns replace."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from filter_texts import GOOD_TEXT, PARAGRAPHS

from cluster.cli import main
from cluster.config import load_config
from cluster.config.errors import InputError
from pipelines.data import quality_filter as filter_stage

GERMAN = (
    "Die Stadt am Fluss erwacht im Herbst langsam, wenn sich der Nebel über dem Wasser hebt "
    "und die Boote in den Hafen zurückkehren. Die Fischer sortieren ihren Fang am Steg."
)


def write_documents(directory: Path) -> list[str]:
    """Two Parquet parts in the ingest schema (+ an extra column) and one corrupt file."""
    directory.mkdir(parents=True)
    texts = [GOOD_TEXT, PARAGRAPHS[0], GERMAN, GOOD_TEXT + "\nMail me: ann@town.example today."]
    rows = [
        {
            "id": f"doc-{i}",
            "url": "https://spam.example/x" if i % 10 == 9 else f"https://town.example/{i}",
            "text": texts[i % len(texts)],
            "source": "web" if i % 2 else "books",
            "crawl_date": "2024-01-01T00:00:00Z",
            "lang": None,
            "lang_score": None,
            "input_file": "crawl.warc.gz",
            "record_offset": i,
            "extra": i * 10,
        }
        for i in range(40)
    ]
    pq.write_table(pa.Table.from_pylist(rows[:25]), directory / "part-0.parquet")
    pq.write_table(pa.Table.from_pylist(rows[25:]), directory / "part-1.parquet")
    (directory / "part-2.parquet").write_bytes(b"PAR1 this is not parquet")
    return [row["id"] for row in rows]


def read_dir(directory: Path) -> pa.Table:
    return pq.read_table(directory)


@pytest.mark.ray
def test_filter_stage(tmp_path: Path, ray_cluster: None) -> None:
    ids = write_documents(tmp_path / "in")
    cfg = load_config(overrides=["data.filter.url.domains=[spam.example]"])
    out = tmp_path / "out"
    stats = filter_stage.run(cfg, str(tmp_path / "in"), str(out))

    kept, removed = read_dir(out / "documents"), read_dir(out / "removed")
    assert sorted(kept["id"].to_pylist() + removed["id"].to_pylist()) == sorted(ids)
    assert "reason" not in kept.column_names and "extra" in kept.column_names
    assert {"reason", "value", "extra", "url"} <= set(removed.column_names)
    reasons = dict(zip(removed["id"].to_pylist(), removed["reason"].to_pylist(), strict=True))
    assert reasons["doc-9"] == "url_domain"
    assert reasons["doc-1"] == "gopher_short_doc" and reasons["doc-2"] == "lang"
    assert all(reasons.values())
    assert set(kept["lang"].to_pylist()) == {"en"}
    assert any("<EMAIL>" in text for text in kept["text"].to_pylist())

    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["counts"] == stats["counts"]
    counts = stats["counts"]
    assert counts["documents_in"] == 40 and counts["errors"] == 1
    assert (counts["kept"], counts["removed"]) == (kept.num_rows, removed.num_rows)
    by_reason = stats["breakdown"]["removed_by_reason"]
    assert sum(by_reason.values()) == removed.num_rows
    assert by_reason["url_domain"] == 4
    assert sum(stats["breakdown"]["removed_by_source"].values()) == removed.num_rows
    assert stats["breakdown"]["pii_redactions"]["email"] == reasons_missing(ids, reasons, 3)
    assert list(stats["breakdown"]["errors_by_kind"]) == ["unreadable_parquet:ArrowInvalid"]
    assert (out / "removals.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = filter_stage.run(cfg, str(tmp_path / "in"), str(out))
    assert again["counts"] == stats["counts"]
    assert read_dir(out / "documents").num_rows == kept.num_rows  # replaced, not doubled

    everything = load_config(overrides=["data.filter.url.substrings=[town, spam]"])
    none_kept = filter_stage.run(everything, str(tmp_path / "in"), str(out))
    assert none_kept["counts"]["kept"] == 0
    empty = read_dir(out / "documents")  # an empty part keeps the schema readable
    assert empty.num_rows == 0 and "extra" in empty.column_names
    assert read_dir(out / "removed").num_rows == 40


def reasons_missing(ids: list[str], reasons: dict[str, str], remainder: int) -> int:
    """Kept documents with the e-mail text: index ≡ ``remainder`` (mod 4), not removed."""
    return sum(1 for i, doc in enumerate(ids) if i % 4 == remainder and doc not in reasons)


@pytest.mark.ray
def test_filter_on_s3(s3_bucket: str, tmp_path: Path, ray_cluster: None) -> None:
    import s3fs

    write_documents(tmp_path / "in")
    (tmp_path / "in" / "part-2.parquet").unlink()
    fs = s3fs.S3FileSystem()
    fs.put(str(tmp_path / "in") + "/", f"{s3_bucket}/docs/", recursive=True)
    stats = filter_stage.run(load_config(), f"{s3_bucket}/docs", f"{s3_bucket}/filtered")
    assert stats["counts"]["documents_in"] == 40 and stats["counts"]["errors"] == 0
    kept = pq.read_table(f"{s3_bucket}/filtered/documents".removeprefix("s3://"), filesystem=fs)
    assert kept.num_rows == stats["counts"]["kept"] > 0
    assert fs.exists(f"{s3_bucket}/filtered/stats.json")
    assert fs.exists(f"{s3_bucket}/filtered/removals.png")


def test_input_errors(tmp_path: Path) -> None:
    (tmp_path / "notdocs").mkdir()
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "notdocs" / "a.parquet")
    with pytest.raises(InputError, match="no 'text' column"):
        filter_stage.run(load_config(), str(tmp_path / "notdocs"), str(tmp_path / "out"))
    previous = tmp_path / "docs" / "filtered" / "documents"
    previous.mkdir(parents=True)
    pq.write_table(pa.table({"text": ["x"]}), previous / "part-00000.parquet")
    with pytest.raises(InputError, match="no readable documents"):  # its own output is no input
        filter_stage.run(load_config(), str(tmp_path / "docs"), str(tmp_path / "docs" / "filtered"))
    with pytest.raises(InputError, match="no such file"):
        filter_stage.run(load_config(), str(tmp_path / "missing"), str(tmp_path / "out"))


def test_cli_reports_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["filter", "--input", str(tmp_path / "missing"), "--output", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.strip().startswith("natal filter: error:")
    code = main(["filter", "--input", "x", "--output", "y", "--set", "data.filter.c4.nope=1"])
    assert code == 2
    assert "data.filter.c4.nope: unknown field" in capsys.readouterr().err

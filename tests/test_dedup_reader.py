"""Read units: keys, statuses and counted problems for every kind of bad input (no Ray)."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cluster.config.errors import InputError
from pipelines.data.dedup.reader import document_files, plan_units, read_unit, unit_keys


def test_jsonl_problems_are_counted_with_file_and_line(tmp_path) -> None:
    path = tmp_path / "docs.jsonl"
    with open(path, "wb") as fh:
        fh.write(json.dumps({"id": 7, "text": "integer id", "lang": "en"}).encode() + b"\n")
        fh.write(b"{broken\n")
        fh.write(b"[1, 2]\n")
        fh.write(b'{"id": "x", "text": "caf\xe9"}\n')
        fh.write(json.dumps({"text": "no id"}).encode() + b"\n")
        fh.write(json.dumps({"id": "n", "text": None}).encode() + b"\n")
        fh.write(json.dumps({"id": "e", "text": " \n "}).encode() + b"\n")
    units, _, _ = plan_units([str(path)])
    rows = read_unit(units[0])
    assert rows.table.column("id").to_pylist()[:2] == ["7", "x"]  # ids become strings
    assert rows.status.tolist() == ["", "", "missing_id", "missing_text", "empty_text"]
    assert rows.problems == {
        "bad_json": 2,
        "non_utf8": 1,
        "missing_id": 1,
        "missing_text": 1,
        "empty_text": 1,
    }
    assert any(
        e.endswith(
            "line 2: not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1)); skipped"
        )
        for e in rows.errors
    )
    assert any("docs.jsonl: line 5: no 'id'" in e for e in rows.errors)
    assert "\ufffd" in rows.table.column("text").to_pylist()[1]


def test_truncated_gzip_keeps_the_lines_before_the_damage(tmp_path) -> None:
    data = gzip.compress(
        b"".join(
            json.dumps({"id": str(i), "text": "x " * 50}).encode() + b"\n" for i in range(2000)
        )
    )
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    units, _, _ = plan_units([str(path)])
    rows = read_unit(units[0])
    assert 0 < rows.table.num_rows < 2000
    assert rows.problems.get("unreadable_tail") == 1


def test_parquet_units_are_row_groups_with_unique_keys(tmp_path) -> None:
    table = pa.table({"id": [f"d{i}" for i in range(10)], "text": ["t"] * 10, "url": ["u"] * 10})
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=4)
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    units, problems, errors = plan_units(
        [str(tmp_path / "a.parquet"), str(tmp_path / "junk.parquet")]
    )
    assert [u.row_group for u in units] == [0, 1, 2]
    assert problems == {"unreadable_file": 1} and "junk.parquet" in errors[0]
    keys = [read_unit(u).keys for u in units]
    assert sorted(k for ks in keys for k in ks.tolist()) == sorted(
        set(k for ks in keys for k in ks.tolist())
    )
    assert read_unit(units[1]).table.column("url").to_pylist() == ["u"] * 4
    assert unit_keys(3, 2, source=1).tolist() == [(1 << 56) | (3 << 32), (1 << 56) | (3 << 32) | 1]


def test_parquet_without_text_names_the_file(tmp_path) -> None:
    pq.write_table(pa.table({"id": ["a"]}), tmp_path / "no_text.parquet")
    with pytest.raises(InputError, match="no_text.parquet: row 0 onwards has no 'text' column"):
        plan_units([str(tmp_path / "no_text.parquet")])


def test_a_stage_directory_means_its_documents(tmp_path) -> None:
    for sub in ("documents", "removed"):
        (tmp_path / sub).mkdir()
        pq.write_table(pa.table({"id": ["a"], "text": ["t"]}), tmp_path / sub / "part.parquet")
    assert document_files([str(tmp_path)]) == [str(tmp_path / "documents" / "part.parquet")]
    with pytest.raises(InputError):
        document_files([str(tmp_path / "missing")])

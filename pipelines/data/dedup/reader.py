"""Documents in read units (a JSONL file or a Parquet row group), tolerant of bad records.

Every row gets a stable int64 key ``source << 56 | unit << 32 | row``: unique even when ids
repeat, and it tells which unit (hence which write task) a row belongs to. Rows that cannot
be deduplicated get a status instead of crashing the job: ``missing_id``, ``missing_text``,
``empty_text`` (outcomes, counted, written to ``removed/``); undecodable JSON lines are
counted as ``bad_json`` and skipped, invalid UTF-8 bytes are replaced (counted ``non_utf8``).

Not Ray Data's ``read_json``/``read_parquet``: they give no row position to build keys from
or to name in an error, and pyarrow's JSON reader fails a whole file on one bad line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cluster.config.errors import InputError
from pipelines.data import storage

SUFFIXES = (".jsonl", ".json", ".parquet")
MAX_UNITS = 1 << 24
MAX_ROWS = 1 << 32


@dataclass(frozen=True)
class Unit:
    """One read task's share of the input."""

    index: int
    path: str
    row_group: int | None = None  # Parquet row group; None: the whole (JSONL) file


@dataclass
class UnitRows:
    """The rows of one unit: a table of the document columns plus per-row key and status."""

    table: pa.Table
    keys: np.ndarray
    status: np.ndarray  # "" when the row can be deduplicated, else the reason it cannot
    problems: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def document_files(uris: list[str]) -> list[str]:
    """Input files; a directory holding ``documents/`` (a stage's output) means that folder,
    so that ``--input runs/filter`` never re-reads its ``removed/``."""
    resolved = []
    for uri in uris:
        fs, path = storage.filesystem(uri)
        inner = storage.join(uri, "documents")
        try:
            is_stage_dir = fs.isdir(storage.join(path, "documents"))
        except Exception:  # unreachable or odd path: expand_inputs says why, in one line
            is_stage_dir = False
        resolved.append(inner if is_stage_dir else uri)
    return storage.expand_inputs(resolved, suffixes=SUFFIXES)


def plan_units(files: list[str]) -> tuple[list[Unit], dict[str, int], list[str]]:
    """Read units of the input files, plus unreadable files (counted, skipped, named).

    A Parquet file without ``id``/``text`` is an input error naming the file.
    """
    units: list[Unit] = []
    problems: dict[str, int] = {}
    errors: list[str] = []
    for path in files:
        if not _is_parquet(path):
            units.append(Unit(0, path))
            continue
        fs, local = storage.filesystem(path)
        try:
            with fs.open(local, "rb") as fh:
                meta = pq.ParquetFile(fh).metadata
        except Exception as exc:  # truncated or not Parquet: count it, go on
            problems["unreadable_file"] = problems.get("unreadable_file", 0) + 1
            _note(errors, f"{path}: not a readable Parquet file ({type(exc).__name__}); skipped")
            continue
        names = set(meta.schema.names)
        for column in ("id", "text"):
            if column not in names:
                raise InputError(
                    f"{path}: row 0 onwards has no {column!r} column "
                    f"(columns: {', '.join(sorted(names))})"
                )
        units.extend(Unit(0, path, rg) for rg in range(meta.num_row_groups))
    if len(units) >= MAX_UNITS:
        raise InputError(f"{len(units)} read units: at most {MAX_UNITS - 1} supported")
    return [Unit(i, u.path, u.row_group) for i, u in enumerate(units)], problems, errors


def _is_parquet(path: str) -> bool:
    return path.endswith(".parquet")


def unit_keys(unit_index: int, rows: int, source: int = 0) -> np.ndarray:
    if rows >= MAX_ROWS:
        raise InputError(f"unit {unit_index}: {rows} rows, at most {MAX_ROWS - 1} per file")
    base = (source << 56) | (unit_index << 32)
    return base + np.arange(rows, dtype=np.int64)


def read_unit(unit: Unit) -> UnitRows:
    """The unit's rows with ``id`` as strings, statuses, and counted problems."""
    if _is_parquet(unit.path):
        fs, local = storage.filesystem(unit.path)
        with fs.open(local, "rb") as fh:
            table = pq.ParquetFile(fh).read_row_group(unit.row_group)
        rows, problems, errors = table, {}, []
        first_row = _row_offset(unit)
    else:
        rows, problems, errors = _read_jsonl(unit.path)
        first_row = 0
    table = _with_string_ids(rows)
    status = _statuses(table, unit.path, first_row, errors)
    for reason in status[status != ""]:
        problems[reason] = problems.get(reason, 0) + 1
    return UnitRows(table, unit_keys(unit.index, table.num_rows), status, problems, errors)


def _row_offset(unit: Unit) -> int:
    fs, local = storage.filesystem(unit.path)
    with fs.open(local, "rb") as fh:
        meta = pq.ParquetFile(fh).metadata
    return sum(meta.row_group(i).num_rows for i in range(unit.row_group or 0))


def _read_jsonl(path: str) -> tuple[pa.Table, dict[str, int], list[str]]:
    fs, local = storage.filesystem(path)
    compression = "infer" if path.endswith((".gz", ".zst", ".bz2", ".xz")) else None
    records: list[dict] = []
    problems: dict[str, int] = {}
    errors: list[str] = []

    def count(kind: str, message: str) -> None:
        problems[kind] = problems.get(kind, 0) + 1
        _note(errors, f"{path}: {message}")

    line_no = 0
    try:
        with fs.open(local, "rb", compression=compression) as fh:
            for line_no, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    line = raw.decode("utf-8", errors="replace")
                    count("non_utf8", f"line {line_no}: invalid UTF-8 replaced by U+FFFD")
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    count("bad_json", f"line {line_no}: not JSON ({exc}); skipped")
                    continue
                if not isinstance(record, dict):
                    count("bad_json", f"line {line_no}: not a JSON object; skipped")
                    continue
                record["__line"] = line_no
                records.append(record)
    except (OSError, EOFError, ValueError) as exc:  # truncated gzip and friends: keep what read
        count("unreadable_tail", f"unreadable after line {line_no} ({type(exc).__name__}: {exc})")
    return _records_to_table(records), problems, errors


def _records_to_table(records: list[dict]) -> pa.Table:
    names: dict[str, None] = {"id": None, "text": None}
    for record in records:
        names.update(dict.fromkeys(record))
    columns = {}
    for name in names:
        values = [record.get(name) for record in records]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            # mixed types across rows: keep them as JSON text rather than drop the column
            columns[name] = pa.array(
                [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
            )
    return pa.table(columns)


def _with_string_ids(table: pa.Table) -> pa.Table:
    for name in ("id", "text"):
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    ids = table.column("id")
    if not pa.types.is_string(ids.type) and not pa.types.is_large_string(ids.type):
        as_text = [None if v is None else str(v) for v in ids.to_pylist()]
        table = table.set_column(table.schema.get_field_index("id"), "id", pa.array(as_text))
    return table


def _statuses(table: pa.Table, path: str, first_row: int, errors: list[str]) -> np.ndarray:
    ids = table.column("id").to_pylist()
    texts = table.column("text").to_pylist()
    lines = table.column("__line").to_pylist() if "__line" in table.column_names else None
    status = np.full(table.num_rows, "", dtype=object)
    for row, (doc_id, text) in enumerate(zip(ids, texts, strict=True)):
        where = f"line {lines[row]}" if lines else f"row {first_row + row}"
        if doc_id is None or doc_id == "":
            status[row] = "missing_id"
            _note(errors, f"{path}: {where}: no 'id'")
        elif not isinstance(text, str):
            status[row] = "missing_text"
            _note(errors, f"{path}: {where}: no 'text' string (id {doc_id!r})")
        elif not text.strip():
            status[row] = "empty_text"
    return status


def _note(errors: list[str], message: str, limit: int = 20) -> None:
    if len(errors) < limit:
        errors.append(message)


def write_parquet(path: str, table: pa.Table) -> None:
    """One Parquet file at ``path`` (local or fsspec URL), replacing an earlier one."""
    fs, local = storage.filesystem(path)
    fs.makedirs(local.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(local, "wb") as fh:
        pq.write_table(table, fh)


def document_columns(table: pa.Table) -> pa.Table:
    """The table without reader bookkeeping columns: what goes to ``documents/``."""
    return table.drop_columns([c for c in table.column_names if c.startswith("__")])

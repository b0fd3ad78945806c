"""``natal ingest``: crawl archives and corpora → ``documents/*.parquet`` + ``stats.json``.

The core is :func:`iter_file_documents`, a plain generator (no Ray) that streams one input file
into document dicts. :func:`run` plans the input files into work units (one per archive, small
text/code files grouped up to ``task_bytes``) and runs one Ray Data task per unit; each task
writes its own Parquet part as it goes and returns only its counts, so no document passes
through the driver and a rerun replaces the previous parts.

Formats (by file name): WARC/WET/WAT (``.warc[.gz]``, ``.wet[.gz]``...), JSONL
(``.jsonl``/``.json``/``.ndjson``, optionally ``.gz``/``.zst``/``.bz2``/``.xz``), Parquet,
tarballs of text/code, single text/Markdown and source files. Locations: anything
:mod:`pipelines.data.storage` reads (local paths, globs, directories, ``s3://``, ``http(s)://``).
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from itertools import islice
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.utils import infer_compression

from cluster.config import IngestConfig, NatalConfig
from cluster.config.errors import InputError
from pipelines.data import sources, storage, warc
from pipelines.data.extract import extract_text
from pipelines.data.filters.lang import detect_language
from pipelines.data.stats import StageStats
from pipelines.data.warc import skip

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("url", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("crawl_date", pa.string()),  # ISO 8601 UTC when known
        ("lang", pa.string()),  # ISO 639-1 (py3langid); programming language for code
        ("lang_score", pa.float64()),
        ("input_file", pa.string()),
        ("record_offset", pa.int64()),  # byte offset (WARC, tar), line (JSONL) or row (Parquet)
    ]
)
COMPRESSIONS = ("", ".gz", ".zst", ".bz2", ".xz")
WARC_SUFFIXES = tuple(
    base + comp for base in (".warc", ".wet", ".wat") for comp in ("", ".gz", ".zst", ".lz4")
)
JSONL_SUFFIXES = tuple(
    base + comp for base in (".jsonl", ".ndjson", ".json") for comp in COMPRESSIONS
)
SUPPORTED_SUFFIXES = (
    WARC_SUFFIXES
    + JSONL_SUFFIXES
    + (".parquet",)
    + sources.TAR_SUFFIXES
    + sources.TEXT_SUFFIXES
    + tuple(sources.CODE_LANGUAGES)
)
COUNTS = ("records_read", "documents", "skipped", "errors")


def input_format(path: str) -> str | None:
    """``warc``, ``jsonl``, ``parquet``, ``tar``, ``text``, ``code`` or None, from the name."""
    name = posixpath.basename(path.split("?", 1)[0]).lower()
    if name.endswith(WARC_SUFFIXES):
        return "warc"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    return sources.file_kind(name)


def stable_id(*parts: object) -> str:
    """A 32-hex-digit id that depends only on its parts: the same record gets the same id."""
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).hexdigest()


# --- one file → documents (pure) ------------------------------------------------------------


def iter_file_documents(path: str, cfg: IngestConfig, stats: StageStats) -> Iterator[dict]:
    """Stream one input file into document dicts with the columns of :data:`SCHEMA`.

    Records are read one at a time. Whatever is not a document is counted in ``stats``
    (``skipped_by_reason``, ``errors_by_kind``); a file that breaks part-way keeps every
    document yielded before the break. Documents are counted by source and language.
    """
    fmt = input_format(path)
    if fmt is None:
        skip(stats, "unsupported_format")
        return
    fs, fs_path = storage.filesystem(path)
    name = posixpath.basename(fs_path)
    errors_before = stats.counts["errors"]
    compression = infer_compression(fs_path) if fmt == "jsonl" else None
    try:
        with fs.open(fs_path, "rb", compression=compression) as stream:
            for offset, fields in _READERS[fmt](stream, path, cfg, stats):
                doc = _document(fields, name, path, offset, cfg, stats)
                if doc is not None:
                    yield doc
    except Exception as exc:  # storage or format failure: count it, keep what was yielded
        _error(stats, f"read:{type(exc).__name__}")
    if stats.counts["errors"] > errors_before:
        stats.add_to("errors_by_file", name, stats.counts["errors"] - errors_before)


def _document(
    fields: dict, name: str, path: str, offset: int, cfg: IngestConfig, stats: StageStats
) -> dict | None:
    text = fields["text"]
    if not text.strip():
        skip(stats, "empty_text")
        return None
    if len(text) < cfg.min_text_chars:
        skip(stats, "short_text")
        return None
    lang, lang_score = fields.get("lang"), fields.get("lang_score")
    if lang is None:
        lang, lang_score = detect_language(text[: cfg.lang_chars])
    doc = {
        "id": fields.get("id") or stable_id(name, offset, fields.get("url") or ""),
        "url": fields.get("url"),
        "text": text,
        "source": fields["source"],
        "crawl_date": fields.get("crawl_date"),
        "lang": lang,
        "lang_score": lang_score,
        "input_file": path,
        "record_offset": offset,
    }
    stats.add("documents")
    stats.add_to("documents_by_source", doc["source"])
    stats.add_to("documents_by_lang", lang)
    return doc


def _warc_fields(
    stream: BinaryIO, path: str, cfg: IngestConfig, stats: StageStats
) -> Iterator[tuple[int, dict]]:
    for rec in warc.iter_web_records(stream, stats, cfg.max_record_bytes):
        text = warc.decode_text(rec.body, rec.charset)
        if rec.is_html:
            try:
                text = extract_text(text, cfg.extractor)
            except Exception as exc:  # one page an extractor chokes on is one error
                _error(stats, f"extract:{type(exc).__name__}")
                continue
        # The record id makes the document id: two captures of one URL stay distinct.
        yield (
            rec.offset,
            {
                "text": text,
                "url": rec.url,
                "crawl_date": rec.crawl_date,
                "source": cfg.source or "web",
                "id": stable_id(posixpath.basename(path), rec.offset, rec.record_id or rec.url),
            },
        )


def _jsonl_fields(
    stream: BinaryIO, path: str, cfg: IngestConfig, stats: StageStats
) -> Iterator[tuple[int, dict]]:
    # zstd readers cannot iterate lines by themselves: buffer them.
    lines = stream if isinstance(stream, io.BufferedIOBase) else io.BufferedReader(stream)
    for line_no, line in enumerate(lines):
        if not line.strip():
            continue
        stats.add("records_read")
        try:
            row = json.loads(line)
        except ValueError:
            _error(stats, "bad_json")
            continue
        fields = _row_fields(row, cfg, stats)
        if fields is not None:
            yield line_no, fields


def _parquet_fields(
    stream: BinaryIO, path: str, cfg: IngestConfig, stats: StageStats
) -> Iterator[tuple[int, dict]]:
    parquet = pq.ParquetFile(stream)
    names = parquet.schema_arrow.names
    if cfg.text_field not in names:
        stats.add("records_read", parquet.metadata.num_rows)
        _error(stats, "no_text_column", parquet.metadata.num_rows)
        return
    wanted = {cfg.text_field, cfg.id_field, "url", "source", "crawl_date", "timestamp", "date"}
    row_no = 0
    for batch in parquet.iter_batches(cfg.batch_size, columns=[n for n in names if n in wanted]):
        for row in batch.to_pylist():
            stats.add("records_read")
            fields = _row_fields(row, cfg, stats)
            if fields is not None:
                yield row_no, fields
            row_no += 1


def _row_fields(row: Any, cfg: IngestConfig, stats: StageStats) -> dict | None:
    """A JSONL/Parquet row's document fields; its own ``id`` and ``source`` are kept."""
    if not isinstance(row, dict) or not isinstance(row.get(cfg.text_field), str):
        _error(stats, "missing_text_field")
        return None
    return {
        "text": row[cfg.text_field],
        "id": _as_str(row.get(cfg.id_field)),
        "url": _as_str(row.get("url")),
        "source": cfg.source or _as_str(row.get("source")) or "web",
        "crawl_date": _as_str(row.get("crawl_date") or row.get("timestamp") or row.get("date")),
    }


def _file_fields(
    stream: BinaryIO, path: str, cfg: IngestConfig, stats: StageStats
) -> Iterator[tuple[int, dict]]:
    stats.add("records_read")
    data = stream.read(cfg.max_record_bytes + 1)
    if len(data) > cfg.max_record_bytes:
        skip(stats, "too_large")
        return
    doc = sources.file_document(path, data, cfg, stats)
    if doc is not None:
        yield 0, doc


def _tar_fields(
    stream: BinaryIO, path: str, cfg: IngestConfig, stats: StageStats
) -> Iterator[tuple[int, dict]]:
    yield from sources.iter_tar(stream, cfg, stats)


_READERS = {
    "warc": _warc_fields,
    "jsonl": _jsonl_fields,
    "parquet": _parquet_fields,
    "text": _file_fields,
    "code": _file_fields,
    "tar": _tar_fields,
}


def _error(stats: StageStats, kind: str, n: int = 1) -> None:
    stats.add("errors", n)
    stats.add_to("errors_by_kind", kind, n)


def _as_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


# --- writing --------------------------------------------------------------------------------


def write_documents(docs: Iterable[dict], uri: str, batch_size: int) -> int:
    """Stream documents into one Parquet file, ``batch_size`` rows at a time; no file for none."""
    fs, path = storage.filesystem(uri)
    docs = iter(docs)
    written = 0
    writer = handle = None
    try:
        while batch := list(islice(docs, batch_size)):
            if writer is None:
                handle = fs.open(path, "wb")
                writer = pq.ParquetWriter(handle, SCHEMA, compression="zstd")
            writer.write_table(pa.Table.from_pylist(batch, schema=SCHEMA))
            written += len(batch)
    finally:
        if writer is not None:
            writer.close()
            handle.close()
    return written


def ingest_unit(row: dict[str, Any], cfg: IngestConfig, docs_dir: str) -> dict[str, Any]:
    """One Ray task: the unit's files → ``part-NNNNN.parquet``; returns the unit's counts."""
    import ray

    stats = StageStats("ingest")
    files = json.loads(row["files"])
    docs = (doc for path in files for doc in iter_file_documents(path, cfg, stats))
    part = storage.join(docs_dir, f"part-{int(row['unit']):05d}.parquet")
    with stats.timer("ingest"):
        write_documents(docs, part, cfg.batch_size)
    task = ray.get_runtime_context().get_task_id()
    return {"unit": row["unit"], "task": task, "stats": json.dumps(stats.to_dict())}


def plan_units(files: list[str], task_bytes: int) -> list[list[str]]:
    """Work units: each archive alone (one file per task), small files grouped by size."""
    units: list[list[str]] = []
    group: list[str] = []
    group_bytes = 0
    for path in files:
        if input_format(path) not in ("text", "code"):
            units.append([path])
            continue
        size = _size(path)
        if group and group_bytes + size > task_bytes:
            units.append(group)
            group, group_bytes = [], 0
        group.append(path)
        group_bytes += size
    if group:
        units.append(group)
    return units


def _size(path: str) -> int:
    fs, fs_path = storage.filesystem(path)
    try:
        return int(fs.size(fs_path) or 0)
    except Exception:  # unknown size (some HTTP servers): the file still gets read
        return 0


def run(cfg: NatalConfig, inputs: list[str], output: str) -> dict[str, Any]:
    """Ingest ``inputs`` into ``output/documents/*.parquet`` and ``output/stats.json``."""
    from cluster.resources import data_task_resources
    from cluster.runtime import ensure_ray

    icfg = cfg.data.ingest
    stats = StageStats("ingest")
    with stats.timer("plan"):
        files = storage.expand_inputs(inputs, suffixes=SUPPORTED_SUFFIXES)
        supported = [path for path in files if input_format(path)]
        for path in files:
            if not input_format(path):
                skip(stats, "unsupported_format")
        if not supported:
            raise InputError(
                f"{' '.join(inputs)}: no file to ingest (WARC/WET, JSONL, Parquet, tar, text, "
                "source code)"
            )
        units = plan_units(supported, icfg.task_bytes)
    docs_dir = storage.join(output, "documents")
    storage.ensure_dir(output)
    storage.remove_tree(docs_dir)
    storage.ensure_dir(docs_dir)

    ensure_ray(cfg.runtime)
    import ray

    items = [{"unit": i, "files": json.dumps(unit)} for i, unit in enumerate(units)]
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map(
        ingest_unit, fn_kwargs={"cfg": icfg, "docs_dir": docs_dir}, **data_task_resources(cfg)
    )
    with stats.timer("ingest_wall"):
        results = dataset.take_all()
    for result in results:
        stats.merge(json.loads(result["stats"]))
    for key in COUNTS:
        stats.counts.setdefault(key, 0)
    if stats.counts["documents"] == 0:  # readers of the output still find the schema
        empty = storage.join(docs_dir, "part-00000.parquet")
        fs, path = storage.filesystem(empty)
        with fs.open(path, "wb") as handle:
            pq.write_table(SCHEMA.empty_table(), handle)
    stats.extra.update(
        {key: stats.counts[key] for key in ("records_read", "documents", "errors")},
        input_files=len(supported),
        tasks=len(units),
        ray_tasks=len({result["task"] for result in results}),
        extractor=icfg.extractor,
        output=docs_dir,
    )
    stats.write(output)
    return stats.to_dict()

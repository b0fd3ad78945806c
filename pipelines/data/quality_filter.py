"""``natal filter``: documents → ``documents/`` (kept), ``removed/`` (+ ``reason``, ``value``),
``stats.json`` and ``removals.png``.

The rules live in :mod:`pipelines.data.filters` (pure); this module only distributes them: one Ray
Data task per input Parquet file streams it in batches through
:class:`~pipelines.data.filters.chain.FilterChain`, writes ``part-NNNNN.parquet`` into both output
directories (named by the input's position, so a retried task overwrites its own parts) and
returns only its counts. No document passes through the driver.
"""

from __future__ import annotations

import io
import json
import os
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cluster.config import FilterConfig, NatalConfig
from cluster.config.errors import InputError
from pipelines.data import storage
from pipelines.data.filters.chain import FilterChain, count_outcomes, split_annotated
from pipelines.data.stats import StageStats

BATCH_SIZE = 256  # documents per batch: big enough to amortize, small for memory


def readable_parquet(files: list[str], stats: StageStats) -> list[str]:
    """The files whose Parquet footer reads and that have a ``text`` column.

    Unreadable files are counted in ``errors_by_kind`` and skipped; a file without ``text``
    is an input error (it is not a documents file).
    """
    good: list[str] = []
    for path in files:
        fs, fs_path = storage.filesystem(path)
        try:
            with fs.open(fs_path, "rb") as handle:
                schema = pq.read_schema(handle)
        except Exception as exc:  # truncated or non-Parquet file: count it, go on
            stats.add("errors")
            stats.add_to("errors_by_kind", f"unreadable_parquet:{type(exc).__name__}")
            continue
        if "text" not in schema.names:
            raise InputError(f"{path}: no 'text' column (columns: {', '.join(schema.names)})")
        good.append(path)
    return good


def outside(files: list[str], output: str) -> list[str]:
    """The files not under ``output``: a previous run's output is never read as input."""

    def key(path: str) -> str:
        return path if "://" in path else os.path.abspath(path)

    prefix = key(output).rstrip("/") + "/"
    return [path for path in files if not key(path).startswith(prefix)]


@lru_cache(maxsize=2)
def _chain(cfg_json: str, min_words: int) -> FilterChain:
    """One chain per worker process and config (blocklists are read once)."""
    return FilterChain(FilterConfig.model_validate_json(cfg_json), min_words)


class _PartWriter:
    """A Parquet part opened on the first batch (its schema), always closed with a file."""

    def __init__(self, path: str):
        self.path = path
        self.writer: pq.ParquetWriter | None = None
        self.handle: Any = None

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            fs, fs_path = storage.filesystem(self.path)
            self.handle = fs.open(fs_path, "wb")
            self.writer = pq.ParquetWriter(self.handle, table.schema)
        self.writer.write_table(table.cast(self.writer.schema))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.handle.close()


def filter_file(
    path: str, part: str, chain: FilterChain, docs_dir: str, removed_dir: str, stats: StageStats
) -> None:
    """Filter one documents Parquet file into ``docs_dir/part`` and ``removed_dir/part``.

    A file that breaks part-way is counted in ``errors_by_kind``; what was read before the
    break is written.
    """
    kept_out = _PartWriter(storage.join(docs_dir, part))
    removed_out = _PartWriter(storage.join(removed_dir, part))
    fs, fs_path = storage.filesystem(path)
    try:
        with fs.open(fs_path, "rb") as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=BATCH_SIZE):
                with stats.timer("filter"):
                    annotated = chain.annotate(pa.Table.from_batches([batch]))
                count_outcomes(annotated, stats)
                kept, removed = split_annotated(annotated)
                with stats.timer("write"):
                    kept_out.write(kept)
                    removed_out.write(removed)
    except Exception as exc:  # a corrupt row group: count it, keep what was written
        stats.add("errors")
        stats.add_to("errors_by_kind", f"read:{type(exc).__name__}")
    finally:
        kept_out.close()
        removed_out.close()


def write_empty_parts(example: str, output: str, chain: FilterChain) -> None:
    """An output directory left without a part (nothing kept, or nothing removed) gets an
    empty one with the right columns, so that readers of the directory still find a schema."""
    fs, fs_path = storage.filesystem(example)
    with fs.open(fs_path, "rb") as handle:
        empty = pq.read_schema(handle).empty_table()
    for directory, table in zip(
        ("documents", "removed"), split_annotated(chain.annotate(empty)), strict=True
    ):
        out_fs, out_path = storage.filesystem(storage.join(output, directory))
        if not out_fs.ls(out_path):
            with out_fs.open(storage.join(out_path, "part-00000.parquet"), "wb") as handle:
                pq.write_table(table, handle)


def filter_task(row: dict[str, Any], cfg_json: str, min_words: int, output: str) -> dict:
    """Ray Data task: one input file → its two parts; returns the counts as JSON."""
    stats = StageStats("filter")
    filter_file(
        row["path"],
        f"part-{row['index']:05d}.parquet",
        _chain(cfg_json, min_words),
        storage.join(output, "documents"),
        storage.join(output, "removed"),
        stats,
    )
    return {"stats": json.dumps(stats.to_dict())}


def plot_removals(stats: dict[str, Any], path: str) -> None:
    """A horizontal bar chart of removed documents by reason, written as PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    reasons = stats.get("breakdown", {}).get("removed_by_reason", {})
    items = sorted(reasons.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.32 * max(len(items), 1)))
    if items:
        labels, counts = zip(*items, strict=True)
        bars = ax.barh(labels, counts, color="#c0504d")
        ax.bar_label(bars, padding=3, fontsize=8)
    else:
        ax.text(0.5, 0.5, "no document removed", ha="center", va="center")
    counts_total = stats.get("counts", {})
    ax.set_title(
        f"natal filter: {counts_total.get('removed', 0):,} of "
        f"{counts_total.get('documents_in', 0):,} documents removed, by reason"
    )
    ax.set_xlabel("documents")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    fs, fs_path = storage.filesystem(path)
    with fs.open(fs_path, "wb") as handle:
        handle.write(buffer.getvalue())


def run(cfg: NatalConfig, input: str, output: str) -> dict[str, Any]:
    """Filter the documents under ``input`` into ``output``; a rerun replaces the output."""
    from cluster.resources import data_task_resources
    from cluster.runtime import ensure_ray

    stats = StageStats("filter")
    with stats.timer("plan"):
        found = storage.expand_inputs([input], suffixes=(".parquet",))
        files = readable_parquet(outside(found, output), stats)
        if not files:
            raise InputError(f"{input}: no readable documents Parquet file")
    for directory in ("documents", "removed"):
        storage.remove_tree(storage.join(output, directory))
        storage.ensure_dir(storage.join(output, directory))

    ensure_ray(cfg.runtime)
    import ray

    items = [{"index": i, "path": path} for i, path in enumerate(files)]
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map(
        filter_task,
        fn_kwargs={
            "cfg_json": cfg.data.filter.model_dump_json(),
            "min_words": cfg.data.min_words,
            "output": output,
        },
        **data_task_resources(cfg),
    )
    with stats.timer("wall"):
        for result in dataset.take_all():
            stats.merge(json.loads(result["stats"]))
    write_empty_parts(files[0], output, _chain(cfg.data.filter.model_dump_json(), 0))
    for key in ("documents_in", "kept", "removed", "errors"):
        stats.counts.setdefault(key, 0)
    stats.extra.update(
        input_files=len(files),
        documents=storage.join(output, "documents"),
        removed=storage.join(output, "removed"),
    )
    result = stats.to_dict()
    stats.write(output)
    plot_removals(result, storage.join(output, "removals.png"))
    return result

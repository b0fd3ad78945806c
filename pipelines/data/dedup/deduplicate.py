"""``natal dedup`` on Ray: read → sign → bucket → verify → components → decide → write.

The band buckets become candidate edges through a Ray Data groupby (the biggest shuffle: one
row per document and band). The later steps (signature join, connected-component rounds,
decide) are hash-partitioned shuffles run as plain Ray tasks: each task returns its output
already split into one object per next-step partition, so no process ever holds all
documents, edges or labels (docs/dedup-at-scale.md); components need several rounds, and a
task round costs milliseconds where a Ray Data shuffle has a fixed start cost. The document
texts are read twice (sign, then write) and never shuffled; only keys, hashes and, with
verification, signatures move.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cluster.config import DedupConfig, NatalConfig, dump_config
from cluster.config.errors import ConfigError, InputError
from pipelines.data import storage
from pipelines.data.dedup import shuffle
from pipelines.data.dedup.exact import exact_hashes
from pipelines.data.dedup.lsh import optimal_params
from pipelines.data.dedup.minhash import permutations, signatures
from pipelines.data.dedup.reader import (
    Unit,
    document_columns,
    document_files,
    plan_units,
    read_unit,
    write_parquet,
)
from pipelines.data.stats import StageStats

WORD_HASH = "fnv1a64-fmix"  # how words are hashed: signatures of another scheme do not compare


def resolve_params(cfg: DedupConfig, partitions: int) -> shuffle.Params:
    """Bands × rows from the config, derived from the threshold when not given."""
    bands, rows = cfg.bands, cfg.rows
    if bands is None and rows is None:
        fn = cfg.false_negative_weight
        bands, rows = optimal_params(cfg.threshold, cfg.num_perm, 1.0 - fn, fn)
    elif bands is None:
        bands = max(1, cfg.num_perm // rows)
    elif rows is None:
        rows = max(1, cfg.num_perm // bands)
    if bands * rows > cfg.num_perm:
        raise ConfigError(
            f"data.dedup: {bands} bands × {rows} rows need {bands * rows} permutations, "
            f"num_perm is {cfg.num_perm}"
        )
    return shuffle.Params(
        ngram=cfg.ngram,
        num_perm=cfg.num_perm,
        bands=bands,
        rows=rows,
        seed=cfg.seed,
        partitions=partitions,
        verify=cfg.verify,
        verify_cut=max(0.0, cfg.threshold - cfg.verify_margin),
        keep=cfg.keep,
    )


def _index_params(params: shuffle.Params) -> dict[str, int | str]:
    """What must match for signatures of two runs to be comparable."""
    return {
        "ngram": params.ngram,
        "num_perm": params.num_perm,
        "seed": params.seed,
        "word_hash": WORD_HASH,
    }


# --- task bodies (run on Ray workers) -------------------------------------------------------


def _sign(params: shuffle.Params, unit: Unit, output: str) -> list:
    rows = read_unit(unit)
    ok = rows.status == ""
    table = rows.table.filter(pa.array(ok))
    texts = table.column("text").to_pylist()
    a, b = permutations(params.num_perm, params.seed)
    sig = signatures(table.column("text").combine_chunks(), params.ngram, a, b)
    meta = shuffle.meta_columns(
        rows.keys[ok],
        table.column("id").to_pylist(),
        [len(t) for t in texts],
        exact_hashes(texts),
        sig,
        earlier=False,
    )
    _write_index(output, unit.index, meta)
    stats = {
        "counts": {"input": int(len(ok)), "valid": int(ok.sum())},
        "problems": rows.problems,
        "errors": rows.errors,
    }
    return shuffle.route(meta, params) + [stats]


def _write_index(output: str, unit_index: int, meta: dict[str, np.ndarray]) -> None:
    k = meta["sig"].shape[1]
    table = pa.table(
        {
            "key": meta["key"],
            "id": pa.array(meta["id"].tolist(), pa.string()),
            "len": meta["len"],
            "exact": meta["exact"],
            "sig": pa.FixedSizeListArray.from_arrays(pa.array(meta["sig"].ravel()), k),
        }
    )
    write_parquet(storage.join(output, "index", f"unit-{unit_index:06d}.parquet"), table)


def _load_index(params: shuffle.Params, path: str, source: int) -> list:
    """A previous run's kept documents, as earlier (never removed) members of this run."""
    fs, local = storage.filesystem(path)
    with fs.open(local, "rb") as fh:
        table = pq.read_table(fh)
    keys = table.column("key").to_numpy().astype(np.int64) | np.int64(source << 56)
    k = params.num_perm
    sig = table.column("sig").combine_chunks().flatten().to_numpy().reshape(-1, k)
    meta = shuffle.meta_columns(
        keys,
        table.column("id").to_pylist(),
        table.column("len").to_numpy(),
        table.column("exact").to_numpy(),
        sig.astype(np.uint32),
        earlier=True,
    )
    return shuffle.route(meta, params) + [{"counts": {"earlier": len(keys)}}]


def _write(params: shuffle.Params, output: str, units: list[Unit], *parts: dict) -> dict:
    removed = shuffle.concat(parts)
    reasons = dict(zip(removed.get("key", []), removed.get("reason", []), strict=True))
    stats = StageStats("dedup")
    for unit in units:
        rows = read_unit(unit)
        reason = np.array(
            [
                status or reasons.get(int(key), "")
                for key, status in zip(rows.keys, rows.status, strict=True)
            ],
            dtype=object,
        )
        keep = reason == ""
        docs = document_columns(rows.table)
        name = f"part-{unit.index:06d}.parquet"
        write_parquet(storage.join(output, "documents", name), docs.filter(pa.array(keep)))
        if not keep.all():
            gone = docs.filter(pa.array(~keep))
            gone = gone.append_column("reason", pa.array(reason[~keep].tolist(), pa.string()))
            write_parquet(storage.join(output, "removed", name), gone)
        _prune_index(output, unit.index, set(rows.keys[keep].tolist()))
        stats.add("kept", int(keep.sum()))
        for r in reason[~keep]:
            stats.add_to("removed_by_reason", r.split("=", 1)[0])
    return stats.to_dict()


def _prune_index(output: str, unit_index: int, kept: set[int]) -> None:
    """Keep only admitted documents in the index that a later ``--against`` reads."""
    path = storage.join(output, "index", f"unit-{unit_index:06d}.parquet")
    fs, local = storage.filesystem(path)
    if not fs.exists(local):
        return
    with fs.open(local, "rb") as fh:
        table = pq.read_table(fh)
    mask = np.isin(table.column("key").to_numpy(), np.fromiter(kept, np.int64, len(kept)))
    write_parquet(path, table.filter(pa.array(mask)))


# --- the driver -----------------------------------------------------------------------------


def run(
    cfg: NatalConfig, inputs: list[str], output: str, against: str | list[str] | None = None
) -> dict[str, Any]:
    """Deduplicate documents: DIR/documents, DIR/removed, DIR/clusters.parquet, DIR/index."""
    from cluster.resources import data_task_resources
    from cluster.runtime import ensure_ray
    from pipelines.data.dedup.driver import Driver

    against_dirs = [against] if isinstance(against, str) else list(against or [])
    if any(a.rstrip("/") == output.rstrip("/") for a in against_dirs):
        raise ConfigError("--against must name an earlier run's directory, not --output")
    units, problems, errors = plan_units(document_files(inputs))
    indexes = [_index_files(d) for d in against_dirs]
    ensure_ray(cfg.runtime)
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    params = resolve_params(cfg.data.dedup, cfg.data.dedup.partitions or max(2, 2 * cpus))
    for directory in against_dirs:
        _check_index_params(directory, params)
    for sub in (
        "documents",
        "removed",
        "index",
        "clusters.parquet",
        "stats.json",
        "cluster_sizes.png",
    ):
        storage.remove_tree(storage.join(output, sub))
    storage.ensure_dir(output)
    storage.write_text(storage.join(output, "config.yaml"), dump_config(cfg))
    storage.write_text(
        storage.join(output, "index", "params.json"), json.dumps(_index_params(params)) + "\n"
    )
    started = time.perf_counter()
    driver = Driver(params, output, data_task_resources(cfg))
    stats = driver.run(units, indexes, _sign, _load_index, _write)
    for kind, n in problems.items():
        stats.add_to("problems", kind, n)
    stats.extra["errors"] = errors + stats.extra.get("errors", [])
    stats.extra["seconds_total"] = round(time.perf_counter() - started, 3)
    stats.extra["bands_rows"] = f"{params.bands}x{params.rows}"
    stats.write(output)
    _plot_cluster_sizes(stats.breakdown.get("cluster_sizes", {}), output)
    return stats.to_dict()


def _plot_cluster_sizes(sizes: dict[str, int], output: str) -> None:
    """DIR/cluster_sizes.png: how many duplicate clusters of each size (log scale)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    pairs = sorted((int(k), n) for k, n in sizes.items())
    ax.bar([k for k, _ in pairs], [n for _, n in pairs], color="#4477aa")
    ax.set_yscale("log" if pairs else "linear")
    ax.set_xlabel("documents in the cluster")
    ax.set_ylabel("clusters")
    ax.set_title(f"{sum(sizes.values()):,} duplicate clusters")
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    fs, local = storage.filesystem(storage.join(output, "cluster_sizes.png"))
    with fs.open(local, "wb") as fh:
        fh.write(buffer.getvalue())


def _index_files(directory: str) -> list[str]:
    try:
        return storage.expand_inputs([storage.join(directory, "index")], suffixes=(".parquet",))
    except InputError:
        raise InputError(f"--against {directory}: no index/ of an earlier dedup run") from None


def _check_index_params(directory: str, params: shuffle.Params) -> None:
    try:
        saved = json.loads(storage.read_text(storage.join(directory, "index", "params.json")))
    except (OSError, ValueError) as exc:
        raise InputError(f"--against {directory}: unreadable index/params.json ({exc})") from None
    if saved != _index_params(params):
        raise ConfigError(
            f"--against {directory}: its signatures used {saved}, this run {_index_params(params)}"
        )

"""``natal decontaminate``: remove (or flag) documents that overlap evaluation sets.

The eval n-grams are small (a few MB for GSM8K + HumanEval + MT-Bench), so they are put in
the object store once and every read unit is checked by one Ray task.
"""

from __future__ import annotations

import json
import posixpath
import time
from typing import Any

import numpy as np
import pyarrow as pa

from cluster.config import NatalConfig, dump_config
from cluster.errors import InputError
from pipelines import storage
from pipelines.dedup.decontaminate import EvalNgrams, strings_in
from pipelines.dedup.reader import (
    Unit,
    document_columns,
    document_files,
    plan_units,
    read_unit,
    write_parquet,
)
from pipelines.stats import StageStats


def load_eval_sets(paths: list[str], ngram: int) -> EvalNgrams:
    """Every string of every JSONL record of the eval files, by file name."""
    texts_by_set: dict[str, list[str]] = {}
    for path in storage.expand_inputs(paths, suffixes=(".jsonl", ".json")):
        fs, local = storage.filesystem(path)
        texts: list[str] = []
        with fs.open(local, "rt", compression="infer", encoding="utf-8", errors="replace") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    texts.extend(strings_in(json.loads(line)))
                except ValueError as exc:
                    raise InputError(f"{path}: line {line_no}: not JSON ({exc})") from None
        if not texts:
            raise InputError(f"{path}: no text in this eval file")
        texts_by_set[posixpath.basename(path)] = texts
    return EvalNgrams(texts_by_set, ngram)


def check_unit(unit: Unit, ngrams: EvalNgrams, output: str, mode: str) -> dict:
    rows = read_unit(unit)
    ok = rows.status == ""
    texts = rows.table.column("text").to_pylist()
    matched = ngrams.match([t if o else "" for t, o in zip(texts, ok, strict=True)])
    reasons = np.array(
        [
            status or (f"contaminated={m}" if m else "")
            for status, m in zip(rows.status, matched, strict=True)
        ],
        dtype=object,
    )
    docs = document_columns(rows.table)
    flagged = np.array([bool(m) for m in matched])
    keep = (reasons == "") | (flagged & (mode == "flag"))
    if mode == "flag":
        docs = docs.append_column(
            "contaminated", pa.array([m or None for m in matched], pa.string())
        )
    name = f"part-{unit.index:06d}.parquet"
    write_parquet(storage.join(output, "documents", name), docs.filter(pa.array(keep)))
    if not keep.all():
        gone = docs.filter(pa.array(~keep))
        gone = gone.append_column("reason", pa.array(reasons[~keep].tolist(), pa.string()))
        write_parquet(storage.join(output, "removed", name), gone)
    stats = StageStats("decontaminate")
    stats.add("input", len(ok))
    stats.add("kept", int(keep.sum()))
    stats.add("contaminated", int(flagged.sum()))
    for m in matched:
        if m:
            stats.add_to("contaminated_by_eval_set", m)
    for reason, n in rows.problems.items():
        stats.add_to("problems", reason, n)
    return stats.to_dict()


def run_decontaminate(
    cfg: NatalConfig, inputs: list[str], output: str, eval_files: list[str]
) -> dict[str, Any]:
    """Write DIR/documents (clean or flagged), DIR/removed (reason), DIR/stats.json."""
    import ray

    from cluster.resources import data_task_resources
    from cluster.runtime import ensure_ray
    from pipelines.dedup.driver import gather

    dcfg = cfg.data.decontaminate
    units, problems, errors = plan_units(document_files(inputs))
    stats = StageStats("decontaminate")
    for kind, n in problems.items():
        stats.add_to("problems", kind, n)
    stats.extra["errors"] = errors
    with stats.timer("load_eval"):
        ngrams = load_eval_sets(eval_files, dcfg.ngram)
    stats.extra["eval_ngrams"] = len(ngrams)
    for sub in ("documents", "removed", "stats.json"):
        storage.remove_tree(storage.join(output, sub))
    storage.ensure_dir(output)
    storage.write_text(storage.join(output, "config.yaml"), dump_config(cfg))
    ensure_ray(cfg.runtime)
    started = time.perf_counter()
    with stats.timer("check_write"):
        ref = ray.put(ngrams)
        task = ray.remote(check_unit).options(**data_task_resources(cfg))
        refs = [task.remote(u, ref, output, dcfg.mode) for u in units]
        for result in gather(refs, "decontaminate"):
            stats.merge(result)
    stats.extra["seconds_total"] = round(time.perf_counter() - started, 3)
    stats.write(output)
    return stats.to_dict()

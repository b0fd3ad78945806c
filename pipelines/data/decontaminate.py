"""``natal decontaminate``: remove (or flag) documents that overlap evaluation sets.

Evaluation texts and documents are shingled exactly like MinHash shingles (lower-cased words,
64-bit n-gram hashes, :mod:`pipelines.data.dedup.minhash`), with ``n`` = 13 by default (GPT-3's
rule); a document is contaminated if any of its n-grams is an eval n-gram. An eval text shorter
than ``n`` words is one n-gram: it matches documents that are exactly it. :class:`EvalNgrams`
is the pure part; the eval n-grams are small (a few MB for GSM8K + HumanEval + MT-Bench), so
they are put in the object store once and every read unit is checked by one Ray task.
"""

from __future__ import annotations

import json
import posixpath
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from cluster.config import NatalConfig, dump_config
from cluster.config.errors import InputError
from pipelines.data import storage
from pipelines.data.dedup.minhash import shingle_hashes
from pipelines.data.dedup.reader import (
    Unit,
    document_columns,
    document_files,
    plan_units,
    read_unit,
    write_parquet,
)
from pipelines.data.stats import StageStats


def strings_in(record: Any) -> Iterator[str]:
    """Every string value in a JSON record, nested lists and objects included."""
    if isinstance(record, str):
        yield record
    elif isinstance(record, dict):
        for value in record.values():
            yield from strings_in(value)
    elif isinstance(record, list):
        for value in record:
            yield from strings_in(value)


class EvalNgrams:
    """Sorted n-gram hashes of evaluation texts, with the eval set each came from."""

    def __init__(self, texts_by_set: dict[str, Sequence[str]], ngram: int) -> None:
        self.ngram = ngram
        self.names = list(texts_by_set)
        hashes, owners = [], []
        for index, texts in enumerate(texts_by_set.values()):
            h, _ = shingle_hashes(list(texts), ngram)
            hashes.append(h)
            owners.append(np.full(len(h), index, dtype=np.int32))
        all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        all_owners = np.concatenate(owners) if owners else np.zeros(0, np.int32)
        order = np.argsort(all_hashes, kind="stable")
        self.hashes, self.owners = all_hashes[order], all_owners[order]

    def __len__(self) -> int:
        return len(self.hashes)

    def match(self, texts: Sequence[str]) -> list[str]:
        """Per text: the name of the first eval set it shares an n-gram with, or ``""``."""
        hashes, offsets = shingle_hashes(list(texts), self.ngram)
        result = [""] * len(texts)
        if len(self.hashes) == 0 or len(hashes) == 0:
            return result
        at = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        hit = self.hashes[at] == hashes
        doc_of = np.repeat(np.arange(len(texts)), np.diff(offsets))
        for doc, owner in zip(doc_of[hit], self.owners[at[hit]], strict=True):
            if not result[doc]:
                result[doc] = self.names[owner]
        return result


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
    from pipelines.data.dedup.driver import gather

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

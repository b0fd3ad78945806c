"""Dedup speed, memory and quality: natal vs datatrove's MinHash pipeline vs datasketch.

One run generates N ~1 KB documents with planted near-duplicates (pipelines.data.dedup.synthetic),
writes them as JSONL files, then runs each system in its own child process on the same files,
sampling the child's whole process tree (Ray's raylet and workers included) for peak RSS.
All use 5-word shingles and 14 bands × 8 rows (112 hashes). Quality is measured against the
exact Jaccard of every planted pair (recall at J ≥ 0.8; contamination: clustered pairs with
J < 0.6). On a shared machine the figures are noisy: compare systems within one run.

    .venv/bin/python benchmarks/dedup.py --n 200000
    .venv/bin/python benchmarks/dedup.py --n 50000 200000 1000000 --systems natal --no-quality
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines.data.dedup.synthetic import make_corpus, pair_quality, vocabulary  # noqa: E402

SHARED_TEXT = ROOT.parent / "shared" / "data" / "pretrain-text"
THRESHOLD, NGRAM, BANDS, ROWS = 0.8, 5, 14, 8


# --- the systems, each run in a child process: `dedup.py --system NAME INPUT OUTPUT` ----------


def run_natal(input_dir: str, output: str) -> dict:
    from cluster.config import load_config
    from pipelines.data.dedup.deduplicate import run

    cfg = load_config(values={"runtime.num_cpus": 2})
    stats = run(cfg, [input_dir], output)
    import pyarrow.parquet as pq

    clusters = pq.read_table(Path(output) / "clusters.parquet").to_pydict()
    return {
        "seconds": stats["seconds"],
        "clusters": dict(zip(clusters["id"], clusters["cluster"], strict=True)),
    }


def run_datatrove(input_dir: str, output: str) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.word_tokenizers import WordTokenizer

    from pipelines.data.dedup.exact import words

    _encode_for_new_xxhash()

    class RegexWords(WordTokenizer):
        """natal's word split instead of spaCy's (not installed): same shingles, and faster
        than datatrove's default English tokenizer, so the comparison favours datatrove."""

        def word_tokenize(self, text: str) -> list[str]:
            return words(text)

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    config = MinhashConfig(
        n_grams=NGRAM,
        num_buckets=BANDS,
        hashes_per_bucket=ROWS,
        hash_config=HashConfig(precision=64),
    )
    files = len(list(Path(input_dir).glob("*.jsonl")))
    out = Path(output)
    common = {"logging_dir": None, "skip_completed": False}
    seconds = {}
    stages = [
        (
            "signatures",
            [
                JsonlReader(input_dir),
                MinhashDedupSignature(str(out / "sigs"), config=config, language=RegexWords("en")),
            ],
            files,
        ),
        (
            "buckets",
            [MinhashDedupBuckets(str(out / "sigs"), str(out / "buckets"), config=config)],
            BANDS,
        ),
        (
            "cluster",
            [
                MinhashDedupCluster(
                    str(out / "buckets"), str(out / "remove"), config=config, save_cluster_id=True
                )
            ],
            1,
        ),
        (
            "filter",
            [
                JsonlReader(input_dir),
                MinhashDedupFilter(
                    str(out / "remove"),
                    exclusion_writer=JsonlWriter(str(out / "removed")),
                    load_cluster_ids=True,
                ),
                JsonlWriter(str(out / "kept")),
            ],
            files,
        ),
    ]
    for name, pipeline, tasks in stages:
        start = time.perf_counter()
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=2, **common).run()
        seconds[name] = round(time.perf_counter() - start, 2)
    clusters = {}
    import gzip

    for path in list((out / "kept").glob("*")) + list((out / "removed").glob("*")):
        with gzip.open(path, "rt") as fh:
            for line in fh:
                doc = json.loads(line)
                cluster = doc["metadata"].get("minhash_cluster_id", -1)
                if cluster != -1:
                    clusters[doc["id"]] = cluster
    return {"seconds": seconds, "clusters": clusters}


def _encode_for_new_xxhash() -> None:
    """datatrove 0.10.1 hands str to xxhash, which xxhash 4.x refuses: encode first (this
    keeps datatrove on its default, fast xxhash path rather than the slower sha1 one)."""
    import xxhash
    from datatrove.utils.hashes import xxhash as dt_xxhash

    dt_xxhash.xxhash32 = lambda data: xxhash.xxh32_intdigest(
        data.encode() if isinstance(data, str) else data
    )
    dt_xxhash.xxhash64 = lambda data: xxhash.xxh64_intdigest(
        data.encode() if isinstance(data, str) else data
    )


def run_datasketch(input_dir: str, output: str) -> dict:
    from datasketch import MinHash, MinHashLSH

    from pipelines.data.dedup.components import reference_components
    from pipelines.data.dedup.synthetic import shingles

    seconds = {}
    start = time.perf_counter()
    ids, sets = [], []
    for path in sorted(Path(input_dir).glob("*.jsonl")):
        for line in path.open():
            doc = json.loads(line)
            ids.append(doc["id"])
            sets.append([" ".join(s).encode() for s in shingles(doc["text"], NGRAM)])
    seconds["read"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    sigs = MinHash.bulk(sets, num_perm=BANDS * ROWS)
    seconds["signatures"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    lsh = MinHashLSH(num_perm=BANDS * ROWS, params=(BANDS, ROWS))
    u, v = [], []
    for i, sig in enumerate(sigs):
        for j in lsh.query(sig):
            u.append(i)
            v.append(j)
        lsh.insert(i, sig)
    labels = reference_components(u, v)
    seconds["lsh_cluster"] = round(time.perf_counter() - start, 2)
    return {"seconds": seconds, "clusters": {ids[i]: c for i, c in labels.items()}}


SYSTEMS = {"natal": run_natal, "datatrove": run_datatrove, "datasketch": run_datasketch}


# --- the parent: generate, run each child, sample memory, score ------------------------------


def generate(n: int, folder: Path, docs_per_file: int = 12_500) -> tuple[list[dict], np.ndarray]:
    """JSONL files of at most ``docs_per_file`` documents (≥ 4 files): a bigger N means more
    files, not bigger ones, as in a real crawl, so per-task memory stays flat."""
    docs, family = make_corpus(n, vocabulary(SHARED_TEXT), seed=n, words_per_doc=200)
    files = max(4, -(-n // docs_per_file))
    folder.mkdir(parents=True, exist_ok=True)
    handles = [open(folder / f"part-{k:03d}.jsonl", "w") for k in range(files)]
    for i, doc in enumerate(docs):
        handles[i % files].write(json.dumps(doc) + "\n")
    for h in handles:
        h.close()
    return docs, family


def measure(system: str, input_dir: Path, work: Path) -> dict:
    """Run one system in a child process; wall time and peak RSS of its process tree."""
    out = work / f"out-{system}"
    result_file = work / f"result-{system}.json"
    cmd = [sys.executable, __file__, "--system", system, str(input_dir), str(out), str(result_file)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    child = psutil.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while child.poll() is None:
        try:
            procs = [child, *child.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    wall = time.perf_counter() - start
    if child.returncode != 0:
        raise RuntimeError(f"{system} failed:\n{child.stderr.read().decode()[-3000:]}")
    result = json.loads(result_file.read_text())
    return {"wall_s": wall, "peak_rss_gb": peak / 2**30, **result}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[200_000], help="corpus sizes")
    parser.add_argument("--systems", default="natal,datatrove,datasketch")
    parser.add_argument("--no-quality", action="store_true", help="skip the exact-Jaccard scoring")
    parser.add_argument(
        "--workdir", default=None, help="where corpora and outputs go (default: tmp)"
    )
    parser.add_argument("--system", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.system:
        name, input_dir, output, result_file = args.system
        Path(result_file).write_text(json.dumps(SYSTEMS[name](input_dir, output)))
        return
    work_root = Path(args.workdir or tempfile.mkdtemp(prefix="natal-bench-dedup-"))
    rows = []
    for n in args.n:
        work = work_root / f"n{n}"
        start = time.perf_counter()
        docs, family = generate(n, work / "input")
        print(f"N={n:,}: corpus generated in {time.perf_counter() - start:.0f} s", flush=True)
        for system in args.systems.split(","):
            r = measure(system, work / "input", work)
            row = {"n": n, "system": system, "docs_per_s": n / r["wall_s"], **r}
            if not args.no_quality:
                row.update(pair_quality(docs, family, r["clusters"], THRESHOLD, NGRAM))
            del row["clusters"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(
        f"{'N':>9} {'system':<11} {'docs/s':>8} {'wall s':>7} {'peak GB':>8} {'recall':>7} "
        f"{'prec.':>6} {'J<0.6':>6}  seconds per stage"
    )
    for r in rows:
        quality = (
            f"{r['recall']:7.3f} {r['precision']:6.3f} {r['low_fraction']:6.3f}"
            if "recall" in r
            else " " * 22
        )
        print(
            f"{r['n']:>9,} {r['system']:<11} {r['docs_per_s']:8.0f} {r['wall_s']:7.1f} "
            f"{r['peak_rss_gb']:8.2f} {quality}  {r['seconds']}"
        )


if __name__ == "__main__":
    main()

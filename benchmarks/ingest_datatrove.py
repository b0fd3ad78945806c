"""datatrove's side of ``benchmarks/ingest.py``; runs in its own venv (``.bench-venv``).

datatrove 0.10's processing extra pins trafilatura < 1.12, which conflicts with natal's
trafilatura 2.3, so it lives in a venv of its own: ``make bench-venv`` builds it.

Two commands, each printing one JSON line:
- ``pipeline DIR OUT --workers N``: WarcReader → Trafilatura → language (py3langid, as natal)
  → Gopher repetition → Gopher quality → C4 → FineWeb → PII → ParquetWriter.
- ``extract PAGES.jsonl TEXTS.jsonl``: the same Trafilatura step on pages, for F1.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import tempfile
import time

EXTRACT_TIMEOUT_S = 30  # datatrove's default (1 s) drops pages on a loaded 2-core machine


def english(doc) -> bool:
    """The FineWeb language rule (en, score ≥ 0.65) with py3langid, as natal detects it."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = getattr(english, "identifier", None)
    if identifier is None:  # once per worker process
        identifier = english.identifier = LanguageIdentifier.from_model_file(
            MODEL_FILE, norm_probs=True
        )
    lang, score = identifier.classify(doc.text)
    return lang == "en" and score >= 0.65


def run_pipeline(data_dir: str, output: str, workers: int) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LambdaFilter,
    )
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import ParquetWriter

    files = sorted(glob.glob(os.path.join(data_dir, "*.warc.gz")))
    logs = tempfile.mkdtemp(prefix="datatrove-logs-")
    executor = LocalPipelineExecutor(
        pipeline=[
            WarcReader(data_dir, glob_pattern="*.warc.gz"),
            Trafilatura(favour_precision=True, timeout=EXTRACT_TIMEOUT_S),
            LambdaFilter(english),
            GopherRepetitionFilter(),
            GopherQualityFilter(),
            C4QualityFilter(),
            FineWebQualityFilter(char_duplicates_ratio=0.1),  # the FineWeb paper's value
            PIIFormatter(),
            ParquetWriter(output),
        ],
        tasks=len(files),
        workers=workers,
        logging_dir=logs,
        skip_completed=False,
    )
    start = time.perf_counter()
    executor.run()
    seconds = time.perf_counter() - start
    with open(os.path.join(logs, "stats.json")) as handle:
        steps = json.load(handle)
    counts = {}
    for step in steps:
        stats = step.get("stats", {})
        counts[step["name"]] = {
            k: v for k, v in stats.items() if isinstance(v, int | float) and k != "doc_len"
        }
    kept = counts.get(next(n for n in counts if "Parquet" in n), {}).get("total", 0)
    return {"seconds": seconds, "kept": kept, "steps": counts}


def run_extract(pages_path: str, texts_path: str) -> dict:
    from datatrove.pipeline.extractors import Trafilatura

    extractor = Trafilatura(favour_precision=True, timeout=EXTRACT_TIMEOUT_S)
    start = time.perf_counter()
    n = 0
    with open(pages_path) as pages, open(texts_path, "w") as out:
        for line in pages:
            page = json.loads(line)
            out.write(json.dumps({"id": page["id"], "text": extractor.extract(page["html"]) or ""}))
            out.write("\n")
            n += 1
    return {"pages": n, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pipeline = sub.add_parser("pipeline")
    pipeline.add_argument("data_dir")
    pipeline.add_argument("output")
    pipeline.add_argument("--workers", type=int, default=1)
    extract = sub.add_parser("extract")
    extract.add_argument("pages")
    extract.add_argument("texts")
    args = parser.parse_args()
    if args.command == "pipeline":
        result = run_pipeline(args.data_dir, args.output, args.workers)
    else:
        result = run_extract(args.pages, args.texts)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Stages of the data phase: crawl, ingest, filter, dedup, decontaminate."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.commands.base import Command
from cluster.config import NatalConfig

# --- crawl ----------------------------------------------------------------------------------


def _crawl_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", action="append", required=True, metavar="URL", help="start URL")
    p.add_argument("--output", required=True, metavar="DIR", help="where WARC.gz files go")
    p.add_argument("--max-pages", type=int, help="stop after this many pages")
    p.add_argument("--max-depth", type=int, help="links followed from a seed, at most")
    p.add_argument("--rate", type=float, metavar="PER_SECOND", help="requests/s per host")


def _crawl(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.data import crawl

    return crawl.run(cfg, seeds=args.seed, output=args.output)


# --- ingest ---------------------------------------------------------------------------------


def _ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="URI",
        help="WARC/WET(.gz), JSONL(.gz/.zst), Parquet, text/code trees: paths, globs, s3://, http(s)://",
    )
    p.add_argument("--output", required=True, metavar="DIR", help="DIR/documents, DIR/stats.json")
    p.add_argument("--source", help="source tag for the mixture (default: data.ingest.source)")
    p.add_argument("--extractor", choices=["resiliparse", "trafilatura"], help="HTML extractor")


def _ingest(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.data import ingest

    return ingest.run(cfg, inputs=args.input, output=args.output)


# --- filter ---------------------------------------------------------------------------------


def _filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, metavar="DIR_OR_URI", help="documents to filter")
    p.add_argument("--output", required=True, metavar="DIR", help="DIR/documents, DIR/removed")


def _filter(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.data import quality_filter as filter_stage

    return filter_stage.run(cfg, input=args.input, output=args.output)


# --- dedup, decontaminate (pipelines/data/dedup, pipelines/data/decontaminate.py) --------------------------------------------------


def _dedup_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input", nargs="+", required=True, metavar="URI", help="JSONL(.gz) or Parquet documents"
    )
    p.add_argument("--output", required=True, metavar="DIR", help="documents/, removed/, ...")
    p.add_argument("--threshold", type=float, metavar="J", help="Jaccard of near-duplicates")
    p.add_argument("--ngram", type=int, metavar="N", help="words per shingle (default 5)")
    p.add_argument("--num-perm", type=int, metavar="K", help="MinHash permutations (112)")
    p.add_argument(
        "--against", nargs="+", metavar="DIR", help="earlier dedup runs whose kept docs win"
    )


def _dedup(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.data.dedup import deduplicate

    return deduplicate.run(cfg, inputs=args.input, output=args.output, against=args.against)


def _decontaminate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", nargs="+", required=True, metavar="URI", help="training documents")
    p.add_argument("--output", required=True, metavar="DIR", help="documents/, removed/")
    p.add_argument(
        "--eval", nargs="+", required=True, metavar="FILE", help="evaluation sets (JSONL/.gz)"
    )
    p.add_argument("--ngram", type=int, metavar="N", help="words per n-gram (default 13)")
    p.add_argument("--mode", choices=["remove", "flag"], help="remove, or keep with a flag")


def _decontaminate(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.data import decontaminate

    return decontaminate.run_decontaminate(cfg, args.input, args.output, args.eval)


COMMANDS: list[Command] = [
    Command(
        "crawl",
        "fetch pages politely from seed URLs into WARC.gz",
        _crawl_args,
        _crawl,
        description=(
            "Fetch pages from --seed URLs, honouring robots.txt, a per-host rate limit and\n"
            "concurrency cap, with retries; write request+response records as WARC.gz:\n"
            "DIR/crawl-00000.warc.gz, ... (data.crawl.pages_per_warc pages each) and\n"
            "DIR/stats.json. A rerun replaces them. More knobs: --set data.crawl.KEY=VALUE\n"
            "(concurrency_per_host, retries, same_host, user_agent, ...).\n\n"
            "examples:\n  natal crawl --seed http://127.0.0.1:8000/ --output runs/crawl --max-pages 50\n"
            "  python -m pipelines.demo.website    # Python's docs on 127.0.0.1: a site to crawl offline"
        ),
        flags_to_config={
            "max_pages": "data.crawl.max_pages",
            "max_depth": "data.crawl.max_depth",
            "rate": "data.crawl.rate",
        },
    ),
    Command(
        "ingest",
        "crawl archives and corpora → documents (Parquet)",
        _ingest_args,
        _ingest,
        description=(
            "Read WARC/WET/JSONL/Parquet (and text or code trees) with Ray Data, one file per\n"
            "task, extract main text from HTML, write DIR/documents/*.parquet and stats.json.\n"
            "Corrupt records are counted in stats.json and skipped. Each document is tagged\n"
            "with a source (web, text, code; or --source) for the later mixture.\n\n"
            "examples:\n  natal ingest --input 's3://bucket/crawl/*.warc.gz' --output runs/ingest\n"
            "  natal ingest --input papers.tar.gz books/ --source books --output runs/books\n"
            "  natal ingest --input ~/src/project --output runs/code   # one document per file"
        ),
        flags_to_config={"source": "data.ingest.source", "extractor": "data.ingest.extractor"},
    ),
    Command(
        "filter",
        "quality filters: URL, language, Gopher, C4, FineWeb, PII",
        _filter_args,
        _filter,
        description=(
            "Apply the quality rules of data.filter to documents (Parquet, e.g. natal ingest's\n"
            "DIR/documents), in order: URL blocklist, language (py3langid), Gopher repetition\n"
            "and quality, C4, FineWeb; then redact PII (emails, IPs, phones) in kept ones.\n"
            "Kept documents go to DIR/documents, removed ones to DIR/removed with the rule's\n"
            "name in `reason` and its measured `value`; DIR/stats.json counts them by reason,\n"
            "source and language, DIR/removals.png charts them. A rerun replaces DIR.\n"
            "Thresholds default to the published ones (see data.filter in cluster/config/data_sections.py).\n\n"
            "examples:\n"
            "  natal filter --input runs/ingest --output runs/filter --set data.min_words=30\n"
            "  natal filter --input s3://bucket/ingest/documents --output s3://bucket/filter \\\n"
            "      --set 'data.filter.lang.languages=[en,de]' --set data.filter.c4.enabled=false"
        ),
    ),
    Command(
        "dedup",
        "exact + MinHash-LSH fuzzy deduplication",
        _dedup_args,
        _dedup,
        description=(
            "Remove exact (normalized text) and near duplicates (MinHash over word n-grams, LSH\n"
            "bands, verified pairs, distributed connected components); keep one document per\n"
            "cluster (data.dedup.keep, default the longest). Writes DIR/documents, DIR/removed\n"
            "(reason duplicate_of=<kept id>), DIR/clusters.parquet, DIR/index (signatures for\n"
            "--against) and DIR/stats.json. --threshold alone derives bands x rows.\n\n"
            "examples:\n  natal dedup --input runs/filter/documents --output runs/dedup\n"
            "  natal dedup --input crawl2/documents --output runs/dedup2 --against runs/dedup"
        ),
        flags_to_config={
            "threshold": "data.dedup.threshold",
            "ngram": "data.dedup.ngram",
            "num_perm": "data.dedup.num_perm",
        },
    ),
    Command(
        "decontaminate",
        "drop training documents that share long n-grams with evaluation sets",
        _decontaminate_args,
        _decontaminate,
        description=(
            "Remove (or flag) documents sharing a word n-gram (default 13 words) with any text\n"
            "of the --eval files (every string field of each JSONL record). Writes\n"
            "DIR/documents, DIR/removed (reason contaminated=<eval file>), DIR/stats.json.\n\n"
            "example:\n  natal decontaminate --input runs/dedup/documents --output runs/decon \\\n"
            "      --eval gsm8k-test.jsonl HumanEval.jsonl.gz"
        ),
        flags_to_config={"ngram": "data.decontaminate.ngram", "mode": "data.decontaminate.mode"},
    ),
]

"""The stages ``natal`` knows: their flags, the config fields the flags set, what they run.

Pipeline modules are imported inside each ``run`` so that ``natal --help`` stays instant.
Each run function returns the stage's stats dict, which the CLI prints as a table.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cluster.config import NatalConfig


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[NatalConfig | None, argparse.Namespace], dict[str, Any]]
    description: str = ""
    flags_to_config: dict[str, str] = field(default_factory=dict)
    takes_config: bool = True


# --- crawl ----------------------------------------------------------------------------------


def _crawl_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", action="append", required=True, metavar="URL", help="start URL")
    p.add_argument("--output", required=True, metavar="DIR", help="where WARC.gz files go")
    p.add_argument("--max-pages", type=int, help="stop after this many pages")
    p.add_argument("--max-depth", type=int, help="links followed from a seed, at most")
    p.add_argument("--rate", type=float, metavar="PER_SECOND", help="requests/s per host")


def _crawl(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines import crawl

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
    from pipelines import ingest

    return ingest.run(cfg, inputs=args.input, output=args.output)


# --- filter ---------------------------------------------------------------------------------


def _filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, metavar="DIR_OR_URI", help="documents to filter")
    p.add_argument("--output", required=True, metavar="DIR", help="DIR/documents, DIR/removed")


def _filter(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines import filter as filter_stage

    return filter_stage.run(cfg, input=args.input, output=args.output)


COMMANDS: list[Command] = [
    Command(
        "crawl",
        "fetch pages politely from seed URLs into WARC.gz",
        _crawl_args,
        _crawl,
        description=(
            "Fetch pages from --seed URLs, honouring robots.txt, a per-host rate limit and\n"
            "concurrency cap, with retries; write request+response records as WARC.gz.\n\n"
            "example:\n  natal crawl --seed http://127.0.0.1:8000/ --output runs/crawl --max-pages 50"
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
            "Corrupt records are counted in stats.json and skipped.\n\n"
            "example:\n  natal ingest --input 's3://bucket/crawl/*.warc.gz' --output runs/ingest"
        ),
        flags_to_config={"source": "data.ingest.source", "extractor": "data.ingest.extractor"},
    ),
    Command(
        "filter",
        "quality filters: URL, language, Gopher, C4, FineWeb, PII",
        _filter_args,
        _filter,
        description=(
            "Apply the quality rules of data.filter to documents; kept ones go to\n"
            "DIR/documents, removed ones to DIR/removed with a reason and the measured value.\n\n"
            "example:\n  natal filter --input runs/ingest --output runs/filter --set data.min_words=30"
        ),
    ),
]

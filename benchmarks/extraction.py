"""Which HTML extractor should ingest use? Measured on 528 real pages with ground truth.

- AEB (Scrapinghub article-extraction-benchmark, 181 English news pages): precision, recall
  and F1 of 4-token shingles of ``\\w+`` tokens against the human ``articleBody``, counts
  summed over pages (micro average) as upstream's ``evaluate.py`` does, plus the mean page F1.
- trafilatura eval (347 pages, 16 languages): the share of ``must_contain`` snippets found
  in the output and of ``must_not_contain`` (boilerplate) snippets absent from it, whitespace
  collapsed on both sides.
- docs/s of each extractor over all 528 pages, in this one process, one after the other.

"full page" (resiliparse without main-content detection) is the peer that shows what
extraction buys. Run: ``.venv/bin/python benchmarks/extraction.py`` (~1 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines.data import extract, storage, warc  # noqa: E402
from pipelines.data.stats import StageStats  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "web-html-warc"
_TOKEN = re.compile(r"\w+")


def shingles(text: str, n: int = 4) -> Counter:
    """Counts of n-token shingles, as AEB scores extraction (short texts: one shingle)."""
    tokens = _TOKEN.findall(text or "")
    return Counter(" ".join(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1)))


def shingle_counts(truth: str, predicted: str) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of shingles."""
    t, p = shingles(truth), shingles(predicted)
    t.pop("", None)
    p.pop("", None)
    tp = sum((t & p).values())
    return tp, sum(p.values()) - tp, sum(t.values()) - tp


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def squash(text: str) -> str:
    return " ".join(text.split())


def load_pages(data_dir: Path) -> dict[str, str]:
    """WARC-Record-ID → decoded HTML of every page in the folder's WARC files."""
    pages: dict[str, str] = {}
    stats = StageStats("benchmark")
    for path in sorted(data_dir.glob("*.warc.gz")):
        with storage.filesystem(str(path))[0].open(str(path), "rb") as stream:
            for rec in warc.iter_web_records(stream, stats, max_record_bytes=64 << 20):
                pages[rec.record_id] = warc.decode_text(rec.body, rec.charset)
    return pages


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def evaluate(
    name: str, fn: Callable[[str], str], pages: dict[str, str], aeb: list[dict], tra: list[dict]
) -> dict[str, float]:
    start = time.perf_counter()
    outputs = {rid: fn(html) for rid, html in pages.items()}
    seconds = time.perf_counter() - start
    totals = [0, 0, 0]
    page_f1 = []
    for row in aeb:
        counts = shingle_counts(row["articleBody"], outputs[row["warc_record_id"]])
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
        page_f1.append(prf(*counts)[2])
    found = absent = n_with = n_without = pages_clean = 0
    for row in tra:
        text = squash(outputs[row["warc_record_id"]])
        hits = sum(squash(s) in text for s in row["must_contain"])
        leaks = sum(squash(s) in text for s in row["must_not_contain"])
        found += hits
        absent += len(row["must_not_contain"]) - leaks
        n_with += len(row["must_contain"])
        n_without += len(row["must_not_contain"])
        pages_clean += hits == len(row["must_contain"]) and leaks == 0
    precision, recall, f1 = prf(*totals)
    return {
        "extractor": name,
        "aeb_precision": precision,
        "aeb_recall": recall,
        "aeb_f1": f1,
        "aeb_mean_page_f1": sum(page_f1) / len(page_f1),
        "must_contain": found / n_with,
        "must_not_contain": absent / n_without,
        "pages_all_pass": pages_clean / len(tra),
        "docs_per_s": len(pages) / seconds,
    }


def full_page(html: str) -> str:
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(html, main_content=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="web-html-warc folder")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no data at {args.data} (needs ../shared/data/web-html-warc)")
    pages = load_pages(args.data)
    aeb = read_jsonl(args.data / "aeb-annotations.jsonl")
    tra = read_jsonl(args.data / "trafilatura-eval-annotations.jsonl")
    print(f"{len(pages)} pages: {len(aeb)} AEB with articleBody, {len(tra)} trafilatura eval")
    candidates = {"full page": full_page}
    candidates.update({name: extract.get_extractor(name) for name in extract.EXTRACTORS})
    rows = [evaluate(name, fn, pages, aeb, tra) for name, fn in candidates.items()]

    from rich.console import Console
    from rich.table import Table

    table = Table(title="HTML extraction on web-html-warc (higher is better)")
    console = Console(width=160)
    for key in rows[0]:
        table.add_column(key, justify="left" if key == "extractor" else "right")
    for row in rows:
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else v for v in row.values()))
    console.print(table)


if __name__ == "__main__":
    main()

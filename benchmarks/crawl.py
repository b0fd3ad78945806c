"""What does politeness and archiving cost? ``natal crawl`` against plain serial fetching.

On the demo site (Python's documentation server, pydoc, on 127.0.0.1):

- natal crawl with 4 requests in flight (rate limit set out of the way): robots.txt,
  link extraction, WARC.gz writing included;
- the peer: the same URLs fetched one after another with ``urllib.request``, bodies dropped;
- link extraction alone over the fetched pages: the stdlib parser that ``crawl_policy`` uses
  against resiliparse's CSS selector (whose node collections iterate in quadratic time).

pydoc renders every page on request in one thread, so the server bounds all rows; what the
comparison shows is the crawler's own overhead. Figures on a shared 2-core machine are noisy.
Run: ``.venv/bin/python benchmarks/crawl.py [--pages 150]`` (~1 min).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from warcio.archiveiterator import ArchiveIterator  # noqa: E402

from cluster.config import build_config  # noqa: E402
from pipelines.data import crawl  # noqa: E402
from pipelines.data.crawl_policy import extract_links  # noqa: E402
from pipelines.demo.website import pydoc_server  # noqa: E402


def natal_crawl(url: str, pages: int, concurrency: int) -> tuple[float, dict[str, bytes]]:
    """Seconds for a crawl, and the archived pages (URL → body)."""
    cfg = build_config(
        {
            "data": {
                "crawl": {"max_pages": pages, "rate": 1000.0, "concurrency_per_host": concurrency}
            }
        }
    )
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        crawl.run(cfg, [url], out)
        seconds = time.perf_counter() - started
        bodies = {}
        for path in sorted(Path(out).glob("*.warc.gz")):
            with path.open("rb") as fh:
                for rec in ArchiveIterator(fh):
                    if rec.rec_type == "response":
                        uri = rec.rec_headers.get_header("WARC-Target-URI")
                        bodies[uri] = rec.content_stream().read()
    return seconds, bodies


def serial_fetch(urls: list[str]) -> float:
    started = time.perf_counter()
    for url in urls:
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
    return time.perf_counter() - started


def resiliparse_links(body: bytes) -> int:
    from resiliparse.parse.html import HTMLTree

    tree = HTMLTree.parse_from_bytes(body, "utf-8")
    return len([a.getattr("href") for a in tree.document.query_selector_all("a[href]")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=150)
    args = parser.parse_args()
    # pydoc imports a module to render its page, so a second visit is cheaper: each method is
    # timed on a fresh ("cold") server and on one that has rendered the pages ("warm").
    with pydoc_server() as url:
        cold_crawl, bodies = natal_crawl(url, args.pages, concurrency=4)
        paths = [u.removeprefix(url) for u in bodies]
        warm_serial = serial_fetch([url + path for path in paths])
        warm_crawl, _ = natal_crawl(url, args.pages, concurrency=4)
    with pydoc_server() as url:
        cold_serial = serial_fetch([url + path for path in paths])
    mb = sum(map(len, bodies.values())) / 1e6
    print(f"\n{len(paths)} pages, {mb:.1f} MB{'':8}{'seconds':>9}{'pages/s':>9}{'MB/s':>7}")
    for name, seconds in (
        ("natal crawl (4 in flight), cold", cold_crawl),
        ("serial urllib (peer), cold", cold_serial),
        ("natal crawl (4 in flight), warm", warm_crawl),
        ("serial urllib (peer), warm", warm_serial),
    ):
        print(f"{name:34}{seconds:>9.1f}{len(paths) / seconds:>9.1f}{mb / seconds:>7.2f}")

    # resiliparse's cost grows with the square of a page's links: the median pages only
    by_size = sorted(bodies.values(), key=len)
    middle = by_size[len(by_size) // 2 - 5 : len(by_size) // 2 + 5]
    print(
        f"\nlink extraction, {len(middle)} median-size pages ({sum(map(len, middle)) / 1e6:.2f} MB):"
    )
    for name, fn in (
        ("stdlib html.parser", lambda b: len(extract_links(b, url).links)),
        ("resiliparse selector", resiliparse_links),
    ):
        started = time.perf_counter()
        for body in middle:
            fn(body)
        print(f"  {name:22}{time.perf_counter() - started:8.3f} s")


if __name__ == "__main__":
    main()

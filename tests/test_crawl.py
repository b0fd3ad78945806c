"""``natal crawl`` against a real HTTP server on 127.0.0.1 serving a generated site.

The server logs every request it receives (time, path, headers): politeness is asserted from
the server's side, and the WARC payloads are compared with the files it served.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import free_port
from warcio.archiveiterator import ArchiveIterator

from cluster.cli import main
from cluster.config import NatalConfig, build_config
from pipelines.data import crawl

UA = "natal-crawler/0.1 (test)"
ROBOTS = "User-agent: *\nDisallow: /private/\nAllow: /private/open.html\n"


def page(*links: str, extra: str = "") -> str:
    anchors = "".join(f'<a href="{href}">{href}</a>\n' for href in links)
    return f"<!doctype html><html><head><title>t</title>{extra}</head><body>{anchors}</body></html>"


SITE = {
    "robots.txt": ROBOTS,
    "index.html": page(
        "a.html",
        "b.html#part",
        "a.html",
        "private/secret.html",
        "private/open.html",
        "flaky.html",
        "busy.html",
        "drop.html",
        "missing.html",
        "data.csv",
        "big.bin",
        "gz.html",
        "moved.html",
        "deep/1.html",
        "mailto:someone@example.org",
        "http://offsite.invalid/page.html",
    )
    + '<a rel="nofollow" href="nofollow-target.html">x</a>',
    "a.html": page("index.html", "b.html"),
    "b.html": page("sub/../c.html"),
    "c.html": page(),
    "private/secret.html": page(),
    "private/open.html": page(),
    "flaky.html": page(),
    "busy.html": page(),
    "gz.html": page("a.html") + "<!-- compressed on the wire -->",
    "target.html": page(),
    "data.csv": 'name,link\nx,<a href="from-csv.html">not a link</a>\n',
    "from-csv.html": page(),
    "nofollow-target.html": page(),
    "deep/1.html": page("2.html"),
    "deep/2.html": page("3.html"),
    "deep/3.html": page(),
    "big.bin": "0123456789" * 500,
    "many/index.html": page(*(f"{i}.html" for i in range(12))),
    **{f"many/{i}.html": page() for i in range(12)},
}


@dataclass
class Site:
    url: str
    root: Path
    log: list[tuple[float, str, dict[str, str]]] = field(default_factory=list)
    delay: float = 0.0  # seconds each page takes to serve
    max_in_flight: int = 0

    def requests(self, path: str) -> list[float]:
        return [t for t, p, _ in self.log if p == path]

    def paths(self) -> Counter:
        return Counter(p for _, p, _ in self.log)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    root = tmp_path / "site"
    for name, text in SITE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    lock = threading.Lock()
    state = {"in_flight": 0}

    class Handler(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            with lock:
                site.log.append((time.monotonic(), self.path, dict(self.headers)))
                seen = len(site.requests(self.path))
                state["in_flight"] += 1
                site.max_in_flight = max(site.max_in_flight, state["in_flight"])
            time.sleep(site.delay)
            with lock:  # before any byte of the answer: the client cannot be done with it yet
                state["in_flight"] -= 1
            self.serve(seen)

        def serve(self, seen: int) -> None:
            if self.path == "/flaky.html" and seen == 1:
                return self.send_error(500)
            if self.path == "/busy.html" and seen == 1:
                return self.reply(429, [("Retry-After", "1")])
            if self.path == "/moved.html":
                return self.reply(301, [("Location", "/target.html")])
            if self.path == "/drop.html":
                self.close_connection = True  # no answer at all: the client sees a reset
                return None
            if self.path == "/gz.html" and "gzip" in self.headers.get("Accept-Encoding", ""):
                body = gzip.compress((root / "gz.html").read_bytes())
                return self.reply(
                    200, [("Content-Type", "text/html"), ("Content-Encoding", "gzip")], body
                )
            return super().do_GET()

        def reply(self, status: int, headers: list[tuple[str, str]], body: bytes = b"") -> None:
            self.send_response(status)
            for name, value in [*headers, ("Content-Length", str(len(body)))]:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    site = Site(f"http://127.0.0.1:{server.server_address[1]}", root)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield site
    server.shutdown()
    server.server_close()


def config(**crawl_fields) -> NatalConfig:
    fields = {"rate": 200.0, "retries": 2, "backoff_s": 0.05, "user_agent": UA, **crawl_fields}
    return build_config({"data": {"crawl": fields}})


def read_warcs(output: Path) -> list[list]:
    """Every WARC file's records, as (type, headers, http headers, payload), digests checked."""
    files = []
    for path in sorted(output.glob("*.warc.gz")):
        records = []
        with path.open("rb") as fh:
            for rec in ArchiveIterator(fh, check_digests=True):
                payload = rec.content_stream().read()
                assert rec.digest_checker.passed is not False, rec.digest_checker.problems
                records.append((rec.rec_type, rec.rec_headers, rec.http_headers, payload))
        files.append(records)
    return files


def test_crawl_is_polite_and_archives_what_the_server_served(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "out"
    stats = crawl.run(
        config(max_depth=2, max_response_bytes=2048), [f"{site.url}/index.html"], str(out)
    )

    # robots.txt first, once; the disallowed page never requested, the allowed exception was.
    assert site.log[0][1] == "/robots.txt" and site.paths()["/robots.txt"] == 1
    assert "/private/secret.html" not in site.paths()
    assert "/private/open.html" in site.paths()
    assert stats["counts"]["robots_disallowed"] == 1
    # depth 2 reached, depth 3 not; no links from non-HTML or rel=nofollow; no offsite request.
    assert "/deep/2.html" in site.paths() and "/c.html" in site.paths()
    assert "/deep/3.html" not in site.paths()
    assert "/from-csv.html" not in site.paths() and "/nofollow-target.html" not in site.paths()
    assert stats["counts"]["offsite_skipped"] >= 1
    assert site.paths()["/a.html"] == 1  # three links to it, one fetch
    # retries: 500 then 200; 429 honoured its Retry-After; a dropped connection gave up.
    assert site.paths()["/flaky.html"] == 2
    first, second = site.requests("/busy.html")
    assert second - first >= 0.95
    assert site.paths()["/drop.html"] == 3
    assert stats["counts"]["errors"] == 1 and stats["counts"]["retries"] == 4

    files = read_warcs(out)
    assert len(files) == 1 and files[0][0][0] == "warcinfo"
    records = files[0][1:]
    responses = {
        h.get_header("WARC-Target-URI"): (h, http, body)
        for t, h, http, body in records
        if t == "response"
    }
    requests = [(h, http, body) for t, h, http, body in records if t == "request"]
    expected = {
        "index.html", "a.html", "b.html", "c.html", "private/open.html", "flaky.html",
        "busy.html", "missing.html", "data.csv", "big.bin", "gz.html", "moved.html",
        "target.html", "deep/1.html", "deep/2.html",
    }  # fmt: skip
    assert set(responses) == {f"{site.url}/{name}" for name in expected}
    assert stats["counts"]["pages"] == len(expected) == len(requests)
    assert stats["breakdown"]["by_status"] == {"200": 13, "404": 1, "301": 1}

    for name in expected - {"missing.html", "moved.html", "big.bin"}:
        warc_headers, http, body = responses[f"{site.url}/{name}"]
        assert http.get_statuscode() == "200"
        assert body == (site.root / name).read_bytes(), name
        assert warc_headers.get_header("Content-Type") == "application/http; msgtype=response"
        assert warc_headers.get_header("WARC-IP-Address") == "127.0.0.1"
    assert responses[f"{site.url}/missing.html"][1].get_statuscode() == "404"
    assert responses[f"{site.url}/moved.html"][1].get_header("Location") == "/target.html"
    # cut at max_response_bytes, and marked so
    big_headers, big_http, big_body = responses[f"{site.url}/big.bin"]
    assert big_body == (site.root / "big.bin").read_bytes()[:2048]
    assert big_headers.get_header("WARC-Truncated") == "length"
    # gzip on the wire, stored decoded: the original coding kept under X-Crawler-*
    gz_http = responses[f"{site.url}/gz.html"][1]
    assert gz_http.get_header("X-Crawler-Content-Encoding") == "gzip"
    assert gz_http.get_header("Content-Encoding") is None
    assert gz_http.get_header("Content-Length") == str((site.root / "gz.html").stat().st_size)

    # request records: what the server received, tied to their response
    response_ids = {h.get_header("WARC-Record-ID") for h, _, _ in responses.values()}
    received = {path: headers for _, path, headers in site.log}
    for warc_headers, http, _ in requests:
        assert warc_headers.get_header("WARC-Concurrent-To") in response_ids
        path = http.get_statuscode()  # for a request, "GET /path HTTP/1.1" splits here
        assert received[path]["User-Agent"] == http.get_header("User-Agent") == UA
        assert received[path]["Host"] == http.get_header("Host")

    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["counts"] == stats["counts"]


def test_rate_limit_holds_on_the_server_side(site: Site, tmp_path: Path) -> None:
    rate = 5.0
    cfg = config(rate=rate, concurrency_per_host=4, max_pages=8, max_depth=1)
    crawl.run(cfg, [f"{site.url}/many/index.html"], str(tmp_path / "out"))
    times = sorted(t for t, _, _ in site.log)
    assert len(times) == 9  # robots.txt + 8 pages
    # never more than rate (+1 for the window's edge) requests in any one-second window
    assert max(sum(1 for u in times if t <= u < t + 1.0) for t in times) <= rate + 1
    # no burst (a gap of ~0), allowing for the server's scheduling jitter on a loaded machine
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.5 / rate
    assert times[-1] - times[0] >= (len(times) - 1) / rate - 0.15


def test_concurrency_cap_per_host(site: Site, tmp_path: Path) -> None:
    site.delay = 0.2
    cfg = config(concurrency_per_host=2, workers=8, max_pages=9, max_depth=1)
    stats = crawl.run(cfg, [f"{site.url}/many/index.html"], str(tmp_path / "out"))
    assert stats["counts"]["pages"] == 9
    assert site.max_in_flight == 2


def test_max_pages_rotation_and_rerun_replaces_output(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("not the crawler's")
    cfg = config(max_pages=5, pages_per_warc=2)
    stats = crawl.run(cfg, [f"{site.url}/many/index.html"], str(out))
    files = read_warcs(out)
    assert stats["counts"]["pages"] == 5 and stats["warc_files"] == 3
    assert [sum(t == "response" for t, *_ in f) for f in files] == [2, 2, 1]
    assert all(f[0][0] == "warcinfo" for f in files)
    assert sum(n for p, n in site.paths().items() if p != "/robots.txt") == 5
    assert stats["counts"]["frontier_left"] == 12 - 4

    crawl.run(config(max_pages=3), [f"{site.url}/many/index.html"], str(out))
    assert [p.name for p in sorted(out.glob("*.warc.gz"))] == ["crawl-00000.warc.gz"]
    assert (out / "notes.txt").exists()


def test_unreachable_host_is_counted_not_fatal(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    stats = crawl.run(config(retries=1, backoff_s=0.01), [url], str(tmp_path / "out"))
    # robots.txt unreachable → RFC 9309 says assume everything is disallowed
    assert stats["breakdown"]["robots_txt"] == {"unreachable": 1}
    assert stats["counts"]["robots_disallowed"] == 1
    assert stats["counts"].get("pages", 0) == 0 and stats["counts"]["retries"] == 1
    assert (tmp_path / "out" / "stats.json").exists()


def test_cli_crawls_and_rejects_a_bad_seed(site: Site, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    argv = ["crawl", "--seed", f"{site.url}/many/index.html", "--output", str(out)]
    assert main([*argv, "--max-pages", "5", "--set", "data.crawl.user_agent=cli-test/1"]) == 0
    responses = [r for f in read_warcs(out) for r in f if r[0] == "response"]
    assert len(responses) == 5
    assert {h["User-Agent"] for _, _, h in site.log} == {"cli-test/1"}

    assert main(["crawl", "--seed", "ftp://example.org/", "--output", str(out)]) == 2
    assert "not an http(s) URL" in capsys.readouterr().err


def test_output_to_s3_and_rerun_replaces_it(site: Site, s3_bucket: str) -> None:
    import s3fs

    output = f"{s3_bucket}/crawl"
    stats = crawl.run(
        config(max_pages=4, pages_per_warc=3), [f"{site.url}/many/index.html"], output
    )
    assert stats["warc_files"] == 2
    fs = s3fs.S3FileSystem()
    crawl.run(config(max_pages=2), [f"{site.url}/many/index.html"], output)
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(output, refresh=True))
    assert names == ["crawl-00000.warc.gz", "stats.json"]
    with fs.open(f"{output}/crawl-00000.warc.gz", "rb") as fh:
        types = [rec.rec_type for rec in ArchiveIterator(fh)]
    assert types == ["warcinfo", "request", "response", "request", "response"]
    assert json.loads(fs.cat(f"{output}/stats.json"))["counts"]["pages"] == 2

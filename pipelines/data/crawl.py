"""``natal crawl``: a polite fetcher from seed URLs to WARC.gz, on one machine.

robots.txt is fetched first for every host and obeyed; each host gets a token bucket (``rate``
requests/s, no bursts) and at most ``concurrency_per_host`` requests in flight; connection
errors, 429 and 5xx are retried with exponential backoff (longer if ``Retry-After`` says so).
Links are followed breadth-first up to ``max_depth``, within the seeds' hosts by default.

The decisions live in :mod:`pipelines.data.crawl_policy`, the records in :mod:`pipelines.data.crawl_warc`;
this module is the I/O around them: threads fetching, one thread scheduling and writing.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import urllib3
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cluster.config import CrawlConfig, NatalConfig
from cluster.config.errors import InputError
from cluster.console import terminal
from pipelines.data import storage
from pipelines.data.crawl_policy import (
    RETRY_STATUSES,
    RobotsRules,
    TokenBucket,
    charset_of,
    extract_links,
    host_of,
    is_html,
    normalize_url,
    parse_retry_after,
    retry_delay,
    robots_for_status,
)
from pipelines.data.crawl_warc import Fetched, WarcFiles, warc_date
from pipelines.data.stats import StageStats

ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"


@dataclass
class Host:
    """Politeness state of one ``scheme://host:port``: its robots rules, pace and queue."""

    bucket: TokenBucket
    frontier: deque[tuple[str, int]] = field(default_factory=deque)
    robots: RobotsRules | None = None
    robots_pending: bool = False
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_turn(self) -> None:
        """Block until this host's token bucket lets one more request go."""
        with self.lock:
            delay = self.bucket.reserve(time.monotonic())
        if delay > 0:
            time.sleep(delay)


class Fetcher:
    """GET with retries over one urllib3 pool (keep-alive per host); thread-safe."""

    def __init__(self, cfg: CrawlConfig) -> None:
        self.cfg = cfg
        self.pool = urllib3.PoolManager(
            num_pools=64,
            maxsize=cfg.concurrency_per_host,
            timeout=urllib3.Timeout(connect=cfg.timeout_s, read=cfg.timeout_s),
        )
        self.headers = [
            ("User-Agent", cfg.user_agent),
            ("Accept", ACCEPT),
            ("Accept-Encoding", "gzip, deflate"),
        ]

    def get(self, url: str, depth: int, host: Host, follow_redirects: bool = False) -> Fetched:
        """Fetch ``url``, retrying transport errors, 429 and 5xx; the last answer is kept."""
        attempt = 0
        while True:
            host.wait_turn()
            page = self._once(url, depth, follow_redirects)
            page.attempts = attempt + 1
            if page.error is None and page.status not in RETRY_STATUSES:
                return page
            asked = parse_retry_after(page.header("Retry-After"), time.time())
            delay = retry_delay(attempt, self.cfg.backoff_s, asked)
            if attempt >= self.cfg.retries or delay is None:
                return page
            time.sleep(delay)
            attempt += 1

    def _once(self, url: str, depth: int, follow_redirects: bool) -> Fetched:
        page = Fetched(url, depth, warc_date(), list(self.headers))
        retries = urllib3.Retry(
            total=None, connect=0, read=0, status=0, other=0, redirect=5, raise_on_redirect=False
        )
        try:
            response = self.pool.request(
                "GET",
                url,
                headers=dict(self.headers),
                preload_content=False,
                redirect=follow_redirects,
                retries=retries if follow_redirects else False,
            )
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            page.error = type(getattr(exc, "reason", None) or exc).__name__
            return page
        page.status, page.reason = response.status, response.reason or ""
        page.http_version = f"HTTP/{response.version // 10}.{response.version % 10}"
        page.headers = list(response.headers.items())
        page.ip = _peer_ip(response)
        try:
            page.body, page.truncated = _read_limited(response, self.cfg.max_response_bytes)
        except urllib3.exceptions.HTTPError as exc:
            page.error = type(exc).__name__
        finally:
            response.release_conn()
        return page


def _peer_ip(response: urllib3.BaseHTTPResponse) -> str | None:
    try:
        return response.connection.sock.getpeername()[0]  # type: ignore[union-attr]
    except (AttributeError, OSError):
        return None


def _read_limited(response: urllib3.BaseHTTPResponse, limit: int) -> tuple[bytes, bool]:
    """The decoded body, at most ``limit`` bytes, and whether it was cut."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.stream(64 << 10, decode_content=True):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            response.close()  # do not drain the rest into a reused connection
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


def with_links(page: Fetched, max_depth: int) -> Fetched:
    """Attach the page's links when they will be followed (HTML, 2xx, above max depth)."""
    if page.status is None or not 200 <= page.status < 300 or page.depth >= max_depth:
        return page
    content_type = page.header("Content-Type")
    if not is_html(content_type, page.body):
        return page
    try:
        page.links = extract_links(
            page.body, page.url, content_type, page.header("X-Robots-Tag")
        ).links
    except Exception as exc:  # a parser failure costs this page's links, never the crawl
        page.links_error = type(exc).__name__
    return page


class Crawler:
    """Breadth-first frontier per host; schedules fetches within every politeness limit."""

    def __init__(self, cfg: CrawlConfig, seeds: list[str], stats: StageStats) -> None:
        self.cfg = cfg
        self.stats = stats
        self.fetcher = Fetcher(cfg)
        self.hosts: dict[str, Host] = {}
        self.seed_hosts = {host_of(url) for url in seeds}
        self.seen: set[str] = set()
        self.pages = 0
        self.pages_in_flight = 0
        for url in seeds:
            self.enqueue(url, 0)

    def enqueue(self, url: str, depth: int) -> None:
        if url in self.seen:
            return
        key = host_of(url)
        if self.cfg.same_host and key not in self.seed_hosts:
            self.stats.add("offsite_skipped")
            return
        self.seen.add(url)
        if key not in self.hosts:
            self.hosts[key] = Host(TokenBucket(self.cfg.rate))
        self.hosts[key].frontier.append((url, depth))

    def crawl(self, on_page: Callable[[Fetched], None]) -> None:
        """Fetch until the frontier is empty or ``max_pages`` responses were archived."""
        running: dict[Future[Fetched], tuple[str, Host]] = {}
        with ThreadPoolExecutor(self.cfg.workers, thread_name_prefix="natal-crawl") as pool:
            while True:
                self._schedule(pool, running)
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    kind, host = running.pop(future)
                    host.in_flight -= 1
                    if kind == "robots":
                        self._robots_done(host, future.result())
                    else:
                        self.pages_in_flight -= 1
                        self._page_done(future.result(), on_page)
        left = sum(len(host.frontier) for host in self.hosts.values())
        self.stats.add("frontier_left", left)

    def _schedule(self, pool: ThreadPoolExecutor, running: dict[Future[Fetched], Any]) -> None:
        for key, host in self.hosts.items():
            if not host.frontier or len(running) >= self.cfg.workers:
                continue
            if host.robots is None:
                if not host.robots_pending:
                    host.robots_pending = True
                    host.in_flight += 1
                    future = pool.submit(self.fetcher.get, f"{key}/robots.txt", 0, host, True)
                    running[future] = ("robots", host)
                continue
            while (
                host.frontier
                and host.in_flight < self.cfg.concurrency_per_host
                and len(running) < self.cfg.workers
                and self.pages + self.pages_in_flight < self.cfg.max_pages
            ):
                url, depth = host.frontier.popleft()
                if not host.robots.allowed(url):
                    self.stats.add("robots_disallowed")
                    continue
                host.in_flight += 1
                self.pages_in_flight += 1
                future = pool.submit(self._fetch_page, url, depth, host)
                running[future] = ("page", host)

    def _fetch_page(self, url: str, depth: int, host: Host) -> Fetched:
        return with_links(self.fetcher.get(url, depth, host), self.cfg.max_depth)

    def _count_requests(self, page: Fetched) -> None:
        self.stats.add("requests", page.attempts)
        self.stats.add("retries", page.attempts - 1)
        if page.error:
            self.stats.add("errors")
            self.stats.add_to("errors_by_kind", page.error)

    def _robots_done(self, host: Host, page: Fetched) -> None:
        self._count_requests(page)
        text = page.body.decode(charset_of(page.header("Content-Type")), errors="replace")
        host.robots = robots_for_status(
            page.status if not page.error else None, text, self.cfg.user_agent
        )
        self.stats.add_to("robots_txt", str(page.status) if not page.error else "unreachable")
        if host.robots.crawl_delay:
            host.bucket.rate = min(host.bucket.rate, 1.0 / host.robots.crawl_delay)

    def _page_done(self, page: Fetched, on_page: Callable[[Fetched], None]) -> None:
        self._count_requests(page)
        if page.error:
            return
        self.pages += 1
        self.stats.add("pages")
        self.stats.add("bytes", len(page.body))
        self.stats.add_to("by_status", str(page.status))
        self.stats.add_to("by_content_type", (page.header("Content-Type") or "none").split(";")[0])
        if page.truncated:
            self.stats.add("truncated")
        if page.links_error:
            self.stats.add_to("errors_by_kind", f"links:{page.links_error}")
        on_page(page)
        location = page.header("Location")
        if page.status is not None and 300 <= page.status < 400 and location:
            target = normalize_url(location, page.url)
            if target:  # a redirect is the same page moved: it keeps the depth
                self.enqueue(target, page.depth)
        for link in page.links:
            self.enqueue(link, page.depth + 1)
        self.stats.add("links_found", len(page.links))


def check_seeds(seeds: list[str]) -> list[str]:
    """Seeds in canonical form, or one InputError naming the first unusable one."""
    if not seeds:
        raise InputError("no seed URL: pass --seed URL (or set data.crawl.seeds)")
    checked = []
    for seed in seeds:
        url = normalize_url(seed)
        if url is None:
            raise InputError(f"seed {seed!r}: not an http(s) URL")
        checked.append(url)
    return list(dict.fromkeys(checked))


def _clear_previous(output: str) -> None:
    """A rerun replaces the output: delete our own files there, never anything else."""
    fs, path = storage.filesystem(output)
    if not fs.exists(path):
        return
    for name in fs.ls(path, detail=False):
        base = name.rsplit("/", 1)[-1]
        if (base.startswith("crawl-") and base.endswith(".warc.gz")) or base == "stats.json":
            fs.rm(name)


def run(cfg: NatalConfig, seeds: list[str], output: str) -> dict[str, Any]:
    """Crawl from ``seeds`` (default: ``data.crawl.seeds``) into ``output/*.warc.gz``."""
    crawl_cfg = cfg.data.crawl
    seed_urls = check_seeds(seeds or crawl_cfg.seeds)
    storage.ensure_dir(output)
    _clear_previous(output)
    stats = StageStats("crawl")
    info = {
        "software": "natal-crawler/0.1 (warcio)",
        "format": "WARC File Format 1.0",
        "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.0/",
        "robots": "obey",
        "http-header-user-agent": crawl_cfg.user_agent,
        "hostname": socket.gethostname(),
    }
    crawler = Crawler(crawl_cfg, seed_urls, stats)
    progress = Progress(
        TextColumn("crawl"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("pages"),
        TimeElapsedColumn(),
        console=Console(file=terminal()),
        transient=True,
    )
    with progress, WarcFiles(output, crawl_cfg.pages_per_warc, info) as warcs, stats.timer("crawl"):
        task = progress.add_task("crawl", total=crawl_cfg.max_pages)

        def archive(page: Fetched) -> None:
            warcs.write(page)
            progress.advance(task)

        crawler.crawl(archive)
    seconds = stats.seconds["crawl"]
    stats.extra = {
        "output": output,
        "warc_files": len(warcs.files),
        "seeds": seed_urls,
        "pages_per_second": round(stats.counts["pages"] / seconds, 2) if seconds else 0.0,
    }
    stats.write(output)
    return stats.to_dict()

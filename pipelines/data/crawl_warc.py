"""Fetched pages as standard WARC: a request and a response record per page, gzip per record.

Bodies are stored as the crawler decoded them (no gzip or chunked transfer coding), so any WARC
reader gets the served bytes back; the headers that described the original coding are kept
under ``X-Crawler-*`` names, as Common Crawl does, and ``Content-Length`` is the stored length.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import urlsplit

from warcio.warcwriter import WARCWriter

from pipelines.data import storage

# Headers describing a coding the stored body no longer has: renamed, not dropped.
_RENAMED = ("content-encoding", "transfer-encoding", "content-length")


@dataclass
class Fetched:
    """One page as the crawler got it: what it sent, what came back, or why nothing did."""

    url: str
    depth: int
    date: str  # WARC-Date of the request whose answer is kept
    request_headers: list[tuple[str, str]]
    status: int | None = None
    reason: str = ""
    http_version: str = "HTTP/1.1"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    truncated: bool = False
    ip: str | None = None
    attempts: int = 0
    error: str | None = None
    links: list[str] = field(default_factory=list)
    links_error: str | None = None

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


def warc_date(epoch: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def archived_headers(headers: list[tuple[str, str]], body_length: int) -> list[tuple[str, str]]:
    """Response headers that describe the stored (decoded, whole or cut) body truthfully."""
    kept: list[tuple[str, str]] = []
    for name, value in headers:
        if name.lower() in _RENAMED:
            if name.lower() == "content-length" and value.strip() == str(body_length):
                continue
            name = f"X-Crawler-{name}"
        kept.append((name, value))
    kept.append(("Content-Length", str(body_length)))
    return kept


def _head_bytes(first_line: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [first_line, *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace")


def request_block(url: str, headers: list[tuple[str, str]]) -> bytes:
    """The HTTP request as sent: request line, ``Host``, then the crawler's headers."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _head_bytes(f"GET {target} HTTP/1.1", [("Host", parts.netloc), *headers])


def response_block(page: Fetched) -> bytes:
    status_line = f"{page.http_version} {page.status} {page.reason}".rstrip()
    return _head_bytes(status_line, archived_headers(page.headers, len(page.body))) + page.body


class WarcFiles:
    """``crawl-00000.warc.gz``, ``crawl-00001.warc.gz``, ... in ``output``: a new file every
    ``pages_per_warc`` pages, each opened by a ``warcinfo`` record."""

    def __init__(self, output: str, pages_per_warc: int, info: dict[str, Any]) -> None:
        self.output = output
        self.pages_per_warc = pages_per_warc
        self.info = info
        self.files: list[str] = []
        self._fs, _ = storage.filesystem(output)
        self._handle: IO[bytes] | None = None
        self._writer: WARCWriter | None = None
        self._pages_in_file = 0

    def _open_next(self) -> WARCWriter:
        self.close()
        name = f"crawl-{len(self.files):05d}.warc.gz"
        uri = storage.join(self.output, name)
        _, path = storage.filesystem(uri)
        self._handle = self._fs.open(path, "wb")
        self._writer = WARCWriter(self._handle, gzip=True)
        self._writer.write_record(self._writer.create_warcinfo_record(name, self.info))
        self.files.append(uri)
        self._pages_in_file = 0
        return self._writer

    def write(self, page: Fetched) -> None:
        """Append the page's request and response records (request first, as crawlers do)."""
        writer = self._writer
        if writer is None or self._pages_in_file >= self.pages_per_warc:
            writer = self._open_next()
        response_headers = {"WARC-Date": page.date}
        if page.ip:
            response_headers["WARC-IP-Address"] = page.ip
        if page.truncated:
            response_headers["WARC-Truncated"] = "length"
        block = response_block(page)
        response = writer.create_warc_record(
            page.url,
            "response",
            payload=io.BytesIO(block),
            length=len(block),
            warc_headers_dict=response_headers,
        )
        sent = request_block(page.url, page.request_headers)
        request = writer.create_warc_record(
            page.url,
            "request",
            payload=io.BytesIO(sent),
            length=len(sent),
            warc_headers_dict={
                "WARC-Date": page.date,
                "WARC-Concurrent-To": response.rec_headers.get_header("WARC-Record-ID"),
            },
        )
        writer.write_record(request)
        writer.write_record(response)
        self._pages_in_file += 1

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle = self._writer = None

    def __enter__(self) -> WarcFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

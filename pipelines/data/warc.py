"""Streaming WARC/WET reading: one record at a time, HTTP decoding, charset detection.

Records stream through FastWARC's ``ArchiveIterator`` (gzip members are detected and inflated
as they are read), so a 1 GB WARC never sits in memory whole: only one record's payload does,
and records over ``max_record_bytes`` are skipped before their payload is read.

What is kept: HTML ``response``/``resource`` records with a 2xx status, and WET ``conversion``
records (already plain text). Everything else is counted under ``skipped`` with its reason
(``record_type:request``, ``revisit``, ``content_type:image/png``, ``http_status:4xx``...).
Under ``errors`` (by kind): a record whose payload is cut short (``truncated_record``), a file
cut inside a record's headers (``truncated_gzip``), a stream that breaks mid-file
(``corrupt_stream``) and an undecodable Content-Encoding (``content_encoding``). Every record
read before a break has already been yielded.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

import brotli
from fastwarc.warc import ArchiveIterator
from resiliparse.parse.encoding import bytes_to_str, detect_encoding, map_encoding_to_html5

from pipelines.data.stats import StageStats

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_RECORD_TYPES = frozenset({"response", "resource", "conversion"})
_HTML_SNIFF = re.compile(rb"^\s*(<!doctype\s+html|<html|<head|<body)", re.IGNORECASE)
_LATIN = frozenset({"cp1252", "latin_1", "iso8859-1", "ascii"})


@dataclass(frozen=True)
class WebRecord:
    """One WARC record worth turning into a document; ``is_html`` False means plain text."""

    record_id: str | None
    url: str | None
    crawl_date: str | None
    offset: int
    is_html: bool
    charset: str | None
    body: bytes


def iter_web_records(
    stream: BinaryIO, stats: StageStats, max_record_bytes: int
) -> Iterator[WebRecord]:
    """Yield the HTML and plain-text records of a WARC/WET stream, counting everything else."""
    records = ArchiveIterator(stream, parse_http=True, quirks_mode=True, strict_mode=False)
    last_start, errors_before_last = 0, stats.counts["errors"]
    try:
        for rec in records:
            stats.add("records_read")
            last_start, errors_before_last = rec.stream_pos, stats.counts["errors"]
            record = _web_record(rec, stats, max_record_bytes)
            if record is not None:
                yield record
    except OSError:  # a gzip member cut short or corrupt: nothing after it is readable
        stats.add("errors")
        stats.add_to("errors_by_kind", "corrupt_stream")
        return
    # A last record already counted as cut short is not counted twice.
    if stats.counts["errors"] == errors_before_last and gzip_tail_truncated(stream, last_start):
        stats.add("errors")
        stats.add_to("errors_by_kind", "truncated_gzip")


def gzip_tail_truncated(stream: BinaryIO, start: int) -> bool:
    """Whether the gzip members from ``start`` (the last record) to the end stop mid-member.

    FastWARC ends quietly when a file is cut inside a record's headers; re-inflating the last
    record's members (output discarded) tells. Needs a seekable stream; else assumes intact.
    """
    try:
        if not stream.seekable():
            return False
        stream.seek(start)
        if stream.read(2) != b"\x1f\x8b":
            return False
        stream.seek(start)
        inflater, pending = zlib.decompressobj(31), False
        while chunk := stream.read(1 << 20):
            while chunk:
                inflater.decompress(chunk, 1 << 24)
                chunk = inflater.unconsumed_tail
                pending = not inflater.eof
                if inflater.eof:
                    chunk = inflater.unused_data
                    inflater = zlib.decompressobj(31)
    except (OSError, zlib.error):
        return True
    return pending


def _web_record(rec, stats: StageStats, max_record_bytes: int) -> WebRecord | None:
    record_type = str(rec.record_type)
    if record_type not in TEXT_RECORD_TYPES:
        skip(stats, "revisit" if record_type == "revisit" else f"record_type:{record_type}")
        return None
    if rec.content_length > max_record_bytes:
        skip(stats, "too_large")
        return None
    if rec.is_http:
        status = rec.http_headers.status_code
        if status is None or not 200 <= status < 300:
            skip(stats, f"http_status:{status // 100 if status else 0}xx")
            return None
    is_html = record_type != "conversion"  # WET conversion records hold extracted text
    content_type, charset = _warc_content_type(rec)
    if is_html and content_type and content_type not in HTML_TYPES:
        skip(stats, f"content_type:{content_type}")
        return None
    body = rec.reader.read()
    if len(body) < rec.content_length:
        stats.add("errors")
        stats.add_to("errors_by_kind", "truncated_record")
        return None
    if rec.is_http:
        body = decode_http_body(body, rec.http_headers, max_record_bytes)
        if body is None:
            stats.add("errors")
            stats.add_to("errors_by_kind", "content_encoding")
            return None
    if is_html and not content_type and not _HTML_SNIFF.match(body[:512]):
        skip(stats, "content_type:unknown")
        return None
    headers = rec.headers
    crawl_date = parse_warc_date(headers.get("WARC-Date"))
    if crawl_date is None:
        stats.add_to("warnings", "invalid_warc_date")
    return WebRecord(
        record_id=headers.get("WARC-Record-ID"),
        url=clean_url(headers.get("WARC-Target-URI")),
        crawl_date=crawl_date,
        offset=rec.stream_pos,
        is_html=is_html,
        charset=charset,
        body=body,
    )


def skip(stats: StageStats, reason: str) -> None:
    stats.add("skipped")
    stats.add_to("skipped_by_reason", reason)


def _warc_content_type(rec) -> tuple[str | None, str | None]:
    """(mime type, declared charset) from the HTTP header, or the WARC header without HTTP."""
    if rec.is_http:
        mime, charset = rec.http_content_type, rec.http_charset
    else:
        mime, charset = _split_content_type(rec.headers.get("Content-Type"))
    return (mime.lower().strip() if mime else None), charset


def _split_content_type(value: str | None) -> tuple[str | None, str | None]:
    if not value:
        return None, None
    mime, _, params = value.partition(";")
    match = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", params, re.IGNORECASE)
    return mime.strip(), match.group(1) if match else None


def clean_url(uri: str | None) -> str | None:
    """Target URIs as written by wget come in angle brackets: ``<https://...>``."""
    if not uri:
        return None
    return uri.strip().strip("<>").strip() or None


def parse_warc_date(value: str | None) -> str | None:
    """WARC-Date as ISO 8601 UTC (``2024-05-18T01:58:10Z``); None when missing or invalid.

    WARC/0.18 (ClueWeb09) writes offsets like ``-0700`` and sometimes impossible days
    (``2008-10-294``): those come back None and the record is kept.
    """
    if not value:
        return None
    text = value.strip()
    try:
        if text.isdigit() and len(text) == 14:  # ARC-style 20081029052146
            parsed = datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        else:
            parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- HTTP payloads ----------------------------------------------------------------------------


def decode_http_body(body: bytes, http_headers, max_bytes: int) -> bytes | None:
    """Undo chunked transfer and gzip/deflate/br content encoding; None if it cannot be undone.

    Crawlers disagree on whether they store payloads decoded (Common Crawl does and renames the
    header), so each step first checks that the bytes really are encoded: ClueWeb09 declares
    ``Content-Encoding: gzip`` over plain HTML.
    """
    if "chunked" in (http_headers.get("Transfer-Encoding") or "").lower():
        body = dechunk(body)
    encoding = (http_headers.get("Content-Encoding") or "").lower().strip()
    return decompress(body, encoding, max_bytes)


def dechunk(body: bytes) -> bytes:
    """Join HTTP chunks; the body unchanged when it is not validly chunked (already decoded)."""
    parts: list[bytes] = []
    pos = 0
    while True:
        eol = body.find(b"\n", pos)
        if eol < 0:
            return body
        try:
            size = int(body[pos:eol].split(b";", 1)[0].strip(), 16)
        except ValueError:
            return body
        if size == 0:
            return b"".join(parts)
        start = eol + 1
        if start + size > len(body):
            return body
        parts.append(body[start : start + size])
        pos = start + size
        pos += 2 if body[pos : pos + 2] == b"\r\n" else 1 if body[pos : pos + 1] == b"\n" else 0


def decompress(body: bytes, encoding: str, max_bytes: int) -> bytes | None:
    """Inflate at most ``max_bytes`` (a gzip bomb stops there); None when the data is corrupt."""
    try:
        if encoding in ("gzip", "x-gzip"):
            if not body.startswith(b"\x1f\x8b"):
                return body
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body, max_bytes)
        if encoding == "deflate":
            if body[:1] != b"\x78":
                return zlib.decompressobj(-zlib.MAX_WBITS).decompress(body, max_bytes)
            return zlib.decompressobj().decompress(body, max_bytes)
        if encoding == "br":
            return brotli.decompress(body)[:max_bytes]
    except (zlib.error, brotli.error):
        return None
    return body


# --- charsets -------------------------------------------------------------------------------


def detect_charset(body: bytes, declared: str | None) -> str:
    """The Python codec for ``body``: the declared charset if the bytes fit it, else detected.

    A Latin-1/Windows-1252 declaration over valid UTF-8 is a common server lie: UTF-8 wins.
    Detection looks at ``<meta charset>`` first, then at the bytes (resiliparse).
    """
    codec = map_encoding_to_html5(declared, fallback_utf8=False) if declared else None
    if codec and _decodes(body, codec):
        if codec not in _LATIN or body.isascii() or not _decodes(body, "utf-8"):
            return codec
        return "utf-8"
    return detect_encoding(body, from_html_meta=True) or "utf-8"


def decode_text(body: bytes, declared: str | None = None) -> str:
    """Bytes to text with :func:`detect_charset`; undecodable bytes are dropped, never fatal."""
    return bytes_to_str(
        body, detect_charset(body, declared), fallback_encodings=("utf-8", "cp1252")
    )


def _decodes(body: bytes, codec: str) -> bool:
    try:
        body.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return False
    return True

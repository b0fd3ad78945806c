"""WARC records of fetched pages: standard, readable by warcio, headers true to the body."""

from __future__ import annotations

from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

from pipelines.data.crawl_warc import Fetched, WarcFiles, archived_headers, request_block

HEADERS = [("User-Agent", "natal-crawler/0.1"), ("Accept-Encoding", "gzip, deflate")]


def test_archived_headers_rename_codings_and_fix_length():
    headers = [
        ("Content-Type", "text/html"),
        ("Content-Encoding", "gzip"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "40"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]
    assert archived_headers(headers, 100) == [
        ("Content-Type", "text/html"),
        ("X-Crawler-Content-Encoding", "gzip"),
        ("X-Crawler-Transfer-Encoding", "chunked"),
        ("X-Crawler-Content-Length", "40"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Content-Length", "100"),
    ]
    assert archived_headers([("content-length", "5")], 5) == [("Content-Length", "5")]


def test_request_block_is_the_request_line_host_and_headers():
    block = request_block("http://h:8000/a%20b?x=1", HEADERS)
    assert block == (
        b"GET /a%20b?x=1 HTTP/1.1\r\nHost: h:8000\r\nUser-Agent: natal-crawler/0.1\r\n"
        b"Accept-Encoding: gzip, deflate\r\n\r\n"
    )


def test_records_round_trip_through_warcio(tmp_path: Path):
    body = "<html><body>caf\u00e9</body></html>".encode()
    page = Fetched(
        "http://h/p.html",
        0,
        "2026-11-29T12:00:00Z",
        HEADERS,
        status=200,
        reason="OK",
        headers=[("Content-Type", "text/html; charset=utf-8"), ("Transfer-Encoding", "chunked")],
        body=body,
        ip="10.0.0.1",
    )
    with WarcFiles(str(tmp_path), 10, {"software": "test"}) as warcs:
        warcs.write(page)
    assert [Path(f).name for f in warcs.files] == ["crawl-00000.warc.gz"]
    with open(warcs.files[0], "rb") as fh:
        records = [
            (r.rec_type, r.rec_headers, r.http_headers, r.content_stream().read())
            for r in ArchiveIterator(fh, check_digests=True)
        ]
    assert [r[0] for r in records] == ["warcinfo", "request", "response"]
    _, req_headers, req_http, _ = records[1]
    _, resp_headers, resp_http, payload = records[2]
    assert payload == body
    assert resp_http.get_statuscode() == "200"
    assert resp_http.get_header("Content-Length") == str(len(body))
    assert resp_headers.get_header("WARC-Target-URI") == "http://h/p.html"
    assert resp_headers.get_header("WARC-Date") == "2026-11-29T12:00:00Z"
    assert resp_headers.get_header("WARC-IP-Address") == "10.0.0.1"
    assert resp_headers.get_header("WARC-Payload-Digest").startswith("sha1:")
    assert req_headers.get_header("Content-Type") == "application/http; msgtype=request"
    assert req_headers.get_header("WARC-Concurrent-To") == resp_headers.get_header("WARC-Record-ID")
    assert req_http.get_header("User-Agent") == "natal-crawler/0.1"

"""Small WARC files written with warcio, for the ingest tests that must run without shared data.

Each sample is a real WARC (gzip member per record) exercising one thing ingest must handle.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

ARTICLE = (
    "<html><head><title>Bees</title></head><body>"
    "<nav><a href='/'>Home</a> | <a href='/news'>News</a></nav>"
    "<article><h1>How bees find flowers</h1>"
    "<p>Honey bees find flowers by scent and by the dances of their sisters, who report the "
    "direction and the distance of good patches back at the hive.</p>"
    "<p>A forager visits hundreds of flowers on one trip and remembers where they were.</p>"
    "</article><footer>Copyright 2024 Bee News. All rights reserved.</footer></body></html>"
)
JAPANESE = (
    '<html><head><meta charset="euc-jp"><title>ミツバチ</title></head><body><article>'
    "<p>ミツバチは花の香りと仲間のダンスで花を見つけます。巣に戻った働き蜂は、良い花畑の方向と"
    "距離を仲間に伝えます。一回の飛行で何百もの花を訪れます。</p></article></body></html>"
)


def http_response(
    writer: WARCWriter,
    url: str,
    body: bytes,
    content_type: str = "text/html; charset=utf-8",
    status: str = "200 OK",
    extra_headers: list[tuple[str, str]] | None = None,
    date: str = "2024-05-18T01:58:10Z",
) -> None:
    headers = [("Content-Type", content_type), *(extra_headers or [])]
    http = StatusAndHeaders(status, headers, protocol="HTTP/1.1")
    record = writer.create_warc_record(
        url,
        "response",
        payload=io.BytesIO(body),
        http_headers=http,
        warc_headers_dict={"WARC-Date": date},
    )
    writer.write_record(record)


def chunked(data: bytes, size: int = 40) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(data[i : i + size]), data[i : i + size])
        for i in range(0, len(data), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


def write_mixed_warc(path: Path) -> Path:
    """4 documents (utf-8, EUC-JP, chunked+gzip, WET text) and 5 records ingest must skip."""
    with path.open("wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        http_response(writer, "https://bees.example/a", ARTICLE.encode())
        http_response(writer, "https://bees.example/ja", JAPANESE.encode("euc-jp"), "text/html")
        http_response(
            writer,
            "<https://bees.example/chunked>",  # wget writes target URIs in angle brackets
            chunked(gzip.compress(ARTICLE.replace("Honey", "Wild").encode())),
            extra_headers=[("Transfer-Encoding", "chunked"), ("Content-Encoding", "gzip")],
        )
        http_response(writer, "https://bees.example/logo.png", b"\x89PNG\r\n", "image/png")
        http_response(
            writer, "https://bees.example/gone", b"<html>404</html>", status="404 Not Found"
        )
        request = writer.create_warc_record(
            "https://bees.example/a",
            "request",
            payload=io.BytesIO(b""),
            http_headers=StatusAndHeaders("GET /a HTTP/1.1", [], is_http_request=True),
        )
        writer.write_record(request)
        writer.write_record(
            writer.create_revisit_record(
                "https://bees.example/a",
                "sha1:AAAA",
                "https://bees.example/a",
                "2024-05-17T00:00:00Z",
            )
        )
        writer.write_record(
            writer.create_warc_record(
                "https://bees.example/wet",
                "conversion",
                payload=io.BytesIO(b"Plain text from a WET file about bees."),
                warc_headers_dict={
                    "Content-Type": "text/plain",
                    "WARC-Date": "2024-05-18T01:58:10Z",
                },
            )
        )
        writer.write_record(writer.create_warcinfo_record("x.warc.gz", {"software": "test"}))
    return path


def write_pages_warc(path: Path, n: int) -> Path:
    """``n`` distinct English HTML pages, one response each."""
    with path.open("wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for i in range(n):
            body = ARTICLE.replace("Honey bees", f"Honey bees of hive {i}").encode()
            http_response(writer, f"https://bees.example/page/{i}", body)
    return path

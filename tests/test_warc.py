"""Streaming WARC/WET reading: record selection, HTTP decoding, charsets, damaged files."""

from __future__ import annotations

import gzip
import io
import random
import zlib
from pathlib import Path

import pytest
from ingest_samples import ARTICLE, JAPANESE, http_response, write_mixed_warc, write_pages_warc
from warcio.warcwriter import WARCWriter

from pipelines.data import warc
from pipelines.data.stats import StageStats


def read_all(data: bytes, max_bytes: int = 1 << 20) -> tuple[list[warc.WebRecord], StageStats]:
    stats = StageStats("test")
    return list(warc.iter_web_records(io.BytesIO(data), stats, max_bytes)), stats


def test_keeps_html_and_wet_text_and_counts_every_skip(tmp_path: Path) -> None:
    records, stats = read_all(write_mixed_warc(tmp_path / "m.warc.gz").read_bytes())
    assert [r.url for r in records] == [
        "https://bees.example/a",
        "https://bees.example/ja",
        "https://bees.example/chunked",  # angle brackets stripped
        "https://bees.example/wet",
    ]
    assert [r.is_html for r in records] == [True, True, True, False]
    assert stats.counts["records_read"] == 9
    assert stats.breakdown["skipped_by_reason"] == {
        "content_type:image/png": 1,
        "http_status:4xx": 1,
        "record_type:request": 1,
        "revisit": 1,
        "record_type:warcinfo": 1,
    }
    assert stats.counts["errors"] == 0


def test_chunked_gzip_payload_is_decoded_and_euc_jp_detected(tmp_path: Path) -> None:
    records, _ = read_all(write_mixed_warc(tmp_path / "m.warc.gz").read_bytes())
    by_url = {r.url: r for r in records}
    assert by_url["https://bees.example/chunked"].body == ARTICLE.replace("Honey", "Wild").encode()
    japanese = by_url["https://bees.example/ja"]
    assert japanese.charset is None  # no charset in the HTTP header: found in <meta>
    assert warc.decode_text(japanese.body, japanese.charset) == JAPANESE


def test_truncated_last_record_is_an_error_and_earlier_records_are_kept(tmp_path: Path) -> None:
    data = write_pages_warc(tmp_path / "p.warc.gz", 5).read_bytes()
    records, stats = read_all(data[: len(data) - 300])  # cut inside the last gzip member
    assert [r.url for r in records] == [f"https://bees.example/page/{i}" for i in range(4)]
    assert stats.counts["errors"] == 1
    assert stats.breakdown["errors_by_kind"] == {"truncated_gzip": 1}


def test_payload_cut_short_is_a_truncated_record(tmp_path: Path) -> None:
    path = tmp_path / "big.warc.gz"
    with path.open("wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        rng = random.Random(0)
        words = " ".join(f"w{rng.getrandbits(40):x}" for _ in range(20_000))  # incompressible
        http_response(writer, "https://bees.example/small", ARTICLE.encode())
        http_response(writer, "https://bees.example/big", f"<html><p>{words}</p></html>".encode())
    data = path.read_bytes()
    records, stats = read_all(data[: len(data) - 20_000])
    assert [r.url for r in records] == ["https://bees.example/small"]
    assert stats.breakdown["errors_by_kind"] == {"truncated_record": 1}


def test_corrupt_member_mid_file_stops_the_file_but_keeps_what_came_before(tmp_path: Path) -> None:
    first = write_pages_warc(tmp_path / "a.warc.gz", 3).read_bytes()
    second = write_pages_warc(tmp_path / "b.warc.gz", 3).read_bytes()
    # cut the first file in the middle of its third gzip member (member sizes vary by a few
    # bytes with each record's id and date: a fixed 200-byte cut sometimes kept it whole)
    two = len(write_pages_warc(tmp_path / "c.warc.gz", 2).read_bytes())
    records, stats = read_all(first[: two + (len(first) - two) // 2] + second)
    assert len(records) == 2
    assert stats.breakdown["errors_by_kind"] == {"corrupt_stream": 1}


def test_records_over_the_size_limit_are_skipped_unread(tmp_path: Path) -> None:
    records, stats = read_all(write_pages_warc(tmp_path / "p.warc.gz", 2).read_bytes(), 100)
    assert records == []
    assert stats.breakdown["skipped_by_reason"] == {"too_large": 2}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-05-18T01:58:10Z", "2024-05-18T01:58:10Z"),
        ("2008-10-29T05:21:46-0700", "2008-10-29T12:21:46Z"),
        ("20081029052146", "2008-10-29T05:21:46Z"),
        ("2008-10-294T05:21:46-0700", None),  # ClueWeb09's impossible day
        ("", None),
        (None, None),
    ],
)
def test_parse_warc_date(raw: str | None, expected: str | None) -> None:
    assert warc.parse_warc_date(raw) == expected


def test_dechunk_leaves_unchunked_bodies_alone() -> None:
    assert warc.dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n") == b"hello world"
    assert warc.dechunk(b"<html>already decoded</html>") == b"<html>already decoded</html>"
    assert warc.dechunk(b"ff\r\nshort") == b"ff\r\nshort"


def test_decompress_checks_the_bytes_not_just_the_header() -> None:
    html = b"<html>" + b"x" * 1000 + b"</html>"
    assert warc.decompress(gzip.compress(html), "gzip", 1 << 20) == html
    assert warc.decompress(html, "gzip", 1 << 20) == html  # ClueWeb09: header lies
    assert warc.decompress(zlib.compress(html), "deflate", 1 << 20) == html
    assert warc.decompress(gzip.compress(b"a" * 10_000), "gzip", 100) == b"a" * 100  # bomb cap
    assert warc.decompress(b"\x1f\x8b\x08garbage", "gzip", 1 << 20) is None


def test_detect_charset_prefers_utf8_over_a_latin1_lie() -> None:
    text = "Größe café naïve"
    assert warc.detect_charset(text.encode(), "iso-8859-1") == "utf-8"
    assert warc.detect_charset(text.encode("cp1252"), "iso-8859-1") == "cp1252"
    assert warc.decode_text(text.encode("cp1252"), "latin1") == text
    assert warc.decode_text(JAPANESE.encode("euc-jp")) == JAPANESE


# --- real crawl files --------------------------------------------------------------------------


def read_file(path: Path) -> tuple[list[warc.WebRecord], StageStats]:
    stats = StageStats("test")
    with path.open("rb") as fh:
        return list(warc.iter_web_records(fh, stats, 10 << 20)), stats


def test_every_real_crawl_file_streams_without_a_crash(shared_data: Path) -> None:
    html = 0
    for path in sorted((shared_data / "cc-warc").glob("*.gz")):
        records, stats = read_file(path)
        html += sum(r.is_html for r in records)
        assert stats.counts["records_read"] > 0, path.name
    assert html == 85  # 86 real HTML responses, one of them clipped


def test_clueweb09_quirks(shared_data: Path) -> None:
    records, stats = read_file(shared_data / "cc-warc" / "resiliparse-clueweb09-ja-quirk.warc.gz")
    assert len(records) == 29
    assert all(r.crawl_date is None for r in records)
    assert stats.breakdown["warnings"] == {"invalid_warc_date": 29}
    text = warc.decode_text(records[0].body, records[0].charset)
    assert "<html" in text.lower()
    assert sum("\u3040" <= ch <= "\u30ff" for ch in text) > 100  # kana decoded from EUC-JP


def test_clipped_file_and_revisit_and_wet(shared_data: Path) -> None:
    cc = shared_data / "cc-warc"
    records, stats = read_file(cc / "resiliparse-clipped-truncated.warc.gz")
    assert records == [] and stats.breakdown["errors_by_kind"] == {"truncated_record": 1}
    records, stats = read_file(cc / "warcio-example.warc.gz")
    assert len(records) == 1 and stats.breakdown["skipped_by_reason"]["revisit"] == 1
    records, _ = read_file(cc / "commoncrawl-whirlwind.warc.wet.gz")
    assert len(records) == 1 and not records[0].is_html
    records, _ = read_file(cc / "commoncrawl-whirlwind.warc.wat.gz")
    assert records == []

"""The crawler's pure decisions: URL canonical form, links, robots.txt (RFC 9309), pacing."""

from __future__ import annotations

import email.utils

import pytest

from pipelines.data.crawl_policy import (
    MAX_RETRY_AFTER_S,
    TokenBucket,
    charset_of,
    extract_links,
    host_of,
    is_html,
    normalize_url,
    parse_retry_after,
    parse_robots,
    product_token,
    remove_dot_segments,
    retry_delay,
    robots_for_status,
)

UA = "natal-crawler/0.1 (+https://example.org)"


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        ("HTTP://Example.COM:80/a/./b/../c?x=1#frag", None, "http://example.com/a/c?x=1"),
        ("https://example.com:443", None, "https://example.com/"),
        ("http://example.com:8080/p", None, "http://example.com:8080/p"),
        ("http://user:pw@example.com/p", None, "http://example.com/p"),
        ("../up.html", "http://h/a/b/page.html", "http://h/a/up.html"),
        ("#top", "http://h/a.html", "http://h/a.html"),
        ("/caf\u00e9 x.html?q=a b", "http://h/", "http://h/caf%C3%A9%20x.html?q=a%20b"),
        ("/already%20escaped", "http://h/", "http://h/already%20escaped"),
        ("http://b\u00fccher.example/", None, "http://xn--bcher-kva.example/"),
        ("  http://h/trim  ", None, "http://h/trim"),
        ("mailto:a@b.org", None, None),
        ("javascript:void(0)", "http://h/", None),
        ("ftp://h/file", None, None),
        ("http://h:99999/", None, None),
        ("http:///nohost", None, None),
    ],
)
def test_normalize_url(url, base, expected):
    assert normalize_url(url, base) == expected


def test_remove_dot_segments_keeps_trailing_slash():
    assert remove_dot_segments("/a/b/../") == "/a/"
    assert remove_dot_segments("/a/./b/.") == "/a/b/"
    assert remove_dot_segments("/../../x") == "/x"
    assert remove_dot_segments("/a//b") == "/a//b"


def test_host_of_is_the_politeness_unit():
    assert host_of("http://h:8000/x?y") == "http://h:8000"
    assert host_of("https://h/x") != host_of("http://h/x")


def test_extract_links_base_fragments_nofollow_and_dedup():
    html = b"""<html><head><base href="http://site/docs/"></head><body>
    <a href="a.html#one">a</a> <A HREF='a.html#two'>again</A> <area href="/map.html">
    <a href="http://other.org/x">x</a> <a rel="nofollow ugc" href="skip.html">no</a>
    <a href="mailto:x@y">m</a> <a>no href</a> <a href="b.html?q=1&amp;r=2">b</a>
    </body></html>"""
    links = extract_links(html, "http://site/index.html").links
    assert links == [
        "http://site/docs/a.html",
        "http://site/map.html",
        "http://other.org/x",
        "http://site/docs/b.html?q=1&r=2",
    ]


@pytest.mark.parametrize(
    ("meta", "header"),
    [('<meta name="robots" content="noindex, NOFOLLOW">', None), ("", "none"), ("", "nofollow")],
)
def test_extract_links_obeys_nofollow_directives(meta, header):
    html = f"<html><head>{meta}</head><body><a href='x.html'>x</a></body></html>".encode()
    result = extract_links(html, "http://h/", robots_header=header)
    assert result.nofollow and result.links == []


def test_extract_links_decodes_declared_charset_and_survives_garbage():
    html = '<a href="/\u00e9t\u00e9.html">x</a>'.encode("latin-1")
    links = extract_links(html, "http://h/", "text/html; charset=ISO-8859-1").links
    assert links == ["http://h/%C3%A9t%C3%A9.html"]
    assert extract_links(b"\x00\xff<a href='<<'>\x80", "http://h/").links == ["http://h/%3C%3C"]
    assert charset_of("text/html; charset=no-such-codec") == "utf-8"


def test_is_html_by_type_or_sniffing():
    assert is_html("text/html; charset=utf-8")
    assert is_html("application/xhtml+xml")
    assert not is_html("text/csv", b"<html>")
    assert is_html(None, b"  <!DOCTYPE html><html>")
    assert not is_html(None, b"%PDF-1.7")


ROBOTS = """
# comment line
User-agent: OtherBot
Disallow: /

User-agent: *
Disallow: /private/   # trailing comment
Allow: /private/open.html
Disallow: /*.pdf$
Disallow: /search?
Crawl-delay: 2

User-agent: natal-crawler
User-agent: friend
Disallow: /only-natal/
Crawl-delay: 0.5

User-agent: NATAL-CRAWLER
Allow: /only-natal/ok
"""


def test_robots_star_group_longest_match_and_wildcards():
    rules = parse_robots(ROBOTS, "SomeBot/2.0")
    assert not rules.allowed("http://h/private/x.html")
    assert rules.allowed("http://h/private/open.html")  # longer Allow beats shorter Disallow
    assert not rules.allowed("http://h/files/report.pdf")
    assert rules.allowed("http://h/files/report.pdf?download=1")  # $ anchors the end
    assert not rules.allowed("http://h/search?q=x")
    assert rules.allowed("http://h/search")
    assert rules.allowed("http://h/robots.txt")
    assert rules.crawl_delay == 2


def test_robots_own_groups_are_merged_and_replace_star():
    rules = parse_robots(ROBOTS, UA)
    assert product_token(UA) == "natal-crawler"
    assert not rules.allowed("http://h/only-natal/page")
    assert rules.allowed("http://h/only-natal/ok")  # from the second group for the same agent
    assert rules.allowed("http://h/private/x.html")  # the * group no longer applies
    assert rules.crawl_delay == 0.5


def test_robots_tie_goes_to_allow_and_empty_disallow_allows_all():
    rules = parse_robots("User-agent: *\nDisallow: /page\nAllow: /page\n", UA)
    assert rules.allowed("http://h/page")
    assert parse_robots("User-agent: *\nDisallow:\n", UA).allowed("http://h/anything")
    assert parse_robots("", UA).allowed("http://h/anything")
    assert parse_robots("<html>not robots</html>", UA).allowed("http://h/x")


def test_robots_status_rules_of_rfc_9309():
    assert not robots_for_status(200, "User-agent: *\nDisallow: /\n", UA).allowed("http://h/x")
    assert robots_for_status(404, "", UA).allowed("http://h/x")
    assert robots_for_status(403, "", UA).allowed("http://h/x")
    assert not robots_for_status(503, "", UA).allowed("http://h/x")
    assert not robots_for_status(None, "", UA).allowed("http://h/x")


def test_token_bucket_spaces_requests_at_rate():
    bucket = TokenBucket(rate=4.0)
    waits = [bucket.reserve(10.0) for _ in range(4)]
    assert waits == [0.0, 0.25, 0.5, 0.75]  # concurrent callers are staggered
    assert bucket.reserve(12.0) == 0.0  # a quiet second refills (up to the burst of 1)
    assert bucket.reserve(12.0) == 0.25


def test_token_bucket_burst():
    bucket = TokenBucket(rate=1.0, burst=3.0)
    assert [bucket.reserve(0.0) for _ in range(4)] == [0.0, 0.0, 0.0, 1.0]


def test_retry_after_seconds_and_http_date():
    now = 1_000_000.0
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_retry_delay_backs_off_and_gives_up_on_long_waits():
    assert [retry_delay(a, 0.5, None) for a in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert retry_delay(0, 0.5, 3.0) == 3.0
    assert retry_delay(3, 0.5, 1.0) == 4.0
    assert retry_delay(0, 0.5, MAX_RETRY_AFTER_S + 1) is None

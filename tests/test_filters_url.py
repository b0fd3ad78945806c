"""URL blocklist: domains with their subdomains, substrings, lists read from files."""

from __future__ import annotations

from pathlib import Path

from cluster.config import UrlFilterConfig
from pipelines.data.filters.url import UrlBlocklist, url_filter


def test_domains_and_subdomains(tmp_path: Path) -> None:
    domains = tmp_path / "domains.txt"
    domains.write_text("# ads\nspam.example\n\nBAD.ORG\n")
    blocklist = UrlBlocklist.from_config(UrlFilterConfig(domains_file=str(domains)))
    assert blocklist.domains == {"spam.example", "bad.org"}
    assert url_filter("https://spam.example/page", blocklist).reason == "url_domain"
    assert url_filter("http://www.Bad.org:8080/x?y=1", blocklist).reason == "url_domain"
    assert url_filter("https://notspam.example/page", blocklist).keep
    assert url_filter("https://good.org/spam.example", blocklist).keep


def test_substrings(tmp_path: Path) -> None:
    substrings = tmp_path / "substrings.txt"
    substrings.write_text("casino\n/ads/\n")
    cfg = UrlFilterConfig(substrings_file=str(substrings), substrings=["Porn"])
    blocklist = UrlBlocklist.from_config(cfg)
    assert url_filter("https://x.com/Online-CASINO-bonus", blocklist).reason == "url_substring"
    assert url_filter("https://x.com/ads/1", blocklist).reason == "url_substring"
    assert url_filter("https://x.com/porn", blocklist).reason == "url_substring"
    assert url_filter("https://x.com/adsense", blocklist).keep


def test_missing_or_odd_urls_pass() -> None:
    blocklist = UrlBlocklist.from_config(UrlFilterConfig(domains=["a.com"], substrings=["zz"]))
    assert url_filter(None, blocklist).keep
    assert url_filter("", blocklist).keep
    assert url_filter("http://[broken", blocklist).keep
    empty = UrlBlocklist.from_config(UrlFilterConfig())
    assert empty.substrings is None and url_filter("https://a.com/zz", empty).keep

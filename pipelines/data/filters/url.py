"""URL blocklist: blocked domains (with their subdomains) and blocked URL substrings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from cluster.config import UrlFilterConfig
from pipelines.data.filters.result import KEEP, FilterResult, load_word_list


@dataclass(frozen=True)
class UrlBlocklist:
    """Lowercased domains and a compiled alternation of substrings."""

    domains: frozenset[str]
    substrings: re.Pattern[str] | None

    @classmethod
    def from_config(cls, cfg: UrlFilterConfig) -> UrlBlocklist:
        """Inline entries plus the entries of ``domains_file``/``substrings_file``."""
        domains = list(cfg.domains) + (load_word_list(cfg.domains_file) if cfg.domains_file else [])
        substrings = list(cfg.substrings) + (
            load_word_list(cfg.substrings_file) if cfg.substrings_file else []
        )
        pattern = "|".join(re.escape(s.lower()) for s in substrings)
        return cls(
            domains=frozenset(d.lower().strip(".") for d in domains),
            substrings=re.compile(pattern) if pattern else None,
        )


def url_filter(url: str | None, blocklist: UrlBlocklist) -> FilterResult:
    """Remove a URL whose host is a blocked domain or a subdomain of one, or that holds a
    blocked substring. Documents without a URL pass."""
    if not url:
        return KEEP
    if blocklist.domains:
        try:
            host = (urlsplit(url).hostname or "").strip(".")
        except ValueError:
            host = ""
        labels = host.split(".")
        for i in range(len(labels)):
            if ".".join(labels[i:]) in blocklist.domains:
                return FilterResult(False, "url_domain", None)
    if blocklist.substrings is not None and blocklist.substrings.search(url.lower()):
        return FilterResult(False, "url_substring", None)
    return KEEP

"""The crawler's decisions, as pure functions: which URL, whether robots.txt allows it, when.

No I/O here (no sockets, no files, no clock of its own): :mod:`pipelines.data.crawl` does the
fetching and calls these, and the tests check them without a network.
"""

from __future__ import annotations

import codecs
import email.utils
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

HTML_TYPES = ("text/html", "application/xhtml+xml")
DEFAULT_PORTS = {"http": 80, "https": 443}
# What may stay unescaped in a path or query; "%" keeps existing escapes as they are.
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SAFE_QUERY = _SAFE_PATH + "?"


# --- URLs -----------------------------------------------------------------------------------


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4: ``/a/./b/../c`` → ``/a/c`` (keeps a trailing slash, unlike normpath)."""
    output: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    result = "/".join(output)
    return result if result.startswith("/") else "/" + result


def normalize_url(url: str, base: str | None = None) -> str | None:
    """The canonical form of an http(s) link, or None for anything the crawler cannot fetch.

    Resolves against ``base``, lowercases scheme and host (IDNA-encoded), drops the default
    port, user info and fragment, removes dot segments and percent-encodes unsafe characters,
    so that one page reached through differently written links is fetched once.
    """
    url = url.strip()
    if base is not None:
        url = urljoin(base, url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in DEFAULT_PORTS or not host:
        return None
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = quote(remove_dot_segments(parts.path or "/"), safe=_SAFE_PATH)
    query = quote(parts.query, safe=_SAFE_QUERY)
    return urlunsplit((scheme, netloc, path, query, ""))


def host_of(url: str) -> str:
    """``scheme://host[:port]``: the unit of politeness (robots.txt, rate, concurrency)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def path_of(url: str) -> str:
    """Path and query of a URL, the part robots.txt rules match against."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


# --- links ----------------------------------------------------------------------------------


def is_html(content_type: str | None, body: bytes = b"") -> bool:
    """HTML by its Content-Type, or by its first bytes when the server sent none."""
    if content_type:
        return content_type.split(";", 1)[0].strip().lower() in HTML_TYPES
    head = body[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


def charset_of(content_type: str | None) -> str:
    """The charset a Content-Type names, if Python knows it; else UTF-8."""
    match = re.search(r"charset=[\"']?([\w.:-]+)", content_type or "", re.I)
    try:
        return codecs.lookup(match.group(1)).name if match else "utf-8"
    except LookupError:
        return "utf-8"


@dataclass(frozen=True)
class PageLinks:
    links: list[str]
    nofollow: bool  # the page asked (meta robots / X-Robots-Tag) that its links not be followed


class _LinkParser(HTMLParser):
    """Collects ``<a|area href>`` (minus rel=nofollow), ``<base href>`` and robots metas.

    The standard library's tolerant parser: linear in the page size (resiliparse 2.0.1's node
    collections take quadratic time to iterate: 6 s for a page with 1,000 links).
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.base: str | None = None
        self.robots: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("a", "area", "base", "meta"):
            return
        values = {name: value or "" for name, value in attrs}
        if tag == "meta":
            if values.get("name", "").strip().lower() in ("robots", "natal-crawler"):
                self.robots.append(values.get("content", ""))
        elif "href" not in values:
            return
        elif tag == "base":
            self.base = self.base or values["href"]
        elif "nofollow" not in values.get("rel", "").lower().split():
            self.hrefs.append(values["href"])


def extract_links(
    body: bytes, url: str, content_type: str | None = None, robots_header: str | None = None
) -> PageLinks:
    """Normalized, deduplicated http(s) links of an HTML page, in document order.

    Honours ``<base href>``, skips ``rel=nofollow`` anchors, and returns no links at all when
    a ``<meta name=robots content=nofollow>`` or an ``X-Robots-Tag: nofollow`` header says so.
    """
    parser = _LinkParser()
    parser.feed(body.decode(charset_of(content_type), errors="replace"))
    parser.close()
    directives = [robots_header or "", *parser.robots]
    if any(re.search(r"\b(nofollow|none)\b", d, re.I) for d in directives):
        return PageLinks([], nofollow=True)
    base = normalize_url(parser.base, url) if parser.base else None
    links: dict[str, None] = {}
    for href in parser.hrefs:
        link = normalize_url(href, base or url)
        if link is not None:
            links[link] = None
    return PageLinks(list(links), nofollow=False)


# --- robots.txt (RFC 9309) ------------------------------------------------------------------


def _compile_pattern(pattern: str) -> re.Pattern[str]:
    """A robots.txt path pattern (``*`` any run of characters, ``$`` end) as a regex."""
    anchored = pattern.endswith("$")
    body = quote(pattern[:-1] if anchored else pattern, safe=_SAFE_QUERY)
    regex = ".*".join(re.escape(piece) for piece in body.split("*"))
    return re.compile(regex + ("$" if anchored else ""))


@dataclass(frozen=True)
class RobotsRules:
    """The rules of robots.txt that apply to one user agent on one host."""

    rules: tuple[tuple[bool, str, re.Pattern[str]], ...] = ()  # (allow, pattern, compiled)
    crawl_delay: float | None = None
    disallow_everything: bool = False  # robots.txt unreachable (5xx, network): RFC 9309 §2.3.1.3

    def allowed(self, url: str) -> bool:
        """Longest matching pattern wins; on a tie, Allow wins; /robots.txt is always allowed."""
        path = path_of(url)
        if path == "/robots.txt":
            return True
        if self.disallow_everything:
            return False
        best_allow, best_len = True, -1
        for allow, pattern, compiled in self.rules:
            if compiled.match(path) and (
                len(pattern) > best_len or (len(pattern) == best_len and allow)
            ):
                best_allow, best_len = allow, len(pattern)
        return best_allow


def product_token(user_agent: str) -> str:
    """``natal-crawler/0.1 (+url)`` → ``natal-crawler``: the name robots.txt groups use."""
    return user_agent.split("/", 1)[0].split()[0].lower() if user_agent.strip() else "*"


@dataclass
class _Group:
    agents: list[str] = field(default_factory=list)
    rules: list[tuple[bool, str]] = field(default_factory=list)
    crawl_delay: float | None = None


def parse_robots(text: str, user_agent: str) -> RobotsRules:
    """The rules of a robots.txt that apply to ``user_agent``.

    Groups naming the agent's product token are merged; without one, the ``*`` groups apply;
    without either, everything is allowed. Unknown lines are ignored, as the RFC asks.
    """
    groups: list[_Group] = []
    current: _Group | None = None
    for raw_line in text.splitlines():
        line = raw_line.split("#", 1)[0].strip()
        if ":" not in line:
            continue
        key, value = (part.strip() for part in line.split(":", 1))
        key = key.lower()
        if key == "user-agent":
            if current is None or current.rules or current.crawl_delay is not None:
                current = _Group()
                groups.append(current)
            current.agents.append(value.lower())
        elif current is None:
            continue
        elif key in ("allow", "disallow") and value:
            current.rules.append((key == "allow", value))
        elif key == "crawl-delay":
            try:
                current.crawl_delay = max(0.0, float(value))
            except ValueError:
                pass
    token = product_token(user_agent)
    chosen = [g for g in groups if token in g.agents] or [g for g in groups if "*" in g.agents]
    rules = tuple(
        (allow, pattern, _compile_pattern(pattern)) for g in chosen for allow, pattern in g.rules
    )
    delays = [g.crawl_delay for g in chosen if g.crawl_delay is not None]
    return RobotsRules(rules, crawl_delay=max(delays) if delays else None)


def robots_for_status(status: int | None, text: str, user_agent: str) -> RobotsRules:
    """RFC 9309 §2.3.1: 2xx → parse; 4xx → no rules; 5xx or no answer → disallow everything."""
    if status is not None and 200 <= status < 300:
        return parse_robots(text, user_agent)
    if status is not None and 400 <= status < 500:
        return RobotsRules()
    return RobotsRules(disallow_everything=True)


# --- pacing ---------------------------------------------------------------------------------


class TokenBucket:
    """Requests per second with a burst of ``burst``; the caller supplies the clock.

    ``reserve(now)`` takes a token and says how long to wait before using it. The balance may
    go negative, so concurrent callers get staggered waits rather than all waking at once.
    """

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated: float | None = None

    def reserve(self, now: float) -> float:
        if self.updated is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 120.0


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def retry_delay(attempt: int, backoff_s: float, retry_after: float | None) -> float | None:
    """Seconds before retry number ``attempt + 1``: exponential backoff, or longer if the
    server asked; None when it asked for more than :data:`MAX_RETRY_AFTER_S` (give up)."""
    delay = backoff_s * 2**attempt
    if retry_after is not None:
        if retry_after > MAX_RETRY_AFTER_S:
            return None
        delay = max(delay, retry_after)
    return delay

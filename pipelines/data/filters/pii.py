"""PII redaction: emails, IPv4/IPv6 addresses and phone numbers become placeholders.

A redaction step, not a removal: the document is kept, each match is replaced and counted by
kind. Patterns favour precision: bare digit runs (prices, IDs, years) are not phone numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import NamedTuple

EMAIL_RE = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}(?![\w-])")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4_RE = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\d)")
_H = r"[0-9a-fA-F]{1,4}"
IPV6_RE = re.compile(
    r"(?<![\w:])(?=[0-9a-fA-F]{0,4}:[0-9a-fA-F]{0,4}:)(?:"  # two colons close by: fail fast
    rf"(?:{_H}:){{7}}{_H}"  # full form
    rf"|(?:{_H}:){{1,7}}:(?!{_H})"  # trailing ::
    rf"|(?:{_H}:){{1,6}}:{_H}"
    rf"|(?:{_H}:){{1,5}}(?::{_H}){{1,2}}"
    rf"|(?:{_H}:){{1,4}}(?::{_H}){{1,3}}"
    rf"|(?:{_H}:){{1,3}}(?::{_H}){{1,4}}"
    rf"|(?:{_H}:){{1,2}}(?::{_H}){{1,5}}"
    rf"|{_H}:(?::{_H}){{1,6}}"
    rf"|::(?:{_H}:){{0,6}}{_H}"  # leading ::
    r")(?![\w:])"
)
PHONE_RE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)|\d{1,4})(?:[\s.-]?\d{2,4}){2,3}"  # +44 20 7946 0958
    r"|\(\d{2,4}\)\s?\d{3,4}[\s.-]?\d{3,4}"  # (555) 123-4567
    r"|\d{3}[.-]\d{3,4}[.-]\d{4}"  # 555-123-4567
    r")(?!\w)"
)


def _looks_like_code(address: str) -> bool:
    """``a::b`` is valid IPv6 but mostly code (C++, Perl): ask for 3 groups or a leading ``::``."""
    return not address.startswith("::") and address.count(":") < 3


class Redaction(NamedTuple):
    pattern: re.Pattern[str]
    placeholder: str
    required: str  # a substring without which the pattern cannot match: skip the scan
    spare: Callable[[str], bool] | None = None  # matches to leave as they are


# Applied in this order: an email's domain or an IPv6 address must not be read as a phone.
REDACTIONS: dict[str, Redaction] = {
    "email": Redaction(EMAIL_RE, "<EMAIL>", "@"),
    "ipv6": Redaction(IPV6_RE, "<IPV6>", ":", _looks_like_code),
    "ipv4": Redaction(IPV4_RE, "<IPV4>", "."),
    "phone": Redaction(PHONE_RE, "<PHONE>", ""),
}


def redact_pii(text: str, kinds: Iterable[str]) -> tuple[str, dict[str, int]]:
    """The text with every match of ``kinds`` replaced by its placeholder, and counts by kind."""
    counts: dict[str, int] = {}
    wanted = set(kinds)
    for kind, redaction in REDACTIONS.items():
        if kind not in wanted or redaction.required not in text:
            continue
        if redaction.spare is None:
            text, n = redaction.pattern.subn(redaction.placeholder, text)
        else:
            spared = sum(map(redaction.spare, redaction.pattern.findall(text)))
            text, n = redaction.pattern.subn(
                lambda m, r=redaction: m.group() if r.spare(m.group()) else r.placeholder, text
            )
            n -= spared
        if n:
            counts[kind] = n
    return text, counts

"""PII redaction: placeholders, counts by kind, and look-alikes left alone."""

from __future__ import annotations

import pytest

from pipelines.data.filters.pii import REDACTIONS, redact_pii

ALL = tuple(REDACTIONS)


@pytest.mark.parametrize(
    ("text", "expected", "counts"),
    [
        ("Write to jane.doe+news@mail.example.co.uk.", "Write to <EMAIL>.", {"email": 1}),
        ("Host 192.168.1.10, gateway 10.0.0.1", "Host <IPV4>, gateway <IPV4>", {"ipv4": 2}),
        ("Use 2001:db8::ff00:42:8329 or ::1", "Use <IPV6> or <IPV6>", {"ipv6": 2}),
        ("fe80:0000:0000:0000:0202:b3ff:fe1e:8329 up", "<IPV6> up", {"ipv6": 1}),
        ("Call (555) 123-4567 today", "Call <PHONE> today", {"phone": 1}),
        ("Call 555-123-4567 or 555.123.4567", "Call <PHONE> or <PHONE>", {"phone": 2}),
        ("London +44 20 7946 0958.", "London <PHONE>.", {"phone": 1}),
    ],
)
def test_redacts(text: str, expected: str, counts: dict[str, int]) -> None:
    assert redact_pii(text, ALL) == (expected, counts)


@pytest.mark.parametrize(
    "text",
    [
        "Version 999.1.1.1 and 1.2.3.4.5 are not addresses.",
        "The meeting is at 12:30, see std::vector and a::b.",
        "Years 2019 2020 2021, dated 2020-01-24, price 1,000,000, ISBN 978-3-16-148410-0.",
        "An @handle and a user@localhost are not emails.",
    ],
)
def test_leaves_look_alikes(text: str) -> None:
    assert redact_pii(text, ALL) == (text, {})


def test_only_the_kinds_asked_for() -> None:
    text = "mail a@b.com from 10.0.0.1"
    assert redact_pii(text, ["ipv4"]) == ("mail a@b.com from <IPV4>", {"ipv4": 1})
    assert redact_pii(text, []) == (text, {})

"""FineWeb rules: punctuated lines, short lines, duplicate-line characters, list-like pages."""

from __future__ import annotations

import pytest
from filter_texts import GOOD_TEXT, PARAGRAPHS

from cluster.config import FineWebFilterConfig
from pipelines.data.filters.fineweb import fineweb_filter

FINEWEB = FineWebFilterConfig()


def test_published_defaults() -> None:
    assert (FINEWEB.min_line_punct_ratio, FINEWEB.max_short_line_ratio) == (0.12, 0.67)
    assert (FINEWEB.short_line_chars, FINEWEB.max_dup_line_char_ratio) == (30, 0.1)
    assert FINEWEB.max_newline_word_ratio == 0.3


def test_keeps_prose() -> None:
    assert fineweb_filter(GOOD_TEXT, FINEWEB).keep


def test_line_punctuation_ratio() -> None:
    headings = "\n".join(f"Chapter {i} of the long book about the river town" for i in range(30))
    text = headings + "\n" + PARAGRAPHS[0]
    result = fineweb_filter(text, FINEWEB)
    assert result.reason == "fineweb_line_punct_ratio"
    assert result.value == pytest.approx(1 / 31)


def test_short_lines() -> None:
    short = "\n".join(f"Item {i} is nice." for i in range(8))
    result = fineweb_filter(short + "\n" + "\n".join(PARAGRAPHS), FINEWEB)
    assert result.reason == "fineweb_short_line_ratio"
    assert result.value == pytest.approx(8 / 11)


def test_duplicate_line_characters() -> None:
    text = "\n".join(PARAGRAPHS + [PARAGRAPHS[2]])
    result = fineweb_filter(text, FINEWEB)
    assert result.reason == "fineweb_dup_line_char_ratio"
    assert result.value == pytest.approx(len(PARAGRAPHS[2]) / (len(text) - 3))


def test_list_like_pages() -> None:
    lines = [f"Item {i} sold." for i in range(15)]  # 3 words a line
    result = fineweb_filter("\n".join(lines), FineWebFilterConfig(max_short_line_ratio=1))
    words = 3 * len(lines)
    assert result.reason == "fineweb_list_ratio"
    assert result.value == pytest.approx((len(lines) - 1) / words)


def test_empty_text() -> None:
    assert fineweb_filter(" \n\n ", FINEWEB).reason == "fineweb_empty"

"""FineWeb's own rules (Penedo et al. 2024; datatrove ``FineWebQualityFilter``)."""

from __future__ import annotations

from cluster.config import FineWebFilterConfig
from pipelines.data.filters.result import KEEP, FilterResult
from pipelines.data.filters.text import (
    TERMINAL_PUNCTUATION,
    find_duplicates,
    nonblank_lines,
    split_words,
)


def fineweb_filter(text: str, cfg: FineWebFilterConfig) -> FilterResult:
    """Punctuated lines, short lines, duplicate-line characters, newlines per word."""
    lines = nonblank_lines(text)
    if not lines:
        return FilterResult(False, "fineweb_empty", 0.0)
    punct_ratio = sum(line.endswith(TERMINAL_PUNCTUATION) for line in lines) / len(lines)
    if punct_ratio < cfg.min_line_punct_ratio:
        return FilterResult(False, "fineweb_line_punct_ratio", punct_ratio)
    short_ratio = sum(len(line) <= cfg.short_line_chars for line in lines) / len(lines)
    if short_ratio > cfg.max_short_line_ratio:
        return FilterResult(False, "fineweb_short_line_ratio", short_ratio)
    dup_chars = find_duplicates(lines)[1] / max(len(text) - text.count("\n"), 1)
    if dup_chars > cfg.max_dup_line_char_ratio:
        return FilterResult(False, "fineweb_dup_line_char_ratio", dup_chars)
    newline_ratio = text.count("\n") / max(len(split_words(text)), 1)
    if newline_ratio > cfg.max_newline_word_ratio:
        return FilterResult(False, "fineweb_list_ratio", newline_ratio)
    return KEEP

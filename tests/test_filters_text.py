"""Shared splitting: words without punctuation, non-blank lines, duplicate counting."""

from __future__ import annotations

from pipelines.data.filters.text import find_duplicates, nonblank_lines, split_words


def test_words_keep_inner_apostrophes_and_hyphens() -> None:
    assert split_words("Don't stop — it's an e-mail, 42 times!") == (
        "Don't",
        "stop",
        "it's",
        "an",
        "e-mail",
        "42",
        "times",
    )
    assert split_words("Ünïcödé wörds, 中文 too.") == ("Ünïcödé", "wörds", "中文", "too")


def test_nonblank_lines_strip_trailing_space() -> None:
    assert nonblank_lines("a  \n\n \n  b\t\nc") == ("a", "  b", "c")


def test_find_duplicates_counts_repeats_only() -> None:
    assert find_duplicates(["ab", "c", "ab", "ab", "c", "d"]) == (3, 2 + 2 + 1)
    assert find_duplicates([]) == (0, 0)

"""C4 rules: line drops keep the page's paragraphs; page rules remove it with a value."""

from __future__ import annotations

from pathlib import Path

import pytest
from filter_texts import GOOD_TEXT, PARAGRAPHS

from cluster.config import C4FilterConfig
from pipelines.data.filters.c4 import c4_filter, count_sentences

C4 = C4FilterConfig()


def test_keeps_prose_unchanged() -> None:
    result = c4_filter(GOOD_TEXT, C4)
    assert result.keep and result.text == GOOD_TEXT
    assert result.value == 8  # sentences kept: 2 + 3 + 3


def test_drops_failing_lines_only() -> None:
    noisy = "\n".join(
        [
            "Home | News | Contact",  # no terminal punctuation
            "Read more.",  # fewer than 3 words
            "Please enable JavaScript to view the comments.",
            "This site uses cookies to improve your experience.",
            "See the map [1] or the list [edit] below.",
            PARAGRAPHS[0],
            "",
            PARAGRAPHS[1],
            "Wait for it...",  # an ellipsis is not terminal
        ]
    )
    result = c4_filter(noisy, C4)
    assert result.keep
    assert result.text == "\n".join(
        ["See the map  or the list  below.", PARAGRAPHS[0], "", PARAGRAPHS[1]]
    )


def test_terminal_punctuation_rule_can_be_turned_off() -> None:
    text = GOOD_TEXT + "\n\nHome | News | Contact us today"
    assert c4_filter(text, C4).text == GOOD_TEXT
    assert c4_filter(text, C4FilterConfig(terminal_punct_lines=False)).text == text


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("Lorem ipsum dolor sit amet, consectetur adipiscing elit.", "c4_lorem_ipsum"),
        ("The function is called with {x: 1} as its argument.", "c4_curly_bracket"),
    ],
)
def test_page_rules_remove_the_page(extra: str, reason: str) -> None:
    result = c4_filter(GOOD_TEXT + "\n" + extra, C4)
    assert (result.keep, result.reason, result.value) == (False, reason, 1.0)


def test_too_few_sentences() -> None:
    result = c4_filter(PARAGRAPHS[0], C4)
    assert (result.keep, result.reason, result.value) == (False, "c4_too_few_sentences", 2.0)
    assert c4_filter(PARAGRAPHS[0], C4FilterConfig(min_sentences=2)).keep


def test_long_words_drop_the_line() -> None:
    text = GOOD_TEXT + "\nA line with " + "x" * 1001 + " in it."
    assert c4_filter(text, C4).text == GOOD_TEXT


def test_bad_words_from_a_file(tmp_path: Path) -> None:
    words = tmp_path / "bad.txt"
    words.write_text("# one a line\nharbour\n\n")
    result = c4_filter(GOOD_TEXT, C4FilterConfig(bad_words_file=str(words)))
    assert (result.keep, result.reason) == (False, "c4_bad_words")
    partial = tmp_path / "partial.txt"
    partial.write_text("harb\nbakers' \n")  # whole words only
    assert c4_filter(GOOD_TEXT, C4FilterConfig(bad_words_file=str(partial))).keep


def test_count_sentences() -> None:
    assert count_sentences("One. Two! Three? “Four.” Five") == 4
    assert count_sentences("No end mark") == 1
    assert count_sentences("Version 2.0 is out.") == 1

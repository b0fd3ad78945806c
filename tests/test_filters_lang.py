"""Language id with py3langid's bundled model; the language rule and its reasons."""

from __future__ import annotations

import pytest
from filter_texts import GOOD_TEXT

from pipelines.data.filters.lang import UNKNOWN, detect_language, language_filter

GERMAN = (
    "Die Stadt am Fluss erwacht im Herbst langsam, wenn sich der Nebel über dem Wasser hebt "
    "und die Boote in den Hafen zurückkehren."
)


def test_detects_language_with_normalized_score() -> None:
    lang, score = detect_language(GOOD_TEXT)
    assert lang == "en" and 0.99 <= score <= 1.0
    lang, score = detect_language(GERMAN)
    assert lang == "de" and score > 0.9


def test_text_without_letters_is_unknown() -> None:
    assert detect_language("") == (UNKNOWN, 0.0)
    assert detect_language(" 12 345 -- ") == (UNKNOWN, 0.0)


def test_language_filter_reasons() -> None:
    assert language_filter(GOOD_TEXT, ["en"], 0.65).keep
    result = language_filter(GERMAN, ["en"], 0.65)
    assert (result.keep, result.reason) == (False, "lang")
    assert result.value == pytest.approx(detect_language(GERMAN)[1])
    assert language_filter(GERMAN, [], 0.65).keep  # any language
    unsure = language_filter("ok ok", ["en"], 0.9999)
    assert not unsure.keep and unsure.reason in ("lang", "lang_score")
    assert language_filter(GOOD_TEXT, ["en"], 1.01).reason == "lang_score"

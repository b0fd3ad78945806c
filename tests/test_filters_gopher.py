"""Gopher quality and repetition rules: published thresholds, pass and fail cases."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from filter_texts import GOOD_TEXT, PARAGRAPHS

from cluster.config import GopherQualityConfig, GopherRepetitionConfig
from pipelines.data.filters.gopher import NGrams, gopher_quality, gopher_repetition
from pipelines.data.filters.text import split_words

QUALITY = GopherQualityConfig()
REPETITION = GopherRepetitionConfig()
N_GOOD = len(split_words(GOOD_TEXT))


def test_published_defaults() -> None:
    assert (QUALITY.max_words, QUALITY.min_mean_word_length, QUALITY.max_mean_word_length) == (
        100_000,
        3,
        10,
    )
    assert REPETITION.top_ngram_char_frac == {2: 0.20, 3: 0.18, 4: 0.16}
    assert REPETITION.dup_ngram_char_frac[5] == 0.15 and REPETITION.dup_ngram_char_frac[10] == 0.10


def test_quality_keeps_prose() -> None:
    assert gopher_quality(GOOD_TEXT, QUALITY, min_words=50).keep


@pytest.mark.parametrize(
    ("text", "reason", "value"),
    [
        ("The cat sat on the mat and that was all.", "gopher_short_doc", 10),
        ("a " * 60, "gopher_short_words", 1.0),
        ("internationalization " * 60, "gopher_long_words", 20.0),
        (GOOD_TEXT + " #tag" * 30, "gopher_hash_ratio", 30 / (N_GOOD + 30)),
        (GOOD_TEXT + " and so..." * 25, "gopher_ellipsis_ratio", 25 / (N_GOOD + 50)),
    ],
)
def test_quality_rules_fail(text: str, reason: str, value: float) -> None:
    result = gopher_quality(text, QUALITY, min_words=50)
    assert (result.keep, result.reason) == (False, reason)
    assert result.value == pytest.approx(value)


def test_min_words_comes_from_the_caller() -> None:
    short = " ".join(PARAGRAPHS[:1])
    n_words = len(split_words(short))
    assert gopher_quality(short, QUALITY, min_words=n_words).keep
    result = gopher_quality(short, QUALITY, min_words=n_words + 1)
    assert result.reason == "gopher_short_doc" and result.value == n_words


def test_bullet_and_ellipsis_lines() -> None:
    bullets = "\n".join(f"- the item number {i} of the list that we have to do" for i in range(20))
    result = gopher_quality(bullets, QUALITY, min_words=50)
    assert (result.reason, result.value) == ("gopher_bullet_lines", 1.0)
    trailing = "\n".join(
        [f"The story of the day number {i} is told and then it goes on…" for i in range(4)]
        + PARAGRAPHS
    )
    result = gopher_quality(trailing, GopherQualityConfig(max_symbol_word_ratio=1), min_words=50)
    assert (result.reason, result.value) == ("gopher_ellipsis_lines", pytest.approx(4 / 7))


def test_alpha_words_and_stop_words() -> None:
    numbers = GOOD_TEXT + " " + " ".join(["12.5%", "2020", "$300"] * 40)
    result = gopher_quality(numbers, QUALITY, min_words=50)
    assert result.reason == "gopher_alpha_words" and result.value < 0.8
    no_stop = " ".join(f"Zebras gallop quickly across savannah number {i}." for i in range(12))
    result = gopher_quality(no_stop, QUALITY, min_words=50)
    assert (result.reason, result.value) == ("gopher_stop_words", 0.0)


def test_repetition_keeps_prose() -> None:
    assert gopher_repetition(GOOD_TEXT, REPETITION).keep


def test_duplicate_paragraphs_and_lines() -> None:
    result = gopher_repetition("\n\n".join(PARAGRAPHS + PARAGRAPHS[:2]), REPETITION)
    assert result.reason == "gopher_rep_dup_para_frac" and result.value == pytest.approx(2 / 5)
    long_dup = "\n\n".join([PARAGRAPHS[1], PARAGRAPHS[0], PARAGRAPHS[2], PARAGRAPHS[1]])
    result = gopher_repetition(long_dup, REPETITION)
    assert result.reason == "gopher_rep_dup_para_char_frac"
    assert result.value == pytest.approx(len(PARAGRAPHS[1]) / len(long_dup))
    menu = "\n".join(PARAGRAPHS + ["Home", "News", "Home", "News", "Home", "News"])
    result = gopher_repetition(menu, REPETITION)
    assert result.reason == "gopher_rep_dup_line_frac" and result.value == pytest.approx(4 / 9)


def test_ngrams_measure_characters() -> None:
    ngrams = NGrams(tuple("a b c d e a b c d e x".split()))
    assert ngrams.top_chars(2) == 2 * len("a b")  # every repeated 2-gram occurs twice
    assert ngrams.repeated_chars(5) == 5  # the second "a b c d e" (5 one-char words)
    assert ngrams.repeated_chars(6) == 0
    short = NGrams(tuple("one two three".split()))
    assert short.top_chars(2) == len("two three")  # ties: the longest n-gram
    assert short.repeated_chars(5) == 0 and short.top_chars(4) == 0


def reference_repeated_chars(words: list[str], n: int) -> int:
    """Plain-Python definition: words covered by an n-gram that occurred before."""
    seen: set[tuple[str, ...]] = set()
    covered = [False] * len(words)
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        if gram in seen:
            covered[i : i + n] = [True] * n
        seen.add(gram)
    return sum(len(w) for w, c in zip(words, covered, strict=True) if c)


@pytest.mark.parametrize("seed", range(5))
def test_ngrams_match_the_plain_definition(seed: int) -> None:
    rng = random.Random(seed)
    vocabulary = ["river", "town", "boat", "the", "a", "of", "harbour", "bread"]
    words = [rng.choice(vocabulary) for _ in range(300)]
    ngrams = NGrams(tuple(words))
    for n in range(2, 11):
        assert ngrams.repeated_chars(n) == reference_repeated_chars(words, n)
    for n in (4, 2, 3):  # any order
        grams = Counter(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
        best = max(grams.values())
        assert ngrams.top_chars(n) == best * max(len(g) for g, c in grams.items() if c == best)


def test_repeated_ngrams_fail() -> None:
    spam = " ".join(["buy cheap watches online today"] * 4) + " " + PARAGRAPHS[0]
    result = gopher_repetition(spam, REPETITION)
    assert not result.keep and result.reason.startswith("gopher_rep_top_")
    result = gopher_repetition(spam, GopherRepetitionConfig(top_ngram_char_frac={}))
    repeated_chars = 3 * len("buycheapwatchesonlinetoday")  # 3 repeats, spaces not counted
    assert result.reason == "gopher_rep_dup_5_gram"
    assert result.value == pytest.approx(repeated_chars / len(spam))


def test_empty_text_is_removed() -> None:
    assert gopher_repetition("  \n ", REPETITION).reason == "gopher_rep_empty"

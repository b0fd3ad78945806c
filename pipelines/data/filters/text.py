"""Splitting text into words and lines once, shared by every rule set.

Filters run one after another on the same text; the splits are cached per text (as datatrove
caches its tokenizer output), so each rule set pays only for what it measures.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

# Letters/digits, with inner apostrophes or hyphens kept ("don't", "e-mail"): Gopher's words.
WORD_RE = re.compile(r"\w+(?:['’-]\w+)*")

# Sentence-final marks of the main scripts (Latin, CJK, Arabic, Devanagari, Ethiopic, Armenian…).
TERMINAL_PUNCTUATION = (".", "!", "?", "…", "。", "！", "？", "．", "｡", "؟", "۔", "।", "॥", "።", "፧", "։", "‼", "⁇", "⁈", "⁉")  # fmt: skip


@lru_cache(maxsize=4)
def split_words(text: str) -> tuple[str, ...]:
    """The text's words (runs of letters and digits); punctuation is not a word."""
    return tuple(WORD_RE.findall(text))


@lru_cache(maxsize=4)
def nonblank_lines(text: str) -> tuple[str, ...]:
    """Lines with trailing whitespace stripped; blank lines left out."""
    return tuple(line for line in map(str.rstrip, text.split("\n")) if line)


def find_duplicates(items: Sequence[str]) -> tuple[int, int]:
    """(number of repeated items, characters in them), not counting each first occurrence."""
    counts = Counter(items)
    repeated = [(item, n - 1) for item, n in counts.items() if n > 1]
    return sum(n for _, n in repeated), sum(len(item) * n for item, n in repeated)

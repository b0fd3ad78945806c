"""Gopher's quality and repetition rules (Rae et al. 2021, "Scaling Language Models", A.1.1).

Thresholds come from :class:`cluster.config.GopherQualityConfig` and
:class:`cluster.config.GopherRepetitionConfig` (the published values by default). N-gram
repetition is measured on rolling hashes with one numpy sort per n, not on joined strings.
"""

from __future__ import annotations

import re

import numpy as np

from cluster.config import GopherQualityConfig, GopherRepetitionConfig
from pipelines.data.filters.result import KEEP, FilterResult
from pipelines.data.filters.text import find_duplicates, nonblank_lines, split_words

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "-", "*", "·", "‣", "◦", "▪", "●", "–")
ELLIPSES = ("...", "…")
# A whitespace-delimited token without any letter (digits, underscores, symbols only).
NO_LETTER_TOKEN_RE = re.compile(r"(?<!\S)(?:[^\w\s]|[\d_])++(?!\S)")
PARAGRAPH_BREAK_RE = re.compile(r"\n{2,}")
LINE_BREAK_RE = re.compile(r"\n+")


def gopher_quality(text: str, cfg: GopherQualityConfig, min_words: int) -> FilterResult:
    """Gopher's quality rules; the first one broken removes the document, with its value."""
    words = split_words(text)
    n_words = len(words)
    if n_words < min_words or n_words == 0:
        return FilterResult(False, "gopher_short_doc", float(n_words))
    if n_words > cfg.max_words:
        return FilterResult(False, "gopher_long_doc", float(n_words))
    mean_length = sum(map(len, words)) / n_words
    if mean_length < cfg.min_mean_word_length:
        return FilterResult(False, "gopher_short_words", mean_length)
    if mean_length > cfg.max_mean_word_length:
        return FilterResult(False, "gopher_long_words", mean_length)
    hash_ratio = text.count("#") / n_words
    if hash_ratio > cfg.max_symbol_word_ratio:
        return FilterResult(False, "gopher_hash_ratio", hash_ratio)
    ellipsis_ratio = (text.count("...") + text.count("…")) / n_words
    if ellipsis_ratio > cfg.max_symbol_word_ratio:
        return FilterResult(False, "gopher_ellipsis_ratio", ellipsis_ratio)
    lines = nonblank_lines(text)
    bullet_ratio = sum(line.lstrip().startswith(BULLETS) for line in lines) / len(lines)
    if bullet_ratio > cfg.max_bullet_lines_ratio:
        return FilterResult(False, "gopher_bullet_lines", bullet_ratio)
    ellipsis_lines = sum(line.endswith(ELLIPSES) for line in lines) / len(lines)
    if ellipsis_lines > cfg.max_ellipsis_lines_ratio:
        return FilterResult(False, "gopher_ellipsis_lines", ellipsis_lines)
    n_tokens = max(len(text.split()), 1)
    alpha_ratio = 1 - len(NO_LETTER_TOKEN_RE.findall(text)) / n_tokens
    if alpha_ratio < cfg.min_alpha_words_ratio:
        return FilterResult(False, "gopher_alpha_words", alpha_ratio)
    stop_words = len(STOP_WORDS.intersection(words))  # lowercase them only when needed
    if stop_words < cfg.min_stop_words:
        stop_words = len(STOP_WORDS.intersection(map(str.lower, words)))
    if stop_words < cfg.min_stop_words:
        return FilterResult(False, "gopher_stop_words", float(stop_words))
    return KEEP


class NGrams:
    """The n-grams of one word sequence as 64-bit rolling hashes, built up n = 2, 3, ...

    Words hash with Python's ``hash`` (consistent within a process, which is all a document
    needs); an n-gram's hash is ``h(n-1) * M + h(word)`` in wrapping uint64 arithmetic.
    """

    MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)

    def __init__(self, words: tuple[str, ...]):
        self.n_words = len(words)
        self.word_hash = np.fromiter(map(hash, words), np.int64, self.n_words).view(np.uint64)
        self.lengths = np.fromiter(map(len, words), np.int64, self.n_words)
        self.char_cumsum = np.zeros(self.n_words + 1, np.int64)
        np.cumsum(self.lengths, out=self.char_cumsum[1:])
        self._n, self._hashes = 1, self.word_hash

    def _sorted(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions ordered by n-gram hash (stable), and where each run of equal hashes starts."""
        if n < self._n:
            self._n, self._hashes = 1, self.word_hash
        while self._n < n:
            self._n += 1
            self._hashes = self._hashes[:-1] * self.MULTIPLIER + self.word_hash[self._n - 1 :]
        order = np.argsort(self._hashes, kind="stable")
        ordered = self._hashes[order]
        run_start = np.empty(len(order), bool)
        run_start[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=run_start[1:])
        return order, run_start

    def top_chars(self, n: int) -> int:
        """count × length (words joined by spaces) of the most frequent n-gram; ties: longest."""
        if self.n_words < n:
            return 0
        order, run_start = self._sorted(n)
        starts = np.flatnonzero(run_start)
        counts = np.diff(starts, append=len(order))
        best = counts.max()
        first = order[starts[counts == best]]
        chars = self.char_cumsum[first + n] - self.char_cumsum[first] + (n - 1)
        return int(best * chars.max())

    def repeated_chars(self, n: int) -> int:
        """Characters of the words covered by an n-gram occurrence seen earlier in the text,
        each word counted once (datatrove's greedy scan counts nearly the same)."""
        if self.n_words < n:
            return 0
        order, run_start = self._sorted(n)
        repeats = order[~run_start]  # every occurrence after the first, by position
        cover = np.zeros(self.n_words + 1, np.int64)
        cover[repeats] += 1
        cover[repeats + n] -= 1
        return int(self.lengths[np.cumsum(cover[:-1]) > 0].sum())


def gopher_repetition(text: str, cfg: GopherRepetitionConfig) -> FilterResult:
    """Gopher's repetition rules: duplicate paragraphs, lines, and n-grams, as fractions."""
    if not text.strip():
        return FilterResult(False, "gopher_rep_empty", 0.0)
    n_chars = len(text)
    paragraphs = PARAGRAPH_BREAK_RE.split(text.strip())
    dup_paras, dup_para_chars = find_duplicates(paragraphs)
    if dup_paras / len(paragraphs) > cfg.max_dup_para_frac:
        return FilterResult(False, "gopher_rep_dup_para_frac", dup_paras / len(paragraphs))
    if dup_para_chars / n_chars > cfg.max_dup_para_char_frac:
        return FilterResult(False, "gopher_rep_dup_para_char_frac", dup_para_chars / n_chars)
    lines = LINE_BREAK_RE.split(text)
    dup_lines, dup_line_chars = find_duplicates(lines)
    if dup_lines / len(lines) > cfg.max_dup_line_frac:
        return FilterResult(False, "gopher_rep_dup_line_frac", dup_lines / len(lines))
    if dup_line_chars / n_chars > cfg.max_dup_line_char_frac:
        return FilterResult(False, "gopher_rep_dup_line_char_frac", dup_line_chars / n_chars)
    ngrams = NGrams(split_words(text))
    for n, limit in sorted(cfg.top_ngram_char_frac.items()):
        frac = ngrams.top_chars(n) / n_chars
        if frac > limit:
            return FilterResult(False, f"gopher_rep_top_{n}_gram", frac)
    dup_limits = sorted(cfg.dup_ngram_char_frac.items())
    for i, (n, limit) in enumerate(dup_limits):
        frac = ngrams.repeated_chars(n) / n_chars
        if frac > limit:
            return FilterResult(False, f"gopher_rep_dup_{n}_gram", frac)
        # Repeated characters only shrink as n grows: below every later limit, all pass.
        if frac <= min((later for _, later in dup_limits[i + 1 :]), default=1.0):
            break
    return KEEP

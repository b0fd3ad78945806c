"""C4's cleaning rules (Raffel et al. 2020, sec. 2.2; TFDS ``c4_utils.clean_page``).

C4 edits the page: lines that fail a line rule are dropped, and the page is removed only when
a page rule fails or fewer than ``min_sentences`` sentences are left. The kept text comes back
in ``FilterResult.text``.
"""

from __future__ import annotations

import re
from functools import lru_cache

from cluster.config import C4FilterConfig
from pipelines.data.filters.result import FilterResult, load_word_list

END_PUNCTUATION = (".", "?", "!", '"', "'", "”", "’")
CITATION_RE = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
SENTENCE_END_RE = re.compile(r"[.!?…。！？]+[\"'”’)\]]*(?=\s|$)")
POLICY_PHRASES = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)


@lru_cache(maxsize=8)
def bad_words_pattern(path: str) -> re.Pattern[str]:
    """Whole-word, case-insensitive match of any listed word (C4 used the LDNOOBW list)."""
    words = sorted(load_word_list(path), key=len, reverse=True)
    alternatives = "|".join(re.escape(w.lower()) for w in words) or r"(?!x)x"
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def count_sentences(line: str) -> int:
    """Sentence-final punctuation runs followed by a space or the end; at least 1."""
    return max(1, len(SENTENCE_END_RE.findall(line)))


def c4_filter(text: str, cfg: C4FilterConfig) -> FilterResult:
    """Drop failing lines; remove the page on lorem ipsum, '{', bad words, or too few sentences.

    The value is the number of sentences kept (or 1.0 for a page rule that matched).
    """
    kept: list[str] = []
    sentences = 0
    blank_before = False
    for raw in text.split("\n"):
        words = raw.split()
        if not words:
            blank_before = True
            continue
        if max(map(len, words)) > cfg.max_word_length:
            continue
        line = CITATION_RE.sub("", raw.strip())
        if cfg.terminal_punct_lines and (
            not line.endswith(END_PUNCTUATION) or line.endswith("...")
        ):
            continue
        if len(words) < cfg.min_words_per_line:
            continue
        lowered = line.lower()
        if cfg.lorem_ipsum and "lorem ipsum" in lowered:
            return FilterResult(False, "c4_lorem_ipsum", 1.0)
        if cfg.javascript_lines and "javascript" in lowered:
            continue
        if cfg.curly_bracket and "{" in line:
            return FilterResult(False, "c4_curly_bracket", 1.0)
        if cfg.policy_lines and any(phrase in lowered for phrase in POLICY_PHRASES):
            continue
        sentences += count_sentences(line)
        if blank_before and kept:
            kept.append("")  # keep the paragraph break
        blank_before = False
        kept.append(line)
    if sentences < cfg.min_sentences:
        return FilterResult(False, "c4_too_few_sentences", float(sentences))
    cleaned = "\n".join(kept)
    if cfg.bad_words_file and bad_words_pattern(cfg.bad_words_file).search(cleaned.lower()):
        return FilterResult(False, "c4_bad_words", 1.0)
    return FilterResult(True, None, float(sentences), cleaned)

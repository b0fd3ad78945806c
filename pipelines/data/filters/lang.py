"""Language identification with py3langid's model, which ships inside the PyPI package.

Nothing is downloaded at run time. Probabilities are normalized over the model's 97 languages,
so ``lang_score`` reads as a confidence in [0, 1] (FineWeb keeps English with score ≥ 0.65).
"""

from __future__ import annotations

from functools import lru_cache

from py3langid import langid

from pipelines.data.filters.result import FilterResult

UNKNOWN = "unknown"


@lru_cache(maxsize=1)
def _identifier() -> langid.LanguageIdentifier:
    """Load the bundled model once per process (~0.3 s), with normalized probabilities."""
    return langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)


def detect_language(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, normalized probability); ``("unknown", 0.0)`` for text without letters."""
    if not text or not any(ch.isalpha() for ch in text[:4096]):
        return UNKNOWN, 0.0
    lang, score = _identifier().classify(text)
    return str(lang), float(score)


def language_filter_result(
    lang: str, score: float, languages: list[str], min_score: float
) -> FilterResult:
    """Keep a detected (``lang``, ``score``) in ``languages`` (empty: any) with ``min_score``.

    Reasons: ``lang`` (a language not kept) or ``lang_score`` (kept language, model unsure);
    the value is the score.
    """
    if languages and lang not in languages:
        return FilterResult(False, "lang", score)
    if score < min_score:
        return FilterResult(False, "lang_score", score)
    return FilterResult(True, None, score)


def language_filter(text: str, languages: list[str], min_score: float) -> FilterResult:
    """Detect the text's language and keep it per :func:`language_filter_result`."""
    return language_filter_result(*detect_language(text), languages, min_score)

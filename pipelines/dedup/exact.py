"""Text normalization and 64-bit hashes: the exact-duplicate key and the words MinHash shingles.

Pure functions (no Ray): two documents are exact duplicates when their normalized texts are
equal, i.e. they differ only in case, Unicode form and whitespace.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import pandas as pd

_WORD = re.compile(r"\w+")

# splitmix64 finalizer constants: a bijective mix that spreads every input bit over the output.
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def normalize(text: str) -> str:
    """Case-folded NFKC text with whitespace runs collapsed: the exact-duplicate key."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def words(text: str) -> list[str]:
    """Lower-cased word tokens (punctuation dropped): what MinHash and decontamination shingle."""
    return _WORD.findall(text.lower())


def fmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer over a uint64 array (vectorized, wraps modulo 2**64)."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= _M1
        x ^= x >> np.uint64(27)
        x *= _M2
        x ^= x >> np.uint64(31)
    return x


def hash_strings(values: Sequence[str] | np.ndarray) -> np.ndarray:
    """Stable 64-bit hashes of strings (SipHash through pandas, vectorized, seed-free)."""
    array = np.asarray(values, dtype=object)
    if array.size == 0:
        return np.zeros(0, dtype=np.uint64)
    return pd.util.hash_array(array, categorize=False)


_WORD_HASHES: dict[str, int] = {}  # per process: web text repeats its words (Zipf)
_WORD_CACHE_LIMIT = 1 << 21


def hash_words(tokens: list[str]) -> np.ndarray:
    """:func:`hash_strings` of words, each distinct word hashed once per process."""
    cache = _WORD_HASHES
    missing = [w for w in dict.fromkeys(tokens) if w not in cache]
    if len(cache) + len(missing) > _WORD_CACHE_LIMIT:
        cache.clear()
        missing = list(dict.fromkeys(tokens))
    if missing:
        cache.update(zip(missing, hash_strings(missing).tolist(), strict=True))
    return np.fromiter(map(cache.__getitem__, tokens), dtype=np.uint64, count=len(tokens))


def exact_hashes(texts: Sequence[str]) -> np.ndarray:
    """One uint64 per text: equal for texts whose :func:`normalize` forms are equal."""
    return hash_strings([normalize(t) for t in texts])

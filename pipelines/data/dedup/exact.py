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

# What separates words: ASCII other than letters, digits and "_", and the Unicode blocks of
# spaces and punctuation. Every other character (letters of any script) belongs to a word.
# pipelines.data.dedup.minhash tokenizes UTF-8 bytes with the same table, compiled.
SEPARATOR_RANGES = (
    (0x00, 0x2F), (0x3A, 0x40), (0x5B, 0x5E), (0x60, 0x60), (0x7B, 0xBF), (0xD7, 0xD7),
    (0xF7, 0xF7), (0x2000, 0x206F), (0x2E00, 0x2E7F), (0x3000, 0x303F), (0xFE30, 0xFE4F),
    (0xFF00, 0xFF0F), (0xFF1A, 0xFF20), (0xFF3B, 0xFF40), (0xFF5B, 0xFF65),
)  # fmt: skip
_WORD = re.compile(
    "[^"
    + "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in SEPARATOR_RANGES)
    + "]+"
)

# splitmix64 finalizer constants: a bijective mix that spreads every input bit over the output.
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def normalize(text: str) -> str:
    """Case-folded NFKC text with whitespace runs collapsed: the exact-duplicate key."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def words(text: str) -> list[str]:
    """Lower-cased word tokens (punctuation dropped): what MinHash and decontamination shingle.

    The readable definition; ``minhash.word_hashes`` computes the same words' hashes, fast.
    """
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


def exact_hashes(texts: Sequence[str]) -> np.ndarray:
    """One uint64 per text: equal for texts whose :func:`normalize` forms are equal."""
    return hash_strings([normalize(t) for t in texts])

"""MinHash signatures of word n-gram shingles, compiled loops over a batch of documents.

Why this shape: one compiled pass over the batch's lower-cased UTF-8 bytes finds the words
and hashes each (FNV-1a, then a 64-bit mix), with no Python object per word; n consecutive
word hashes combine into a shingle hash; the permutations are multiply-shift hashes
``(a * x + b) >> 32`` (``a`` odd), and the minimum over a document's shingles is taken in the
same loop, so no (shingles × permutations) matrix is ever built. Measured on 12,500 ~1 KB
documents, one core: 0.05 s for the signatures where the numpy version (chunked matrices,
``minimum.reduceat``) took 0.62 s, and 0.03 s for the words where ``re.findall`` plus a
cached SipHash per word took 0.93 s.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.data.dedup.exact import SEPARATOR_RANGES, fmix64

EMPTY = np.uint32(0xFFFFFFFF)  # signature value of a document without shingles
MAX_NGRAM = 64
# position-dependent odd multipliers keep the n-gram combination order-sensitive
_MULTIPLIERS = np.array(
    [(0x9E3779B97F4A7C15 * (2 * t + 1)) & 0xFFFFFFFFFFFFFFFF for t in range(MAX_NGRAM)],
    dtype=np.uint64,
)
_SEPARATORS = np.array(SEPARATOR_RANGES, dtype=np.int64)
_ASCII_SEPARATOR = np.array(
    [any(lo <= c <= hi for lo, hi in SEPARATOR_RANGES) for c in range(128)], dtype=np.bool_
)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) multiply-shift parameters: ``a`` odd 64-bit, ``b`` 64-bit, from ``seed``."""
    rng = np.random.Generator(np.random.PCG64(seed))
    a = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2)
    return a, b


@numba.njit(cache=True)
def _is_separator(cp: int, ascii_table: np.ndarray, ranges: np.ndarray) -> bool:
    if cp < 0x80:
        return ascii_table[cp]
    for r in range(ranges.shape[0]):
        if ranges[r, 0] <= cp <= ranges[r, 1]:
            return True
    return False


@numba.njit(cache=True)
def _hash_words(data, doc_offsets, ascii_table, ranges, out, counts) -> int:
    """FNV-1a of every word of every document (UTF-8 ``data``); returns the number of words."""
    pos = 0
    for d in range(len(doc_offsets) - 1):
        i, end, n = doc_offsets[d], doc_offsets[d + 1], 0
        h, in_word = _FNV_OFFSET, False
        while i < end:
            c = np.int64(data[i])
            width, cp = 1, c
            if c >= 0xF0 and i + 3 < end:
                width = 4
                cp = ((c & 0x07) << 18) | ((data[i + 1] & 0x3F) << 12)
                cp |= ((data[i + 2] & 0x3F) << 6) | (data[i + 3] & 0x3F)
            elif c >= 0xE0 and i + 2 < end:
                width = 3
                cp = ((c & 0x0F) << 12) | ((data[i + 1] & 0x3F) << 6) | (data[i + 2] & 0x3F)
            elif c >= 0xC0 and i + 1 < end:
                width = 2
                cp = ((c & 0x1F) << 6) | (data[i + 1] & 0x3F)
            if _is_separator(cp, ascii_table, ranges):
                if in_word:
                    out[pos] = h
                    pos += 1
                    n += 1
                    in_word = False
            else:
                if not in_word:
                    h, in_word = _FNV_OFFSET, True
                for j in range(i, i + width):
                    h = (h ^ np.uint64(data[j])) * _FNV_PRIME
            i += width
        if in_word:
            out[pos] = h
            pos += 1
            n += 1
        counts[d] = n
    return pos


def word_hashes(texts: Sequence[str] | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the words (:func:`pipelines.data.dedup.exact.words`) of every text.

    Returns the hashes back to back and the offsets of each document's words.
    """
    lowered = pc.utf8_lower(pa.array(texts, pa.large_string()))
    if lowered.null_count:
        lowered = pc.fill_null(lowered, "")
    _, offsets_buffer, data_buffer = lowered.buffers()
    doc_offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[
        lowered.offset : lowered.offset + len(lowered) + 1
    ]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer else np.zeros(0, np.uint8)
    # a word takes at least one byte and is followed by a separator or the document's end
    out = np.empty((doc_offsets[-1] - doc_offsets[0]) // 2 + len(lowered) + 1, dtype=np.uint64)
    counts = np.zeros(len(lowered), dtype=np.int64)
    total = _hash_words(data, doc_offsets, _ASCII_SEPARATOR, _SEPARATORS, out, counts)
    offsets = np.zeros(len(lowered) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return fmix64(out[:total]), offsets


@numba.njit(cache=True)
def _ngram_hashes(word_hashes, offsets, shingle_offsets, ngram, multipliers):
    out = np.empty(shingle_offsets[-1], dtype=np.uint64)
    for d in range(len(offsets) - 1):
        lo, hi, pos = offsets[d], offsets[d + 1], shingle_offsets[d]
        width = min(ngram, hi - lo)  # a document shorter than ngram: one shingle of all it has
        for start in range(lo, hi - width + 1 if hi > lo else lo):
            acc = np.uint64(0)
            for t in range(width):
                acc += word_hashes[start + t] * multipliers[t]
            out[pos] = acc
            pos += 1
    return out


def combine_ngrams(word_hashes: np.ndarray, offsets: np.ndarray, ngram: int) -> tuple:
    """Hash every run of ``ngram`` consecutive words within each document.

    ``word_hashes`` holds all documents' word hashes back to back; document ``i`` owns
    ``word_hashes[offsets[i]:offsets[i + 1]]``. Returns (shingle hashes, shingle offsets). A
    document shorter than ``ngram`` words (but not empty) gets one shingle: all its words.
    """
    if not 1 <= ngram <= MAX_NGRAM:
        raise ValueError(f"ngram must be between 1 and {MAX_NGRAM}, got {ngram}")
    counts = np.diff(offsets)
    per_doc = np.where(counts >= ngram, counts - ngram + 1, np.minimum(counts, 1))
    shingle_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(per_doc, out=shingle_offsets[1:])
    hashes = _ngram_hashes(word_hashes, offsets, shingle_offsets, ngram, _MULTIPLIERS)
    return fmix64(hashes), shingle_offsets


def shingle_hashes(texts: Sequence[str] | pa.Array, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the word n-grams of every text, back to back, with offsets."""
    return combine_ngrams(*word_hashes(texts), ngram)


@numba.njit(cache=True)
def _min_hashes(hashes, offsets, a, b):
    low = np.full((len(offsets) - 1, len(a)), np.uint64(0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    for d in range(len(offsets) - 1):
        row = low[d]
        for s in range(offsets[d], offsets[d + 1]):
            x = hashes[s]
            for p in range(len(a)):
                value = x * a[p] + b[p]
                if value < row[p]:
                    row[p] = value
    return low


def signatures_from_hashes(
    hashes: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """MinHash signatures (documents × permutations, uint32) of shingle hashes with offsets.

    One pass over each document's shingles, so a 10 MB text needs no more memory than a
    small one. min over (a*x + b) then >> 32 equals min over ((a*x + b) >> 32): the shift is
    monotonic, so only the result is shifted.
    """
    low = _min_hashes(hashes, offsets, a, b)
    out = (low >> np.uint64(32)).astype(np.uint32)
    out[np.diff(offsets) == 0] = EMPTY
    return out


def signatures(
    texts: Sequence[str] | pa.Array, ngram: int, a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """MinHash signatures of texts' word n-grams (documents × permutations, uint32)."""
    hashes, offsets = shingle_hashes(texts, ngram)
    return signatures_from_hashes(hashes, offsets, a, b)


def jaccard_estimate(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Fraction of equal signature values: the MinHash estimate of Jaccard similarity."""
    return (sig_a == sig_b).mean(axis=-1)

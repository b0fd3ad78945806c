"""MinHash signatures of word n-gram shingles, vectorized over a batch of documents.

Why this shape: hashing every word once (SipHash, vectorized) and combining n consecutive
word hashes with numpy gives every shingle a 64-bit hash without a Python loop per shingle.
Permutations are multiply-shift hashes ``(a * x + b) >> 32`` on 64-bit shingle hashes
(``a`` odd): one multiply and one add per (shingle, permutation), on small chunks of documents
so that the (shingles × permutations) matrix stays in cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipelines.dedup.exact import fmix64, hash_words, words

EMPTY = np.uint32(0xFFFFFFFF)  # signature value of a document without shingles
CHUNK_SHINGLES = 2048  # shingles per (shingles × permutations) matrix: ~1.8 MB at 112 perms
MAX_NGRAM = 64
# position-dependent odd multipliers keep the n-gram combination order-sensitive
_MULTIPLIERS = np.array(
    [(0x9E3779B97F4A7C15 * (2 * t + 1)) & 0xFFFFFFFFFFFFFFFF for t in range(MAX_NGRAM)],
    dtype=np.uint64,
)


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) multiply-shift parameters: ``a`` odd 64-bit, ``b`` 64-bit, from ``seed``."""
    rng = np.random.Generator(np.random.PCG64(seed))
    a = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2)
    return a, b


def combine_ngrams(word_hashes: np.ndarray, offsets: np.ndarray, ngram: int) -> tuple:
    """Hash every run of ``ngram`` consecutive words within each document.

    ``word_hashes`` holds all documents' word hashes back to back; document ``i`` owns
    ``word_hashes[offsets[i]:offsets[i + 1]]``. Returns (shingle hashes, shingle offsets). A
    document shorter than ``ngram`` words (but not empty) gets one shingle: all its words.
    """
    counts = np.diff(offsets)
    per_doc = np.where(counts >= ngram, counts - ngram + 1, np.minimum(counts, 1))
    shingle_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(per_doc, out=shingle_offsets[1:])
    total = int(shingle_offsets[-1])
    # window sums over the flat word array (cheap slices), then each shingle's start picked out
    doc_of = np.repeat(np.arange(len(counts)), per_doc)
    starts = offsets[:-1][doc_of] + (np.arange(total) - shingle_offsets[:-1][doc_of])
    padded = np.concatenate([word_hashes, np.zeros(ngram, dtype=np.uint64)])
    size = len(word_hashes)
    window = np.zeros(size, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for t in range(ngram):
            window += padded[t : t + size] * _MULTIPLIERS[t]
        acc = window[starts] if size else np.zeros(0, dtype=np.uint64)
        for doc in np.flatnonzero((counts > 0) & (counts < ngram)):  # short documents: rare
            span = word_hashes[offsets[doc] : offsets[doc + 1]]
            acc[shingle_offsets[doc]] = (span * _MULTIPLIERS[: len(span)]).sum(dtype=np.uint64)
    return fmix64(acc), shingle_offsets


def shingle_hashes(texts: Sequence[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the word n-grams of every text, back to back, with offsets."""
    tokenized = [words(t) for t in texts]
    counts = np.fromiter((len(w) for w in tokenized), dtype=np.int64, count=len(tokenized))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    flat = [w for doc in tokenized for w in doc]
    return combine_ngrams(hash_words(flat), offsets, ngram)


def signatures_from_hashes(
    hashes: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """MinHash signatures (documents × permutations, uint32) of shingle hashes with offsets.

    Documents are taken in chunks of about :data:`CHUNK_SHINGLES` shingles; a larger document
    is reduced slice by slice, so a 10 MB text needs no more memory than a small one.
    """
    n_docs = len(offsets) - 1
    # min over (a*x + b) then >> 32 equals min over ((a*x + b) >> 32): the shift is monotonic,
    # so only the (documents × permutations) result is shifted, not the big matrix
    low = np.full((n_docs, len(a)), np.iinfo(np.uint64).max, dtype=np.uint64)
    doc = 0
    with np.errstate(over="ignore"):
        while doc < n_docs:
            end = int(np.searchsorted(offsets, offsets[doc] + CHUNK_SHINGLES, side="right")) - 1
            end = max(end, doc + 1)
            lo, hi = int(offsets[doc]), int(offsets[end])
            if end == doc + 1 and hi - lo > CHUNK_SHINGLES:  # one big document: slices
                for s in range(lo, hi, CHUNK_SHINGLES):
                    values = hashes[s : s + CHUNK_SHINGLES, None] * a
                    values += b
                    np.minimum(low[doc], values.min(0), out=low[doc])
            elif hi > lo:
                values = hashes[lo:hi, None] * a
                values += b
                local = offsets[doc:end] - lo
                nonempty = np.diff(offsets[doc : end + 1]) > 0
                low[doc:end][nonempty] = np.minimum.reduceat(values, local[nonempty], axis=0)
            doc = end
    out = (low >> np.uint64(32)).astype(np.uint32)
    out[np.diff(offsets) == 0] = EMPTY
    return out


def signatures(texts: Sequence[str], ngram: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash signatures of texts' word n-grams (documents × permutations, uint32)."""
    hashes, offsets = shingle_hashes(texts, ngram)
    return signatures_from_hashes(hashes, offsets, a, b)


def jaccard_estimate(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Fraction of equal signature values: the MinHash estimate of Jaccard similarity."""
    return (sig_a == sig_b).mean(axis=-1)

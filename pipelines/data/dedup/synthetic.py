"""Corpora with planted near-duplicates whose true Jaccard is known: for tests and benchmarks.

Base documents are Zipf-random word sequences over a real vocabulary (so unrelated
documents share no n-gram); variants substitute a controlled number of words, which sets
their Jaccard to the base; some are exact copies with case/whitespace changes. The truth is
measured on plain Python shingle sets, independently of natal's hashing.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

FALLBACK_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "be", "do", "fu", "ga"]


def vocabulary(text_dir: Path | None = None, size: int = 20000) -> list[str]:
    """Distinct words from real text files (most frequent first), or made-up words."""
    counts: dict[str, int] = defaultdict(int)
    if text_dir is not None and text_dir.is_dir():
        for path in sorted(text_dir.rglob("*.txt")):
            for word in re.findall(r"[a-z]+", path.read_text(errors="replace").lower()):
                counts[word] += 1
    words = sorted(counts, key=lambda w: (-counts[w], w))[:size]
    if len(words) < 1000:
        words = ["".join(p) for p in itertools.product(FALLBACK_SYLLABLES, repeat=4)][:size]
    return words


def make_corpus(
    n_docs: int,
    vocab: list[str],
    seed: int = 0,
    words_per_doc: int = 170,
    family_fraction: float = 0.3,
    edits: tuple[int, ...] = (0, 1, 2, 3, 6, 10, 16, 24),
) -> tuple[list[dict], np.ndarray]:
    """``n_docs`` documents ``{id, text}`` and the family (base document) of each.

    ``family_fraction`` of the documents are variants of a base; a variant substitutes
    ``k`` words (k drawn from ``edits``; 0 = an exact copy with changed case and spacing).
    """
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(1.0 / np.arange(1, len(vocab) + 1))
    cumulative /= cumulative[-1]
    vocab_array = np.array(vocab, dtype=object)
    n_variants = int(n_docs * family_fraction)
    n_bases = n_docs - n_variants
    docs, family = [], []
    for start in range(0, n_bases, 10000):  # Zipf draws in blocks: fast and bounded in memory
        count = min(10000, n_bases - start)
        draws = np.searchsorted(cumulative, rng.random((count, words_per_doc)))
        docs.extend(" ".join(row) for row in vocab_array[np.minimum(draws, len(vocab) - 1)])
    family = list(range(n_bases))
    parents = rng.integers(0, n_bases, size=n_variants)
    ks = rng.choice(np.array(edits), size=n_variants)
    for j, (parent, k) in enumerate(zip(parents, ks, strict=True)):
        words = docs[parent].split(" ")
        if k == 0:
            text = "  ".join(words).upper() if j % 2 else " ".join(words) + "\n"
        else:
            for pos in rng.choice(len(words), size=int(k), replace=False):
                words[pos] = vocab[int(rng.integers(len(vocab)))]
            text = " ".join(words)
        docs.append(text)
        family.append(int(parent))
    order = rng.permutation(n_docs)
    return [{"id": f"doc-{i:07d}", "text": docs[i]} for i in order], np.asarray(family)[order]


def shingles(text: str, ngram: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    if len(words) < ngram:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + ngram]) for i in range(len(words) - ngram + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _shingle_array(text: str, ngram: int) -> np.ndarray:
    """Distinct n-grams of a text as int64 codes: Python's own string hash of each word,
    combined polynomially (not natal's hashing; collisions are negligible at 64 bits)."""
    words = re.findall(r"\w+", text.lower())
    if len(words) < ngram:
        return np.array([hash(tuple(words))], dtype=np.int64) if words else np.zeros(0, np.int64)
    codes = np.fromiter((hash(w) for w in words), dtype=np.int64, count=len(words))
    acc = np.zeros(len(words) - ngram + 1, dtype=np.int64)
    with np.errstate(over="ignore"):
        for t in range(ngram):
            acc = acc * np.int64(1_000_003) + codes[t : t + len(acc)]
    return np.unique(acc)


def pair_quality(
    docs: list[dict],
    family: np.ndarray,
    cluster_of: dict[str, int],
    threshold: float,
    ngram: int = 5,
) -> dict[str, float]:
    """Recall and contamination of a clustering against the true Jaccard of every pair.

    Candidate true pairs are the pairs within a family (others share no n-gram); predicted
    pairs are the pairs within an output cluster (transitive merges included). Shingle sets
    are built only for documents in either.
    """
    index = {d["id"]: i for i, d in enumerate(docs)}
    by_family: dict[int, list[int]] = defaultdict(list)
    for i, f in enumerate(family):
        by_family[int(f)].append(i)
    by_cluster: dict[int, list[int]] = defaultdict(list)
    for doc_id, c in cluster_of.items():
        by_cluster[c].append(index[doc_id])
    cache: dict[int, np.ndarray] = {}

    def true_j(a: int, b: int) -> float:
        for i in (a, b):
            if i not in cache:
                cache[i] = _shingle_array(docs[i]["text"], ngram)
        inter = len(np.intersect1d(cache[a], cache[b], assume_unique=True))
        union = len(cache[a]) + len(cache[b]) - inter
        return inter / union if union else 1.0

    truth = {
        pair: true_j(*pair)
        for members in by_family.values()
        if len(members) > 1
        for pair in itertools.combinations(sorted(members), 2)
    }
    predicted = {
        pair
        for members in by_cluster.values()
        for pair in itertools.combinations(sorted(members), 2)
    }
    high = [p for p, j in truth.items() if j >= threshold + 0.05]
    strict = [p for p, j in truth.items() if j >= threshold]
    predicted_j = {p: truth[p] if p in truth else true_j(*p) for p in predicted}
    low = [p for p, j in predicted_j.items() if j < threshold - 0.2]
    return {
        "pairs_high": len(high),
        "recall_high": sum(p in predicted for p in high) / max(1, len(high)),
        "recall": sum(p in predicted for p in strict) / max(1, len(strict)),
        "precision": sum(j >= threshold - 0.1 for j in predicted_j.values())
        / max(1, len(predicted)),
        "predicted_pairs": len(predicted),
        "low_fraction": len(low) / max(1, len(predicted)),
    }

"""LSH banding of MinHash signatures and the choice of bands × rows for a Jaccard threshold.

Two documents become candidates when all ``rows`` signature values of at least one of
``bands`` bands agree: probability ``1 - (1 - J**rows)**bands`` at Jaccard ``J``, an S-curve
whose midpoint is about ``(1 / bands) ** (1 / rows)`` (FineWeb's 14 × 8: ≈ 0.72).
"""

from __future__ import annotations

import numpy as np

from pipelines.data.dedup.exact import fmix64

_ROW_MULT = np.uint64(0xD6E8FEB86659FD93)


def candidate_probability(jaccard: float | np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Probability that a pair with this Jaccard similarity shares at least one band."""
    return 1.0 - (1.0 - np.asarray(jaccard, dtype=np.float64) ** rows) ** bands


def _error_areas(bands: int, rows: int, threshold: float, steps: int = 2001) -> tuple:
    """(false-positive area below threshold, false-negative area above it)."""
    below = np.linspace(0.0, threshold, steps)
    above = np.linspace(threshold, 1.0, steps)
    fp = np.trapezoid(candidate_probability(below, bands, rows), below)
    fn = np.trapezoid(1.0 - candidate_probability(above, bands, rows), above)
    return float(fp), float(fn)


def optimal_params(
    threshold: float,
    num_perm: int,
    false_positive_weight: float = 0.5,
    false_negative_weight: float = 0.5,
) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimising the weighted error areas.

    The false-positive area is the candidate probability integrated below ``threshold``, the
    false-negative area one minus it integrated above: the routine of datasketch's
    ``MinHashLSH`` (``_optimal_param``), computed with numpy.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    best, best_error = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp, fn = _error_areas(bands, rows, threshold)
            error = false_positive_weight * fp + false_negative_weight * fn
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


def band_hashes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One uint64 per (document, band): a hash of that band's ``rows`` signature values.

    The band index is mixed in, so equal values in different bands never collide.
    """
    n, k = signatures.shape
    if bands * rows > k:
        raise ValueError(f"{bands} bands × {rows} rows need {bands * rows} permutations, have {k}")
    values = signatures[:, : bands * rows].reshape(n, bands, rows).astype(np.uint64)
    acc = np.broadcast_to(np.arange(bands, dtype=np.uint64) + np.uint64(1), (n, bands)).copy()
    with np.errstate(over="ignore"):
        for r in range(rows):
            acc = fmix64(acc * _ROW_MULT + values[:, :, r])
    return acc


def bucket_edges(buckets: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate edges from (bucket, key) rows: every member of a bucket → the bucket's min key.

    A star per bucket is enough for connected components (all members end up in one
    component) and needs ``members - 1`` edges instead of all pairs. Duplicate edges (the same
    pair in several bands) are removed.
    """
    if len(buckets) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    order = np.lexsort((keys, buckets))
    buckets, keys = buckets[order], keys[order]
    first = np.ones(len(buckets), dtype=bool)
    first[1:] = buckets[1:] != buckets[:-1]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(buckets)), 0))
    heads = keys[group_start]
    member = ~first & (keys != heads)
    edges = np.unique(np.stack([keys[member], heads[member]], axis=1), axis=0)
    return edges[:, 0], edges[:, 1]

"""LSH banding: optimal parameters match datasketch, band hashes, star edges per bucket."""

from __future__ import annotations

import numpy as np
import pytest
from datasketch.lsh import _optimal_param

from cluster.config import DedupConfig
from pipelines.data.dedup import lsh, minhash
from pipelines.data.dedup.deduplicate import resolve_params


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
@pytest.mark.parametrize("fn_weight", [0.5, 0.95])
def test_optimal_params_match_datasketch(threshold: float, fn_weight: float) -> None:
    expected = _optimal_param(threshold, 112, 1 - fn_weight, fn_weight)
    assert lsh.optimal_params(threshold, 112, 1 - fn_weight, fn_weight) == expected


def test_defaults_derive_finewebs_14_by_8() -> None:
    params = resolve_params(DedupConfig(), partitions=4)
    assert (params.bands, params.rows) == (14, 8)
    assert resolve_params(DedupConfig(bands=7), partitions=4).rows == 16
    low = resolve_params(DedupConfig(threshold=0.5), partitions=4)
    assert low.bands > 14 and low.bands * low.rows <= 112


def test_candidate_probability_is_the_s_curve() -> None:
    p = lsh.candidate_probability(np.array([0.5, 0.72, 0.85]), 14, 8)
    assert p[0] < 0.1 and 0.5 < p[1] < 0.7 and p[2] > 0.98  # midpoint ≈ (1/14)**(1/8)


def test_band_hashes_match_only_equal_bands() -> None:
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 2**32, size=(3, 16), dtype=np.uint64).astype(np.uint32)
    sig[1] = sig[0]
    sig[1, 5] += 1  # differs in band 1 (rows 4..7) only
    sig[2, :4] = sig[0, 4:8]  # same values as band 1 of doc 0, but in band 0
    bands = lsh.band_hashes(sig, 4, 4)
    assert bands.shape == (3, 4)
    assert (bands[0] == bands[1]).tolist() == [True, False, True, True]
    assert bands[2, 0] != bands[0, 1]
    with pytest.raises(ValueError):
        lsh.band_hashes(sig, 5, 4)


def test_similar_documents_share_a_band_and_unrelated_do_not() -> None:
    words = [f"w{i}" for i in range(300)]
    near = list(words)
    near[150] = "changed"
    a, b = minhash.permutations(112, 1)
    sig = minhash.signatures([" ".join(words), " ".join(near), "something else entirely"], 5, a, b)
    bands = lsh.band_hashes(sig, 14, 8)
    assert (bands[0] == bands[1]).any()
    assert not (bands[0] == bands[2]).any()


def test_bucket_edges_are_stars_to_the_minimum() -> None:
    buckets = np.array([9, 9, 9, 4, 4, 4, 7], dtype=np.uint64)
    keys = np.array([30, 10, 20, 20, 10, 10, 5])
    u, v = lsh.bucket_edges(buckets, keys)
    assert sorted(zip(u.tolist(), v.tolist(), strict=True)) == [(20, 10), (30, 10)]
    assert len(lsh.bucket_edges(buckets[:0], keys[:0])[0]) == 0

"""The per-partition steps of the dedup shuffle, without Ray: buckets → edges → routing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipelines.data.dedup import shuffle
from pipelines.data.dedup.exact import exact_hashes
from pipelines.data.dedup.minhash import permutations, signatures

PARAMS = shuffle.Params(5, 112, 14, 8, 1, 3, False, 0.7, "longest")
BASE = " ".join(f"word{i}" for i in range(200))


def _meta(texts: list[str], ids: list[str]) -> dict[str, np.ndarray]:
    a, b = permutations(PARAMS.num_perm, PARAMS.seed)
    return shuffle.meta_columns(
        np.arange(len(texts), dtype=np.int64),
        ids,
        [len(t) for t in texts],
        exact_hashes(texts),
        signatures(texts, PARAMS.ngram, a, b),
        earlier=False,
    )


def _edges_of_all_groups(rows: dict[str, np.ndarray]) -> pa.Table:
    """What the Ray Data groupby does: buckets_to_edges once per ``part`` value."""
    outputs = [
        shuffle.buckets_to_edges({name: col[rows["part"] == p] for name, col in rows.items()})
        for p in np.unique(rows["part"])
    ]
    return pa.table({name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]})


def test_bucket_rows_cover_exact_bands_and_ids_with_partitions_in_range() -> None:
    texts = [BASE, BASE + " tail", "something else entirely " * 20, ""]
    rows = shuffle.bucket_rows(_meta(texts, ["a", "b", "c", "d"]), PARAMS)
    kinds = np.bincount(rows["kind"], minlength=3)
    # exact and id rows for all 4 documents, band rows only for the 3 with words
    assert kinds.tolist() == [4, 3 * PARAMS.bands, 4]
    assert rows["part"].min() >= 0 and rows["part"].max() < PARAMS.partitions
    assert (rows["part"] == (rows["bucket"] % np.uint64(PARAMS.partitions))).all()


def test_near_copies_exact_copies_and_repeated_ids_become_the_right_edges() -> None:
    near = BASE.replace("word100", "changed")  # one word edit: Jaccard ≈ 0.95
    texts = [BASE, BASE, near, "an unrelated document " * 30, "a second unrelated one " * 30]
    ids = ["x", "y", "z", "dup", "dup"]
    edges = _edges_of_all_groups(shuffle.bucket_rows(_meta(texts, ids), PARAMS))
    kind, u, v = (edges.column(n).to_numpy() for n in ("kind", "u", "v"))
    pairs = {(int(k), int(a), int(b)) for k, a, b in zip(kind, u, v, strict=True)}
    assert (shuffle.KIND_EXACT, 1, 0) in pairs
    assert (shuffle.KIND_FUZZY, 2, 0) in pairs
    assert (shuffle.KIND_ID, 4, 3) in pairs
    assert not any(k == shuffle.KIND_FUZZY and 3 in (a, b) for k, a, b in pairs)

    routed, stats = shuffle.route_edges(PARAMS, edges)
    assert stats["duplicate_ids"] == 2
    assert stats["exact_edges"] == 1 and stats["band_edges"] >= 1
    # id edges are counted only: documents 3 and 4 never reach connected components
    nodes = np.concatenate([part["u"] for part in routed if part])
    assert {0, 1, 2} <= set(nodes.tolist()) and not {3, 4} & set(nodes.tolist())


def test_verification_routes_edges_to_the_partition_of_u_with_their_exactness() -> None:
    params = shuffle.Params(5, 112, 14, 8, 1, 3, True, 0.7, "longest")
    edges = pa.table(
        {
            "u": np.array([5, 7, 9], np.int64),
            "v": np.array([1, 2, 3], np.int64),
            "kind": np.array([shuffle.KIND_EXACT, shuffle.KIND_FUZZY, shuffle.KIND_FUZZY], np.int8),
        }
    )
    routed, _ = shuffle.route_edges(params, edges)
    assert sum(len(part["u"]) for part in routed) == 3
    for p, part in enumerate(routed):
        assert (shuffle.partition_of(part["u"], 3) == p).all()
        assert part["exact"].tolist() == [u == 5 for u in part["u"].tolist()]

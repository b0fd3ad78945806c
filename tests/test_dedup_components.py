"""Connected components: star steps vs union-find, partitioned like the Ray run, keep rules."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.data.dedup import components as cc
from pipelines.data.dedup import shuffle


def _random_graph(rng, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    u, v = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = u != v
    return u[keep] * 1000 + 7, v[keep] * 1000 + 7  # sparse, non-consecutive keys


def test_star_components_equal_union_find_on_random_graphs() -> None:
    rng = np.random.default_rng(0)
    for _ in range(40):
        u, v = _random_graph(rng, int(rng.integers(2, 300)), int(rng.integers(1, 400)))
        nodes, labels = cc.star_components(u, v)
        assert dict(zip(nodes.tolist(), labels.tolist(), strict=True)) == cc.reference_components(
            u, v
        )


def test_long_chain_converges_to_one_label() -> None:
    rng = np.random.default_rng(1)
    perm = rng.permutation(5000)
    nodes, labels = cc.star_components(perm[:-1], perm[1:])
    assert len(nodes) == 5000 and set(labels.tolist()) == {0}


def _partitioned_components(u: np.ndarray, v: np.ndarray, partitions: int) -> dict[int, int]:
    """The Ray driver's data flow, run in memory: per-partition steps, parts routed between."""
    params = shuffle.Params(5, 112, 14, 8, 1, partitions, False, 0.7, "longest")
    current = [[part] for part in shuffle.for_large_star(u, v, partitions)]
    for _ in range(64):
        changes = 0
        for step in ("large", "small"):
            outs = [shuffle.star_step(params, step, *current[p]) for p in range(partitions)]
            changes += sum(stats["changes"] for _, stats in outs)
            current = [[parts[p] for parts, _ in outs] for p in range(partitions)]
        if changes == 0:
            break
    labels = {}
    for p in range(partitions):
        rows = shuffle.concat(tuple(current[p]))
        if not rows:
            continue
        # every node of partition p sits in partition p (routed by its own key)
        assert (cc.partition_of(rows["u"], partitions) == p).all()
        for node, neighbour in zip(rows["u"].tolist(), rows["v"].tolist(), strict=True):
            labels[node] = min(labels.get(node, node), neighbour)
    return labels


@pytest.mark.parametrize("partitions", [1, 3, 8])
def test_partitioned_steps_equal_union_find(partitions: int) -> None:
    rng = np.random.default_rng(partitions)
    u, v = _random_graph(rng, 500, 450)
    assert _partitioned_components(u, v, partitions) == cc.reference_components(u, v)


def test_keep_rules_and_earlier_documents() -> None:
    labels = np.array([1, 1, 1, 9, 9])
    keys = np.array([1, 2, 3, 9, 10])
    lengths = np.array([50, 80, 80, 5, 5])
    ids = np.array(["c", "b", "a", "y", "x"], dtype=object)
    none = np.zeros(5, dtype=bool)
    assert cc.choose_kept(labels, keys, lengths, ids, none, "longest").tolist() == [3, 3, 3, 10, 10]
    assert cc.choose_kept(labels, keys, lengths, ids, none, "shortest").tolist() == [
        1,
        1,
        1,
        10,
        10,
    ]
    assert cc.choose_kept(labels, keys, lengths, ids, none, "first").tolist() == [1, 1, 1, 9, 9]
    earlier = np.array([False, True, False, False, False])
    assert cc.choose_kept(labels, keys, lengths, ids, earlier, "longest")[:3].tolist() == [2, 2, 2]
    with pytest.raises(ValueError):
        cc.choose_kept(labels, keys, lengths, ids, none, "random")


def test_split_rows_keeps_every_row_once() -> None:
    keys = np.arange(1000, dtype=np.int64)
    parts = cc.split_rows({"k": keys}, cc.partition_of(keys, 7), 7)
    assert sorted(np.concatenate([p["k"] for p in parts]).tolist()) == keys.tolist()
    assert min(len(p["k"]) for p in parts) > 100  # spread evenly

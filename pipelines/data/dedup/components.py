"""Connected components of the candidate-duplicate graph, and which document each keeps.

The distributed algorithm is the alternating large-star / small-star of Kiveris et al.
("Connected Components in MapReduce and Beyond", SoCC 2014): every step is a group-by on one
endpoint of the edge table, so it runs on hash partitions of the edges with no node holding
the graph (datatrove's single-task union-find is exactly that bottleneck). It converges in
O(log² n) rounds; at the end every component is a star around its minimum key, which is its
label. The functions here are pure and take one partition; ``pipelines.data.dedup.shuffle`` runs
them on Ray. :func:`reference_components` is a plain union-find used to check them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipelines.data.dedup.exact import fmix64

Edges = tuple[np.ndarray, np.ndarray]


def partition_of(keys: np.ndarray, num_partitions: int) -> np.ndarray:
    """Hash partition of int64 keys (mixed, so consecutive keys spread evenly)."""
    return (fmix64(keys.astype(np.uint64)) % np.uint64(num_partitions)).astype(np.int64)


def split_rows(columns: dict[str, np.ndarray], part: np.ndarray, num_partitions: int) -> list:
    """Rows of ``columns`` split by partition index: one dict of arrays per partition."""
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(num_partitions + 1))
    return [
        {name: values[order[bounds[p] : bounds[p + 1]]] for name, values in columns.items()}
        for p in range(num_partitions)
    ]


def _unique_pairs(u: np.ndarray, v: np.ndarray) -> Edges:
    if len(u) == 0:
        return u.astype(np.int64), v.astype(np.int64)
    pairs = np.unique(np.stack([u, v], axis=1).astype(np.int64), axis=0)
    return pairs[:, 0], pairs[:, 1]


def _group_min(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort rows by ``u``; return (sorted u, sorted v, min(u, min v over u's rows) per row)."""
    order = np.lexsort((v, u))
    u, v = u[order], v[order]
    first = np.ones(len(u), dtype=bool)
    first[1:] = u[1:] != u[:-1]
    starts = np.flatnonzero(first)
    mins = np.minimum.reduceat(v, starts) if len(u) else v
    sizes = np.diff(np.append(starts, len(u)))
    return u, v, np.minimum(np.repeat(mins, sizes), u)


def large_star(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Large-star on rows (node u, neighbour v), both directions, all rows of each u present.

    Each larger neighbour v of u is re-attached to m(u), the smallest of u and its neighbours.
    Returns the new undirected edges (v, m(u)) and how many of them changed.
    """
    u, v = _unique_pairs(u, v)
    if len(u) == 0:
        return u, v, 0
    u, v, m = _group_min(u, v)
    larger = v > u
    changed = int(np.count_nonzero(larger & (m != u)))
    new_u, new_v = _unique_pairs(v[larger], m[larger])
    return new_u, new_v, changed


def small_star(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Small-star on rows (node u, smaller neighbour v), all rows of each u present.

    u and its smaller neighbours are all attached to the smallest of them, m(u). Returns the
    new edges and how many nodes had two or more smaller neighbours (the changes).
    """
    u, v = _unique_pairs(u, v)
    if len(u) == 0:
        return u, v, 0
    u, v, m = _group_min(u, v)
    first = np.ones(len(u), dtype=bool)
    first[1:] = u[1:] != u[:-1]
    changed = int(np.count_nonzero(np.diff(np.append(np.flatnonzero(first), len(u))) > 1))
    heads = u[first]
    nodes = np.concatenate([v, heads])
    targets = np.concatenate([m, m[first]])
    keep = nodes != targets
    new_u, new_v = _unique_pairs(nodes[keep], targets[keep])
    return new_u, new_v, changed


def both_directions(u: np.ndarray, v: np.ndarray) -> Edges:
    """Rows (u, v) and (v, u): the input layout of :func:`large_star`."""
    return np.concatenate([u, v]), np.concatenate([v, u])


def larger_first(u: np.ndarray, v: np.ndarray) -> Edges:
    """Rows (max, min): the input layout of :func:`small_star`."""
    return np.maximum(u, v), np.minimum(u, v)


def star_components(u: np.ndarray, v: np.ndarray, max_rounds: int = 100) -> Edges:
    """All rounds in memory, on one partition: (node, label) for every node with an edge.

    The same steps the distributed version runs per partition; used by tests and for small
    graphs.
    """
    u, v = np.asarray(u, dtype=np.int64), np.asarray(v, dtype=np.int64)
    for _ in range(max_rounds):
        u, v, changed_large = large_star(*both_directions(u, v))
        u, v, changed_small = small_star(*larger_first(u, v))
        if changed_large == 0 and changed_small == 0:
            return labels_from_stars(u, v)
    raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")


def labels_from_stars(u: np.ndarray, v: np.ndarray) -> Edges:
    """(node, label) from converged star edges: each leaf points at its component's minimum."""
    leaf, center = larger_first(u, v)
    nodes = np.concatenate([leaf, center])
    labels = np.concatenate([center, center])
    return _unique_pairs(nodes, labels)


def reference_components(u: Sequence[int], v: Sequence[int]) -> dict[int, int]:
    """Union-find over all edges in memory: node → smallest node of its component."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(u, v, strict=True):
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {node: find(node) for node in parent}


KEEP_RULES = ("longest", "shortest", "first")


def choose_kept(
    labels: np.ndarray,
    keys: np.ndarray,
    lengths: np.ndarray,
    ids: np.ndarray,
    earlier: np.ndarray,
    rule: str = "longest",
) -> np.ndarray:
    """For every row, the key of the document its component keeps.

    ``earlier`` marks documents admitted by a previous run (``--against``): a component that
    holds one keeps it, so a second crawl never re-admits a document. Otherwise ``rule``:
    ``longest`` (ties by id), ``shortest`` (ties by id) or ``first`` (input order, i.e. key).
    """
    if rule not in KEEP_RULES:
        raise ValueError(f"unknown keep rule {rule!r} (known: {', '.join(KEEP_RULES)})")
    if len(labels) == 0:
        return keys.astype(np.int64)
    if rule == "longest":
        criteria = (keys, ids, -lengths)
    elif rule == "shortest":
        criteria = (keys, ids, lengths)
    else:
        criteria = (keys,)
    order = np.lexsort((*criteria, ~earlier.astype(bool), labels))
    sorted_labels = labels[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_labels[1:] != sorted_labels[:-1]
    winners = keys[order][np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))]
    kept = np.empty_like(winners)
    kept[order] = winners
    return kept

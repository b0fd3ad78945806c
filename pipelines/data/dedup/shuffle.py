"""Per-partition steps of the dedup shuffles: what one task does with its partition.

The band buckets are grouped by Ray Data (``bucket_rows`` → groupby ``part`` →
``buckets_to_edges``). Every later step takes the rows of one hash partition (dicts of numpy
arrays, one per producer) and returns its output already split for the next step's
partitions (a list of dicts) plus a small stats dict. Pure functions:
``pipelines.data.dedup.driver`` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipelines.data.dedup.components import (
    both_directions,
    choose_kept,
    large_star,
    larger_first,
    partition_of,
    small_star,
    split_rows,
)
from pipelines.data.dedup.exact import fmix64, hash_strings
from pipelines.data.dedup.lsh import band_hashes, bucket_edges
from pipelines.data.dedup.minhash import EMPTY, jaccard_estimate

KIND_EXACT, KIND_FUZZY, KIND_ID = 0, 1, 2
_TAG_EXACT = np.uint64(0x45584143545F5F5F)  # keeps exact-text buckets apart from band buckets
_TAG_ID = np.uint64(0x49445F5F5F5F5F5F)


@dataclass(frozen=True)
class Params:
    """What every task needs to know: MinHash/LSH shape, verification and keep rule."""

    ngram: int
    num_perm: int
    bands: int
    rows: int
    seed: int
    partitions: int
    verify: bool
    verify_cut: float
    keep: str


def concat(parts: tuple[dict, ...]) -> dict[str, np.ndarray]:
    """Rows of several producers' shares of one partition, as one dict ({} when no rows)."""
    parts = tuple(p for p in parts if p and len(next(iter(p.values()))))
    if not parts:
        return {}
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def unit_of(keys: np.ndarray) -> np.ndarray:
    """The read unit a key belongs to (bits 32-55), including its source (bits 56-61)."""
    return keys >> 32


def bucket_rows(meta: dict[str, np.ndarray], params: Params) -> dict[str, np.ndarray]:
    """One unit's documents → bucket rows, each tagged with its bucket's partition.

    Bucket rows: the exact-text hash (one bucket), each LSH band (documents with words),
    and the id (to count repeated ids). Ray Data groups them by ``part``.
    """
    keys, sig, n = meta["key"], meta["sig"], len(meta["key"])
    with_words = sig[:, 0] != EMPTY if n else np.zeros(0, dtype=bool)
    bands = band_hashes(sig[with_words], params.bands, params.rows)
    buckets = np.concatenate(
        [fmix64(meta["exact"] ^ _TAG_EXACT), bands.ravel(), fmix64(meta["id_hash"] ^ _TAG_ID)]
    )
    kinds = np.concatenate(
        [
            np.full(n, KIND_EXACT, np.int8),
            np.full(bands.size, KIND_FUZZY, np.int8),
            np.full(n, KIND_ID, np.int8),
        ]
    )
    return {
        "part": (buckets % np.uint64(params.partitions)).astype(np.int64),
        "bucket": buckets,
        "key": np.concatenate([keys, np.repeat(keys[with_words], params.bands), keys]),
        "kind": kinds,
    }


def route(meta: dict[str, np.ndarray], params: Params) -> list:
    """What a producer hands on: its bucket rows as one Arrow table, and its meta rows."""
    columns = {name: meta[name] for name in ("key", "id", "len", "exact", "earlier")}
    if params.verify:
        columns["sig"] = meta["sig"]
    return [pa.table(bucket_rows(meta, params)), columns]


def route_meta(params: Params, *metas: dict) -> tuple[list[dict], dict]:
    """Several producers' meta rows (what later joins need) split by key partition.

    One task routes many producers' rows, so the driver holds at most P × P references for
    this shuffle however many read units there are (docs/dedup-at-scale.md).
    """
    rows = concat(metas)
    P = params.partitions
    if not rows:
        return [{} for _ in range(P)], {}
    return split_rows(rows, partition_of(rows["key"], P), P), {}


def meta_columns(keys, ids, lengths, exact, sig, earlier: bool) -> dict[str, np.ndarray]:
    ids = np.asarray(ids, dtype=object)
    return {
        "key": keys.astype(np.int64),
        "id": ids,
        "id_hash": hash_strings(ids),
        "len": np.asarray(lengths, dtype=np.int64),
        "exact": np.asarray(exact, dtype=np.uint64),
        "earlier": np.full(len(keys), earlier),
        "sig": sig,
    }


def buckets_to_edges(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Bucket rows of one partition (whole buckets) → candidate edges with their kind.

    The ``map_groups`` body of the Ray Data groupby: a star of edges per bucket, per kind.
    """
    us, vs, kinds = [], [], []
    for kind in (KIND_EXACT, KIND_FUZZY, KIND_ID):
        mine = rows["kind"] == kind
        u, v = bucket_edges(rows["bucket"][mine], rows["key"][mine])
        us.append(u)
        vs.append(v)
        kinds.append(np.full(len(u), kind, np.int8))
    return {"u": np.concatenate(us), "v": np.concatenate(vs), "kind": np.concatenate(kinds)}


def route_edges(params: Params, block: pa.Table) -> tuple[list[dict], dict]:
    """A Ray Data block of candidate edges → split for the next step, with counts.

    With verification the edges go to the ``u`` side of the signature join, otherwise
    straight to the first large-star step (both directions). Edges between documents that
    share an id are only counted: such documents are both kept (docs/dedup-at-scale.md).
    """
    edges = {name: block.column(name).to_numpy() for name in ("u", "v", "kind")}
    kind = edges["kind"]
    is_id, exact = kind == KIND_ID, kind == KIND_EXACT
    id_heads = np.unique(edges["v"][is_id])
    stats = {
        "duplicate_ids": int(np.count_nonzero(is_id) + len(id_heads)),
        "exact_edges": int(np.count_nonzero(exact)),
        "band_edges": int(np.count_nonzero(kind == KIND_FUZZY)),
    }
    u, v, exact = edges["u"][~is_id], edges["v"][~is_id], exact[~is_id]
    if params.verify:
        candidates = {"u": u, "v": v, "exact": exact}
        return split_rows(candidates, partition_of(u, params.partitions), params.partitions), stats
    return for_large_star(u, v, params.partitions), stats


def for_large_star(u: np.ndarray, v: np.ndarray, partitions: int) -> list[dict]:
    a, b = both_directions(u, v)
    return split_rows({"u": a, "v": b}, partition_of(a, partitions), partitions)


def for_small_star(u: np.ndarray, v: np.ndarray, partitions: int) -> list[dict]:
    a, b = larger_first(u, v)
    return split_rows({"u": a, "v": b}, partition_of(a, partitions), partitions)


def _lookup(meta: dict[str, np.ndarray], keys: np.ndarray) -> np.ndarray:
    """Row index in ``meta`` of every key (all keys are present: same partition function)."""
    order = np.argsort(meta["key"])
    return order[np.searchsorted(meta["key"], keys, sorter=order)]


def verify_side(params: Params, side: str, meta: dict, *parts: dict) -> tuple[list[dict], dict]:
    """Signature join: attach sig(u) (side "u"), or compare it with sig(v) (side "v")."""
    edges = concat(parts)
    P = params.partitions
    if not edges:
        return [{} for _ in range(P)], {"rejected": 0}
    sig = meta["sig"][_lookup(meta, edges[side])]
    if side == "u":
        edges["sig_u"] = sig
        return split_rows(edges, partition_of(edges["v"], P), P), {"rejected": 0}
    estimate = jaccard_estimate(edges["sig_u"], sig)
    keep = edges["exact"] | (estimate >= params.verify_cut)
    stats = {"rejected": int(np.count_nonzero(~keep))}
    return for_large_star(edges["u"][keep], edges["v"][keep], P), stats


def star_step(params: Params, step: str, *parts: dict) -> tuple[list[dict], dict]:
    """One large- or small-star step on one partition, output routed for the other step."""
    rows = concat(parts)
    empty = np.zeros(0, dtype=np.int64)
    u, v = (rows["u"], rows["v"]) if rows else (empty, empty)
    if step == "large":
        nu, nv, changes = large_star(u, v)
        return for_small_star(nu, nv, params.partitions), {"changes": changes}
    nu, nv, changes = small_star(u, v)
    return for_large_star(nu, nv, params.partitions), {"changes": changes, "edges": len(nu)}


def attach_labels(params: Params, meta: dict, *parts: dict) -> tuple[list[dict], dict]:
    """Converged stars (both directions) + meta of the same keys → members routed by label."""
    rows = concat(parts)
    P = params.partitions
    if not rows:
        return [{} for _ in range(P)], {}
    order = np.lexsort((rows["v"], rows["u"]))
    u, v = rows["u"][order], rows["v"][order]
    first = np.ones(len(u), dtype=bool)
    first[1:] = u[1:] != u[:-1]
    nodes = u[first]
    labels = np.minimum(nodes, np.minimum.reduceat(v, np.flatnonzero(first)))
    at = _lookup(meta, nodes)
    members = {
        "key": nodes,
        "label": labels,
        **{name: meta[name][at] for name in ("id", "len", "exact", "earlier")},
    }
    return split_rows(members, partition_of(labels, P), P), {}


def decide(params: Params, *parts: dict) -> tuple[list[dict], dict]:
    """Members of whole components → removed rows by write partition, cluster rows, stats."""
    rows = concat(parts)
    P = params.partitions
    stats = {"clusters": 0, "largest_cluster": 0, "exact_duplicates": 0, "fuzzy_duplicates": 0}
    if not rows:
        return [{} for _ in range(P)] + [{}], stats
    kept = choose_kept(
        rows["label"], rows["key"], rows["len"], rows["id"], rows["earlier"], params.keep
    )
    at = _lookup(rows, kept)
    removed = (kept != rows["key"]) & ~rows["earlier"]
    exact = rows["exact"] == rows["exact"][at]
    kept_ids = rows["id"][at]
    reasons = np.array(
        [
            ("exact_duplicate_of=" if same else "duplicate_of=") + str(kid)
            for same, kid in zip(exact[removed], kept_ids[removed], strict=True)
        ],
        dtype=object,
    )
    _, sizes = np.unique(rows["label"], return_counts=True)
    stats.update(
        clusters=len(sizes),
        largest_cluster=int(sizes.max()),
        cluster_sizes={
            str(k): int(n) for k, n in zip(*np.unique(sizes, return_counts=True), strict=True)
        },
        exact_duplicates=int(np.count_nonzero(removed & exact)),
        fuzzy_duplicates=int(np.count_nonzero(removed & ~exact)),
    )
    gone = {"key": rows["key"][removed], "reason": reasons}
    write_part = unit_of(gone["key"]) % P
    new = ~rows["earlier"]
    clusters = {"id": rows["id"][new], "cluster": rows["label"][new]}
    return split_rows(gone, write_part, P) + [clusters], stats

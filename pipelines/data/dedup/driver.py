"""The Ray side of ``natal dedup``: a Ray Data groupby, then one task per partition and step.

Read tasks hand their bucket rows to Ray Data (one Arrow table each), which groups them by
partition into candidate edges, and their meta rows to at most P router tasks, which split
them by key partition. Later tasks hand each other per-partition object refs
(``num_returns`` = partitions + 1: the parts, then a stats dict), so the driver only ever
fetches stats and the small cluster table.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import ray
from rich.console import Console
from rich.progress import Progress

from cluster.console import terminal
from pipelines.data import storage
from pipelines.data.dedup import shuffle
from pipelines.data.dedup.reader import Unit
from pipelines.data.stats import StageStats

MAX_ROUNDS = 64


@ray.remote
def _call(fn: Callable, *args):
    return fn(*args)


@ray.remote
def _fan(fn: Callable, *args):
    parts, stats = fn(*args)
    return [*parts, stats]


@ray.remote
def _concat(*parts: dict) -> dict:
    return shuffle.concat(parts)


def gather(refs: list, label: str) -> list:
    """ray.get with a progress bar (order kept)."""
    done: dict = {}
    pending = list(refs)
    with Progress(console=Console(file=terminal()), transient=True) as progress:
        task = progress.add_task(label, total=len(refs))
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            for ref in ready:
                done[ref] = ray.get(ref)
            progress.update(task, completed=len(done))
    return [done[ref] for ref in refs]


def _transpose(outputs: list[list], partitions: int) -> list[list]:
    """Producers' outputs → for each consumer partition, the list of its parts."""
    return [[out[p] for out in outputs] for p in range(partitions)]


class Driver:
    def __init__(self, params: shuffle.Params, output: str, resources: dict[str, float]) -> None:
        self.params = params
        self.output = output
        self.resources = resources  # of the read tasks (sign, write): data_task_resources
        self.P = params.partitions
        self.stats = StageStats("dedup")

    def _fan(self, fn: Callable, *args) -> list:
        return _fan.options(num_returns=self.P + 1).remote(fn, self.params, *args)

    def run(
        self, units: list[Unit], indexes: list[list[str]], sign, load_index, write
    ) -> StageStats:
        P, stats = self.P, self.stats
        with stats.timer("read_sign"):
            producers = [
                _call.options(num_returns=3, **self.resources).remote(
                    sign, self.params, u, self.output
                )
                for u in units
            ]
            producers += [
                _call.options(num_returns=3).remote(load_index, self.params, f, j + 1)
                for j, files in enumerate(indexes)
                for f in files
            ]
            for result in gather([p[-1] for p in producers], "dedup: read + sign"):
                stats.merge(result)
                for reason, n in result.get("problems", {}).items():
                    stats.add_to("problems", reason, n)
                stats.extra.setdefault("errors", []).extend(result.get("errors", []))
            stats.extra["errors"] = stats.extra.get("errors", [])[:20]
            bucket_tables = [p[0] for p in producers]
            meta = self._route_meta([p[1] for p in producers])
            del producers
        with stats.timer("buckets"):
            edge_blocks = self._group_buckets(bucket_tables)
            del bucket_tables
            outs = [self._fan(shuffle.route_edges, block) for block in edge_blocks]
            for s in ray.get([o[-1] for o in outs]):
                for key, n in s.items():
                    stats.add(key, n)
            current = _transpose([o[:P] for o in outs], P)
        if self.params.verify:
            with stats.timer("verify"):
                for side in ("u", "v"):
                    outs = [
                        self._fan(shuffle.verify_side, side, meta[q], *current[q]) for q in range(P)
                    ]
                    stats.add(
                        "verify_rejected",
                        sum(s["rejected"] for s in ray.get([o[-1] for o in outs])),
                    )
                    current = _transpose([o[:P] for o in outs], P)
        with stats.timer("components"):
            current = self._components(current)
        with stats.timer("decide"):
            outs = [self._fan(shuffle.attach_labels, meta[q], *current[q]) for q in range(P)]
            members = _transpose([o[:P] for o in outs], P)
            decided = [
                _fan.options(num_returns=P + 2).remote(shuffle.decide, self.params, *members[p])
                for p in range(P)
            ]
            for s in ray.get([d[-1] for d in decided]):
                for key in ("clusters", "exact_duplicates", "fuzzy_duplicates"):
                    stats.add(key, s.get(key, 0))
                stats.counts["largest_cluster"] = max(
                    stats.counts.get("largest_cluster", 0), s.get("largest_cluster", 0)
                )
                for size, n in s.get("cluster_sizes", {}).items():
                    stats.add_to("cluster_sizes", size, n)
            self._write_clusters([d[P] for d in decided])
        with stats.timer("write"):
            removed = _transpose([d[:P] for d in decided], P)
            writers = [
                _call.options(**self.resources).remote(
                    write,
                    self.params,
                    self.output,
                    [u for u in units if u.index % P == r],
                    *removed[r],
                )
                for r in range(P)
            ]
            for result in gather(writers, "dedup: write"):
                stats.merge(result)
        return stats

    def _route_meta(self, metas: list) -> list:
        """Producers' meta rows → one object per key partition, through ≤ P router tasks."""
        routers = min(len(metas), self.P)
        outs = [self._fan(shuffle.route_meta, *metas[r::routers]) for r in range(routers)]
        return [_concat.remote(*parts) for parts in _transpose([o[: self.P] for o in outs], self.P)]

    def _group_buckets(self, tables: list) -> list:
        """Ray Data groupby of all bucket rows by partition → blocks of candidate edges."""
        if not tables:
            return []
        from ray.data.context import DataContext, ShuffleStrategy

        context = DataContext.get_current()
        saved = context.shuffle_strategy
        # The sort shuffle runs as tasks: ~0.5 s for 3M rows on 2 CPUs, where the default
        # hash shuffle spends ~4.5 s starting its aggregator actors.
        context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
        try:
            edges = (
                ray.data.from_arrow_refs(tables)
                .groupby("part", num_partitions=self.P)
                .map_groups(shuffle.buckets_to_edges, batch_format="numpy", **self.resources)
                .materialize()
            )
        finally:
            context.shuffle_strategy = saved
        return edges.to_arrow_refs()

    def _components(self, current: list[list]) -> list[list]:
        """Large-star / small-star rounds until neither changes an edge."""
        for round_no in range(1, MAX_ROUNDS + 1):
            changes = 0
            for step in ("large", "small"):
                outs = [self._fan(shuffle.star_step, step, *current[p]) for p in range(self.P)]
                step_stats = ray.get([o[-1] for o in outs])
                changes += sum(s["changes"] for s in step_stats)
                current = _transpose([o[: self.P] for o in outs], self.P)
            if changes == 0:
                self.stats.add("components_rounds", round_no)
                self.stats.add("component_edges", sum(s["edges"] for s in step_stats))
                return current
        raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")

    def _write_clusters(self, refs: list) -> None:
        """DIR/clusters.parquet: (id, cluster) of every member of a cluster of size ≥ 2."""
        schema = pa.schema([("id", pa.string()), ("cluster", pa.int64())])
        path = storage.join(self.output, "clusters.parquet")
        fs, local = storage.filesystem(path)
        with fs.open(local, "wb") as fh, pq.ParquetWriter(fh, schema) as writer:
            for ref in refs:
                part = ray.get(ref)
                if part:
                    writer.write_table(
                        pa.table(
                            {
                                "id": pa.array(part["id"].tolist(), pa.string()),
                                "cluster": part["cluster"],
                            },
                            schema=schema,
                        )
                    )

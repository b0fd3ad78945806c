"""Counters every stage keeps: what came in, what went out, what was removed and why.

Each stage ends by writing ``stats.json`` (and printing it as a table): nothing is dropped
without being counted.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pipelines.data import storage


@dataclass
class StageStats:
    """Counts and timings of one stage run; mergeable across tasks."""

    stage: str
    counts: Counter = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    breakdown: dict[str, Counter] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def add_to(self, group: str, key: str, n: int = 1) -> None:
        """Count ``key`` within a named breakdown, e.g. ``removed_by_reason``."""
        self.breakdown.setdefault(group, Counter())[key] += n

    @contextmanager
    def timer(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - start

    def merge(self, other: StageStats | Mapping[str, Any]) -> None:
        """Add another task's stats (a StageStats or its ``to_dict``) into this one."""
        data = other.to_dict() if isinstance(other, StageStats) else other
        self.counts.update(data.get("counts", {}))
        for step, secs in data.get("seconds", {}).items():
            self.seconds[step] = self.seconds.get(step, 0.0) + secs
        for group, values in data.get("breakdown", {}).items():
            self.breakdown.setdefault(group, Counter()).update(values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "counts": dict(self.counts),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "breakdown": {g: dict(c.most_common()) for g, c in self.breakdown.items()},
            **self.extra,
        }

    def write(self, output_dir: str) -> str:
        """Write ``stats.json`` into ``output_dir`` (local path or fsspec URL)."""
        path = storage.join(output_dir, "stats.json")
        storage.write_text(path, json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        return path

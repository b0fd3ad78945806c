"""Exact and MinHash-LSH fuzzy deduplication (``natal dedup``); see :mod:`pipelines.dedup.stage`."""

from pipelines.dedup.stage import run

__all__ = ["run"]

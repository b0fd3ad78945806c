"""Quality filters: pure functions on one text, each returning a :class:`FilterResult`.

Removals: ``url`` (blocklist), ``lang`` (py3langid), ``gopher`` (quality, repetition), ``c4``,
``fineweb``. Redaction: ``pii``. Shared splits: ``text``. All of them in order, on one
document or a batch: ``chain`` (what ``natal filter`` and the benchmarks run).
"""

from pipelines.filters.base import KEEP, FilterResult

__all__ = ["KEEP", "FilterResult"]

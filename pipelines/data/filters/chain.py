"""The rule sets in order, on one document and on a batch: pure, shared by ``natal filter``,
the ingest benchmark and ``natal curate``.

Order (FineWeb's): URL → language → Gopher repetition → Gopher quality → C4 → FineWeb; the
first rule broken removes the document. Kept documents then get PII redacted. A removed
document keeps its original text; a kept one carries C4's and PII's edits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from cluster.config import FilterConfig
from pipelines.data.filters.c4 import c4_filter
from pipelines.data.filters.fineweb import fineweb_filter
from pipelines.data.filters.gopher import gopher_quality, gopher_repetition
from pipelines.data.filters.lang import detect_language, language_filter_result
from pipelines.data.filters.pii import REDACTIONS, redact_pii
from pipelines.data.filters.result import KEEP, FilterResult
from pipelines.data.filters.url import UrlBlocklist, url_filter
from pipelines.data.stats import StageStats

PII_COLUMNS = {kind: f"_pii_{kind}" for kind in REDACTIONS}
ANNOTATION_COLUMNS = ("reason", "value", *PII_COLUMNS.values())


class Outcome(NamedTuple):
    """One document after the chain: the decision, its final text, language, PII counts."""

    result: FilterResult
    text: str
    lang: str | None
    lang_score: float | None
    pii: dict[str, int]


class FilterChain:
    """The configured rule sets, built once (blocklists read) and applied to many documents."""

    def __init__(self, cfg: FilterConfig, min_words: int):
        self.cfg = cfg
        self.min_words = min_words
        self.blocklist = UrlBlocklist.from_config(cfg.url) if cfg.url.enabled else None
        rules: list[tuple[str, bool, Callable[[str], FilterResult]]] = [
            (
                "gopher_repetition",
                cfg.gopher_repetition.enabled,
                lambda text: gopher_repetition(text, cfg.gopher_repetition),
            ),
            (
                "gopher_quality",
                cfg.gopher_quality.enabled,
                lambda text: gopher_quality(text, cfg.gopher_quality, min_words),
            ),
            ("c4", cfg.c4.enabled, lambda text: c4_filter(text, cfg.c4)),
            ("fineweb", cfg.fineweb.enabled, lambda text: fineweb_filter(text, cfg.fineweb)),
        ]
        self.text_rules = [(name, rule) for name, enabled, rule in rules if enabled]
        self.seconds: dict[str, float] = {}

    def _timed(self, name: str, start: float) -> float:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - start
        return now

    def apply(
        self,
        text: Any,
        url: str | None = None,
        lang: str | None = None,
        lang_score: float | None = None,
        source: str | None = None,
    ) -> Outcome:
        """Run every enabled rule set on one document. ``lang`` given (by ingest) is reused;
        documents of a ``passthrough_sources`` source only get their PII redacted."""
        if not isinstance(text, str) or not text.strip():
            return Outcome(FilterResult(False, "empty_text", 0.0), text, lang, lang_score, {})
        result, edited = KEEP, text
        if source not in self.cfg.passthrough_sources:
            result, edited, lang, lang_score = self._removal_rules(text, url, lang, lang_score)
        if not result.keep:
            return Outcome(result, text, lang, lang_score, {})
        pii: dict[str, int] = {}
        if self.cfg.pii.enabled:
            start = time.perf_counter()
            edited, pii = redact_pii(edited, self.cfg.pii.kinds)
            self._timed("pii", start)
        return Outcome(result, edited, lang, lang_score, pii)

    def _removal_rules(
        self, text: str, url: str | None, lang: str | None, lang_score: float | None
    ) -> tuple[FilterResult, str, str | None, float | None]:
        """The removal rules in order; the first one broken decides. C4 may edit the text."""
        t = time.perf_counter()
        if self.blocklist is not None:
            result = url_filter(url, self.blocklist)
            t = self._timed("url", t)
            if not result.keep:
                return result, text, lang, lang_score
        if self.cfg.lang.enabled:
            if not lang or lang_score is None:
                lang, lang_score = detect_language(text)
            lcfg = self.cfg.lang
            result = language_filter_result(lang, lang_score, lcfg.languages, lcfg.min_score)
            t = self._timed("lang", t)
            if not result.keep:
                return result, text, lang, lang_score
        for name, rule in self.text_rules:
            result = rule(text)
            t = self._timed(name, t)
            if not result.keep:
                return result, text, lang, lang_score
            if result.text is not None:
                text = result.text
        return KEEP, text, lang, lang_score

    def annotate(self, table: pa.Table) -> pa.Table:
        """The batch with edited ``text``, ``lang``/``lang_score`` filled, and the annotation
        columns: ``reason`` (null: kept), ``value``, ``_pii_<kind>`` counts."""
        if "text" not in table.column_names:
            raise ValueError("documents have no 'text' column")
        n = table.num_rows
        texts = table.column("text").to_pylist()
        urls = _column(table, "url", n)
        langs = _column(table, "lang", n)
        scores = _column(table, "lang_score", n)
        sources = _column(table, "source", n)
        rows = zip(texts, urls, langs, scores, sources, strict=True)
        outcomes = [self.apply(*row) for row in rows]
        columns: dict[str, pa.Array] = {
            "text": pa.array(
                [o.text if isinstance(o.text, str) else None for o in outcomes], pa.string()
            ),
            "reason": pa.array([o.result.reason for o in outcomes], pa.string()),
            "value": pa.array([o.result.value for o in outcomes], pa.float64()),
        }
        if self.cfg.lang.enabled:
            columns["lang"] = pa.array([o.lang for o in outcomes], pa.string())
            columns["lang_score"] = pa.array([o.lang_score for o in outcomes], pa.float64())
        for kind, name in PII_COLUMNS.items():
            columns[name] = pa.array([o.pii.get(kind, 0) for o in outcomes], pa.int32())
        for name, array in columns.items():
            if name in table.column_names:
                table = table.set_column(table.column_names.index(name), name, array)
            else:
                table = table.append_column(name, array)
        return table


def _column(table: pa.Table, name: str, n: int) -> list[Any]:
    return table.column(name).to_pylist() if name in table.column_names else [None] * n


def split_annotated(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(kept documents, removed documents + ``reason``/``value``) from an annotated batch."""
    removed_mask = pc.is_valid(table.column("reason"))
    internal = [c for c in ANNOTATION_COLUMNS if c in table.column_names]
    kept = table.filter(pc.invert(removed_mask)).drop_columns(internal)
    removed = table.filter(removed_mask).drop_columns(list(PII_COLUMNS.values()))
    return kept, removed


def count_outcomes(table: pa.Table, stats: StageStats) -> None:
    """Add an annotated batch (or its reason/source/lang/PII columns) to the stage's counts."""
    reasons = table.column("reason")
    removed_mask = pc.is_valid(reasons)
    n_removed = pc.sum(removed_mask.cast(pa.int64())).as_py() or 0
    stats.add("documents_in", table.num_rows)
    stats.add("kept", table.num_rows - n_removed)
    stats.add("removed", n_removed)
    _count_values(stats, "removed_by_reason", pc.drop_null(reasons))
    for key in ("source", "lang"):
        if key not in table.column_names:
            continue
        values = pc.fill_null(table.column(key).cast(pa.string()), "unknown")
        _count_values(stats, f"removed_by_{key}", values.filter(removed_mask))
        _count_values(stats, f"kept_by_{key}", values.filter(pc.invert(removed_mask)))
    for kind, name in PII_COLUMNS.items():
        if name in table.column_names:
            total = pc.sum(table.column(name)).as_py() or 0
            if total:
                stats.add_to("pii_redactions", kind, total)


def _count_values(stats: StageStats, group: str, values: pa.ChunkedArray | pa.Array) -> None:
    for item in pc.value_counts(values).to_pylist():
        stats.add_to(group, str(item["values"]), item["counts"])


def to_table(batch: pa.Table | Mapping[str, list] | list[dict[str, Any]]) -> pa.Table:
    """A batch as a pyarrow Table: a Table, a dict of columns, or a list of row dicts."""
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, Mapping):
        return pa.Table.from_pydict(dict(batch))
    return pa.Table.from_pylist(list(batch))


def apply_filters(
    batch: pa.Table | Mapping[str, list] | list[dict[str, Any]],
    cfg: FilterConfig,
    min_words: int,
    stats: StageStats | None = None,
    chain: FilterChain | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Filter one batch of documents: (kept, removed with ``reason`` and ``value``).

    Pass ``stats`` to have the batch counted; pass a ``chain`` to reuse one across batches.
    """
    annotated = (chain or FilterChain(cfg, min_words)).annotate(to_table(batch))
    if stats is not None:
        count_outcomes(annotated, stats)
    return split_annotated(annotated)

"""The chain: order, first reason wins, edits only on kept documents, counts by group."""

from __future__ import annotations

import pyarrow as pa
from filter_texts import GOOD_TEXT, PARAGRAPHS

from cluster.config import FilterConfig
from pipelines.data.filters.chain import FilterChain, apply_filters
from pipelines.data.filters.text import split_words
from pipelines.data.stats import StageStats

GERMAN = (
    "Die Stadt am Fluss erwacht im Herbst langsam, wenn sich der Nebel über dem Wasser hebt "
    "und die Boote in den Hafen zurückkehren. Die Fischer sortieren ihren Fang."
)


def documents() -> list[dict]:
    return [
        {"id": "good", "url": "https://town.example/a", "text": GOOD_TEXT, "source": "web"},
        {"id": "blocked", "url": "https://spam.example/", "text": GOOD_TEXT, "source": "web"},
        {"id": "german", "url": None, "text": GERMAN, "source": "web"},
        {"id": "short", "url": None, "text": PARAGRAPHS[0], "source": "books"},
        {"id": "none", "url": None, "text": None, "source": "books"},
        {
            "id": "pii",
            "url": None,
            "text": GOOD_TEXT + "\n\nWrite to the mayor at mayor@town.example for a visit.",
            "source": "books",
        },
    ]


def config() -> FilterConfig:
    cfg = FilterConfig()
    cfg.url.domains = ["spam.example"]
    return cfg


def test_apply_filters_splits_and_explains() -> None:
    stats = StageStats("filter")
    kept, removed = apply_filters(documents(), config(), min_words=50, stats=stats)
    assert kept.column("id").to_pylist() == ["good", "pii"]
    assert kept.column("text").to_pylist()[0] == GOOD_TEXT
    assert kept.column("text").to_pylist()[1].endswith("mayor at <EMAIL> for a visit.")
    assert "reason" not in kept.column_names and "_pii_email" not in kept.column_names
    rows = {row["id"]: row for row in removed.to_pylist()}
    reasons = {key: row["reason"] for key, row in rows.items()}
    assert reasons == {
        "blocked": "url_domain",
        "german": "lang",
        "short": "gopher_short_doc",
        "none": "empty_text",
    }
    assert rows["short"]["value"] == len(split_words(PARAGRAPHS[0]))
    assert rows["german"]["value"] > 0.9 and rows["german"]["lang"] == "de"
    counts = stats.to_dict()
    assert counts["counts"] == {"documents_in": 6, "kept": 2, "removed": 4}
    assert counts["breakdown"]["removed_by_source"] == {"web": 2, "books": 2}
    assert counts["breakdown"]["kept_by_lang"] == {"en": 2}
    assert counts["breakdown"]["pii_redactions"] == {"email": 1}


def test_lang_column_from_ingest_is_reused() -> None:
    table = pa.Table.from_pylist([{"id": "x", "text": GOOD_TEXT, "lang": "fr", "lang_score": 0.99}])
    kept, removed = apply_filters(table, FilterConfig(), min_words=50)
    assert kept.num_rows == 0 and removed.column("reason").to_pylist() == ["lang"]


def test_disabled_rule_sets_do_not_run() -> None:
    cfg = FilterConfig()
    for section in (cfg.lang, cfg.gopher_quality, cfg.gopher_repetition, cfg.c4, cfg.fineweb):
        section.enabled = False
    chain = FilterChain(cfg, min_words=50)
    outcome = chain.apply(PARAGRAPHS[0])
    assert outcome.result.keep and outcome.lang is None
    assert set(chain.seconds) == {"url", "pii"}


def test_c4_edit_reaches_the_later_rules_and_the_output() -> None:
    text = GOOD_TEXT + "\n\nShare this page"
    kept, _ = apply_filters([{"id": "a", "text": text}], FilterConfig(), min_words=50)
    assert kept.column("text").to_pylist() == [GOOD_TEXT]


def test_code_passes_through_with_pii_redacted() -> None:
    code = {
        "id": "c",
        "text": "# author: dev@corp.example\nprint('hi')\n",
        "source": "code",
        "lang": "python",
        "lang_score": 1.0,
    }
    kept, removed = apply_filters([code], FilterConfig(), min_words=50)
    assert removed.num_rows == 0
    assert kept.column("text").to_pylist() == ["# author: <EMAIL>\nprint('hi')\n"]
    assert kept.column("lang").to_pylist() == ["python"]
    cfg = FilterConfig(passthrough_sources=[])
    _, removed = apply_filters([code], cfg, min_words=50)
    assert removed.column("reason").to_pylist() == ["lang"]

"""HTML → main text: both extractors keep the article and drop navigation and footers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ingest_samples import ARTICLE

from pipelines.data import extract, warc
from pipelines.data.stats import StageStats


@pytest.mark.parametrize("name", extract.EXTRACTORS)
def test_extractor_keeps_the_article_and_drops_boilerplate(name: str) -> None:
    text = extract.extract_text(ARTICLE, name)
    assert "dances of their sisters" in text
    assert "remembers where they were" in text
    assert "All rights reserved" not in text
    assert "Home" not in text
    assert "<p>" not in text


@pytest.mark.parametrize("name", extract.EXTRACTORS)
def test_page_without_text_gives_empty_string(name: str) -> None:
    assert extract.extract_text("<html><body><script>var x = 1;</script></body></html>", name) == ""


def test_unknown_extractor_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown extractor"):
        extract.get_extractor("readability")


def _token_recall(truth: str, text: str) -> float:
    truth_tokens = truth.split()
    found = set(text.split())
    return sum(token in found for token in truth_tokens) / len(truth_tokens)


@pytest.mark.parametrize("name", extract.EXTRACTORS)
def test_real_news_pages_keep_most_of_the_article_body(shared_data: Path, name: str) -> None:
    folder = shared_data / "web-html-warc"
    rows = [json.loads(line) for line in (folder / "aeb-annotations.jsonl").open()][:15]
    pages = {}
    with (folder / "aeb-01.warc.gz").open("rb") as fh:
        for rec in warc.iter_web_records(fh, StageStats("t"), 64 << 20):
            pages[rec.record_id] = warc.decode_text(rec.body, rec.charset)
    recalls = [
        _token_recall(row["articleBody"], extract.extract_text(pages[row["warc_record_id"]], name))
        for row in rows
        if row["warc_record_id"] in pages
    ]
    assert len(recalls) >= 10
    assert sum(recalls) / len(recalls) > 0.85

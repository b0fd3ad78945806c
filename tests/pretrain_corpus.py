"""A small real-text corpus for the tokenizer, tokenize and pretrain tests (built, never copied).

From ``../shared/data/pretrain-text`` when present (Shakespeare and Gutenberg paragraphs as
source ``books``, C4 documents as ``web``, Wikipedia articles as ``wiki``); otherwise the
text of Python's own documentation (what the demo crawl serves), as source ``web``.
"""

from __future__ import annotations

import json
import pydoc
import re
from pathlib import Path

import pytest

PYDOC_MODULES = (
    "json pathlib collections itertools functools re os random typing asyncio subprocess "
    "argparse logging unittest socket threading datetime string statistics decimal textwrap "
    "csv sqlite3 urllib.request shutil tarfile zipfile inspect dataclasses enum email.message"
).split()


def paragraphs(text: str, min_chars: int = 200, max_chars: int = 2000) -> list[str]:
    """Blank-line separated paragraphs merged up to ``max_chars``, the short ones dropped."""
    docs, current = [], ""
    for block in re.split(r"\n\s*\n", text):
        current = f"{current}\n\n{block}" if current else block
        if len(current) >= max_chars:
            docs.append(current)
            current = ""
    if len(current) >= min_chars:
        docs.append(current)
    return docs


def write_corpus(
    out_dir: Path, pretrain_text: Path | None, max_chars_per_source: int = 600_000
) -> dict[str, int]:
    """Write ``books.jsonl``, ``web.jsonl`` (, ``wiki.jsonl``) with ``id``/``text``/``source``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sources: dict[str, list[str]] = {}
    if pretrain_text is not None:
        shakespeare = (pretrain_text / "tinyshakespeare" / "input.txt").read_text()
        emma = (pretrain_text / "gutenberg-nltk" / "austen-emma.txt").read_text()
        sources["books"] = paragraphs(shakespeare) + paragraphs(emma)
        with open(pretrain_text / "llamafactory-c4_demo.jsonl") as fh:
            sources["web"] = [json.loads(line)["text"] for line in fh if line.strip()]
        wiki = (pretrain_text / "llamafactory-wiki_demo.txt").read_text().splitlines()
        sources["wiki"] = [d for line in wiki for d in paragraphs(line.replace(". ", ".\n\n"))]
    else:
        text = "\n\n".join(pydoc.render_doc(m, renderer=pydoc.plaintext) for m in PYDOC_MODULES)
        sources["web"] = paragraphs(text)
    counts = {}
    for source, docs in sources.items():
        kept, chars = [], 0
        for doc in docs:
            if chars >= max_chars_per_source:
                break
            kept.append(doc)
            chars += len(doc)
        with open(out_dir / f"{source}.jsonl", "w") as fh:
            for i, doc in enumerate(kept):
                fh.write(json.dumps({"id": f"{source}-{i}", "text": doc, "source": source}) + "\n")
        counts[source] = len(kept)
    return counts


# --- session fixtures (registered in tests/conftest.py) ---------------------------------------


@pytest.fixture(scope="session")
def pretrain_corpus(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """JSONL documents (``id``, ``text``, ``source``) of real text, ~1.8 MB."""
    try:
        pretrain_text = request.getfixturevalue("shared_data") / "pretrain-text"
    except pytest.skip.Exception:  # no shared data: the demo crawl's text instead
        pretrain_text = None
    out = tmp_path_factory.mktemp("pretrain-corpus")
    write_corpus(out, pretrain_text)
    return out


@pytest.fixture(scope="session")
def pretrain_tokenizer(pretrain_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1,024-token byte-level BPE trained on the corpus (no Ray)."""
    from cluster.config import load_config
    from pipelines.pretrain import bpe

    out = tmp_path_factory.mktemp("pretrain-tokenizer")
    cfg = load_config(values={"tokenizer.vocab_size": 1024})
    bpe.run(cfg, inputs=[str(pretrain_corpus)], output=str(out))
    return out


@pytest.fixture(scope="session")
def pretrain_shards(
    ray_cluster: None,
    pretrain_corpus: Path,
    pretrain_tokenizer: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """Packed 128-token shards, 5% validation, natural source proportions."""
    from cluster.config import load_config
    from pipelines.pretrain import tokenize

    out = tmp_path_factory.mktemp("pretrain-shards")
    cfg = load_config(values={"tokenize.seq_len": 128, "tokenize.val_fraction": 0.05})
    tokenize.run(cfg, [str(pretrain_corpus)], str(pretrain_tokenizer), str(out))
    return out

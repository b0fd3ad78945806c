"""``natal tokenize``: packing, split, mixture, determinism, bad input (pipelines/pretrain/tokenize.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cluster.config import load_config
from cluster.config.errors import ConfigError, InputError
from pipelines.pretrain import tokenize
from pipelines.pretrain.bpe import tokenizer_hash
from pipelines.pretrain.token_shards import ShardReader, read_index

# --- pure functions -----------------------------------------------------------------------------


def test_pack_cuts_concatenation_into_rows() -> None:
    docs = [np.arange(5), np.arange(10, 13), np.arange(20, 24)]
    rows, dropped = tokenize.pack(docs, 4)
    assert rows.tolist() == [[0, 1, 2, 3], [4, 10, 11, 12], [20, 21, 22, 23]]
    assert dropped == 0
    rows, dropped = tokenize.pack(docs, 5)
    assert rows.shape == (2, 5) and dropped == 2
    assert tokenize.pack([], 4)[0].shape == (0, 4)


def test_copies_average_to_the_ratio_and_are_reproducible() -> None:
    ids = [f"doc-{i}" for i in range(4000)]
    for ratio in (0.25, 1.0, 2.6):
        counts = [tokenize.copies(d, 0, ratio) for d in ids]
        assert np.mean(counts) == pytest.approx(ratio, abs=0.05)
        assert set(counts) <= {int(ratio), int(ratio) + 1}
        assert counts == [tokenize.copies(d, 0, ratio) for d in ids]
    assert [tokenize.copies(d, 1, 0.5) for d in ids] != [tokenize.copies(d, 0, 0.5) for d in ids]


def test_validation_split_fraction() -> None:
    held = sum(tokenize.is_validation(f"d{i}", 3, 0.1) for i in range(5000))
    assert 400 < held < 600


def test_mixture_ratios() -> None:
    tokens = {"web": 900, "code": 100}
    assert tokenize.mixture_ratios(tokens, {}) == {"web": 1.0, "code": 1.0}
    ratios = tokenize.mixture_ratios(tokens, {"web": 1, "code": 1})
    assert ratios == {"web": pytest.approx(500 / 900), "code": pytest.approx(5.0)}
    assert tokenize.mixture_ratios(tokens, {"web": 1.0}) == {"web": 1.0, "code": 0.0}
    with pytest.raises(InputError, match="books.*sources present: code, web"):
        tokenize.mixture_ratios(tokens, {"web": 1, "books": 1})


def test_token_dtype() -> None:
    assert tokenize.token_dtype(50_000, "auto") == "uint16"
    assert tokenize.token_dtype(70_000, "auto") == "uint32"
    with pytest.raises(ConfigError, match="cannot hold"):
        tokenize.token_dtype(70_000, "uint16")


# --- the stage on Ray Data --------------------------------------------------------------------


def test_shards_layout_and_documents_separated_by_eos(
    pretrain_shards: Path, pretrain_tokenizer: Path
) -> None:
    index = read_index(str(pretrain_shards))
    assert index["dtype"] == "uint16" and index["seq_len"] == 128
    assert index["tokenizer_hash"] == tokenizer_hash(str(pretrain_tokenizer))
    assert index["train"]["sequences"] > 500 and index["val"]["sequences"] > 5
    for split in ("train", "val"):
        for f in index[split]["files"]:
            size = (pretrain_shards / f["path"]).stat().st_size
            assert size == f["sequences"] * 128 * 2
    reader = ShardReader(str(pretrain_shards), index, "train")
    tokens = reader.batch(list(range(reader.sequences)))
    eos, bos = index["eos_token_id"], index["bos_token_id"]
    assert (tokens == eos).sum() > 100
    after_eos = tokens.reshape(-1)[1:][tokens.reshape(-1)[:-1] == eos]
    assert (after_eos == bos).mean() > 0.99  # every document: <bos> text <eos>
    assert tokens.max() < index["vocab_size"]
    achieved = index["mixture"]["achieved"]
    assert achieved == pytest.approx(index["mixture"]["natural"], abs=0.03)  # no mixture given


def test_mixture_is_reached_and_rerun_is_byte_identical(
    ray_cluster: None, pretrain_corpus: Path, pretrain_tokenizer: Path, tmp_path: Path
) -> None:
    sources = sorted(p.stem for p in pretrain_corpus.glob("*.jsonl"))
    weights = {s: w for s, w in zip(sources, [0.6, 0.3, 0.1], strict=False)}
    if len(sources) == 1:  # the no-shared-data corpus has one source: mix it with a copy
        copy = tmp_path / "copy.jsonl"
        rows = [json.loads(line) for line in (pretrain_corpus / "web.jsonl").open()]
        copy.write_text("".join(json.dumps({**r, "source": "code"}) + "\n" for r in rows[:50]))
        weights = {"web": 0.7, "code": 0.3}
    cfg = load_config(values={"tokenize.seq_len": 64, "tokenize.mixture": weights})
    inputs = [str(pretrain_corpus)] + ([str(tmp_path / "copy.jsonl")] if len(sources) == 1 else [])
    stats = tokenize.run(cfg, inputs, str(pretrain_tokenizer), str(tmp_path / "a"))
    index = read_index(str(tmp_path / "a"))
    total = sum(weights.values())
    for source, weight in weights.items():
        assert index["mixture"]["achieved"][source] == pytest.approx(weight / total, abs=0.03)
    assert stats["counts"]["train_sequences"] == index["train"]["sequences"]
    tokenize.run(cfg, inputs, str(pretrain_tokenizer), str(tmp_path / "b"))
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.bin"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.bin"))
    assert files_a == files_b
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_too_small_corpus_and_missing_source_fail_clearly(
    ray_cluster: None, pretrain_tokenizer: Path, tmp_path: Path
) -> None:
    (tmp_path / "tiny.jsonl").write_text('{"text": "too short", "source": "web"}\n{broken\n')
    with pytest.raises(InputError, match="corpus too small"):
        tokenize.run(
            load_config(),
            [str(tmp_path / "tiny.jsonl")],
            str(pretrain_tokenizer),
            str(tmp_path / "o"),
        )
    cfg = load_config(values={"tokenize.mixture": {"code": 1.0}})
    with pytest.raises(InputError, match="names source.*code"):
        tokenize.run(
            cfg, [str(tmp_path / "tiny.jsonl")], str(pretrain_tokenizer), str(tmp_path / "o")
        )
    with pytest.raises(InputError, match="not a tokenizer directory"):
        tokenize.run(
            load_config(), [str(tmp_path / "tiny.jsonl")], str(tmp_path), str(tmp_path / "o")
        )

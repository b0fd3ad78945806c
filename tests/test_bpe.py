"""``natal tokenizer``: byte-level BPE, special tokens, chat template, inputs (pipelines/pretrain/bpe.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from cluster.cli import main
from cluster.config import load_config
from cluster.config.errors import ConfigError, InputError
from pipelines.pretrain import bpe as tokenizer_stage

CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome."},
]


@pytest.fixture(scope="module")
def tok(pretrain_tokenizer: Path):
    return AutoTokenizer.from_pretrained(pretrain_tokenizer)


def test_saved_directory_loads_with_its_special_tokens(
    tok, pretrain_tokenizer: Path, pretrain_corpus: Path
) -> None:
    assert len(tok) == 1024
    assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<|pad|>", "<|bos|>", "<|eos|>"]
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("<|pad|>", "<|bos|>", "<|eos|>")
    assert tok.extra_special_tokens == ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    config = json.loads((pretrain_tokenizer / "tokenizer_config.json").read_text())
    assert "{% generation %}" in config["chat_template"]  # in tokenizer_config.json (contract)
    stats = json.loads((pretrain_tokenizer / "stats.json").read_text())
    corpus = sum(1 for f in pretrain_corpus.glob("*.jsonl") for line in f.open() if line.strip())
    assert stats["counts"]["documents"] == corpus > 100  # every document of the corpus read


def test_byte_level_round_trip_and_bos(tok) -> None:
    text = "Wherefore art thou, Romeo? naïve café — 東京 🙂\n\tdef f(x): return x"
    ids = tok(text).input_ids
    assert ids[0] == tok.bos_token_id and tok.bos_token_id not in ids[1:]
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.unk_token_id is None  # byte level: nothing is unknown
    assert len(ids) < len(text.encode())  # merges learned something


def test_chat_template_marks_exactly_the_assistant_turns(tok) -> None:
    out = tok.apply_chat_template(
        CONVERSATION, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert tok.decode(ids) == (
        "<|bos|><|system|>\nAnswer briefly.<|end|>\n<|user|>\nWhat is the capital of France?"
        "<|end|>\n<|assistant|>\nParis.<|end|>\n<|user|>\nAnd of Italy?<|end|>\n"
        "<|assistant|>\nRome.<|end|>\n"
    )
    trained = [i for i, m in zip(ids, mask, strict=True) if m]
    assert tok.decode(trained) == "Paris.<|end|>Rome.<|end|>"
    prompt = tok.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|user|>\nWhat is the capital of France?<|end|>\n<|assistant|>\n")


def test_chat_template_rejects_unknown_roles(tok) -> None:
    with pytest.raises(Exception, match="unknown chat role: tool"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_inputs_run_dir_parquet_and_bad_records_counted(tmp_path: Path) -> None:
    docs = tmp_path / "run" / "documents"
    docs.mkdir(parents=True)
    texts = [f"Document number {i} says hello to the tokenizer." for i in range(40)]
    table = pa.table({"id": [str(i) for i in range(40)], "text": texts, "source": ["web"] * 40})
    pq.write_table(table, docs / "part-0.parquet")
    (docs / "extra.jsonl").write_text(
        '{"text": "a good line"}\n{not json\n{"text": ""}\n{"no_text": 1}\n[1, 2]\n'
    )
    cfg = load_config(values={"tokenizer.vocab_size": 400})
    stats = tokenizer_stage.run(cfg, [str(tmp_path / "run")], str(tmp_path / "tok"))
    assert stats["counts"]["documents"] == 41
    assert stats["breakdown"]["skipped"] == {"no_text": 3, "bad_json": 1}
    assert AutoTokenizer.from_pretrained(tmp_path / "tok").decode([1]) == "<|bos|>"


def test_s3_output(tmp_path: Path, s3_bucket: str) -> None:
    (tmp_path / "docs.jsonl").write_text(
        "\n".join(json.dumps({"text": f"hi {i}"}) for i in range(9))
    )
    cfg = load_config(values={"tokenizer.vocab_size": 300})
    tokenizer_stage.run(cfg, [str(tmp_path / "docs.jsonl")], f"{s3_bucket}/tok")
    loaded = tokenizer_stage.load_tokenizer(f"{s3_bucket}/tok")
    assert loaded("hi 3").input_ids[0] == loaded.bos_token_id


def test_empty_corpus_and_bad_config_are_clear_errors(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty.jsonl").write_text('{"text": "  "}\n')
    with pytest.raises(InputError, match="no document with text"):
        tokenizer_stage.run(load_config(), [str(tmp_path / "empty.jsonl")], str(tmp_path / "t"))
    cfg = load_config(values={"tokenizer.role_tokens": ["<|a|>", "<|b|>"]})
    with pytest.raises(ConfigError, match="expected 4 markers"):
        tokenizer_stage.run(cfg, [str(tmp_path / "empty.jsonl")], str(tmp_path / "t"))
    assert main(["tokenizer", "--input", str(tmp_path / "nowhere"), "--output", "x"]) == 2
    assert "no such file or directory" in capsys.readouterr().err

"""``natal tokenizer``: a byte-level BPE trained on a sample of the documents, saved as a
Hugging Face tokenizer directory (``PreTrainedTokenizerFast``) that transformers and vLLM load.

Special tokens (names configurable in ``tokenizer``; defaults shown, ids in this order first):

- ``<|pad|>`` padding; ``<|bos|>`` starts every encoded text (the post-processor adds it, so
  ``tokenizer(text)``, vLLM prompts and the token shards all begin documents with it);
  ``<|eos|>`` ends a document (token shards separate documents with it).
- chat role markers ``<|system|>``, ``<|user|>``, ``<|assistant|>`` open a turn and ``<|end|>``
  closes it. The chat template renders::

      <|bos|><|system|>\\nYou are...<|end|>\\n<|user|>\\nHi<|end|>\\n<|assistant|>\\nHello<|end|>\\n

  The assistant's content *and its* ``<|end|>`` sit inside ``{% generation %}`` blocks, so
  ``apply_chat_template(..., return_dict=True, return_assistant_tokens_mask=True)`` marks exactly
  the tokens SFT trains on; ``add_generation_prompt=True`` appends ``<|assistant|>\\n``. A
  generating model stops at ``<|end|>`` (listed with ``<|eos|>`` in exported models'
  ``generation_config.json``).

Inputs: a run dir (its ``documents/``), a documents dir, or JSONL/Parquet files with ``text``
(see :func:`document_files`). Records without usable text are counted and skipped.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
from collections.abc import Iterator
from typing import Any

import pyarrow.parquet as pq

from cluster.config import NatalConfig, TokenizerConfig
from cluster.config.errors import ConfigError, InputError
from pipelines.data import storage
from pipelines.data.stats import StageStats

DOCUMENT_SUFFIXES = (".parquet", ".jsonl", ".json", ".jsonl.gz", ".json.gz")


# --- documents in -----------------------------------------------------------------------------


def document_files(inputs: list[str]) -> list[str]:
    """Parquet/JSONL files of the inputs; a stage run dir stands for its ``documents/``."""
    resolved = []
    for uri in inputs:
        fs, path = storage.filesystem(uri)
        documents = storage.join(path, "documents")
        if "*" not in uri and fs.isdir(path) and fs.isdir(documents):
            uri = storage.join(uri, "documents")
        resolved.append(uri)
    files = [f for f in storage.expand_inputs(resolved, DOCUMENT_SUFFIXES)]
    unknown = [f for f in files if not f.endswith(DOCUMENT_SUFFIXES)]
    if unknown:
        raise InputError(f"{unknown[0]}: not a documents file (expected Parquet or JSONL)")
    return files


def iter_documents(path: str, stats: StageStats) -> Iterator[dict[str, Any]]:
    """``{"text", "source", "id"}`` of each usable record; unusable ones are counted, skipped."""
    fs, local = storage.filesystem(path)
    try:
        if path.endswith(".parquet"):
            with fs.open(local, "rb") as fh:
                table = pq.read_table(fh)
            columns = [c for c in ("id", "text", "source") if c in table.column_names]
            records: Iterator[Any] = iter(table.select(columns).to_pylist())
        else:
            with fs.open(local, "rb") as fh:
                raw = fh.read()
            if path.endswith(".gz"):
                raw = gzip.decompress(raw)
            records = _json_lines(io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8"), stats)
        for record in records:
            document = normalize_record(record)
            if document is None:
                stats.add_to("skipped", "no_text")
                continue
            yield document
    except (OSError, ValueError, EOFError) as exc:  # corrupt file: counted, never a crash
        stats.add_to("skipped", f"unreadable_file:{type(exc).__name__}")


def _json_lines(lines: Any, stats: StageStats) -> Iterator[Any]:
    for line in lines:
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            stats.add_to("skipped", "bad_json")


def normalize_record(record: Any) -> dict[str, Any] | None:
    """A record with non-empty string ``text`` → its text, source and a stable id; else None."""
    if not isinstance(record, dict):
        return None
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        return None
    source = record.get("source")
    doc_id = record.get("id")
    return {
        "text": text,
        "source": source if isinstance(source, str) and source else "unknown",
        "id": str(doc_id) if doc_id is not None else hashlib.sha1(text.encode()).hexdigest(),
    }


def sample_texts(files: list[str], limit: int, seed: int, stats: StageStats) -> list[str]:
    """Up to ``limit`` texts, reading files in a seeded random order (no full pass needed)."""
    order = list(files)
    random.Random(seed).shuffle(order)
    texts: list[str] = []
    for path in order:
        for document in iter_documents(path, stats):
            texts.append(document["text"])
            if len(texts) >= limit:
                return texts
    return texts


# --- the tokenizer ----------------------------------------------------------------------------


def special_tokens(cfg: TokenizerConfig) -> list[str]:
    """All special tokens in id order: pad, bos, eos, then the role markers."""
    if len(cfg.role_tokens) != 4:
        raise ConfigError(
            "tokenizer.role_tokens: expected 4 markers (system, user, assistant, end of turn), "
            f"got {cfg.role_tokens}"
        )
    tokens = [cfg.pad_token, cfg.bos_token, cfg.eos_token, *cfg.role_tokens]
    if len(set(tokens)) != len(tokens):
        raise ConfigError(f"tokenizer: special tokens must be distinct, got {tokens}")
    return tokens


def chat_template(cfg: TokenizerConfig) -> str:
    """Jinja chat template with ``{% generation %}`` around what the assistant says."""
    system, user, assistant, end = cfg.role_tokens
    markers = {"system": system, "user": user}
    return (
        "{{ bos_token }}"
        "{% for message in messages %}"
        "{% if message['role'] == 'assistant' %}"
        f"{assistant}\n{{% generation %}}{{{{ message['content'] }}}}{end}{{% endgeneration %}}"
        # a newline right after a block tag is trimmed by transformers' Jinja env: emit it
        "{{ '\\n' }}"
        + "".join(
            f"{{% elif message['role'] == '{role}' %}}{marker}\n{{{{ message['content'] }}}}{end}\n"
            for role, marker in markers.items()
        )
        + "{% else %}{{ raise_exception('unknown chat role: ' + message['role']) }}"
        "{% endif %}"
        "{% endfor %}"
        f"{{% if add_generation_prompt %}}{assistant}\n{{% endif %}}"
    )


def train_tokenizer(texts: list[str], cfg: TokenizerConfig):
    """Train a byte-level BPE on ``texts``; returns a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = special_tokens(cfg)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    bos = cfg.bos_token
    bos_id = tokenizer.token_to_id(bos)
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1", special_tokens=[(bos, bos_id)]
            ),
        ]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=bos,
        eos_token=cfg.eos_token,
        pad_token=cfg.pad_token,
        additional_special_tokens=list(cfg.role_tokens),
        model_max_length=1 << 30,
    )
    fast.chat_template = chat_template(cfg)
    return fast


def tokenizer_hash(tokdir: str) -> str:
    """sha256 of ``tokenizer.json``: token shards record it so a mismatch is caught early."""
    fs, path = storage.filesystem(storage.join(tokdir, "tokenizer.json"))
    if not fs.exists(path):
        raise InputError(f"{tokdir}: not a tokenizer directory (no tokenizer.json)")
    with fs.open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def load_tokenizer(tokdir: str):
    """The saved tokenizer, downloaded first if it lives at an fsspec URL."""
    from transformers import AutoTokenizer

    tokenizer_hash(tokdir)  # clear error for a wrong directory
    if "://" in tokdir:
        import tempfile

        local = tempfile.mkdtemp(prefix="natal-tokenizer-")
        fs, path = storage.filesystem(tokdir)
        fs.get(path.rstrip("/") + "/", local, recursive=True)
        tokdir = local
    return AutoTokenizer.from_pretrained(tokdir)


def save_tokenizer(tokenizer: Any, output: str) -> None:
    """``save_pretrained`` to a local dir, or through a temp dir to an fsspec URL.

    The chat template goes into ``tokenizer_config.json`` (the artifact contract), not into
    transformers 5's separate ``chat_template.jinja``; both transformers and vLLM read it there.
    """
    if "://" not in output:
        tokenizer.save_pretrained(output, save_jinja_files=False)
        return
    import tempfile

    from pipelines.training.checkpoint import upload_dir

    with tempfile.TemporaryDirectory(prefix="natal-tokenizer-") as local:
        tokenizer.save_pretrained(local, save_jinja_files=False)
        upload_dir(local, output)


def run(cfg: NatalConfig, inputs: list[str], output: str) -> dict[str, Any]:
    """Sample documents, train the BPE, save the tokenizer dir and its stats.json."""
    tcfg = cfg.tokenizer
    stats = StageStats("tokenizer")
    special_tokens(tcfg)  # config errors before reading anything
    files = document_files(inputs)
    stats.add("files", len(files))
    with stats.timer("read"):
        texts = sample_texts(files, tcfg.sample_docs, tcfg.seed, stats)
    if not texts:
        raise InputError(f"{' '.join(inputs)}: no document with text to train a tokenizer on")
    stats.add("documents", len(texts))
    stats.add("characters", sum(len(t) for t in texts))
    with stats.timer("train"):
        tokenizer = train_tokenizer(texts, tcfg)
    with stats.timer("save"):
        save_tokenizer(tokenizer, output)
    stats.extra.update(
        vocab_size=len(tokenizer), output=output, tokenizer_hash=tokenizer_hash(output)
    )
    stats.write(output)
    return stats.to_dict()

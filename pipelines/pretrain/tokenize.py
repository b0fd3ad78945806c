"""``natal tokenize``: documents → packed fixed-length token shards, with a source mixture.

Output (``SHARDDIR``): ``train/*.bin`` and ``val/*.bin`` (flat ``uint16``/``uint32`` arrays,
``seq_len`` tokens per sequence, memory-mappable), ``index.json`` (dtype, seq len, sequences
per file, token counts per source, target/natural/achieved mixture, tokenizer hash) and
``stats.json``.

Each document becomes ``<|bos|> text <|eos|>``; documents are concatenated and cut into
sequences (the tail shorter than a sequence at the end of each input file is dropped and
counted). A document goes to validation when a hash of (seed, id) falls below
``val_fraction``; training documents are repeated or dropped, again by hash, so that each
source reaches its target share of tokens. Everything is a function of the seed: a rerun
writes the same bytes.

Two Ray Data passes, one task per input file: tokenize (and count tokens per source), then
resample + pack + write shards. The pure pieces (hash draws, ratios, packing) are below.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from typing import Any

import numpy as np

from cluster.config import NatalConfig, TokenizeConfig
from cluster.config.errors import ConfigError, InputError
from pipelines.data import storage
from pipelines.data.stats import StageStats
from pipelines.pretrain.bpe import document_files, iter_documents, load_tokenizer, tokenizer_hash

# --- pure functions -----------------------------------------------------------------------


def unit_draw(seed: int, key: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, key, salt): reproducible across machines."""
    digest = hashlib.blake2b(f"{seed}:{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


def is_validation(doc_id: str, seed: int, val_fraction: float) -> bool:
    return unit_draw(seed, doc_id, "split") < val_fraction


def copies(doc_id: str, seed: int, ratio: float) -> int:
    """How many times a document appears: floor(ratio), plus one with the fractional chance."""
    whole = math.floor(ratio)
    return whole + int(unit_draw(seed, doc_id, "mix") < ratio - whole)


def mixture_ratios(tokens: dict[str, int], weights: dict[str, float]) -> dict[str, float]:
    """Sampling ratio per source so that token shares follow ``weights`` (total ≈ kept).

    No weights: every source as it is (ratio 1). Sources without a weight get ratio 0.
    """
    if not weights:
        return dict.fromkeys(tokens, 1.0)
    total_weight = sum(weights.values())
    missing = sorted(s for s, w in weights.items() if w > 0 and not tokens.get(s))
    if missing:
        present = ", ".join(sorted(s for s, n in tokens.items() if n)) or "none"
        raise InputError(
            f"tokenize.mixture names source(s) {', '.join(missing)} that the input does not "
            f"have (sources present: {present})"
        )
    budget = sum(tokens.get(s, 0) for s in weights)
    return {
        source: (weights.get(source, 0.0) / total_weight) * budget / count if count else 0.0
        for source, count in tokens.items()
    }


def shares(tokens: dict[str, int]) -> dict[str, float]:
    total = sum(tokens.values())
    return {s: round(n / total, 6) if total else 0.0 for s, n in sorted(tokens.items())}


def pack(documents: list[np.ndarray], seq_len: int) -> tuple[np.ndarray, int]:
    """Concatenate token arrays and cut them into rows of ``seq_len``; returns (rows, dropped)."""
    if not documents:
        return np.zeros((0, seq_len), dtype=np.int64), 0
    flat = np.concatenate(documents)
    rows = len(flat) // seq_len
    return flat[: rows * seq_len].reshape(rows, seq_len), len(flat) - rows * seq_len


def token_dtype(vocab_size: int, wanted: str) -> str:
    """uint16 when every id fits (and ``wanted`` allows it), else uint32."""
    if wanted == "uint16" and vocab_size > 1 << 16:
        raise ConfigError(f"tokenize.dtype uint16 cannot hold a vocabulary of {vocab_size}")
    if wanted == "auto":
        return "uint16" if vocab_size <= 1 << 16 else "uint32"
    return wanted


# --- Ray Data tasks -------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _tokenizer(tokdir: str) -> Any:
    """The bare ``tokenizers`` object (workers skip importing transformers: seconds each)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(storage.read_text(storage.join(tokdir, "tokenizer.json")))


def tokenize_file(row: dict[str, Any], tokdir: str, eos_id: int, batch_size: int) -> dict[str, Any]:
    """Pass 1: every usable document of one file as token ids (+ eos), with source and id."""
    tokenizer = _tokenizer(tokdir)
    stats = StageStats("tokenize")
    documents = list(iter_documents(row["path"], stats))
    arrays: list[np.ndarray] = []
    for start in range(0, len(documents), batch_size):
        texts = [d["text"] for d in documents[start : start + batch_size]]
        for encoding in tokenizer.encode_batch(texts, add_special_tokens=True):
            arrays.append(np.asarray([*encoding.ids, eos_id], dtype=np.int32))
    stats.add("documents", len(documents))
    lengths = np.asarray([len(a) for a in arrays], dtype=np.int64)
    return {
        "path": row["path"],
        "ids": json.dumps([d["id"] for d in documents]),
        "sources": json.dumps([d["source"] for d in documents]),
        "lengths": lengths,
        "tokens": np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int32),
        "stats": json.dumps(stats.to_dict()),
    }


def pack_file(
    row: dict[str, Any], cfg: TokenizeConfig, ratios: dict[str, float], dtype: str, output: str
) -> dict[str, Any]:
    """Pass 2: split, resample to the mixture, shuffle, pack and write this file's shards."""
    ids, sources = json.loads(row["ids"]), json.loads(row["sources"])
    documents = np.split(row["tokens"], np.cumsum(row["lengths"])[:-1]) if ids else []
    split: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    achieved: dict[str, dict[str, int]] = {"train": {}, "val": {}}
    for doc_id, source, tokens in zip(ids, sources, documents, strict=True):
        ratio = ratios.get(source, 0.0)
        if is_validation(doc_id, cfg.seed, cfg.val_fraction):
            name, n = "val", int(ratio > 0)
        else:
            name, n = "train", copies(doc_id, cfg.seed, ratio)
        split[name].extend([tokens] * n)
        achieved[name][source] = achieved[name].get(source, 0) + n * len(tokens)
    key = hashlib.sha1(row["path"].encode()).hexdigest()[:16]
    rng = np.random.default_rng(int(unit_draw(cfg.seed, key, "order") * 2**63))
    out: dict[str, Any] = {"path": row["path"], "achieved": json.dumps(achieved)}
    for name, docs in split.items():
        order = rng.permutation(len(docs))
        rows, dropped = pack([docs[i] for i in order], cfg.seq_len)
        out[f"{name}_sequences"] = len(rows)
        out[f"{name}_dropped"] = dropped
        out[f"{name}_file"] = ""
        if len(rows):
            relative = f"{name}/{key}.bin"
            fs, path = storage.filesystem(storage.join(output, relative))
            with fs.open(path, "wb") as fh:
                fh.write(rows.astype(dtype).tobytes())
            out[f"{name}_file"] = relative
    return out


# --- the stage ------------------------------------------------------------------------------


def run(cfg: NatalConfig, inputs: list[str], tokenizer_dir: str, output: str) -> dict[str, Any]:
    """Tokenize ``inputs`` with ``tokenizer_dir`` into packed shards under ``output``."""
    from cluster.resources import data_task_resources
    from cluster.runtime import ensure_ray

    tcfg = cfg.tokenize
    stats = StageStats("tokenize")
    files = [storage.absolute(f) for f in document_files(inputs)]
    tokenizer_dir, output = storage.absolute(tokenizer_dir), storage.absolute(output)
    tok_hash = tokenizer_hash(tokenizer_dir)
    tokenizer = load_tokenizer(tokenizer_dir)
    if tokenizer.eos_token_id is None:
        raise InputError(f"{tokenizer_dir}: the tokenizer has no eos token to separate documents")
    dtype = token_dtype(len(tokenizer), tcfg.dtype)
    for split in ("train", "val"):
        storage.remove_tree(storage.join(output, split))
        storage.ensure_dir(storage.join(output, split))

    ensure_ray(cfg.runtime)
    import ray

    resources = data_task_resources(cfg)
    items = [{"path": path} for path in files]
    with stats.timer("tokenize"):
        tokenized = (
            ray.data.from_items(items, override_num_blocks=len(items))
            .map(
                tokenize_file,
                fn_kwargs={
                    "tokdir": tokenizer_dir,
                    "eos_id": tokenizer.eos_token_id,
                    "batch_size": tcfg.batch_size,
                },
                **resources,
            )
            .materialize()
        )
        natural: dict[str, int] = {}
        for row in tokenized.select_columns(["sources", "lengths", "stats"]).iter_rows():
            stats.merge(json.loads(row["stats"]))
            for source, length in zip(json.loads(row["sources"]), row["lengths"], strict=True):
                natural[source] = natural.get(source, 0) + int(length)
    if not natural:
        raise InputError(f"{' '.join(inputs)}: no document with text to tokenize")
    ratios = mixture_ratios(natural, tcfg.mixture)
    with stats.timer("pack_write"):
        packed = tokenized.map(
            pack_file,
            fn_kwargs={"cfg": tcfg, "ratios": ratios, "dtype": dtype, "output": output},
            **resources,
        ).take_all()
    index = build_index(packed, tcfg, natural, ratios, dtype, len(tokenizer), tok_hash)
    index["tokenizer"] = tokenizer_dir
    index["eos_token_id"], index["bos_token_id"] = tokenizer.eos_token_id, tokenizer.bos_token_id
    if index["train"]["sequences"] == 0:
        raise InputError(
            f"{' '.join(inputs)}: corpus too small: {sum(natural.values()):,} tokens make no "
            f"training sequence of {tcfg.seq_len} tokens (lower --seq-len or add documents)"
        )
    storage.write_text(storage.join(output, "index.json"), json.dumps(index, indent=2) + "\n")
    for split in ("train", "val"):
        stats.add(f"{split}_sequences", index[split]["sequences"])
        stats.add(f"{split}_tokens", index[split]["tokens"])
        stats.add("tokens_dropped_tail", index[split]["dropped_tail"])
        stats.add(f"{split}_files", len(index[split]["files"]))
    for source, share in index["mixture"]["achieved"].items():
        stats.add_to("mixture_achieved_percent", source, round(100 * share))
    stats.extra.update(dtype=dtype, seq_len=tcfg.seq_len, output=output)
    stats.write(output)
    return stats.to_dict()


def build_index(
    packed: list[dict[str, Any]],
    cfg: TokenizeConfig,
    natural: dict[str, int],
    ratios: dict[str, float],
    dtype: str,
    vocab_size: int,
    tok_hash: str,
) -> dict[str, Any]:
    """``index.json``: everything a reader needs, and what the mixture turned out to be."""
    achieved: dict[str, dict[str, int]] = {"train": {}, "val": {}}
    index: dict[str, Any] = {
        "format": "natal-token-shards/1",
        "dtype": dtype,
        "seq_len": cfg.seq_len,
        "vocab_size": vocab_size,
        "tokenizer_hash": tok_hash,
        "seed": cfg.seed,
        "val_fraction": cfg.val_fraction,
    }
    for split in ("train", "val"):
        files = sorted(
            ({"path": p[f"{split}_file"], "sequences": p[f"{split}_sequences"]} for p in packed),
            key=lambda f: f["path"],
        )
        files = [f for f in files if f["sequences"]]
        sequences = sum(f["sequences"] for f in files)
        index[split] = {
            "files": files,
            "sequences": sequences,
            "tokens": sequences * cfg.seq_len,
            "dropped_tail": sum(p[f"{split}_dropped"] for p in packed),
        }
    for p in packed:
        for split, counts in json.loads(p["achieved"]).items():
            for source, n in counts.items():
                achieved[split][source] = achieved[split].get(source, 0) + n
    index["tokens_per_source"] = {"input": dict(sorted(natural.items())), **achieved}
    index["mixture"] = {
        "target": shares(cfg.mixture) if cfg.mixture else shares(natural),
        "natural": shares(natural),
        "achieved": shares(achieved["train"]),
        "ratios": {s: round(r, 6) for s, r in sorted(ratios.items())},
    }
    return index

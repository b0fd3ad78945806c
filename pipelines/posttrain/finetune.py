"""What SFT, the reward model and DPO share around the one training loop.

The driver reads and tokenizes the data (counting every skipped record), holds out a split,
and hands a :class:`~pipelines.training.loop.TrainTask` to :func:`train`; workers take their
slice of each global batch from :func:`stream`. Data are small next to the model for these
stages (thousands of conversations), so they travel inside the task.
"""

from __future__ import annotations

import random
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from cluster.config import NatalConfig, TrainingConfig, dump_config
from cluster.config.errors import InputError
from pipelines.data import storage
from pipelines.data.stats import StageStats
from pipelines.posttrain.chat_data import RecordError
from pipelines.posttrain.preference_data import PreferencePair, load_pairs
from pipelines.posttrain.sft_data import (
    Example,
    as_row,
    check_template,
    collate,
    response_example,
)
from pipelines.training.loop import TrainTask, WorkerContext

T = TypeVar("T")


def local_model_dir(uri: str) -> str:
    """A local directory holding the model at ``uri`` (downloaded when it is an fsspec URL)."""
    fs, path = storage.filesystem(uri)
    if not fs.exists(storage.join(path, "config.json")):
        raise InputError(f"{uri}: not a Hugging Face model directory (no config.json)")
    if "://" not in uri:
        return uri
    local = tempfile.mkdtemp(prefix="natal-model-")
    fs.get(path.rstrip("/") + "/", local, recursive=True)
    return local


def model_config(uri: str) -> dict[str, Any]:
    """The model directory's ``config.json``; a clear error when there is none."""
    import json

    fs, path = storage.filesystem(storage.join(uri, "config.json"))
    if not fs.exists(path):
        raise InputError(f"{uri}: not a Hugging Face model directory (no config.json)")
    with fs.open(path, "rt") as fh:
        return json.load(fh)


def require_causal_lm(uri: str) -> dict[str, Any]:
    """``uri``'s config; a clear error, before any training, when it is not a causal LM."""
    config = model_config(uri)
    architectures = config.get("architectures") or []
    if architectures and all("ForSequenceClassification" in a for a in architectures):
        raise InputError(
            f"{uri}: a sequence classifier ({architectures[0]}), not a causal LM: give the "
            "model it was trained from (a reward model scores answers, it cannot write them)"
        )
    return config


def read_chat_template(uri: str) -> str:
    """The text of a Jinja chat template file; a clear error naming the flag if unreadable."""
    fs, path = storage.filesystem(uri)
    if not fs.exists(path):
        raise InputError(f"--chat-template {uri}: no such file")
    with fs.open(path, "rt", encoding="utf-8") as fh:
        return fh.read()


def load_tokenizer(model_uri: str, chat_template: str | None = None):
    """The tokenizer saved beside the model, with ``chat_template`` (a file) replacing its
    template when given."""
    from pipelines.pretrain.bpe import load_tokenizer as load

    tokenizer = load(model_uri)
    config = model_config(model_uri)
    vocab = config.get("vocab_size") or config.get("text_config", {}).get("vocab_size")
    if vocab and len(tokenizer) > vocab:
        raise InputError(
            f"{model_uri}: the tokenizer has {len(tokenizer)} tokens but the model's vocabulary "
            f"is {vocab}: the two are not a pair (give the tokenizer the model was trained with)"
        )
    if chat_template:
        tokenizer.chat_template = read_chat_template(chat_template)
    if tokenizer.chat_template:
        check_template(tokenizer, chat_template or model_uri)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        note = f"the tokenizer has no pad token: padding with eos {tokenizer.eos_token!r}"
        print(f"natal: {model_uri}: {note} (padding carries no loss)", file=sys.stderr)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def holdout(items: Sequence[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """(train, validation): a seeded shuffle, then ``fraction`` of it (at least one) held out."""
    order = list(items)
    random.Random(seed).shuffle(order)
    n_val = round(len(order) * fraction)
    if fraction > 0 and len(order) >= 2:
        n_val = min(max(n_val, 1), len(order) - 1)
    return order[n_val:], order[:n_val]


@dataclass(frozen=True)
class PromptSplit:
    """One side of a seeded split of preference pairs *by prompt* (all pairs of a prompt on
    one side): the lifecycle's eval judge never saw a prompt the reward model trained on."""

    fraction: float  # the held-out side's share of the prompts
    seed: int
    held: bool  # True: the held-out side (the judge's); False: the rest

    def take(self, pairs: list[PreferencePair]) -> list[PreferencePair]:
        prompts = sorted({pair.prompt for pair in pairs})
        rest, held = holdout(prompts, self.fraction, self.seed)
        side = set(held if self.held else rest)
        if not side:
            raise InputError(
                f"lifecycle.judge_fraction={self.fraction}: {len(prompts)} preference prompts "
                f"leave none for the {'judge' if self.held else 'reward model'}"
            )
        return [pair for pair in pairs if pair.prompt in side]


def stream(
    items: Sequence[T], batch_size: int, rank: int, world: int, position: dict[str, Any], seed: int
) -> Iterator[tuple[list[T], dict[str, Any]]]:
    """This rank's part of every global batch, forever, from a global position.

    The data are an endless sequence of epochs, each a seeded permutation of ``items``; a
    global batch is the next ``world × batch_size`` of them and rank r takes the r-th slice.
    ``position`` counts items consumed globally, so a resume (with any number of workers)
    continues exactly where the run stopped.
    """
    n = len(items)
    seen = int(position.get("seen", 0))
    orders: dict[int, list[int]] = {}

    def item(index: int) -> T:
        epoch = index // n
        if epoch not in orders:
            orders.clear()
            orders[epoch] = random.Random(seed * 100_003 + epoch).sample(range(n), n)
        return items[orders[epoch][index % n]]

    while True:
        start = seen + rank * batch_size
        chunk = [item(i) for i in range(start, start + batch_size)]
        seen += batch_size * world
        yield chunk, {"seen": seen}


def eval_chunks(
    items: Sequence[T], batch_size: int, rank: int, world: int, max_chunks: int
) -> Iterator[list[T]]:
    """This rank's validation micro-batches: every rank gets as many, of the same sizes
    (collectives inside the forward pass of DDP/FSDP need that)."""
    usable = len(items) - len(items) % world
    mine = list(items[rank:usable:world])
    for chunk_index, start in enumerate(range(0, len(mine), batch_size)):
        if chunk_index >= max_chunks:
            return
        yield mine[start : start + batch_size]


def real_tokens(batch: dict[str, torch.Tensor], pad_id: int) -> int:
    return int((batch["input_ids"] != pad_id).sum())


# --- preference pairs (reward model and DPO) -------------------------------------------------

PairExample = tuple[Example, Example]


def tokenize_pairs(
    tokenizer, pairs: Sequence[PreferencePair], max_len: int, stats: StageStats
) -> list[PairExample]:
    """(chosen, rejected) token examples; left-truncated; unusable pairs counted by reason."""
    out: list[PairExample] = []
    for pair in progress(pairs, "tokenize pairs"):
        try:
            chosen = response_example(tokenizer, pair.chosen_conversation(), max_len)
            rejected = response_example(tokenizer, pair.rejected_conversation(), max_len)
        except RecordError as exc:
            stats.add_to("skipped_by_reason", exc.reason)
            continue
        if chosen.input_ids == rejected.input_ids:
            stats.add_to("skipped_by_reason", "identical_after_truncation")
            continue
        if chosen.truncated or rejected.truncated:
            stats.add("truncated_pairs")
        out.append((chosen, rejected))
    return out


class PairTask(TrainTask):
    """What the reward model and DPO share: preference pairs streamed in micro-batches."""

    def __init__(self, model: str, tokenizer, train, val, cfg: TrainingConfig) -> None:
        # absolute on the driver: Ray Train workers do not run in the driver's directory
        self.model_uri, self.tokenizer, self.cfg = storage.absolute(model), tokenizer, cfg
        self.train_pairs, self.val_pairs = train, val
        self.pad_id = tokenizer.pad_token_id

    def initial_position(self) -> dict[str, Any]:
        return {"seen": 0}

    def batches(self, ctx: WorkerContext, position: dict[str, Any]):
        c = self.cfg
        chunks = stream(self.train_pairs, c.micro_batch, ctx.rank, ctx.world_size, position, c.seed)
        for chunk, after in chunks:
            yield pair_batch(chunk, self.pad_id), after


def pair_batch(pairs: Sequence[PairExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Chosen rows first, then rejected rows, in one batch of 2 × len(pairs)."""
    rows = [as_row(chosen) for chosen, _ in pairs] + [as_row(rejected) for _, rejected in pairs]
    return collate(rows, pad_id)


def pair_count(batch: dict[str, torch.Tensor]) -> float:
    """Pairs in a :func:`pair_batch` (the Bradley–Terry and DPO losses are means over pairs)."""
    return batch["input_ids"].shape[0] / 2


# --- driver --------------------------------------------------------------------------------


def progress(items: Sequence[T], what: str) -> Iterator[T]:
    """A progress bar over a long list (quiet for short ones)."""
    from tqdm import tqdm

    from cluster.console import terminal

    return iter(
        tqdm(
            items,
            desc=what,
            disable=len(items) < 2000,
            mininterval=1.0,
            file=terminal(),
            leave=False,
        )
    )


def require(items: Sequence[Any], what: str, data: list[str], stats: StageStats) -> None:
    """An InputError naming the skip reasons when the data left nothing to train on."""
    if not items:
        reasons = stats.to_dict()["breakdown"].get("skipped_by_reason", {})
        raise InputError(
            f"no usable {what} in {', '.join(data)} (skipped: {reasons or 'none read'})"
        )


def preference_splits(
    section: Any,
    model: str,
    data: list[str],
    fmt: str | None,
    stats: StageStats,
    split: PromptSplit | None = None,
) -> tuple[Any, list[PairExample], list[PairExample]]:
    """Read preference files (one side of ``split``), tokenize, hold out ``val_fraction``.

    What the reward and DPO stages both start with; returns (tokenizer, train, val).
    """
    with stats.timer("read"):
        pairs = load_pairs(data, fmt, stats)
        if split is not None:
            pairs = split.take(pairs)
            stats.add("pairs_of_this_split", len(pairs))
        tokenizer = load_tokenizer(model, section.chat_template)
    with stats.timer("tokenize"):
        examples = tokenize_pairs(tokenizer, pairs, section.max_seq_len, stats)
    train_pairs, val_pairs = holdout(examples, section.val_fraction, section.seed)
    require(train_pairs, "preference pairs", data, stats)
    stats.add("train_pairs", len(train_pairs))
    stats.add("val_pairs", len(val_pairs))
    return tokenizer, train_pairs, val_pairs


def train(
    task: Any,
    cfg: NatalConfig,
    stage_cfg: TrainingConfig,
    output: str,
    stats: StageStats,
    after: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run ``task`` with the shared Ray Train loop; write config.yaml and stats.json beside it.

    A rerun with the same ``output`` resumes from the latest checkpoint.
    """
    from cluster.runtime import ensure_ray
    from pipelines.training.loop import fit

    storage.ensure_dir(output)
    storage.write_text(storage.join(output, "config.yaml"), dump_config(cfg))
    ensure_ray(cfg.runtime)
    with stats.timer("train"):
        summary = fit(task, stage_cfg, output, task.name, cfg.resources.train_min_workers)
    stats.extra.update(summary)
    if after is not None:
        stats.extra.update(after(summary))
    stats.write(output)
    return stats.to_dict()

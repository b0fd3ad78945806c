"""``natal sft``: supervised fine-tuning on conversations, loss on assistant tokens only.

Reads every format :mod:`pipelines.posttrain.chat_data` knows, renders conversations with the model's
chat template, masks everything but assistant turns (:mod:`pipelines.posttrain.sft_data`), optionally
packs them, and trains with the shared Ray Train loop (checkpoints, resume, metrics, export).
Writes ``RUNDIR/final`` (model + tokenizer), ``metrics.jsonl``, ``loss.png``, ``config.yaml``,
``stats.json``; the stats hold a greedy answer to ``sft.sample_prompt`` before and after.
"""

from __future__ import annotations

from typing import Any

import torch

from cluster.config import NatalConfig, SFTConfig
from pipelines.data import storage
from pipelines.data.stats import StageStats
from pipelines.posttrain import finetune, lora
from pipelines.posttrain.chat_data import RecordError, load_conversations
from pipelines.posttrain.losses import IGNORE, lm_loss_sum
from pipelines.posttrain.sft_data import (
    Example,
    Row,
    as_row,
    collate,
    model_inputs,
    pack,
    sft_example,
)
from pipelines.training.loop import TrainTask, WorkerContext
from pipelines.training.metrics import flops_per_token


class SFTTask(TrainTask):
    """Causal LM on chat rows; labels -100 outside assistant turns."""

    name = "sft"

    def __init__(self, model: str, tokenizer, train: list[Row], val: list[Row], cfg: SFTConfig):
        # absolute on the driver: Ray Train workers do not run in the driver's directory
        self.model_uri, self.tokenizer, self.cfg = storage.absolute(model), tokenizer, cfg
        self.train_rows, self.val_rows = train, val
        self.pad_id = tokenizer.pad_token_id

    def build_model(self, ctx: WorkerContext) -> torch.nn.Module:
        from transformers import AutoModelForCausalLM

        directory = finetune.local_model_dir(self.model_uri)
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
        return lora.wrap(model, self.cfg)

    def initial_position(self) -> dict[str, Any]:
        return {"seen": 0}

    def batches(self, ctx: WorkerContext, position: dict[str, Any]):
        rows = finetune.stream(
            self.train_rows, self.cfg.micro_batch, ctx.rank, ctx.world_size, position, self.cfg.seed
        )
        for chunk, after in rows:
            yield collate(chunk, self.pad_id), after

    def compute_loss(self, model, batch, ctx):
        logits = model(**model_inputs(batch)).logits
        total, count = lm_loss_sum(logits, batch["labels"])
        return total / count.clamp(min=1), {"tokens": finetune.real_tokens(batch, self.pad_id)}

    def loss_weight(self, batch) -> float:
        """The loss is a mean over labelled (assistant) tokens: weigh by their number."""
        return float((batch["labels"][:, 1:] != IGNORE).sum())

    def evaluate(self, model, ctx: WorkerContext) -> dict[str, float]:
        if not self.val_rows:
            return {}
        total, count = 0.0, 0
        chunks = finetune.eval_chunks(
            self.val_rows, self.cfg.micro_batch, ctx.rank, ctx.world_size, self.cfg.eval_batches
        )
        for chunk in chunks:
            batch = {k: v.to(ctx.device) for k, v in collate(chunk, self.pad_id).items()}
            loss, n = lm_loss_sum(model(**model_inputs(batch)).logits, batch["labels"])
            total, count = total + float(loss), count + int(n)
        sums = ctx.all_sum({"loss": total, "tokens": float(count)})
        val_loss = sums["loss"] / max(sums["tokens"], 1.0)
        return {"val_loss": val_loss, "val_ppl": float(torch.tensor(val_loss).exp())}

    def flops_per_token(self, model: torch.nn.Module) -> float:
        return flops_per_token(model, self.cfg.max_seq_len)

    def export(self, model, directory: str, ctx: WorkerContext) -> None:
        adapter = storage.join(ctx.run_dir, "final-adapter")
        lora.export(model, directory, adapter, self.model_uri, self.tokenizer)


def prepare(
    tokenizer, conversations: list, cfg: SFTConfig, stats: StageStats
) -> tuple[list[Row], list[Row], list]:
    """Tokenize, mask, split and (optionally) pack; every skip and truncation counted.

    Returns (train rows, validation rows, held-out conversations).
    """
    kept: list[tuple[Example, list]] = []
    for conversation in finetune.progress(conversations, "tokenize"):
        try:
            example = sft_example(tokenizer, conversation, cfg.max_seq_len)
        except RecordError as exc:
            stats.add_to("skipped_by_reason", exc.reason)
            continue
        stats.add("truncated", int(example.truncated))
        stats.add("train_tokens", sum(label != -100 for label in example.labels))
        kept.append((example, conversation))
    train, val = finetune.holdout(kept, cfg.val_fraction, cfg.seed)
    stats.add("train_conversations", len(train))
    stats.add("val_conversations", len(val))
    train_examples, val_examples = [e for e, _ in train], [e for e, _ in val]
    if cfg.packing:
        rows = pack(train_examples, cfg.max_seq_len), pack(val_examples, cfg.max_seq_len)
    else:
        rows = [as_row(e) for e in train_examples], [as_row(e) for e in val_examples]
    return *rows, [c for _, c in val]


def greedy_answers(
    model_dir: str,
    prompts: list[str] | list[list[dict[str, str]]],
    max_new_tokens: int,
    chat_template: str | None = None,
) -> list[str]:
    """The model's greedy answer to each prompt: a user turn, or a conversation so far
    (transformers, fp32)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = chat_template or tokenizer.chat_template
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    end_ids = [tokenizer.eos_token_id]
    if "<|end|>" in tokenizer.get_vocab():
        end_ids.append(tokenizer.convert_tokens_to_ids("<|end|>"))
    answers = []
    with torch.no_grad():
        for prompt in prompts:
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            ids = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_dict=True
            )["input_ids"]
            out = model.generate(
                torch.tensor([ids]),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=[t for t in end_ids if t is not None],
                pad_token_id=tokenizer.pad_token_id,
            )
            answers.append(tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True).strip())
    return answers


def sample_answer(
    model_dir: str, prompt: str, max_new_tokens: int, chat_template: str | None = None
) -> str:
    """Greedy answer of the model to one user turn (stops at the end-of-turn marker)."""
    local = finetune.local_model_dir(model_dir)
    return greedy_answers(local, [prompt], max_new_tokens, chat_template)[0]


def run(
    cfg: NatalConfig, model: str, data: list[str], output: str, fmt: str | None = None
) -> dict[str, Any]:
    """Fine-tune ``model`` on the conversations in ``data``; the final model is RUNDIR/final."""
    sft_cfg = cfg.sft
    stats = StageStats("sft")
    lora.check_targets(finetune.require_causal_lm(model), sft_cfg, "sft", model)
    with stats.timer("read"):
        conversations = load_conversations(data, fmt, stats)
        tokenizer = finetune.load_tokenizer(model, sft_cfg.chat_template)
    with stats.timer("tokenize"):
        train_rows, val_rows, held_out = prepare(tokenizer, conversations, sft_cfg, stats)
    finetune.require(train_rows, "conversations", data, stats)
    stats.add("train_rows", len(train_rows))
    task = SFTTask(model, tokenizer, train_rows, val_rows, sft_cfg)
    if not sft_cfg.sample_tokens:
        return finetune.train(task, cfg, sft_cfg, output, stats)
    prompt = sft_cfg.sample_prompt or first_user_turn(held_out or conversations)
    stats.extra["sample_prompt"] = prompt
    stats.extra["answer_before"] = sample_answer(
        model, prompt, sft_cfg.sample_tokens, tokenizer.chat_template
    )

    def after(summary: dict[str, Any]) -> dict[str, Any]:
        return {"answer_after": sample_answer(summary["final"], prompt, sft_cfg.sample_tokens)}

    return finetune.train(task, cfg, sft_cfg, output, stats, after)


def first_user_turn(conversations: list) -> str:
    return next(t["content"] for t in conversations[0] if t["role"] == "user")

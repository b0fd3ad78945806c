"""Stages of training: tokenizer, tokenize, pretrain, sft, reward, dpo, rlhf."""

from __future__ import annotations

import argparse
from typing import Any

from cluster.commands.base import Command
from cluster.config import NatalConfig

# --- post-training: sft, reward, dpo ---------------------------------------------------------

CHAT_FORMATS = [
    "messages",
    "sharegpt",
    "alpaca",
    "dolly",
    "self_instruct",
    "oasst",
    "prompt_response",
]
PAIR_FORMATS = ["hh_rlhf", "llamafactory", "prompt_pairs", "chat_pairs", "rating_export", "oasst"]


def _lora_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lora-r", type=int, metavar="R", help="LoRA rank: train adapters only")
    p.add_argument("--lora-alpha", type=float, metavar="A", help="LoRA alpha (update = A/R)")
    p.add_argument("--lora-dropout", type=float, metavar="P", help="dropout on adapter inputs")
    p.add_argument(
        "--lora-targets", nargs="+", metavar="NAME", help="layers with adapters (all-linear)"
    )


def _lora_flags(section: str) -> dict[str, str]:
    """--lora-* flags → ``SECTION.lora_*`` keys."""
    keys = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")
    return {key: f"{section}.{key}" for key in keys}


def _post_training_flags(section: str) -> dict[str, str]:
    """What :func:`_post_training_args` adds → ``SECTION.*`` keys (sft, reward, dpo)."""
    return {
        "max_steps": f"{section}.max_steps",
        "chat_template": f"{section}.chat_template",
        "gradient_checkpointing": f"{section}.activation_checkpointing",
        **_lora_flags(section),
    }


def _post_training_args(formats: list[str], data_help: str, output_help: str):
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--model", required=True, metavar="DIR", help="HF model dir (with tokenizer)"
        )
        p.add_argument("--data", nargs="+", required=True, metavar="FILE", help=data_help)
        p.add_argument("--output", required=True, metavar="RUNDIR", help=output_help)
        p.add_argument("--max-steps", type=int, metavar="N", help="optimizer steps")
        p.add_argument(
            "--format", choices=formats, help="force the data format (default: detected per file)"
        )
        p.add_argument(
            "--chat-template",
            metavar="FILE",
            help="Jinja chat template replacing the tokenizer's (stock templates work as they "
            "are: no {%% generation %%} tags needed); the exported model keeps it",
        )
        p.add_argument(
            "--gradient-checkpointing",
            action="store_const",
            const=True,
            help="recompute activations in the backward pass: less memory, ~30%% more compute",
        )
        _lora_args(p)

    return add


def _sft_args(p: argparse.ArgumentParser) -> None:
    _post_training_args(
        CHAT_FORMATS,
        "conversations: chat messages, ShareGPT, Alpaca, Dolly, Self-Instruct, OpenAssistant "
        "trees (best-ranked path), prompt/response; JSON or JSONL(.gz), local or s3://",
        "RUNDIR/final (model + tokenizer), checkpoints/, metrics.jsonl, loss.png, stats.json",
    )(p)


def _sft(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.posttrain import sft

    return sft.run(cfg, model=args.model, data=args.data, output=args.output, fmt=args.format)


def _reward(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.posttrain import reward_model

    return reward_model.run(
        cfg, model=args.model, data=args.data, output=args.output, fmt=args.format
    )


def _dpo(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.posttrain import dpo

    return dpo.run(cfg, model=args.model, data=args.data, output=args.output, fmt=args.format)


# --- rlhf -----------------------------------------------------------------------------------


def _rlhf_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", required=True, metavar="DIR", help="HF model to improve (e.g. SFT)")
    p.add_argument("--prompts", required=True, metavar="FILE", help="JSONL: prompt or messages")
    p.add_argument("--output", required=True, metavar="RUNDIR", help="run directory")
    p.add_argument("--reward-model", metavar="DIR", help="sequence-classification model")
    p.add_argument(
        "--reward-fn",
        action="append",
        metavar="MODULE:FUNCTION",
        help="rule f(prompt, response, **fields): fields it names come from the prompt row",
    )
    p.add_argument("--algo", choices=["grpo", "ppo", "rloo"], help="advantage estimator")
    p.add_argument("--steps", type=int, help="RL steps")
    p.add_argument("--group-size", type=int, metavar="G", help="answers per prompt")
    p.add_argument("--max-new-tokens", type=int, metavar="T", help="answer length cap")
    p.add_argument("--rollout-actors", type=int, metavar="K", help="vLLM engines")
    _lora_args(p)


def _rlhf(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.rl import rlhf

    return rlhf.run(cfg, policy=args.policy, prompts=args.prompts, output=args.output)


# --- tokenizer, tokenize, pretrain ----------------------------------------------------------


def _tokenizer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="DIR_OR_URI",
        help="documents: a stage run dir, a documents dir, or JSONL/Parquet files with text",
    )
    p.add_argument("--output", required=True, metavar="TOKDIR", help="Hugging Face tokenizer dir")
    p.add_argument("--vocab-size", type=int, metavar="N", help="BPE vocabulary incl. specials")


def _tokenizer(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.pretrain import bpe

    return bpe.run(cfg, inputs=args.input, output=args.output)


def _tokenize_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--input", nargs="+", required=True, metavar="DIR_OR_URI", help="documents to tokenize"
    )
    p.add_argument("--tokenizer", required=True, metavar="TOKDIR", help="from natal tokenizer")
    p.add_argument("--output", required=True, metavar="SHARDDIR", help="train/, val/, index.json")
    p.add_argument("--seq-len", type=int, metavar="N", help="tokens per packed sequence")


def _tokenize(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.pretrain import tokenize

    return tokenize.run(cfg, inputs=args.input, tokenizer_dir=args.tokenizer, output=args.output)


def _pretrain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="SHARDDIR", help="from natal tokenize")
    p.add_argument("--tokenizer", required=True, metavar="TOKDIR", help="the shards' tokenizer")
    p.add_argument("--output", required=True, metavar="RUNDIR", help="final/, checkpoints/, ...")
    p.add_argument("--preset", choices=["tiny", "small", "1b", "7b"], help="model size")
    p.add_argument("--max-steps", type=int, metavar="N", help="optimizer steps of the run")
    p.add_argument("--workers", type=int, metavar="N", help="Ray Train workers")


def _pretrain(cfg: NatalConfig, args: argparse.Namespace) -> dict[str, Any]:
    from pipelines.pretrain import llama

    return llama.run(cfg, data=args.data, tokenizer=args.tokenizer, output=args.output)


COMMANDS: list[Command] = [
    Command(
        "tokenizer",
        "train a byte-level BPE tokenizer (with chat template) on documents",
        _tokenizer_args,
        _tokenizer,
        description=(
            "Train a byte-level BPE on a sample of the documents (tokenizer.sample_docs) with\n"
            "special tokens <|pad|> <|bos|> <|eos|> and chat role markers <|system|> <|user|>\n"
            "<|assistant|> <|end|>, and a chat template; save a Hugging Face tokenizer dir.\n\n"
            "example:\n  natal tokenizer --input runs/dedup --output runs/tokenizer --vocab-size 8192"
        ),
        flags_to_config={"vocab_size": "tokenizer.vocab_size"},
    ),
    Command(
        "tokenize",
        "documents → packed token shards (train/val, source mixture)",
        _tokenize_args,
        _tokenize,
        description=(
            "Tokenize documents with Ray Data into packed fixed-length uint16/uint32 shards\n"
            "(SHARDDIR/train/*.bin, val/*.bin, index.json), documents separated by eos,\n"
            "sources up/down-sampled to tokenize.mixture; deterministic for tokenize.seed.\n\n"
            "example:\n  natal tokenize --input runs/dedup --tokenizer runs/tokenizer \\\n"
            "      --output runs/shards --seq-len 256 --set 'tokenize.mixture={web: 0.8, code: 0.2}'"
        ),
        flags_to_config={"seq_len": "tokenize.seq_len"},
    ),
    Command(
        "pretrain",
        "pre-train a Llama model on token shards with Ray Train (DDP/FSDP2)",
        _pretrain_args,
        _pretrain,
        description=(
            "Train transformers' LlamaForCausalLM from a preset (tiny, small, 1b, 7b) with Ray\n"
            "Train: DDP or FSDP2 (pretrain.strategy), AdamW + warmup/cosine, checkpoints every\n"
            "pretrain.checkpoint_every steps (a rerun resumes), metrics in RUNDIR/metrics.jsonl,\n"
            "loss curve RUNDIR/loss.png, the Hugging Face model in RUNDIR/final.\n\n"
            "example:\n  natal pretrain --data runs/shards --tokenizer runs/tokenizer --output runs/pretrain \\\n"
            "      --preset tiny --max-steps 300 --workers 2 --set pretrain.strategy=fsdp"
        ),
        flags_to_config={
            "preset": "pretrain.preset",
            "max_steps": "pretrain.max_steps",
            "workers": "pretrain.workers",
        },
    ),
    Command(
        "sft",
        "supervised fine-tuning on conversations (loss on assistant turns only)",
        _sft_args,
        _sft,
        description=(
            "Render each conversation with the model's chat template, train on the assistant\n"
            "tokens only (every other label -100), pack several conversations per row with\n"
            "attention isolated (sft.packing), hold out sft.val_fraction for validation loss.\n"
            "Conversations with no assistant turn or roles out of order are counted and skipped;\n"
            "longer than sft.max_seq_len: the start is kept and the cut counted. A rerun with\n"
            "the same --output resumes from the latest checkpoint.\n\n"
            "example:\n  natal sft --model runs/pretrain/final --data chats.jsonl dolly.jsonl \\\n"
            "      --output runs/sft --max-steps 300\n"
            "  natal sft --model ~/models/qwen2 --data chats.jsonl --output runs/lora \\\n"
            "      --lora-r 16 --set sft.lr=2e-4   # adapters only: final/ merged, final-adapter/"
        ),
        flags_to_config=_post_training_flags("sft"),
    ),
    Command(
        "reward",
        "reward model (Bradley-Terry) on preference pairs or rankings",
        _post_training_args(
            PAIR_FORMATS,
            "preferences: hh-rlhf chosen/rejected, LLaMA-Factory DPO, prompt/chosen/rejected, "
            "OpenAssistant sibling ranks, natal rating-page export (JSONL)",
            "RUNDIR/final (sequence classifier), eval.json (held-out accuracy), metrics.jsonl",
        ),
        _reward,
        description=(
            "Train a one-output sequence classifier of --model's architecture, initialized from\n"
            "it, with -log sigmoid(r_chosen - r_rejected - reward.margin). Ranked lists become\n"
            "every ordered pair (ties skipped). Identical or empty pairs are counted and skipped.\n"
            "Reports held-out pairwise accuracy in RUNDIR/eval.json. With --lora-r the adapters\n"
            "and the new score head train; RUNDIR/final is merged, RUNDIR/final-adapter beside.\n\n"
            "example:\n  natal reward --model runs/sft/final --data ratings.jsonl hh-rlhf.jsonl.gz \\\n"
            "      --output runs/reward --max-steps 200"
        ),
        flags_to_config=_post_training_flags("reward"),
    ),
    Command(
        "dpo",
        "direct preference optimization against a frozen reference",
        _post_training_args(
            PAIR_FORMATS,
            "preferences, same formats as natal reward",
            "RUNDIR/final (model + tokenizer), metrics.jsonl (margin, accuracy), stats.json",
        ),
        _dpo,
        description=(
            "The offline alternative to natal rlhf: the policy starts from --model, a frozen\n"
            "copy is the reference, loss -log sigmoid(beta * (chosen - rejected log-ratio)).\n"
            "Logs the implicit-reward margin and accuracy on training and held-out pairs.\n"
            "With --lora-r the reference is the policy's own base, adapters off (one copy).\n\n"
            "example:\n  natal dpo --model runs/sft/final --data pairs.jsonl --output runs/dpo \\\n"
            "      --set dpo.beta=0.1"
        ),
        flags_to_config=_post_training_flags("dpo"),
    ),
    Command(
        "rlhf",
        "RL from feedback: vLLM rollouts, reward, learners (GRPO, PPO, RLOO)",
        _rlhf_args,
        _rlhf,
        description=(
            "The policy writes --group-size answers per prompt on vLLM rollout actors, a reward\n"
            "actor scores them (a reward model from natal reward and/or rules module:function),\n"
            "learner actors update the policy data-parallel, and the new weights go back to the\n"
            "engines through the object store. Resumes from RUNDIR/checkpoints; writes\n"
            "RUNDIR/final, metrics.jsonl (reward_mean, kl, time split per step) and rlhf.png.\n"
            "With --lora-r the learners train adapters, the reference is the adapters-off base,\n"
            "the engines get merged weights; RUNDIR/final-adapter holds the adapter.\n\n"
            "examples:\n  natal rlhf --policy runs/sft/final --prompts prompts.jsonl --output runs/rlhf \\\n"
            "      --reward-fn pipelines.rl.verifiers:arithmetic_exact_match --algo grpo --steps 50\n"
            "  natal rlhf --policy runs/sft/final --prompts prompts.jsonl --output runs/ppo \\\n"
            "      --reward-model runs/reward/final --algo ppo --set rlhf.mode=async"
        ),
        flags_to_config={
            "reward_model": "rlhf.reward_model",
            "reward_fn": "rlhf.reward_fns",
            "algo": "rlhf.algo",
            "steps": "rlhf.steps",
            "group_size": "rlhf.group_size",
            "max_new_tokens": "rlhf.max_new_tokens",
            "rollout_actors": "rlhf.rollout_actors",
            **_lora_flags("rlhf"),
        },
    ),
]

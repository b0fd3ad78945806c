"""natal SFT and reward-model training vs TRL's SFTTrainer and RewardTrainer, same model and data.

    .venv/bin/python benchmarks/sft.py [--steps 30] [--batch 8] [--max-len 256] [--threads 2]

One process tree, one after the other: TRL in this process, then natal through Ray Train (one
worker with ``--threads`` CPUs; TRL gets the same torch thread count). Same random-init Llama
(the ``tiny`` preset with a natal tokenizer trained on the data), same conversations (real
Dolly + Alpaca samples from ../shared/data when present, else generated ones), same batch
size, sequence cap, steps and learning rate; loss on assistant tokens only on both sides,
packing off on both (TRL's packing does not isolate conversations under sdpa); natal packed
is printed as a third line. Throughput = trained tokens (non-pad) or pairs over the time of
the training steps (model load, data preparation and Ray start-up excluded on both sides;
natal's start-up is printed apart). Needs the bench extra: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import (  # noqa: E402  (benchmarks/common.py, beside this script)
    SHARED,
    StepClock,
    build_model,
    conversations,
    machine,
    natal_run,
    trl_args,
)


def preference_pairs(tokenizer, limit: int, max_len: int) -> list:
    """hh-rlhf pairs (or generated ones) whose chosen and rejected both fit in ``max_len``
    (TRL's RewardTrainer drops longer pairs where natal truncates: keep only pairs both keep)."""
    from pipelines.data.stats import StageStats
    from pipelines.posttrain.preference_data import load_pairs, make_pair
    from pipelines.posttrain.sft_data import encode_conversation

    hh = SHARED / "preference" / "hh-rlhf-harmless-base-test.jsonl.gz"
    if hh.exists():
        pairs = load_pairs([str(hh)], None, StageStats("bench"))
    else:
        pairs = [
            make_pair([{"role": "user", "content": f"Say {n}."}], f"{n}", f"{n + 1}")
            for n in range(2 * limit)
        ]

    def fits(pair) -> bool:
        return all(
            len(encode_conversation(tokenizer, c)[0]) <= max_len
            for c in (pair.chosen_conversation(), pair.rejected_conversation())
        )

    return [p for p in pairs if fits(p)][:limit]


def trl_sft(model_dir: str, convs: list, args, out: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    clock = StepClock()
    trainer = SFTTrainer(
        model=model,
        args=trl_args(
            SFTConfig, out, args, max_length=args.max_len, assistant_only_loss=True, packing=False
        ),
        train_dataset=Dataset.from_list([{"messages": c} for c in convs]),
        processing_class=tokenizer,
        callbacks=[clock],
    )
    trainer.train()
    tokens = trainer.state.num_input_tokens_seen or max(
        (row.get("num_tokens", 0) for row in trainer.state.log_history), default=0
    )
    return {"tokens": tokens, "seconds": clock.end - clock.start}


def trl_reward(model_dir: str, pairs: list, args, out: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    rows = [
        {
            "prompt": p.prompt_messages,
            "chosen": [{"role": "assistant", "content": p.chosen}],
            "rejected": [{"role": "assistant", "content": p.rejected}],
        }
        for p in pairs
    ]
    clock = StepClock()
    trainer = RewardTrainer(
        model=model,
        args=trl_args(RewardConfig, out, args, max_length=args.max_len),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[clock],
    )
    trainer.train()
    return {"pairs": args.steps * args.batch, "seconds": clock.end - clock.start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--conversations", type=int, default=600)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="natal-bench-sft-"))
    convs = conversations(args.conversations)
    model_dir = build_model(work / "model", [t["content"] for c in convs for t in c])
    chat_file = work / "chats.jsonl"
    chat_file.write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs))
    from pipelines.pretrain.bpe import load_tokenizer

    pairs = preference_pairs(load_tokenizer(model_dir), 4 * args.steps * args.batch, args.max_len)
    pair_file = work / "pairs.jsonl"
    pair_file.write_text(
        "".join(
            json.dumps({"prompt": p.prompt_messages, "chosen": p.chosen, "rejected": p.rejected})
            + "\n"
            for p in pairs
        )
    )

    print("before:", machine())
    trl_s = trl_sft(model_dir, convs, args, work / "trl-sft")
    trl_r = trl_reward(model_dir, pairs, args, work / "trl-reward")
    natal_s = natal_run("sft", model_dir, str(chat_file), args, work / "sft", ["sft.packing=false"])
    natal_p = natal_run("sft", model_dir, str(chat_file), args, work / "sftp", ["sft.packing=true"])
    natal_r = natal_run("reward", model_dir, str(pair_file), args, work / "reward", [])

    def rate(count: float, seconds: float) -> float:
        return count / max(seconds, 1e-9)

    rows = [
        ("SFT tokens/s", "TRL SFTTrainer", rate(trl_s["tokens"], trl_s["seconds"])),
        ("", "natal sft (packing off)", rate(natal_s["tokens"], natal_s["train_seconds"])),
        ("", "natal sft (packing on)", rate(natal_p["tokens"], natal_p["train_seconds"])),
        ("reward pairs/s", "TRL RewardTrainer", rate(trl_r["pairs"], trl_r["seconds"])),
        ("", "natal reward", rate(args.steps * args.batch, natal_r["train_seconds"])),
    ]
    print(
        f"\n{len(convs)} conversations, {len(pairs)} pairs; {args.steps} steps x {args.batch}, "
        f"max_len {args.max_len}, {args.threads} threads, tiny Llama "
        f"({sum(p.numel() for p in _params(model_dir)) / 1e6:.2f}M params)"
    )
    for what, who, value in rows:
        print(f"{what:16s} {who:26s} {value:10.1f}")
    print("after: ", machine())
    print(f"SFT natal / TRL (packing off): {rows[1][2] / rows[0][2]:.2f}x")
    print(f"reward natal / TRL:            {rows[4][2] / rows[3][2]:.2f}x")
    print(
        f"natal wall incl. Ray Train start-up: sft {natal_s['wall']:.1f} s "
        f"(train steps {natal_s['train_seconds']:.1f} s), reward {natal_r['wall']:.1f} s"
    )


def _params(model_dir: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir).parameters()


if __name__ == "__main__":
    main()

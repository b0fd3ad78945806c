"""``natal dpo``: the implicit-reward margin on the training pairs rises from zero."""

from __future__ import annotations

import json
import random

import pytest
import torch
from tiny_chat import build_chat_model

from cluster.config import load_config
from pipelines.data.stats import StageStats
from pipelines.posttrain import dpo, finetune
from pipelines.posttrain.preference_data import load_pairs


def pair_file(path) -> str:
    """Learnable preferences: asked for a number, that number over another one."""
    rng = random.Random(1)
    records = []
    for _ in range(48):
        n = rng.randrange(21)
        wrong = rng.choice([m for m in range(21) if m != n])
        records.append({"prompt": f"Say the number {n}.", "chosen": f"{n}", "rejected": f"{wrong}"})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.mark.ray
def test_dpo_raises_the_margin_on_its_training_pairs(ray_cluster, tmp_path):
    model = build_chat_model(tmp_path / "model")
    data = pair_file(tmp_path / "pairs.jsonl")
    cfg = load_config(
        None,
        [
            "dpo.lr=1e-3",
            "dpo.beta=0.5",
            "dpo.micro_batch=8",
            "dpo.warmup_steps=2",
            "dpo.log_every=5",
            "dpo.eval_every=0",
            "dpo.checkpoint_every=0",
            "dpo.max_seq_len=48",
        ],
        {"dpo.max_steps": 20},
    )
    stats = dpo.run(cfg, model, [data], str(tmp_path / "run"))
    assert stats["steps"] == 20
    assert stats["train_margin"] > 0.2 and stats["train_accuracy"] > 0.7

    # Check independently: the exported policy against the untouched reference. Before
    # training the two are the same model, so every margin is exactly 0.
    tokenizer = finetune.load_tokenizer(model)
    pairs = load_pairs([data], None, StageStats("t"))
    examples = finetune.tokenize_pairs(tokenizer, pairs, 48, StageStats("t"))
    batch = finetune.pair_batch(examples, tokenizer.pad_token_id)
    policy = dpo.load_policy(str(tmp_path / "run" / "final")).eval()
    reference = dpo.load_policy(model).eval()
    with torch.no_grad():
        before = dpo.dpo_metrics(reference, reference, batch, cfg.dpo)
        after = dpo.dpo_metrics(policy, reference, batch, cfg.dpo)
    assert before["margin"].item() == 0.0
    assert after["margin"].item() > 0.2
    assert after["accuracy"].item() > 0.7
    assert after["loss"].item() < before["loss"].item()


@pytest.mark.ray
def test_dpo_with_lora_on_qwen2_uses_its_own_base_as_the_reference(ray_cluster, tmp_path):
    """Bring your own model: Qwen2 + ChatML, LoRA; the reference is the adapters-off base
    (no second copy), so the first margin is 0; the export is merged Qwen2 + the adapter."""
    from tiny_chat import CHATML, build_qwen2_chat_model
    from transformers import AutoConfig, Qwen2ForCausalLM

    model = build_qwen2_chat_model(tmp_path / "qwen2-base")
    data = pair_file(tmp_path / "pairs.jsonl")
    overrides = ["dpo.lr=1e-2", "dpo.beta=0.5", "dpo.micro_batch=8", "dpo.warmup_steps=2"]
    overrides += ["dpo.log_every=1", "dpo.eval_every=0", "dpo.checkpoint_every=0"]
    flags = {"dpo.max_steps": 20, "dpo.lora_r": 16, "dpo.chat_template": str(CHATML)}
    flags["dpo.max_seq_len"] = 64
    stats = dpo.run(load_config(None, overrides, flags), model, [data], str(tmp_path / "run"))
    first = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["margin"] == pytest.approx(0, abs=1e-5)  # policy == reference at step 1
    assert stats["train_margin"] > 0.2 and stats["train_accuracy"] > 0.7
    final = tmp_path / "run" / "final"
    assert AutoConfig.from_pretrained(final).model_type == "qwen2"
    assert (tmp_path / "run" / "final-adapter" / "adapter_config.json").exists()
    merged = Qwen2ForCausalLM.from_pretrained(final).state_dict()
    base = Qwen2ForCausalLM.from_pretrained(model).state_dict()
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert changed and all(k.endswith("_proj.weight") for k in changed)  # adapters, merged

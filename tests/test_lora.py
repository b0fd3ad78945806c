"""LoRA for fine-tuning (pipelines/posttrain/lora.py): what trains, targets, the export."""

from types import SimpleNamespace

import pytest
import torch
from tiny_model import build_tiny_model
from transformers import AutoModelForCausalLM

from cluster.config.errors import ConfigError
from pipelines.posttrain import lora


def section(r=8, targets=("all-linear",)):
    return SimpleNamespace(lora_r=r, lora_alpha=16.0, lora_dropout=0.0, lora_targets=list(targets))


def test_only_the_adapters_train_and_rank_zero_is_full_fine_tuning(tmp_path):
    model_dir = build_tiny_model(tmp_path / "m")
    full = AutoModelForCausalLM.from_pretrained(model_dir)
    assert lora.wrap(full, section(r=0)) is full
    wrapped = lora.wrap(AutoModelForCausalLM.from_pretrained(model_dir), section(r=4))
    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    count = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    assert count < 0.05 * sum(p.numel() for p in wrapped.parameters())
    only_q = lora.wrap(AutoModelForCausalLM.from_pretrained(model_dir), section(4, ["q_proj"]))
    names = {n for n, p in only_q.named_parameters() if p.requires_grad}
    assert names and all("q_proj" in n for n in names)


def test_targets_that_match_no_linear_layer_are_refused_before_training(tmp_path):
    model_dir = str(build_tiny_model(tmp_path / "m"))
    lora.check_targets(model_dir, section(targets=["q_proj", "down_proj"]), "sft")
    with pytest.raises(ConfigError, match=r"sft.lora_targets: \['qkv'\] match no linear layer"):
        lora.check_targets(model_dir, section(targets=["q_proj", "qkv"]), "sft")


def test_export_writes_merged_weights_that_compute_what_the_adapters_did(tmp_path):
    model_dir = build_tiny_model(tmp_path / "m")
    wrapped = lora.wrap(AutoModelForCausalLM.from_pretrained(model_dir), section(r=4))
    with torch.no_grad():  # a trained adapter: B is zero at init, which would prove nothing
        for name, param in wrapped.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    ids = torch.tensor([[5, 17, 40, 41, 7]])
    with torch.no_grad():
        expected = wrapped(input_ids=ids).logits
    lora.export(wrapped, str(tmp_path / "final"), str(tmp_path / "final-adapter"))
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    assert type(merged).__name__ == "LlamaForCausalLM"
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-5)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        assert not torch.allclose(base(input_ids=ids).logits, expected, atol=1e-3)
    assert (tmp_path / "final-adapter" / "adapter_config.json").exists()

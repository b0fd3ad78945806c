"""LoRA for fine-tuning (pipelines/posttrain/lora.py): what trains, targets, the export."""

import json
from types import SimpleNamespace

import pytest
import torch
from tiny_model import build_tiny_model
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from cluster.config.errors import ConfigError, InputError
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
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    lora.check_targets(config, section(targets=["q_proj", "down_proj"]), "sft", model_dir)
    with pytest.raises(ConfigError, match=r"dpo.lora_targets: \['qkv'\] match no linear layer"):
        lora.check_targets(config, section(targets=["q_proj", "qkv"]), "dpo", model_dir)


def trained(model: torch.nn.Module) -> torch.nn.Module:
    """As if trained: B is zero at init (and a new head random), which would prove nothing."""
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.normal_(std=0.5)
    return model


def test_merged_state_and_adapters_off_leave_the_model_as_it_is(tmp_path):
    """The weights rollouts get are the adapters folded in, under the base's own names; the
    model keeps training after (no in-place merge), and adapters-off is the untouched base."""
    model_dir = build_tiny_model(tmp_path / "m")
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    wrapped = trained(lora.wrap(AutoModelForCausalLM.from_pretrained(model_dir), section(r=4)))
    ids = torch.tensor([[5, 17, 40, 41, 7]])
    with torch.no_grad():
        expected = wrapped(input_ids=ids).logits
        state = lora.merged_state(wrapped)
        assert set(state) == set(base.state_dict())
        plain = AutoModelForCausalLM.from_pretrained(model_dir)
        plain.load_state_dict(state)
        assert torch.allclose(plain(input_ids=ids).logits, expected, atol=1e-5)
        assert torch.equal(wrapped(input_ids=ids).logits, expected)  # unchanged by it
        with lora.adapters_off(wrapped):
            assert torch.allclose(wrapped(input_ids=ids).logits, base(input_ids=ids).logits)
        assert torch.equal(wrapped(input_ids=ids).logits, expected)  # back on after
    with pytest.raises(TypeError, match="lora.wrap"), lora.adapters_off(base):
        pass


def test_a_reward_model_with_adapters_trains_its_new_head_whole_and_exports_it(tmp_path):
    model_dir = build_tiny_model(tmp_path / "m")
    classifier = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    wrapped = lora.wrap(classifier, section(r=4), "SEQ_CLS")
    names = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert any("score" in n and "lora_" not in n for n in names)  # the head, whole
    assert all("lora_" in n for n in names if "score" not in n)
    trained(wrapped)
    ids = torch.tensor([[5, 17, 40, 41, 7]])
    with torch.no_grad():
        expected = wrapped(input_ids=ids).logits
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lora.export(
        wrapped, str(tmp_path / "final"), str(tmp_path / "rm-adapter"), str(model_dir), tokenizer
    )
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "final")
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-5)
    with pytest.raises(InputError, match="SEQ_CLS adapter .* serve the run's merged final/"):
        lora.merge_adapter(str(tmp_path / "rm-adapter"), str(tmp_path / "out"))


def test_export_writes_merged_weights_that_compute_what_the_adapters_did(tmp_path):
    model_dir = build_tiny_model(tmp_path / "m")
    wrapped = trained(lora.wrap(AutoModelForCausalLM.from_pretrained(model_dir), section(r=4)))
    ids = torch.tensor([[5, 17, 40, 41, 7]])
    with torch.no_grad():
        expected = wrapped(input_ids=ids).logits
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = "{{ messages[0]['content'] }}"  # as --chat-template replaces it
    adapter = str(tmp_path / "final-adapter")
    lora.export(wrapped, str(tmp_path / "final"), adapter, str(model_dir), tokenizer)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    assert type(merged).__name__ == "LlamaForCausalLM"
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-5)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        assert not torch.allclose(base(input_ids=ids).logits, expected, atol=1e-3)
    # the adapter alone rebuilds the same model (what natal serve does with an adapter dir)
    assert lora.is_adapter_dir(adapter) and not lora.is_adapter_dir(str(tmp_path / "final"))
    rebuilt = lora.merge_adapter(adapter, str(tmp_path / "rebuilt"))
    with torch.no_grad():
        logits = AutoModelForCausalLM.from_pretrained(rebuilt)(input_ids=ids).logits
        assert torch.allclose(logits, expected, atol=1e-5)
    assert AutoTokenizer.from_pretrained(rebuilt).chat_template == tokenizer.chat_template

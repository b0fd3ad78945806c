"""LoRA (peft) for fine-tuning: low-rank adapters on the linear layers, the base frozen.

Trainable parameters and optimizer state shrink to the adapters (well under 1% at r=16 on
real models); the export is a merged Hugging Face directory (``final/``, loadable and
servable like any other) plus the adapter alone (``final-adapter/``).
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch

from cluster.config.errors import ConfigError

ALL_LINEAR = "all-linear"  # peft's name for every linear layer but the output head


def lora_config(section: Any) -> Any:
    from peft import LoraConfig

    targets = section.lora_targets
    return LoraConfig(
        r=section.lora_r,
        lora_alpha=section.lora_alpha,
        lora_dropout=section.lora_dropout,
        target_modules=ALL_LINEAR if targets == [ALL_LINEAR] else list(targets),
        task_type="CAUSAL_LM",
    )


def check_targets(model_dir: str, section: Any, field: str) -> None:
    """Before any training: the targets must name linear layers of the model (built on the
    meta device, so nothing is loaded)."""
    if not section.lora_r or section.lora_targets == [ALL_LINEAR]:
        return
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    linear = {
        n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
    }
    missing = [t for t in section.lora_targets if t not in linear]
    if missing:
        raise ConfigError(
            f"{field}.lora_targets: {missing} match no linear layer of {model_dir} "
            f"(it has: {', '.join(sorted(linear))}; or {ALL_LINEAR})"
        )


def wrap(model: torch.nn.Module, section: Any) -> torch.nn.Module:
    """The model with adapters (only they train), or the model itself when ``lora_r`` is 0."""
    if not section.lora_r:
        return model
    from peft import get_peft_model

    return get_peft_model(model, lora_config(section))


def export(model: torch.nn.Module, directory: str, adapter_uri: str) -> None:
    """Merged weights to ``directory``; with adapters, the adapter alone to ``adapter_uri``."""
    from peft import PeftModel

    from pipelines.training import checkpoint as ckpt_io

    if isinstance(model, PeftModel):
        with tempfile.TemporaryDirectory(prefix="natal-adapter-") as adapter:
            model.save_pretrained(adapter)
            ckpt_io.upload_dir(adapter, adapter_uri)
        model = model.merge_and_unload()
    model.save_pretrained(directory)

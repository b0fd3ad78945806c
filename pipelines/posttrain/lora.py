"""LoRA (peft) for fine-tuning and RL: low-rank adapters on the linear layers, the base frozen.

Trainable parameters and optimizer state shrink to the adapters (well under 1% at r=16 on
real models). The base with its adapters switched off is the untouched starting model, so
DPO and RLHF take it as their reference instead of holding a second copy. What leaves a run
is always a merged Hugging Face directory (loadable, servable, what vLLM rollouts reload) plus
the adapter alone (``final-adapter/``).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from typing import Any, Literal

import torch

from cluster.config.errors import ConfigError

ALL_LINEAR = "all-linear"  # peft's name for every linear layer but the output head
CLASSIFIER_HEADS = ("score", "classifier")  # transformers' names for a classifier's head
TaskType = Literal["CAUSAL_LM", "SEQ_CLS", "TOKEN_CLS"]  # policy, reward model, PPO critic


def lora_config(section: Any, task_type: TaskType = "CAUSAL_LM") -> Any:
    """peft's config from a section's ``lora_*`` keys; a classifier's new head trains fully."""
    from peft import LoraConfig

    targets = section.lora_targets
    return LoraConfig(
        r=section.lora_r,
        lora_alpha=section.lora_alpha,
        lora_dropout=section.lora_dropout,
        target_modules=ALL_LINEAR if targets == [ALL_LINEAR] else list(targets),
        # a classifier's head is new: peft trains it whole (modules_to_save), no adapter on it
        exclude_modules=None if task_type == "CAUSAL_LM" else list(CLASSIFIER_HEADS),
        task_type=task_type,
    )


def check_targets(model_config: dict[str, Any], section: Any, field: str, where: str) -> None:
    """Before any training: the targets must name linear layers of the model (built from its
    ``config.json`` on the meta device, so no weight is read or downloaded)."""
    if not section.lora_r or section.lora_targets == [ALL_LINEAR]:
        return
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**model_config))
    linear = {
        n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
    }
    missing = [t for t in section.lora_targets if t not in linear]
    if missing:
        raise ConfigError(
            f"{field}.lora_targets: {missing} match no linear layer of {where} "
            f"(it has: {', '.join(sorted(linear))}; or {ALL_LINEAR})"
        )


def wrap(
    model: torch.nn.Module,
    section: Any,
    task_type: TaskType = "CAUSAL_LM",
    adapter_dir: str | None = None,
) -> torch.nn.Module:
    """The model with adapters (only they train), or the model itself when ``lora_r`` is 0.

    ``adapter_dir``: continue the adapter saved there (a resumed run) instead of a new one.
    """
    if not section.lora_r:
        return model
    from peft import PeftModel, get_peft_model

    if adapter_dir:
        return PeftModel.from_pretrained(model, adapter_dir, is_trainable=True)
    return get_peft_model(model, lora_config(section, task_type))


def is_lora(model: torch.nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


@contextlib.contextmanager
def adapters_off(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Inside: ``model`` computes what its base did before any training (the reference)."""
    if not is_lora(model):
        raise TypeError("adapters_off needs a model wrapped by lora.wrap")
    with model.disable_adapter():
        yield model


def merged_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict under the base model's own names, adapters folded into the weights.

    The model is left as it is (no in-place merge, which would drift the frozen base by
    rounding on every sync); untouched tensors are shared, not copied.
    """
    if not is_lora(model):
        return model.state_dict()
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    state: dict[str, torch.Tensor] = {}
    for key, value in base.state_dict().items():
        if "lora_" in key or ".original_module." in key:
            continue
        name = key.replace(".base_layer.", ".").replace(".modules_to_save.default.", ".")
        state[name] = value
    with torch.no_grad():
        for name, module in base.named_modules():
            if isinstance(module, LoraLayer) and not module.merged:
                for adapter in module.active_adapters:
                    key = f"{name}.weight"
                    state[key] = state[key] + module.get_delta_weight(adapter).to(state[key].dtype)
    return state


def save_merged(model: torch.nn.Module, directory: str) -> None:
    """A Hugging Face directory of the model with its adapters merged (it keeps training)."""
    if is_lora(model):
        model.get_base_model().save_pretrained(directory, state_dict=merged_state(model))
    else:
        model.save_pretrained(directory)


def save_adapter(model: torch.nn.Module, uri: str) -> None:
    """The adapter alone (peft's format) to a local path or fsspec URL; nothing without one."""
    if not is_lora(model):
        return
    from pipelines.training import checkpoint as ckpt_io

    with tempfile.TemporaryDirectory(prefix="natal-adapter-") as adapter:
        model.save_pretrained(adapter)
        ckpt_io.upload_dir(adapter, uri)


def export(model: torch.nn.Module, directory: str, adapter_uri: str) -> None:
    """Merged weights to ``directory``; with adapters, the adapter alone to ``adapter_uri``."""
    save_adapter(model, adapter_uri)
    save_merged(model, directory)

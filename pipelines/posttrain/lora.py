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

from cluster.config.errors import ConfigError, InputError

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


def save_adapter(model: torch.nn.Module, uri: str, base: str, tokenizer: Any = None) -> None:
    """The adapter alone (peft's format) to a local path or fsspec URL, naming ``base`` (the
    model's own URI, not the local copy it was loaded from) and with the tokenizer, so that
    :func:`merge_adapter` and ``natal serve`` rebuild the model from it; nothing without one."""
    if not is_lora(model):
        return
    import json
    import os

    from pipelines.training import checkpoint as ckpt_io

    with tempfile.TemporaryDirectory(prefix="natal-adapter-") as adapter:
        model.save_pretrained(adapter)
        config_file = os.path.join(adapter, "adapter_config.json")
        with open(config_file) as fh:
            config = json.load(fh)
        config["base_model_name_or_path"] = base
        with open(config_file, "w") as fh:
            json.dump(config, fh, indent=2)
        if tokenizer is not None:
            tokenizer.save_pretrained(adapter)
        ckpt_io.upload_dir(adapter, uri)


def export(
    model: torch.nn.Module, directory: str, adapter_uri: str, base: str, tokenizer: Any
) -> None:
    """Merged weights and ``tokenizer`` to ``directory``; with adapters, the adapter alone to
    ``adapter_uri`` (see :func:`save_adapter`)."""
    save_adapter(model, adapter_uri, base, tokenizer)
    save_merged(model, directory)
    tokenizer.save_pretrained(directory)


def is_adapter_dir(directory: str) -> bool:
    """An adapter alone (``final-adapter/``), not a full model directory."""
    import os

    return os.path.isfile(os.path.join(directory, "adapter_config.json")) and not os.path.isfile(
        os.path.join(directory, "config.json")
    )


def merge_adapter(adapter_dir: str, output: str) -> str:
    """A full Hugging Face directory in ``output`` from an adapter directory: the base it
    names (``base_model_name_or_path``, local or fsspec) with the adapter merged in, and the
    tokenizer saved with the adapter (the base's when there is none)."""
    import json
    import os

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipelines.posttrain.finetune import local_model_dir

    with open(os.path.join(adapter_dir, "adapter_config.json")) as fh:
        config = json.load(fh)
    if config.get("task_type") not in (None, "CAUSAL_LM"):
        raise InputError(
            f"{adapter_dir}: a {config['task_type']} adapter (a reward model or critic), not a "
            "language model's: serve the run's merged final/ instead"
        )
    base = config.get("base_model_name_or_path")
    if not base:
        raise InputError(f"{adapter_dir}: adapter_config.json names no base model")
    base_dir = local_model_dir(base)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    PeftModel.from_pretrained(model, adapter_dir).merge_and_unload().save_pretrained(output)
    has_tokenizer = os.path.isfile(os.path.join(adapter_dir, "tokenizer.json"))
    AutoTokenizer.from_pretrained(adapter_dir if has_tokenizer else base_dir).save_pretrained(
        output
    )
    return output

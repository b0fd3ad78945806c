"""The one typed config of the whole lifecycle.

Every stage reads its own section of :class:`NatalConfig`. The config is loaded once, at the
CLI boundary, from YAML (or the embedded default ``configs/demo.yaml``), then overridden by
``--set a.b.c=value`` and by stage flags, and validated before any work starts: a wrong or
unknown field fails with a message that names the field and what it accepts.

The sections live in this package, by phase: ``data_sections`` (crawl → dedup),
``training_sections`` (tokenizer → RLHF) and ``ops_sections`` (runtime, planning, jobs,
serving, the lifecycle run); they are re-exported here, so ``from cluster.config import X``
works for every section. ``errors`` holds the errors every layer raises. Nothing here imports
the rest of natal: this package is the bottom of the import graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from cluster.config.data_sections import *  # noqa: F403  (re-exported sections)
from cluster.config.data_sections import DataConfig
from cluster.config.errors import ConfigError
from cluster.config.ops_sections import *  # noqa: F403
from cluster.config.ops_sections import (
    JobsConfig,
    LifecycleConfig,
    PlanConfig,
    RateConfig,
    ResourcesConfig,
    RuntimeConfig,
    ServeConfig,
)
from cluster.config.section import Section
from cluster.config.training_sections import *  # noqa: F403
from cluster.config.training_sections import (
    DPOConfig,
    PretrainConfig,
    RewardConfig,
    RLHFConfig,
    SFTConfig,
    TokenizeConfig,
    TokenizerConfig,
)

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


class NatalConfig(Section):
    """The whole lifecycle: one section per stage."""

    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    # Sections of later phases (tokenizer, pretrain, sft, ...) are added below this line.
    serve: ServeConfig = Field(default_factory=ServeConfig)
    rate: RateConfig = Field(default_factory=RateConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    dpo: DPOConfig = Field(default_factory=DPOConfig)
    plan: PlanConfig = Field(default_factory=PlanConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    rlhf: RLHFConfig = Field(default_factory=RLHFConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)


# --- loading --------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` → (["a", "b", "c"], parsed value). Values are YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. data.min_words=50")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    """Assign ``value`` at ``path`` in a nested dict, creating the intermediate dicts."""
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def _describe_error(err: dict[str, Any]) -> str:
    field = ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(err["loc"][:-1])
        allowed = ", ".join(sorted(parent.model_fields)) if parent else "?"
        return f"{field}: unknown field (allowed here: {allowed})"
    if kind == "literal_error":
        return f"{field}: {err['msg']} (got {err.get('input')!r})"
    return f"{field}: {err['msg']} (got {err.get('input')!r})"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = NatalConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def build_config(tree: dict[str, Any], origin: str = "config") -> NatalConfig:
    """Validate a nested dict into a :class:`NatalConfig`, naming every wrong field."""
    try:
        return NatalConfig.model_validate(tree)
    except ValidationError as exc:
        lines = [_describe_error(e) for e in exc.errors()]
        raise ConfigError(f"invalid {origin}:\n  " + "\n  ".join(lines)) from None


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    values: dict[str, Any] | None = None,
) -> NatalConfig:
    """Load YAML (default: the embedded demo config), apply ``--set`` overrides and stage flags.

    ``values`` maps dotted keys to values that stage flags set (``None`` values are ignored).
    """
    source = Path(path) if path else DEMO_CONFIG
    try:
        tree = yaml.safe_load(source.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {source}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {source} is not valid YAML: {exc}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {source} must hold a mapping of sections")
    for text in overrides or []:
        key, value = parse_override(text)
        set_path(tree, key, value)
    for key, value in (values or {}).items():
        if value is not None:
            set_path(tree, key.split("."), value)
    return build_config(tree, origin=f"config ({source.name})")


def dump_config(cfg: NatalConfig) -> str:
    """The resolved config as YAML, written beside every stage's output."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)

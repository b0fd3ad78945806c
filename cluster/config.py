"""The one typed config of the whole lifecycle.

Every stage reads its own section of :class:`NatalConfig`. The config is loaded once, at the
CLI boundary, from YAML (or the embedded default ``configs/demo.yaml``), then overridden by
``--set a.b.c=value`` and by stage flags, and validated before any work starts: a wrong or
unknown field fails with a message that names the field and what it accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cluster.errors import ConfigError

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


class Section(BaseModel):
    """Base of every config section: unknown fields are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RuntimeConfig(Section):
    """Where Ray runs. ``address`` None: ``RAY_ADDRESS`` if set, else a fresh local cluster."""

    address: str | None = None
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local cluster (None: all)")
    num_gpus: int | None = Field(None, ge=0)
    object_store_mb: int = Field(512, ge=64, description="object store of a local cluster")
    temp_dir: str | None = None


# --- data phase -----------------------------------------------------------------------------


class CrawlConfig(Section):
    """``natal crawl``: a polite fetcher from seed URLs to WARC.gz."""

    seeds: list[str] = Field(default_factory=list)
    max_pages: int = Field(500, ge=1)
    max_depth: int = Field(3, ge=0)
    rate: float = Field(5.0, gt=0, description="requests per second per host")
    concurrency_per_host: int = Field(2, ge=1)
    retries: int = Field(3, ge=0)
    backoff_s: float = Field(0.5, ge=0)
    timeout_s: float = Field(20.0, gt=0)
    same_host: bool = Field(True, description="follow links only within the seed's host")
    user_agent: str = "natal-crawler/0.1 (+https://github.com/natal)"
    max_response_bytes: int = Field(20 << 20, ge=1024)
    pages_per_warc: int = Field(1000, ge=1, description="pages per output WARC.gz file")


class IngestConfig(Section):
    """``natal ingest``: crawl archives and corpora to documents."""

    extractor: Literal["resiliparse", "trafilatura"] = "resiliparse"
    source: str = Field("web", description="source tag of documents read from web archives")
    max_record_bytes: int = Field(
        10 << 20, ge=1024, description="larger HTTP payloads are counted and skipped"
    )
    min_text_chars: int = Field(1, ge=0, description="extracted texts shorter are dropped")
    batch_size: int = Field(256, ge=1, description="documents per output batch")


class DataConfig(Section):
    """The data phase: crawl → ingest → filter → dedup."""

    min_words: int = Field(50, ge=0, description="fewer words: removed (Gopher: 50)")
    crawl: CrawlConfig = Field(default_factory=CrawlConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    # Sections of later stages (filter, dedup, ...) are added below this line by their issues.


class NatalConfig(Section):
    """The whole lifecycle: one section per stage."""

    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    # Sections of later phases (tokenizer, pretrain, sft, ...) are added below this line.


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

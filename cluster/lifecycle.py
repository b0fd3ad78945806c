"""``natal run``: every stage in order, each under one run directory, skipped when unchanged.

Each stage writes ``RUNDIR/<stage>/`` and, when it finishes, ``RUNDIR/<stage>/manifest.json``
(its inputs, the hash of the config it read, the code version, its times and stats). A rerun
skips a stage whose manifest says *done* with the same fingerprint (its config sections and
its upstream stages' fingerprints); a stage that was interrupted has no *done* manifest and
runs again — training stages resume from their own checkpoints under the same directory.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.config import NatalConfig, dump_config
from cluster.config.errors import ConfigError
from cluster.headlines import headline

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Stage:
    """One step of the lifecycle: what it reads from the config and from earlier stages."""

    name: str
    sections: tuple[str, ...]
    upstream: tuple[str, ...]
    run: Callable[[NatalConfig, Path], dict[str, Any]]
    outputs: str = ""  # what it leaves in RUNDIR/<name>, for --help and the report


def config_section(cfg: NatalConfig, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node.model_dump(mode="json") if hasattr(node, "model_dump") else node


def fingerprint(cfg: NatalConfig, stage: Stage, upstream_prints: dict[str, str]) -> str:
    """Hash of everything a stage's output depends on: its config sections and its inputs."""
    payload = {
        "stage": stage.name,
        "config": {s: config_section(cfg, s) for s in stage.sections},
        "upstream": {u: upstream_prints[u] for u in stage.upstream},
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def select_stages(stages: Sequence[Stage], start: str | None, until: str | None) -> list[Stage]:
    """The stages from ``start`` to ``until`` inclusive, in lifecycle order."""
    names = [s.name for s in stages]
    for label, name in (("--from", start), ("--until", until)):
        if name is not None and name not in names:
            raise ConfigError(f"{label} {name!r}: unknown stage (stages: {', '.join(names)})")
    first = names.index(start) if start else 0
    last = names.index(until) if until else len(names) - 1
    if first > last:
        raise ConfigError(f"--from {start!r} comes after --until {until!r}")
    return list(stages[first : last + 1])


def read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((stage_dir / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def code_version() -> str:
    """The git commit of the code that ran (``unknown`` outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_lifecycle(
    cfg: NatalConfig,
    run_dir: str | Path,
    stages: Sequence[Stage],
    start: str | None = None,
    until: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or skip) each selected stage in order; returns a summary of what happened."""
    root = Path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(dump_config(cfg))
    selected = {s.name for s in select_stages(stages, start, until)}
    prints: dict[str, str] = {}
    summary: dict[str, Any] = {"stages": {}, "run_dir": str(root)}
    version = code_version()
    for stage in stages:
        stage_dir = root / stage.name
        prints[stage.name] = fingerprint(cfg, stage, prints)
        manifest = read_manifest(stage_dir)
        done = bool(manifest and manifest.get("status") == "done")
        if stage.name not in selected:
            summary["stages"][stage.name] = "not selected"
            continue
        if done and manifest.get("fingerprint") == prints[stage.name]:
            log(f"[natal run] {stage.name}: unchanged, skipped")
            summary["stages"][stage.name] = "skipped (unchanged)"
            continue
        missing = [u for u in stage.upstream if read_manifest(root / u) is None]
        if missing:
            raise ConfigError(
                f"stage {stage.name} needs {', '.join(missing)} first (no manifest under {root})"
            )
        log(f"[natal run] {stage.name}: running …")
        stage_dir.mkdir(parents=True, exist_ok=True)
        started = time.time()
        base = {
            "stage": stage.name,
            "fingerprint": prints[stage.name],
            "inputs": {u: str(root / u) for u in stage.upstream},
            "code_version": version,
            "started": started,
        }
        (stage_dir / MANIFEST).write_text(json.dumps({**base, "status": "running"}, indent=2))
        stats = stage.run(cfg, root)
        finished = time.time()
        record = {**base, "status": "done", "finished": finished, "seconds": finished - started}
        record["stats"] = stats
        (stage_dir / MANIFEST).write_text(json.dumps(record, indent=2, default=str))
        summary["stages"][stage.name] = f"done in {finished - started:.0f} s"
        log(f"[natal run] {stage.name}: {headline(stage.name, stats)} ({finished - started:.0f} s)")
    return summary

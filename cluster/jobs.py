"""Any stage as a Ray job on a running cluster: submit, follow its logs, list, stop.

``natal submit STAGE ...`` ships the working directory (without .venv, runs/, .git and big
files) to the cluster with ``runtime_env``, runs ``natal STAGE ...`` there, prints its logs as
they come and exits with the job's status. It is the same as
``ray job submit --working-dir . -- natal STAGE ...``, plus: the config is validated here before
anything is shipped, natal's Ray environment defaults travel with the job, and the pip extras
of pyproject.toml can be installed by name.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import shlex
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cluster.config import JobsConfig, load_config
from cluster.config.errors import ConfigError, InputError, NatalError
from cluster.runtime import ray_env_defaults

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def build_entrypoint(
    stage: str,
    stage_args: list[str],
    config: str | None = None,
    overrides: list[str] | None = None,
) -> str:
    """The shell command the job runs: ``natal STAGE ARGS [--config F] [--set K=V ...]``."""
    argv = ["natal", stage, *stage_args]
    if config:
        argv += ["--config", config]
    for override in overrides or []:
        argv += ["--set", override]
    return shlex.join(argv)


def config_in_working_dir(config: str, working_dir: Path) -> str:
    """The config's path relative to the shipped working dir (the job sees only that dir)."""
    path = Path(config).resolve()
    if not path.is_file():
        raise ConfigError(f"config file not found: {config}")
    try:
        return path.relative_to(working_dir.resolve()).as_posix()
    except ValueError:
        raise ConfigError(
            f"config {config} is outside the working dir {working_dir}: the job would not see it "
            "(move it into the project, e.g. configs/, or set jobs.working_dir)"
        ) from None


def _excluded(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    return any(
        fnmatch.fnmatch(rel, pat) or any(fnmatch.fnmatch(part, pat) for part in parts)
        for pat in patterns
    )


def large_files(root: Path, max_bytes: int, excludes: list[str]) -> list[str]:
    """Files under ``root`` bigger than ``max_bytes`` that the excludes do not already drop."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = [d for d in dirnames if not _excluded(rel_dir + d, excludes)]
        for name in filenames:
            rel = rel_dir + name
            if not _excluded(rel, excludes) and (Path(dirpath) / name).stat().st_size > max_bytes:
                found.append(rel)
    return sorted(found)


def extra_requirements(root: Path, extras: list[str]) -> list[str]:
    """The pip requirements of natal's optional extras, read from the shipped pyproject.toml."""
    if not extras:
        return []
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    except (FileNotFoundError, KeyError) as exc:
        raise ConfigError(f"jobs.pip_extras needs {root}/pyproject.toml ({exc})") from None
    known = project.get("optional-dependencies", {})
    requirements: list[str] = []
    for extra in extras:
        if extra not in known:
            raise ConfigError(f"jobs.pip_extras: unknown extra {extra!r} (known: {sorted(known)})")
        requirements += known[extra]
    return requirements


def build_runtime_env(cfg: JobsConfig) -> dict[str, Any]:
    """The job's ``runtime_env``: working dir minus excludes and big files, env, pip extras."""
    root = Path(cfg.working_dir).resolve()
    if not root.is_dir():
        raise InputError(f"jobs.working_dir {cfg.working_dir}: not a directory")
    big = large_files(root, int(cfg.max_file_mb * (1 << 20)), cfg.excludes)
    for rel in big:
        print(f"natal submit: leaving out {rel} (> {cfg.max_file_mb:g} MB)", file=sys.stderr)
    env: dict[str, Any] = {
        "working_dir": str(root),
        "excludes": [*cfg.excludes, *big],
        "env_vars": {**ray_env_defaults(), **cfg.env_vars},
    }
    requirements = extra_requirements(root, cfg.pip_extras)
    if requirements:
        env["pip"] = requirements
    return env


def job_client(address: str | None):
    """A ``JobSubmissionClient`` for the dashboard at ``address``, or one clear error."""
    from ray.job_submission import JobSubmissionClient

    target = address or os.environ.get("RAY_ADDRESS")
    if not target:
        raise ConfigError("no cluster: give --address http://HEAD:8265 or set RAY_ADDRESS")
    try:
        return JobSubmissionClient(target)
    except Exception as exc:  # ConnectionError, ValueError, ...: one line, not a traceback
        raise NatalError(f"cannot reach the Ray job server at {target}: {exc}") from None


def follow_logs(client, job_id: str) -> None:
    """Print the job's logs until it ends (the server closes the stream then)."""

    async def _tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    asyncio.run(_tail())


def wait_status(client, job_id: str, timeout_s: float = 60.0) -> str:
    """The job's terminal status (the log stream can end a moment before the status flips)."""
    deadline = time.monotonic() + timeout_s
    status = str(client.get_job_status(job_id).value)
    while status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.5)
        status = str(client.get_job_status(job_id).value)
    return status


def submit(
    stage: str,
    stage_args: list[str],
    stages: Sequence[str],
    config: str | None = None,
    overrides: list[str] | None = None,
    values: dict[str, Any] | None = None,
    follow: bool = True,
) -> dict[str, Any]:
    """Submit ``natal STAGE`` as a Ray job; follow it unless told not to; stats for the table.

    ``stages``: the verbs a job may run. ``values`` are submit's own flags as config keys
    (``jobs.address``, ...); they shape the submission, while ``config`` and ``overrides``
    travel with the job to the stage.
    """
    if stage not in stages:
        raise ConfigError(f"unknown stage {stage!r} (stages: {', '.join(stages)})")
    cfg = load_config(config, overrides, values)  # fail here, before shipping anything
    root = Path(cfg.jobs.working_dir)
    rel_config = config_in_working_dir(config, root) if config else None
    entrypoint = build_entrypoint(stage, stage_args, rel_config, overrides)
    client = job_client(cfg.jobs.address)
    job_id = client.submit_job(
        entrypoint=entrypoint,
        runtime_env=build_runtime_env(cfg.jobs),
        metadata={"natal_stage": stage},
    )
    print(f"natal submit: job {job_id}: {entrypoint}", file=sys.stderr)
    stats: dict[str, Any] = {"stage": "submit", "job": job_id, "entrypoint": entrypoint}
    if not follow:
        stats["status"] = str(client.get_job_status(job_id).value)
        return stats
    try:
        follow_logs(client, job_id)
    except KeyboardInterrupt:
        print(f"\nnatal submit: still running; stop it with: natal jobs --stop {job_id}")
        raise
    status = wait_status(client, job_id)
    stats["status"] = status
    stats["exit_code"] = 0 if status == "SUCCEEDED" else 1
    return stats


def list_jobs(address: str | None) -> list[dict[str, Any]]:
    """Every job the cluster knows, newest first: id, status, stage, entrypoint, times."""
    client = job_client(address)
    rows = []
    for job in client.list_jobs():
        rows.append(
            {
                "job": job.submission_id or job.job_id,
                "status": str(job.status.value),
                "stage": (job.metadata or {}).get("natal_stage", "-"),
                "entrypoint": job.entrypoint,
                "start_time": job.start_time or 0,
                "end_time": job.end_time,
            }
        )
    return sorted(rows, key=lambda row: row["start_time"], reverse=True)


def stop_job(address: str | None, job_id: str, wait_s: float = 30.0) -> str:
    """Stop a job and wait until Ray says it is stopped (or ended on its own)."""
    client = job_client(address)
    try:
        client.stop_job(job_id)
    except RuntimeError as exc:
        raise InputError(f"cannot stop job {job_id}: {exc}") from None
    return wait_status(client, job_id, timeout_s=wait_s)


def jobs_stats(address: str | None, stop: str | None = None) -> dict[str, Any]:
    """``natal jobs``: print the jobs as a table (after stopping one, if asked)."""
    from rich.console import Console
    from rich.table import Table

    stats: dict[str, Any] = {"stage": "jobs"}
    if stop:
        stats["stopped"] = f"{stop}: {stop_job(address, stop)}"
    rows = list_jobs(address)
    table = Table(title="Ray jobs", header_style="bold")
    for column in ("job", "status", "stage", "started"):
        table.add_column(column, no_wrap=True)
    table.add_column("entrypoint", overflow="fold")
    for row in rows:
        started = time.strftime("%H:%M:%S", time.localtime(row["start_time"] / 1000))
        table.add_row(row["job"], row["status"], row["stage"], started, row["entrypoint"])
    Console().print(table)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    stats["counts"] = {"jobs": len(rows)}
    stats["breakdown"] = {"status": counts}
    return stats

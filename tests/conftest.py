"""Session fixtures: one local Ray cluster, one local S3 server (moto), the shared real data.

Nothing a test run writes outlives it, and nothing left on the machine by an earlier run is
used: at import (before Ray, vLLM or pytest's ``tmp_path`` pick a directory) every temporary
and cache location of this process and its children (Ray workers, vLLM engines, ``ray start``
heads) points into one session directory, removed when pytest exits, whether tests failed or
not. ``NATAL_TEST_KEEP_TMP=1`` keeps it for a post-mortem.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("NATAL_SHARED_DATA", ROOT.parent / "shared" / "data"))

SESSION_TMP = tempfile.mkdtemp(prefix="natal-test-", dir="/tmp")  # short: unix socket paths
for _name in ("TMPDIR", "RAY_TMPDIR"):  # Ray's default temp dir is $RAY_TMPDIR/ray, not /tmp/ray
    os.environ[_name] = SESSION_TMP
os.makedirs(os.path.join(SESSION_TMP, "ray"))  # ray.cluster_utils writes its address file there
os.environ["XDG_CACHE_HOME"] = os.path.join(SESSION_TMP, "cache")  # not ~/.cache
os.environ["HF_HOME"] = os.path.join(SESSION_TMP, "huggingface")
os.environ["HF_HUB_OFFLINE"] = "1"  # a test that would download from a hub fails instead
tempfile.tempdir = SESSION_TMP

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session directory (after every fixture, Ray's shutdown included)."""
    if os.environ.get("NATAL_TEST_KEEP_TMP") != "1":
        shutil.rmtree(SESSION_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real third-party data); tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA} (the core suite runs without it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_cluster(s3_server: str) -> Iterator[None]:
    """One local Ray cluster for the whole session (2 CPUs, no dashboard).

    It starts after the S3 server so that its workers inherit the endpoint variables.
    """
    import ray

    from cluster.config import RuntimeConfig
    from cluster.runtime import ensure_ray

    temp_dir = tempfile.mkdtemp(prefix="ray-")
    os.environ.pop("RAY_ADDRESS", None)
    ensure_ray(RuntimeConfig(num_cpus=2, object_store_mb=512, temp_dir=temp_dir))
    yield
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3 endpoint (moto's server mode) on 127.0.0.1; yields its URL.

    The standard AWS variables point every client (s3fs, pyarrow, boto3, Ray workers started
    later) at it, exactly as they would point at AWS.
    """
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("moto server did not start")
    saved = {k: os.environ.get(k) for k in _S3_ENV}
    os.environ.update(
        AWS_ENDPOINT_URL_S3=url,
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


_S3_ENV = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
)


@pytest.fixture
def s3_bucket(s3_server: str) -> str:
    """A fresh, empty bucket on the local S3 server; yields ``s3://NAME``."""
    import s3fs

    name = f"natal-test-{time.time_ns()}"
    fs = s3fs.S3FileSystem()
    fs.mkdir(name)
    return f"s3://{name}"


# Corpus → tokenizer → token shards, built once per session (tokenizer, tokenize, pretrain tests).
from pretrain_corpus import pretrain_corpus, pretrain_shards, pretrain_tokenizer  # noqa: E402,F401

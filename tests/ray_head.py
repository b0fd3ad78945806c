"""A Ray head this test owns: `ray start --head --block` as our own subprocess, on free ports.

Never `ray stop` (it kills every Ray process on the machine, other people's too): the head is
stopped by signalling our own process group. Ports are outside Ray's worker range 10002–19999.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from conftest import ROOT, free_port

VENV_BIN = Path(sys.executable).parent


def ray_port() -> int:
    """A free port outside Ray's worker port range."""
    port = free_port()
    while 10002 <= port <= 19999:
        port = free_port()
    return port


def node_ports() -> list[str]:
    """Flags that would otherwise take fixed default ports another cluster may hold."""
    return [
        f"--dashboard-agent-listen-port={ray_port()}",
        f"--dashboard-agent-grpc-port={ray_port()}",
        f"--metrics-export-port={ray_port()}",
        f"--runtime-env-agent-port={ray_port()}",
        "--object-store-memory=200000000",
        "--disable-usage-stats",
    ]


class RayHead:
    """Start with ``start()``, stop with ``stop()``; ``address`` (GCS) and ``dashboard`` (HTTP)."""

    def __init__(
        self,
        num_cpus: int = 2,
        dashboard: bool = True,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="nh")  # in the session dir (conftest)
        self.port, self.dashboard_port = ray_port(), ray_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}" if dashboard else None
        self.env = {
            **os.environ,
            # jobs run `natal` and `python` from the head's PATH: the project's venv first
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "disabled",
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
            **(env or {}),
        }
        self.env.pop("RAY_ADDRESS", None)
        self.cmd = [
            str(VENV_BIN / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={self.port}",
            f"--num-cpus={num_cpus}",
            f"--temp-dir={self.temp_dir}",
            f"--ray-client-server-port={ray_port()}",
            *node_ports(),
            *(
                [
                    "--include-dashboard=true",
                    "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={self.dashboard_port}",
                ]
                if dashboard
                else ["--include-dashboard=false"]
            ),
            *(extra_args or []),
        ]
        self.log = Path(self.temp_dir) / "head.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 90.0) -> RayHead:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.cmd, env=self.env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray head exited: {self.log.read_text()[-3000:]}")
            if self._ready():
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ray head not ready in {timeout_s} s: {self.log.read_text()[-3000:]}")

    def _ready(self) -> bool:
        if self.dashboard:
            try:
                with urllib.request.urlopen(f"{self.dashboard}/api/version", timeout=2) as resp:
                    return resp.status == 200
            except OSError:
                return False
        result = subprocess.run(
            [str(VENV_BIN / "ray"), "health-check", "--address", self.address],
            env=self.env,
            capture_output=True,
        )
        return result.returncode == 0

    def stop(self) -> None:
        """SIGTERM our own `ray start --block` (it tears its node down), then its group."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            try:  # whatever of our own session outlived the head (workers, agents)
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

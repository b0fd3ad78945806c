"""The demo crawl's website: Python's own documentation server (pydoc) on 127.0.0.1.

Real HTML written by Python's authors, rendered on request, with navigation boilerplate and
near-duplicate pages, and nothing needed from outside the machine. The server runs as a child
process: ``python -S -E -m pydoc -n 127.0.0.1 -p 0``, which serves until its stdin closes.
``-S`` keeps the index to the standard library (no site-packages: rendering a page imports its
module, and torch or ray have no place in a demo web site); the child runs in an empty
directory so that no project module appears, and with ``BROWSER=true`` so that documenting
``antigravity`` opens no browser.

    python -m pipelines.demo.website     # prints the URL, serves until killed
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

READY = re.compile(r"Server ready at (http://\S+)")
START_TIMEOUT_S = 30.0


class DemoSiteError(RuntimeError):
    """pydoc did not start (its own output is in the message)."""


@contextmanager
def pydoc_process() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start pydoc's server; yield its URL and process; stop it (stdin EOF, then signals)."""
    with tempfile.TemporaryDirectory(prefix="natal-pydoc-") as empty_dir:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-E", "-m", "pydoc", "-n", "127.0.0.1", "-p", "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=empty_dir,
            env={**os.environ, "BROWSER": "true"},
        )
        try:
            url = _wait_ready(proc)
            # Modules such as ``this`` print when documented: keep the pipe drained.
            threading.Thread(target=_drain, args=(proc,), daemon=True).start()
            yield url, proc
        finally:
            _stop(proc)


@contextmanager
def pydoc_server() -> Iterator[str]:
    """Python's documentation server on 127.0.0.1; yields its base URL (ending in ``/``)."""
    with pydoc_process() as (url, _):
        yield url


def _wait_ready(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    seen: list[str] = []
    timer = threading.Timer(START_TIMEOUT_S, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            match = READY.search(line)
            if match:
                return match.group(1)
            seen.append(line)
    finally:
        timer.cancel()
    raise DemoSiteError("pydoc server did not start: " + "".join(seen).strip())


def _drain(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    for _ in proc.stdout:
        pass


def _stop(proc: subprocess.Popen[str]) -> None:
    try:
        if proc.stdin is not None:
            proc.stdin.close()  # pydoc's prompt reads EOF and quits
        proc.wait(timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()


def main() -> int:
    """Print the URL and serve until SIGTERM/SIGINT; exit when the server itself dies."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        with pydoc_process() as (url, proc):
            print(url, flush=True)
            return proc.wait()
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())

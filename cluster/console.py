"""The terminal: where natal's own lines and progress bars go, apart from everyone's logs.

``natal run`` sends the process's stdout and stderr (file descriptors 1 and 2, so also Ray's,
Ray Data's and vLLM's logs, worker output Ray forwards, C-level prints and warnings) to a log
file, and keeps a handle on the terminal for the stage headlines and the live progress bars.
Everything else that draws on the terminal asks :func:`terminal` for it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

_TERMINAL: TextIO | None = None


def terminal() -> TextIO:
    """The terminal while :func:`logs_to` is in effect, else stderr."""
    return _TERMINAL or sys.stderr


@contextmanager
def logs_to(path: str | Path) -> Iterator[TextIO]:
    """Send fds 1 and 2 to ``path`` (appended) for the body; yields the terminal."""
    global _TERMINAL
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    term = os.fdopen(os.dup(2), "w", buffering=1)
    with open(path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    _TERMINAL = term
    try:
        yield term
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        _TERMINAL = None
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        term.close()

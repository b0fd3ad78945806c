"""``natal run``'s terminal: everyone's output goes to the log file, natal's lines stay."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import subprocess, sys
from cluster import console
with console.logs_to(sys.argv[1]) as terminal:
    assert console.terminal() is terminal
    print("a library's print")
    print("a warning", file=sys.stderr)
    subprocess.run([sys.executable, "-c", "print('a child process')"], check=True)
    print("[natal run] headline", file=terminal)
assert console.terminal() is sys.stderr
print("after")
"""


def test_logs_to_sends_fds_to_the_file_and_keeps_the_terminal(tmp_path):
    log = tmp_path / "logs" / "natal.log"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(log)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "[natal run] headline\n" and done.stdout == "after\n"
    text = log.read_text()
    assert "a library's print" in text and "a warning" in text and "a child process" in text

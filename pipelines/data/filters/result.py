"""What every filter returns (keep or not, why, the measured value) and how lists are read."""

from __future__ import annotations

from typing import NamedTuple

from pipelines.data import storage


class FilterResult(NamedTuple):
    """A filter's decision on one document; ``reason`` names the rule that removed it."""

    keep: bool
    reason: str | None = None
    value: float | None = None
    text: str | None = None  # the edited text, from filters that edit (C4 drops lines)


KEEP = FilterResult(True)


def load_word_list(path: str) -> list[str]:
    """One entry a line (local path or fsspec URL); blank lines and ``#`` comments skipped."""
    lines = (line.strip() for line in storage.read_text(path).splitlines())
    return [line for line in lines if line and not line.startswith("#")]

"""What a stage command is: its flags, the config fields they set, what it runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cluster.config import NatalConfig


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[NatalConfig | None, argparse.Namespace], dict[str, Any]]
    description: str = ""
    flags_to_config: dict[str, str] = field(default_factory=dict)
    takes_config: bool = True

"""The stages ``natal`` knows, in lifecycle order: their flags, the config fields the flags
set, what they run — one module per phase beside this one.

Pipeline modules are imported inside each ``run`` so that ``natal --help`` stays instant.
Each run function returns the stage's stats dict, which the CLI prints as a table.
"""

from cluster.commands import data, lifecycle, serving, training
from cluster.commands.base import Command

COMMANDS: list[Command] = [
    *data.COMMANDS,
    *training.COMMANDS,
    *serving.COMMANDS,
    *lifecycle.COMMANDS,
]

__all__ = ["COMMANDS", "Command"]

"""The stages ``natal`` knows, in lifecycle order: their flags, the config fields the flags
set, what they run — one module of verbs per phase beside this one (``data_verbs``,
``training_verbs``, ``serving_verbs``, ``run_verbs``, ``ops_verbs``); ``base`` says what a
command is.

Pipeline modules are imported inside each ``run`` so that ``natal --help`` stays instant.
Each run function returns the stage's stats dict, which the CLI prints as a table.
"""

from cluster.commands import data_verbs, ops_verbs, run_verbs, serving_verbs, training_verbs
from cluster.commands.base import Command

COMMANDS: list[Command] = [
    *data_verbs.COMMANDS,
    *training_verbs.COMMANDS,
    *serving_verbs.COMMANDS,
    *run_verbs.COMMANDS,
    *ops_verbs.COMMANDS,
]

__all__ = ["COMMANDS", "Command"]

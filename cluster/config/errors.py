"""Errors a user can act on. The CLI prints them as one line, without a traceback."""


class NatalError(Exception):
    """Base of every error that is the input's or the environment's fault, not natal's."""


class ConfigError(NatalError):
    """The config (YAML, ``--set`` or a flag) is invalid."""


class InputError(NatalError):
    """An input path is missing, unreadable, of an unknown scheme or of a wrong format."""

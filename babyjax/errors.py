"""The errors a user can cause and fix: every expected failure of babyjax subclasses `UserError`, whose message is
one line saying what went wrong and what to do (babyjax/commands/cli.py prints it and exits with status 2; any other
exception is a bug and keeps its traceback). Each subclass also derives from the built-in a caller would expect
(`InputError` is a `ValueError`, ...). This module imports nothing, so every module may import it.
"""

from __future__ import annotations


class UserError(Exception):
    """An expected failure with a one-line explanation of what to do."""


class InputError(UserError, ValueError):
    """A bad value: a config key, a flag, the contents of an input file."""


class MissingError(UserError, FileNotFoundError):
    """A file or folder the user named (or that a run directory should hold) is not there."""


class ExistsError(UserError, FileExistsError):
    """An output that is never overwritten already exists."""


class DataError(InputError):
    """Bad or unreachable training data (the BabyLM release, the prepared dataset, the token stream)."""


class CheckpointError(UserError, RuntimeError):
    """A missing, incomplete or corrupt checkpoint."""


class TrainingError(UserError, RuntimeError):
    """Training cannot go on (another run's directory, a non-finite loss)."""


class DistributedError(UserError, RuntimeError):
    """Multi-process set-up failed (unreachable coordinator, processes that disagree)."""


class PeersError(UserError, ImportError):
    """An optional dependency (the `peers` extra: torch, transformers) is not installed."""

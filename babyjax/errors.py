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


class DiskFullError(UserError, OSError):
    """The disk (or the quota) holding an output folder is full. Every write of babyjax is atomic or resumable, so
    nothing written before is lost: the same command finishes the work once there is space."""

    def __init__(self, folder: str | None, why: str):
        where = folder or _NO_FOLDER
        super().__init__(
            f"the disk holding {where} is full ({why}): free space or move the run elsewhere, then run the same "
            "command again"
        )
        self.folder = folder


def unknown_config_key(argv: list[str], error: BaseException, keys: str = "configs/base.py") -> str:
    """'unknown config key in --config.optim.lrr=1 (did you mean lr?): ...' from ml_collections' nested error for an
    override of a key the config does not have (the command line's and a study's run overrides say it alike)."""
    inner: object = error
    while isinstance(inner, BaseException) and inner.args:
        inner = inner.args[0]
    lines = str(inner).splitlines() or [""]
    key = lines[0].strip().strip("\"'")
    culprit = next((a for a in argv if a.startswith("--config.") and key in a.split("=", 1)[0]), key)
    _, found, after = str(inner).partition('Did you mean "')
    close = after.partition('"')[0]
    hint = f" (did you mean {close}?)" if found and close else ""
    return f"unknown config key in {culprit}{hint}: every key is listed in {keys}"


_NO_FOLDER = "the command's output"  # what DiskFullError says when no folder is known
# How a full disk (ENOSPC) or quota (EDQUOT) reads where a library kept only the text of the OS error, lower case.
_DISK_FULL_WORDS = {"no space left on device": "ENOSPC", "enospc": "ENOSPC", "disk quota exceeded": "EDQUOT"}


def disk_full(error: BaseException, folder: str | None = None) -> DiskFullError | None:
    """The DiskFullError behind `error`, or None: ENOSPC or EDQUOT anywhere in its chain of causes and contexts (and
    an exception group's members), as an OSError's errno or only in an exception's text (Orbax and TensorStore wrap
    it in types of their own, some raised from a background thread). The folder named: `folder`, else the one a
    `writing_to` block recorded on the way out (unless the failed write named a path outside it), else the folder of
    the path the failed write named."""
    chain = _chain(error)
    found = next((e for e in chain if isinstance(e, DiskFullError)), None)
    if found is not None:
        return found
    for e in chain:
        why = _why_full(e)
        if why:
            return DiskFullError(folder or _folder_of(e, chain), why)
    return None


class writing_to:
    """A block that writes into `folder`: a full disk leaving it is recorded as aimed at `folder`, for `disk_full`
    to name (the write itself often names no path, or one deep inside the folder)."""

    def __init__(self, folder: object):
        self.folder = str(folder)

    def __enter__(self) -> writing_to:
        return self

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> bool:
        if error is not None and getattr(error, "babyjax_folder", None) is None and disk_full(error) is not None:
            error.babyjax_folder = self.folder
        return False


def _chain(error: BaseException) -> list[BaseException]:
    """`error`, its causes and contexts and an exception group's members, each once, nearest first."""
    chain: list[BaseException] = []
    todo: list[object] = [error]
    while todo:
        e = todo.pop(0)
        if not isinstance(e, BaseException) or any(e is seen for seen in chain):
            continue
        chain.append(e)
        members = getattr(e, "exceptions", None)  # an exception group's
        todo += [e.__cause__, e.__context__, *(members if isinstance(members, (list, tuple)) else ())]
    return chain


def _text(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # an exception whose __str__ fails still has a type and a chain
        return ""


def _why_full(error: BaseException) -> str:
    """The OS's words for a full disk or quota if `error` is one ('' if not)."""
    import errno
    import os

    codes = {name: getattr(errno, name, errno.ENOSPC) for name in ("ENOSPC", "EDQUOT")}
    if isinstance(error, OSError) and error.errno in codes.values():
        return os.strerror(error.errno)
    text = _text(error).lower()
    return next((os.strerror(codes[name]) for words, name in _DISK_FULL_WORDS.items() if words in text), "")


def _folder_of(error: BaseException, chain: list[BaseException]) -> str | None:
    """The folder a full disk is reported for: a `writing_to` block's, unless the failed write named a path outside
    it; else the folder the failed write named (a child command's one line names it as DiskFullError does), or the
    folder of the file it named (OSError.filename; TensorStore quotes it)."""
    import os
    import re

    recorded = next((e.babyjax_folder for e in reversed(chain) if getattr(e, "babyjax_folder", None)), None)
    said = re.search(r"the disk holding (.+?) is full \(", _text(error))
    folder = said.group(1) if said and said.group(1) != _NO_FOLDER else None
    if folder is None:
        quoted = re.search(r"\"(/[^\"]+)\"", _text(error))
        file = getattr(error, "filename", None) or getattr(error, "filename2", None) or (quoted and quoted.group(1))
        file = os.fsdecode(file) if isinstance(file, (str, bytes, os.PathLike)) else None
        folder = None if not file else file if os.path.isdir(file) else os.path.dirname(file)
    if folder is None:
        return recorded
    inside = recorded is not None and (os.path.abspath(folder) + os.sep).startswith(os.path.abspath(recorded) + os.sep)
    return recorded if inside else folder

"""Local and cloud paths: the one path rule and the one atomic write of babyjax (below run.py, because the
tokenizer that run.py opens writes its model file with it too).

A path with a scheme (`gs://bucket/...`) is cloud storage, used through etils.epath as it is; any other path is made
absolute (Orbax needs absolute paths).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable

from etils import epath

PathLike = str | os.PathLike


def is_cloud(path: PathLike) -> bool:
    """True for object-store paths such as gs://bucket/run (anything with a scheme)."""
    return "://" in os.fspath(path)


def absolute(path: PathLike, *, resolve: bool = False) -> epath.Path:
    """`path` as an absolute epath.Path; cloud paths stay as they are. resolve: also follow symbolic links."""
    if is_cloud(path):
        return epath.Path(os.fspath(path))
    local = os.fspath(path)
    return epath.Path(os.path.realpath(local) if resolve else os.path.abspath(local))


def write_atomic(path: PathLike, data: str | bytes | Callable[[epath.Path], None], *, fsync: bool = False) -> None:
    """Write `data` (text, bytes, or a function that writes a given path) to `path` so that readers see the old or
    the new contents, never half: locally a temporary `.<name>.tmp-<pid>` beside it renamed over it (fsync: flushed to
    disk first), on cloud storage one object write (published whole or not at all). Parent folders are created."""
    path = epath.Path(path) if is_cloud(path) else epath.Path(os.path.abspath(os.fspath(path)))
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_cloud(path):
        _write(path, data)
        return
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        _write(tmp, data)
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # the old file stays as it was
        raise


def _write(path: epath.Path, data: str | bytes | Callable[[epath.Path], None]) -> None:
    if isinstance(data, str):
        path.write_text(data)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        path.write_bytes(bytes(data))
    else:
        data(path)


def write_folder(target: PathLike, fill: Callable[[pathlib.Path], None], *, overwrite: bool = False) -> pathlib.Path:
    """The folder twin of write_atomic (local): `fill` writes a temporary folder beside `target`, renamed into place;
    an existing `target` is kept (another process made it), or replaced with overwrite; a failed fill leaves nothing."""
    target = pathlib.Path(target)
    if target.is_dir() and not overwrite:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        fill(tmp)
        if overwrite:
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target

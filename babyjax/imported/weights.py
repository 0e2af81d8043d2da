"""One Hugging Face revision's weights, read without torch where possible, and hashed tensor by tensor.

A revision's files come from a *file source* (`Source`): a folder on disk (`FolderSource`) or a commit of a git
repository read without a checkout (`GitSource`, whose LFS pointers resolve to `<gitdir>/lfs/objects/` when git-lfs
fetched the object). The weights are the files transformers would load, in its order of preference:
model.safetensors, model.safetensors.index.json (shards), pytorch_model.bin, pytorch_model.bin.index.json.

safetensors files are parsed here (8-byte little-endian header length, JSON header, data offsets relative to the end
of the header): memory-mapped when the file is on disk, BF16 as `ml_dtypes.bfloat16`. `.bin` files are torch pickles,
read through torch (the `peers` extra) when it is installed. Arrays come back as stored; the caller casts them.

A revision that cannot be read raises `Unreadable`, whose `.status` says why: "lfs_pointer" (a Git LFS pointer stands
in for the weights), "corrupt" (a truncated or garbled file), "needs_torch" (.bin weights without torch) or
"no_weights" (none of the four files).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Iterator
from typing import Protocol

import ml_dtypes
import numpy as np

from babyjax.errors import CheckpointError, InputError

SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
BIN, BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".msgpack", ".h5", ".ckpt", ".pt", ".pth", ".gguf", ".onnx")
LFS_SPEC = b"version https://git-lfs.github.com/spec/v1\n"  # the first line of every Git LFS pointer
PEERS_FIX = "pip install 'babyjax[peers]'"
DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
CODES = {dtype: code for code, dtype in DTYPES.items()}
_BIG_BLOB = 16 << 20  # git blobs larger than this are streamed to a temporary file and memory-mapped


class Unreadable(CheckpointError):
    """A revision whose weights cannot be read; `.status` in lfs_pointer, corrupt, needs_torch, no_weights; `.oid` the
    LFS object id (sha256 of the real file) of an lfs_pointer."""

    def __init__(self, status: str, message: str, oid: str | None = None):
        super().__init__(message)
        self.status, self.oid = status, oid


class Source(Protocol):
    """The files of one revision: `names()` lists them (paths relative to the revision, with '/'), `read_bytes` reads
    one (None if the revision has no such file), `local_path` gives a file on disk holding the same bytes (None if
    there is none: read_bytes then), `identity` a string that changes whenever the file's contents may have."""

    where: str

    def names(self) -> list[str]: ...

    def read_bytes(self, name: str) -> bytes | None: ...

    def local_path(self, name: str) -> pathlib.Path | None: ...

    def identity(self, name: str) -> str: ...


class FolderSource:
    """A revision held in a folder (its files and subfolders)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = pathlib.Path(folder)
        self.where = str(self.folder)

    def names(self) -> list[str]:
        return sorted(p.relative_to(self.folder).as_posix() for p in self.folder.rglob("*") if p.is_file())

    def read_bytes(self, name: str) -> bytes | None:
        path = self.folder / name
        return path.read_bytes() if path.is_file() else None

    def local_path(self, name: str) -> pathlib.Path | None:
        return self.folder / name

    def identity(self, name: str) -> str:
        stat = (self.folder / name).stat()
        return f"{name}:{stat.st_size}:{stat.st_mtime_ns}"


def clean_env() -> dict[str, str]:
    """The environment without the user's GIT_* variables (a GIT_DIR set in a shell must not redirect git)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}


def git(gitdir: pathlib.Path, *args: str, stdout=None) -> bytes:
    """Run `git --git-dir gitdir ARGS` with a clean environment; its output (b'' when written to the file
    `stdout`). A failure raises InputError with git's last line."""
    done = subprocess.run(
        ["git", "--git-dir", str(gitdir), *args],
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    if done.returncode:
        why = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise InputError(f"git {args[0]} in {gitdir} failed: {why}")
    return done.stdout or b""


def lfs_oid(data: bytes) -> str | None:
    """The sha256 object id a Git LFS pointer names, None if `data` is not a pointer."""
    if not data.startswith(LFS_SPEC) or len(data) > 1024:
        return None
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("oid sha256:"):
            return line.removeprefix("oid sha256:").strip()
    return ""


class GitSource:
    """The files of commit `commit` of the git repository whose git directory is `gitdir`, read without a checkout.
    A blob that is an LFS pointer reads as the LFS object when `<gitdir>/lfs/objects/` holds it, else as the pointer.
    Blobs over 16 MiB are streamed to a temporary file (removed with the source) and memory-mapped from there."""

    def __init__(self, gitdir: str | os.PathLike, commit: str, label: str | None = None):
        self.gitdir, self.commit = pathlib.Path(gitdir), commit
        self.where = f"{self.gitdir} at {label or commit}"
        self._files: dict[str, tuple[str, int]] | None = None
        self._tmp: str | None = None
        self._lfs: dict[str, pathlib.Path | None] = {}

    def _tree(self) -> dict[str, tuple[str, int]]:
        if self._files is None:
            out = git(self.gitdir, "ls-tree", "-r", "-l", "-z", self.commit)
            files = {}
            for entry in filter(None, out.split(b"\0")):
                head, _, path = entry.partition(b"\t")
                _mode, kind, oid, size = head.split()
                if kind == b"blob":
                    files[path.decode()] = (oid.decode(), int(size))
            self._files = files
        return self._files

    def names(self) -> list[str]:
        return sorted(self._tree())

    def _blob(self, name: str) -> tuple[str, int]:
        if name not in self._tree():
            raise FileNotFoundError(f"{name} is not in {self.where}")
        return self._tree()[name]

    def _lfs_object(self, name: str) -> pathlib.Path | None:
        """The fetched LFS object a pointer blob names, None if the blob is no pointer or the object is absent."""
        if name not in self._lfs:
            oid, size = self._blob(name)
            pointer = lfs_oid(git(self.gitdir, "cat-file", "blob", oid)) if size <= 1024 else None
            found = self.gitdir / "lfs" / "objects" / pointer[:2] / pointer[2:4] / pointer if pointer else None
            self._lfs[name] = found if found is not None and found.is_file() else None
        return self._lfs[name]

    def read_bytes(self, name: str) -> bytes | None:
        if name not in self._tree():
            return None
        found = self._lfs_object(name)
        return found.read_bytes() if found else git(self.gitdir, "cat-file", "blob", self._blob(name)[0])

    def local_path(self, name: str) -> pathlib.Path | None:
        found = self._lfs_object(name)
        oid, size = self._blob(name)
        if found is not None or size <= _BIG_BLOB:
            return found
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="babyjax-blobs-")
            weakref.finalize(self, _remove_tree, self._tmp)
        path = pathlib.Path(self._tmp) / oid
        if not path.is_file():
            part = path.with_suffix(".part")  # renamed when whole: a failed copy is never read
            with open(part, "wb") as out:
                git(self.gitdir, "cat-file", "blob", oid, stdout=out)
            part.rename(path)
        return path

    def identity(self, name: str) -> str:
        return f"{name}:{self._blob(name)[0]}"


def _remove_tree(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def is_weight_file(name: str) -> bool:
    """Whether `name` holds weights (skipped when a revision's small files are copied out)."""
    return name.endswith(WEIGHT_SUFFIXES)


def weight_files(source: Source) -> list[str]:
    """The files holding the revision's weights, safetensors preferred (as transformers does): one file, or the
    shards its index names (in order)."""
    return _chosen(source)[0]


def _chosen(source: Source) -> tuple[list[str], dict[str, str] | None]:
    """The weight files and, for a sharded checkpoint, its weight map (tensor -> shard)."""
    names = set(source.names())
    for single, index in ((SAFETENSORS, SAFETENSORS_INDEX), (BIN, BIN_INDEX)):
        if single in names:
            return [single], None
        if index in names:
            weight_map = _weight_map(source, index)
            shards = sorted(set(weight_map.values()))
            absent = [s for s in shards if s not in names]
            if absent:
                raise Unreadable("corrupt", f"{source.where}: {index} names {absent[0]}, which is not there")
            return shards, weight_map
    raise Unreadable("no_weights", f"{source.where} holds no {SAFETENSORS} or {BIN} (or their index): not a revision")


def _weight_map(source: Source, index: str) -> dict[str, str]:
    """tensor name -> shard file, from a sharded checkpoint's index JSON."""
    data = source.read_bytes(index)
    _refuse_pointer(source, index, data[:1024])
    try:
        found = json.loads(data)["weight_map"]
        if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
            raise ValueError("weight_map is not a map of names to files")
    except (ValueError, KeyError, TypeError) as e:
        raise Unreadable("corrupt", f"{source.where}: {index} is not a checkpoint index ({e})") from None
    return found


def _refuse_pointer(source: Source, name: str, head: bytes) -> None:
    oid = lfs_oid(bytes(head))
    if oid is not None:
        raise Unreadable(
            "lfs_pointer",
            f"{source.where}: {name} is a Git LFS pointer (oid {oid[:12]}): run `git lfs pull` to fetch the weights",
            oid=oid,
        )


def _buffer(source: Source, name: str) -> np.ndarray:
    """The bytes of `name` as a uint8 array: memory-mapped when on disk."""
    path = source.local_path(name)
    if path is not None:
        size = path.stat().st_size
        buf = np.memmap(path, np.uint8, mode="r") if size else np.zeros(0, np.uint8)
    else:
        buf = np.frombuffer(source.read_bytes(name), np.uint8)
    _refuse_pointer(source, name, buf[:1024].tobytes())
    return buf


def safetensors_arrays(buf: np.ndarray, where: str = "the file") -> Iterator[tuple[str, np.ndarray]]:
    """(name, array as stored) for each tensor of a safetensors file held in the uint8 array `buf`, in file order;
    the arrays are views of `buf`. A file that does not parse raises Unreadable('corrupt')."""

    def corrupt(why: str) -> Unreadable:
        return Unreadable("corrupt", f"{where} is not a complete safetensors file ({why}): download it again")

    if len(buf) < 8:
        raise corrupt(f"{len(buf)} bytes")
    n = int.from_bytes(buf[:8].tobytes(), "little")
    if 8 + n > len(buf):
        raise corrupt(f"the header claims {n} bytes, the file has {len(buf)}")
    try:
        header = json.loads(buf[8 : 8 + n].tobytes())
        header.pop("__metadata__", None)
        entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as e:
        raise corrupt(f"unreadable header: {e}") from None
    for name, entry in entries:
        try:
            dtype = DTYPES[entry["dtype"]]
            shape = tuple(int(s) for s in entry["shape"])
            start, end = (8 + n + int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise corrupt(f"tensor {name} has dtype {entry.get('dtype')!r} or a malformed entry") from None
        if not 8 + n <= start <= end <= len(buf) or end - start != int(np.prod(shape)) * dtype.itemsize:
            raise corrupt(f"tensor {name} lies outside the file or has the wrong size")
        yield name, buf[start:end].view(dtype).reshape(shape)


_TORCH_DTYPES = ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")


def _torch_arrays(source: Source, name: str) -> Iterator[tuple[str, np.ndarray]]:
    """(name, array as stored) for each tensor of a torch .bin file (bfloat16 through ml_dtypes, bit for bit)."""
    try:
        import torch
    except ImportError:
        raise Unreadable(
            "needs_torch", f"{source.where}: {name} is a PyTorch file, read through torch: {PEERS_FIX}"
        ) from None
    path = source.local_path(name)
    data = None if path is not None else source.read_bytes(name)
    if path is not None:
        with path.open("rb") as f:
            _refuse_pointer(source, name, f.read(1024))
    else:
        _refuse_pointer(source, name, data[:1024])
    try:
        state = _torch_load(torch, path, data)
    except Exception as e:  # torch raises RuntimeError, pickle errors, EOFError ... for a damaged file
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise Unreadable("corrupt", f"{source.where}: {name} is not a readable PyTorch file ({why})") from None
    if not isinstance(state, dict):
        raise Unreadable("corrupt", f"{source.where}: {name} holds no state dict of tensors")
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            continue
        tensor, kind = tensor.detach().contiguous(), str(tensor.dtype).removeprefix("torch.")
        if kind == "bfloat16":
            yield key, tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        elif kind in _TORCH_DTYPES:
            yield key, tensor.numpy()
        else:
            raise Unreadable("corrupt", f"{source.where}: {name} holds {key} as {kind}, which babyjax cannot read")


def _torch_load(torch, path: pathlib.Path | None, data: bytes | None) -> object:
    """torch.load of a file on disk (memory-mapped when its format allows) or of bytes, tensors only."""
    if path is None:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):  # the legacy (not zip) format cannot be memory-mapped
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def read_tensors(source: Source) -> Iterator[tuple[str, np.ndarray]]:
    """(name, array as stored) for every tensor of the revision, file by file; raises Unreadable (a sharded
    checkpoint whose shards lack a tensor its index names is corrupt)."""
    files, weight_map = _chosen(source)
    seen: set[str] = set()
    for name in files:
        if name.endswith(".safetensors"):
            arrays = safetensors_arrays(_buffer(source, name), f"{source.where}: {name}")
        else:
            arrays = _torch_arrays(source, name)
        for key, array in arrays:
            seen.add(key)
            yield key, array
    absent = [t for t in weight_map or () if t not in seen]
    if absent:
        raise Unreadable("corrupt", f"{source.where}: the index names {absent[0]}, which no shard holds")


def read(source: Source) -> dict[str, np.ndarray]:
    """Every tensor of the revision by name, as stored (BF16 as ml_dtypes.bfloat16); raises Unreadable."""
    return dict(read_tensors(source))


def tensor_digest(name: str, array: np.ndarray) -> str:
    """sha256 over the tensor's name, stored dtype (safetensors' code), shape and raw bytes: no conversion."""
    h = hashlib.sha256(f"{name}\0{CODES[array.dtype]}\0{list(array.shape)}\0".encode())
    h.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    return h.hexdigest()


def digests(source: Source) -> dict[str, str]:
    """tensor name -> tensor_digest for every tensor of the revision, hashed as read; raises Unreadable."""
    return {name: tensor_digest(name, array) for name, array in read_tensors(source)}


def revision_digest(tensor_digests: dict[str, str]) -> str:
    """sha256 over the sorted (name, digest) pairs: equal for revisions holding the same tensors."""
    h = hashlib.sha256()
    for name, digest in sorted(tensor_digests.items()):
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()

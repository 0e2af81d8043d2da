"""Orbax checkpoints of a run (layout: babyjax/checkpoints/run.py): the dense series of parameters (all kept) and resume
checkpoints (full train state + data-iterator state, the latest few).

Saves are asynchronous (Orbax copies the arrays to host memory, then writes in the background, so the caller may
donate them at once) and atomic (a temporary folder renamed when complete). The series index lists a step only once
Orbax has committed it and is rebuilt from the checkpoints' meta items when missing, stale or damaged. Every meta
records step, tokens and words seen, wall time and a sha256 of the parameters (Pythia's published branches were found
to hold duplicated weights; the hash makes that detectable).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import grain.checkpoint as grain_ckpt
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint.checkpoint_managers import preservation_policy, save_decision_policy

from babyjax import paths
from babyjax.checkpoints import orbax_loops
from babyjax.checkpoints.run import (
    RunDir,
    committed_steps,
    index_from_disk,
    is_committed,
    read_index_file,
)
from babyjax.checkpoints.run import load_series_index as load_series_index  # the series' reader, beside its writer
from babyjax.checkpoints.schedules import StepSchedule, WordsSchedule, series_schedule
from babyjax.errors import CheckpointError, InputError

log = logging.getLogger("babyjax")

META_KEYS = ("step", "tokens_seen", "words_seen", "wall_time", "params_hash")


# Series checkpoints are written without OCDBT (fewer files, less work per save): drop Orbax's note about it.
logging.getLogger("absl").addFilter(lambda record: "Skipping merge of OCDBT checkpoints" not in record.getMessage())
# A restore or save that fails (a corrupt checkpoint, a full disk) ends quietly, without tracebacks from TensorStore.
orbax_loops.install()


# -- Parameter hashes -------------------------------------------------------------------------------------------------


def _key_name(key: Any) -> str:  # DictKey / FlattenedIndexKey, SequenceKey, GetAttrKey, else the key itself
    return str(next((getattr(key, a) for a in ("key", "idx", "name") if hasattr(key, a)), key))


def _canonical_path(path: tuple) -> str:
    """'blocks/0/attn/wq' for an nnx.State leaf, its pure dict and orbax's raw restore alike (final 'value' dropped)."""
    parts = [_key_name(k) for k in path]
    if len(parts) > 1 and parts[-1] == "value":
        parts.pop()
    return "/".join(parts)


def _to_host(x: Any) -> np.ndarray:
    """The full value of a (possibly sharded, possibly multi-process) array as numpy."""
    if isinstance(x, jax.Array):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        if not x.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def params_hash(params: Any) -> str:
    """sha256 (hex) over every leaf's path, dtype, shape and bytes in sorted path order: the same for an nnx.State,
    its pure dict and Orbax's restore of either, on any sharding. With several processes every process must call it."""
    leaves = [(_canonical_path(p), leaf) for p, leaf in jax.tree_util.tree_leaves_with_path(params)]
    leaves.sort(key=lambda pl: pl[0])
    h = hashlib.sha256()
    for path, leaf in leaves:
        a = np.ascontiguousarray(_to_host(leaf))
        h.update(f"{path}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.reshape(-1).view(np.uint8).data)
    return h.hexdigest()


def _json_safe(meta: Mapping[str, Any]) -> dict:
    """Meta as plain JSON: numpy/jax scalars become Python numbers."""
    out = {}
    for k, v in meta.items():
        if isinstance(v, (np.generic, jax.Array)) or (isinstance(v, np.ndarray) and v.ndim == 0):
            v = np.asarray(v).item()
        out[str(k)] = v
    json.dumps(out)  # raises TypeError naming the bad value
    return out


# -- Restoring parameters (the scorer's entry point) ------------------------------------------------------------------


def _series_step_dir(workdir: epath.Path, step: int) -> epath.Path:
    run = RunDir(workdir)
    step_dir = run.series_dir / str(step)
    if not is_committed(step_dir):
        have = committed_steps(run.series_dir)
        if not have:
            raise CheckpointError(f"no series checkpoints in {run.path} (expected {run.series_dir}/<step>/)")
        raise CheckpointError(
            f"no committed series checkpoint at step {step} in {workdir}; "
            f"{len(have)} steps exist, from {have[0]} to {have[-1]}"
        )
    return step_dir


def restore_params(
    workdir: str | os.PathLike, step: int, abstract_params: Any = None, *, verify: bool = True, host: bool = False
) -> Any:
    """The parameters of series step `step`, into `abstract_params` (jax.ShapeDtypeStructs with `.sharding`: that
    structure and layout, any mesh) or, when None, as the stored tree of dicts on the default device. verify: check
    them against the sha256 in the checkpoint's meta (restore in the stored dtypes then). host: numpy arrays of that
    structure, shapes and dtypes instead, no device touched (safe beside a running program; one process only)."""
    workdir = RunDir(workdir).path
    step_dir = _series_step_dir(workdir, step)
    checkpointer = ocp.Checkpointer(
        ocp.CompositeCheckpointHandler(params=ocp.StandardCheckpointHandler(), meta=ocp.JsonCheckpointHandler())
    )
    try:
        if abstract_params is None:
            tree = checkpointer.metadata(step_dir).item_metadata["params"].tree
            device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            abstract_params = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)
        if host:
            abstract_params = jax.tree.map(lambda m: np.empty(m.shape, m.dtype), abstract_params)
        restored = checkpointer.restore(
            step_dir,
            args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract_params), meta=ocp.args.JsonRestore()),
        )
    except Exception as e:
        raise CheckpointError(
            f"checkpoint {step_dir} is corrupt, incomplete or does not match abstract_params "
            f"({type(e).__name__}: {str(e)[:300]})"
        ) from e
    finally:
        checkpointer.close()
    params = restored["params"]
    if verify:
        expected = restored["meta"].get("params_hash")
        if expected and params_hash(params) != expected:
            raise CheckpointError(
                f"parameters of {step_dir} do not match their recorded hash: the checkpoint is "
                "corrupt (or was restored in other dtypes; pass verify=False then)"
            )
    return params


# -- Writing checkpoints during training ------------------------------------------------------------------------------


class _IteratorState:
    """An iterator with dict get_state/set_state (the Loader) as grain's Orbax handler wants it (a file per process)."""

    def __init__(self, data_iter: Any) -> None:
        self._it = data_iter

    def get_state(self) -> bytes:
        return json.dumps(self._it.get_state()).encode()

    def set_state(self, state: bytes) -> None:
        self._it.set_state(json.loads(state))

    def start_prefetch(self) -> None:
        if hasattr(self._it, "start_prefetch"):
            self._it.start_prefetch()


def _params_of(state: Any) -> Any:
    params = state.get("params") if isinstance(state, Mapping) else getattr(state, "params", None)
    if params is None:
        raise ValueError("the train state has no 'params' (key or attribute) to hash")
    return params


def _barriers(manager: str) -> ocp.options.MultiprocessingOptions:
    """Barrier names of their own for each manager: both finalize saves in background threads, and two managers
    sharing orbax's fixed barrier names collide across processes ("Barrier ... is already ongoing")."""
    return ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=f"babyjax_{manager}")


class RunCheckpoints:
    """The run's two orbax CheckpointManagers: the series (parameters, all kept) and resume (full state, latest N)."""

    def __init__(self, workdir: str | os.PathLike, ckpt_cfg: ml_collections.ConfigDict, *, num_steps: int) -> None:
        if ckpt_cfg.resume_every <= 0 or ckpt_cfg.resume_keep <= 0:
            raise InputError(
                f"ckpt.resume_every and ckpt.resume_keep must be >= 1; got {ckpt_cfg.resume_every}, "
                f"{ckpt_cfg.resume_keep}"
            )
        self.run = RunDir(workdir)
        self.workdir = self.run.path
        self.schedule: StepSchedule | WordsSchedule = series_schedule(ckpt_cfg, num_steps)
        self._primary = jax.process_index() == 0
        self._series = ocp.CheckpointManager(
            self.run.series_dir,
            # Without OCDBT a small checkpoint costs about 25% less to write (benchmarks/bench_checkpoints.py).
            item_handlers={
                "params": ocp.StandardCheckpointHandler(use_ocdbt=False),
                "meta": ocp.JsonCheckpointHandler(),
            },
            options=ocp.CheckpointManagerOptions(
                # The schedule (which may need words seen, unknown to orbax's DecisionContext) decides in the loop;
                # every save_series call is an explicit request.
                preservation_policy=preservation_policy.PreserveAll(),
                multiprocessing_options=_barriers("series"),
                enable_async_checkpointing=True,
                cleanup_tmp_directories=True,
                lightweight_initialize=True,
            ),
        )
        self._resume = ocp.CheckpointManager(
            self.run.resume_dir,
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "data": grain_ckpt.CheckpointHandler(),
                "meta": ocp.JsonCheckpointHandler(),
            },
            options=ocp.CheckpointManagerOptions(
                save_decision_policy=save_decision_policy.FixedIntervalPolicy(ckpt_cfg.resume_every),
                preservation_policy=preservation_policy.LatestN(ckpt_cfg.resume_keep),
                multiprocessing_options=_barriers("resume"),
                enable_async_checkpointing=True,
                cleanup_tmp_directories=True,
            ),
        )
        self._index: dict[int, dict] = {}
        self._pending: dict[int, dict] = {}  # series saves started, not yet known to be committed
        self._last_hash: tuple[tuple[int, int], str] | None = None
        self._closed = False
        self._load_index()

    # -- the series --------------------------------------------------------------------------------------------------

    def _load_index(self) -> None:
        """Reconcile series.json with the committed checkpoints (after a crash either may be ahead of the other)."""
        path = self.run.index_path
        if self._primary and path.parent.exists():  # temp files of index writes that a crash interrupted
            for stale in path.parent.glob(f".{path.name}.tmp-*"):
                stale.unlink()
        known: list[dict] = []
        if path.exists():
            try:
                known = read_index_file(path)
            except CheckpointError as e:
                log.warning("%s; rebuilding it", e)
        entries = index_from_disk(self.run, known)
        self._index = {int(e["step"]): e for e in entries}
        if sorted(int(e["step"]) for e in known) != sorted(self._index) or (self._index and not path.exists()):
            self._write_index()

    def _write_index(self) -> None:
        if self._primary:
            # No fsync: an index that a power loss leaves stale or damaged is rebuilt from the checkpoints.
            entries = [self._index[s] for s in sorted(self._index)]
            paths.write_atomic(self.run.index_path, json.dumps(entries, indent=1))

    def _flush_index(self) -> None:
        """Move pending series steps that orbax has committed (renamed into place) into the index file."""
        committed = [s for s in self._pending if is_committed(self.run.series_dir / str(s))]
        for s in committed:
            self._index[s] = self._pending.pop(s)
        if committed:
            self._write_index()

    def _meta(self, step: int, meta: Mapping[str, Any], phash: str) -> dict:
        missing = [k for k in ("tokens_seen", "words_seen", "wall_time") if k not in meta]
        if missing:
            raise ValueError(f"checkpoint meta for step {step} lacks {missing}")
        if "step" in meta and int(meta["step"]) != step:
            raise ValueError(f"checkpoint meta says step {meta['step']} but the save is for step {step}")
        return _json_safe({**meta, "step": int(step), "params_hash": phash})

    def _hash(self, step: int, params: Any) -> str:
        """params_hash, computed once when the loop saves the same params object to the series and to resume."""
        key = (step, id(params))
        if self._last_hash is not None and self._last_hash[0] == key:
            return self._last_hash[1]
        phash = params_hash(params)
        self._last_hash = (key, phash)
        return phash

    def save_series(self, step: int, params: Any, meta: Mapping[str, Any]) -> bool:
        """Start an asynchronous save of `params` at `step` into the series (False if the step is already there);
        meta: tokens_seen, words_seen, wall_time (and anything else JSON); step and params_hash are added."""
        if step in self._index or step in self._pending:
            stored = (self._index.get(step) or self._pending[step])["params_hash"]
            if self._hash(step, params) != stored:
                log.warning(
                    "series step %d already exists with other parameters (hash %s..., now %s...): kept the "
                    "stored one; the resumed run is not bit-identical",
                    step,
                    stored[:12],
                    self._hash(step, params)[:12],
                )
            return False
        entry = self._meta(step, meta, self._hash(step, params))
        self._series.save(
            step,
            args=ocp.args.Composite(params=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(entry)),
            force=True,
        )
        self._pending[step] = entry
        self._flush_index()
        return True

    # -- resume ------------------------------------------------------------------------------------------------------

    def resume_due(self, step: int, force: bool = False) -> bool:
        """Whether `save_resume(step, ..., force=force)` writes: `step` is a multiple of ckpt.resume_every or forced,
        and not saved yet."""
        return step not in self._resume.all_steps() and (force or self._resume.should_save(step))

    def save_resume(self, step: int, state: Any, data_iter: Any, meta: Mapping[str, Any], force: bool = False) -> bool:
        """Asynchronously save the full train state, this process's data-iterator state and meta, when `step` is a
        multiple of ckpt.resume_every or `force` (SIGTERM, the end), never twice; keeps the latest ckpt.resume_keep."""
        self._flush_index()
        if not self.resume_due(step, force):
            return False
        # The series must never lag behind the resume point: a run killed after this resume checkpoint commits
        # restarts from it and would not save earlier series steps again.
        self._series.wait_until_finished()
        self._flush_index()
        entry = self._meta(step, meta, self._hash(step, _params_of(state)))
        items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(entry)}
        if data_iter is not None:
            items["data"] = grain_ckpt.CheckpointSave(_IteratorState(data_iter))
        return self._resume.save(step, args=ocp.args.Composite(**items), force=True)

    def latest_resume_step(self) -> int | None:
        """The newest resume checkpoint's step, or None for a fresh run."""
        return self._resume.latest_step()

    def restore_resume(self, abstract_state: Any, data_iter: Any) -> tuple[Any, dict]:
        """Restore the latest resume checkpoint into the structure and shardings of `abstract_state` (a pytree of
        jax.ShapeDtypeStruct with .sharding; any mesh), set `data_iter`'s state (if given), and return (state, meta)."""
        step = self.latest_resume_step()
        if step is None:
            raise CheckpointError(f"no resume checkpoint in {self.run.resume_dir}: nothing to resume from")
        items = {"state": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
        if data_iter is not None:
            items["data"] = grain_ckpt.CheckpointRestore(_IteratorState(data_iter))
        step_dir = self.run.resume_dir / str(step)
        try:
            restored = self._resume.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:
            n = jax.process_count()
            hint = (
                f"; the data-iterator state has no file for process {jax.process_index()} of {n} (was the run "
                "saved with another number of processes?)"
                if "process_" in str(e)
                else ""
            )
            raise CheckpointError(
                f"cannot restore resume checkpoint {step_dir}: corrupt, incomplete or saved for "
                f"another model/optimizer ({type(e).__name__}: {str(e)[:300]}){hint}"
            ) from e
        meta = dict(restored["meta"])
        if meta.get("params_hash") and params_hash(_params_of(restored["state"])) != meta["params_hash"]:
            raise CheckpointError(
                f"resume checkpoint {step_dir}: parameters do not match their recorded hash "
                f"(corrupt); delete {step_dir} to resume from the previous one"
            )
        return restored["state"], meta

    # -- lifetime ----------------------------------------------------------------------------------------------------

    def wait(self) -> None:
        """Block until every started save is committed, and bring the series index up to date."""
        self._series.wait_until_finished()
        self._resume.wait_until_finished()
        self._flush_index()

    def close(self) -> None:
        """Finish pending saves and release the managers (idempotent)."""
        if self._closed:
            return
        self.wait()
        self._series.close()
        self._resume.close()
        self._closed = True

    def __enter__(self) -> RunCheckpoints:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Metric writers (TensorBoard event files + JSONL, process 0 only), the measured matmul peak used for MFU, and the
matmul floor of a jitted function (what its matrix products alone take)."""

from __future__ import annotations

import collections
import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from babyjax import paths
from babyjax.checkpoints.run import RunDir
from babyjax.errors import InputError


class MetricWriter:
    """Writes scalars to `<workdir>/metrics.jsonl` and TensorBoard event files in `<workdir>/tensorboard`; a no-op on
    processes other than 0. JSONL lines are appended and flushed: a killed run keeps every line it wrote."""

    def __init__(self, workdir: str | epath.Path, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._jsonl = self._tb = None
        if not self.enabled:
            return
        run = RunDir(workdir)
        run.path.mkdir(parents=True, exist_ok=True)
        _drop_unfinished_line(run.metrics_path)
        self._jsonl = run.metrics_path.open("a")
        try:
            from tensorboardX import SummaryWriter
        except ImportError:  # tensorboardX is a core dependency; stay usable if a user removed it
            return
        self._tb = SummaryWriter(str(run.tensorboard_dir))

    def write(self, step: int, scalars: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **{k: _to_float(v) for k, v in scalars.items()}}
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and v is not None:
                    self._tb.add_scalar(k, v, global_step=int(step))

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        """Close both files. A final flush that fails (a full disk) still stops TensorBoard's writer thread, which
        would fail again at exit, then raises."""
        jsonl, tb, self._jsonl, self._tb = self._jsonl, self._tb, None, None
        try:
            if jsonl is not None:
                jsonl.close()
        finally:
            if tb is not None:
                try:
                    tb.close()
                except OSError:
                    _stop_tensorboard(tb)
                    raise


def _drop_unfinished_line(path: epath.Path) -> None:
    """Cut the last line of a local JSONL file if a failed or killed write left it unfinished, so that the next line
    starts on a line of its own."""
    if paths.is_cloud(path) or not path.exists():
        return
    with open(path, "rb+") as f:
        size = f.seek(0, 2)
        f.seek(max(0, size - 65536))
        tail = f.read()
        if tail and not tail.endswith(b"\n") and (b"\n" in tail or size <= 65536):
            f.truncate(size - len(tail) + tail.rfind(b"\n") + 1)


def _stop_tensorboard(writer: Any) -> None:
    """Stop the writer threads of a tensorboardX SummaryWriter whose close failed, and mark them closed (their exit
    handler would flush again)."""
    for file_writer in (getattr(writer, "all_writers", None) or {}).values():
        events = file_writer.event_writer
        worker = getattr(events, "_worker", None)
        if worker is not None and not getattr(events, "_closed", True):
            events._closed = True
            worker.stop()


def _to_float(v: Any) -> float | None:
    """A JSON-safe float: non-finite values become None (null)."""
    v = float(np.asarray(v))
    return v if np.isfinite(v) else None


def read_metrics(workdir: str | epath.Path) -> list[dict]:
    """All rows of `<workdir>/metrics.jsonl`; for a resumed run, later rows for a step replace earlier ones.
    A truncated last line (a run killed mid-write) is skipped."""
    path = RunDir(workdir).metrics_path
    if not path.exists():
        return []
    rows: dict[tuple, dict] = {}
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise InputError(f"{path} line {i + 1} is not JSON: the metrics file is corrupt") from None
        rows[(row["step"], "dev_loss" in row)] = row
    return [rows[k] for k in sorted(rows)]


def measure_matmul_peak(dtype: str = "float32", n: int | None = None, repeats: int = 5) -> float:
    """Measured FLOP/s of one device, the best of `repeats` timings of a jitted square matmul of size `n` (default:
    2048 on CPU, 8192 on accelerators): the MFU denominator (benchmarks.md)."""
    device = jax.local_devices()[0]
    n = (2048 if device.platform == "cpu" else 8192) if n is None else n
    key = jax.random.PRNGKey(0)
    a = jax.device_put(jax.random.normal(key, (n, n), dtype=jnp.dtype(dtype)), device)
    b = jax.device_put(jax.random.normal(jax.random.fold_in(key, 1), (n, n), dtype=jnp.dtype(dtype)), device)
    mm = jax.jit(lambda x, y: x @ y)
    mm(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        mm(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


@dataclasses.dataclass
class MatmulFloor:
    """What the matrix products of one call take, each timed alone on the default device (same shapes, dtypes and
    contracting dimensions): a lower bound on the call's time when everything else it does were free."""

    seconds: float  # sum over the call's products of (times it runs) x (best time alone)
    flops: float  # their FLOPs (2 x output size x contracted size each)
    rows: list[tuple[int, str, float, float]]  # (times per call, shapes, best seconds alone, FLOP/s alone)


def _dot_generals(jaxpr: Any, times: int, found: collections.Counter) -> None:
    """Count every dot_general of `jaxpr` and its inner jaxprs (a scan's body `length` times)."""
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            a, b = (v.aval for v in eqn.invars[:2])
            key = (
                a.shape,
                a.dtype.name,
                b.shape,
                b.dtype.name,
                eqn.params["dimension_numbers"],
                eqn.params.get("preferred_element_type"),
            )
            found[key] += times
        if name in ("while", "cond"):
            raise ValueError(f"matmul_floor: a {name} in the call: its trip count or branch is not known statically")
        inner = times * eqn.params["length"] if name == "scan" else times
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr's Jaxpr
                if hasattr(sub, "eqns"):
                    _dot_generals(sub, inner, found)


def _best_time(fn: Callable[..., Any], args: tuple, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def _dot_time(dot: Callable[[jax.Array, jax.Array], jax.Array], a: jax.Array, b: jax.Array, repeats: int) -> float:
    """Best seconds of one `dot(a, b)`, run `n` times in turn inside one jitted loop so that a small product's time is
    not its dispatch's (each pass reads the last one's output, so none is hoisted or skipped)."""
    once = _best_time(jax.jit(dot), (a, b), 2)
    n = max(1, min(1000, int(0.02 / max(once, 1e-7))))
    if n == 1:
        return _best_time(jax.jit(dot), (a, b), repeats)

    def loop(a, b):
        step = lambda c, _: ((dot(a + c, b).ravel()[0] * 0).astype(a.dtype), None)
        return jax.lax.scan(step, jnp.zeros((), a.dtype), None, length=n)[0]

    return _best_time(jax.jit(loop), (a, b), repeats) / n


def matmul_floor(fn: Callable[..., Any], *args: Any, repeats: int = 7) -> MatmulFloor:
    """The matmul floor of `fn(*args)` (`MatmulFloor`): its traced dot_generals, each distinct one jitted alone on
    random operands and timed (best of `repeats`; small ones in a loop, `_dot_time`). Raises ValueError on a while
    loop or cond (unknown counts)."""
    found: collections.Counter = collections.Counter()
    _dot_generals(jax.make_jaxpr(fn)(*args).jaxpr, 1, found)
    key, seconds, flops, rows = jax.random.PRNGKey(0), 0.0, 0.0, []
    for (sa, da, sb, db, dims, out_dtype), times in sorted(found.items(), key=lambda kv: -kv[1]):
        a = jax.random.normal(key, sa, jnp.dtype(da))
        b = jax.random.normal(jax.random.fold_in(key, 1), sb, jnp.dtype(db))
        dot = lambda x, y, dims=dims, t=out_dtype: jax.lax.dot_general(x, y, dims, preferred_element_type=t)
        best = _dot_time(dot, a, b, repeats)
        out_size = int(np.prod(jax.eval_shape(dot, a, b).shape))
        f = 2.0 * out_size * int(np.prod([sa[i] for i in dims[0][0]]))
        seconds, flops = seconds + times * best, flops + times * f
        rows.append((times, f"{sa} . {sb}, contracting {dims[0]}, batch {dims[1]}", best, f / best))
    return MatmulFloor(seconds, flops, rows)

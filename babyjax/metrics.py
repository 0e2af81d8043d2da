"""Metric writers (TensorBoard event files + JSONL, process 0 only) and the measured matmul peak used for MFU."""
from __future__ import annotations

import json
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from babyjax.errors import InputError
from babyjax.run import RunDir


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
        for f in (self._jsonl, self._tb):
            if f is not None:
                f.close()
        self._jsonl = self._tb = None


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

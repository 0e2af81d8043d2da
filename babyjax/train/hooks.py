"""What happens around each training step: hooks fed by one host-side `Progress` record (babyjax/train/loop.py).

After dispatching step t the loop builds its `Progress` (tokens and words seen counted on the host, step t's device
metrics not read yet) and calls each hook with it and the new state, before step t+1 donates that state. Every
collective (the gather behind a parameter hash, Orbax's multi-process save) runs on the main thread: with one process
the series is saved from a background thread, which then needs none; with several, from the main thread.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from babyjax.checkpoints.series import RunCheckpoints
from babyjax.errors import TrainingError
from babyjax.train.metrics import MetricWriter


@dataclasses.dataclass(frozen=True)
class Progress:
    """Where training stands after `step` optimizer updates, kept on the host: tokens (padding excluded) and words
    seen over updates 1..step (words_before: 1..step-1, for the words-seen schedule), the run's training seconds
    (earlier sessions included), this step's tokens and its device metrics (not read yet), whether it is the last
    step."""

    step: int
    tokens_seen: float
    words_seen: float
    wall_time: float
    words_before: float = 0.0
    step_tokens: float = 0.0
    metrics: dict | None = None
    final: bool = False

    def after(self, tokens: float, words: float, metrics: dict, wall_time: float, num_steps: int) -> Progress:
        """The record after one more step that consumed `tokens` tokens and `words` words."""
        return Progress(
            self.step + 1,
            self.tokens_seen + tokens,
            self.words_seen + words,
            wall_time,
            words_before=self.words_seen,
            step_tokens=tokens,
            metrics=metrics,
            final=self.step + 1 == num_steps,
        )

    def meta(self) -> dict:
        """What a checkpoint records about its step."""
        return {
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "words_seen": self.words_seen,
            "wall_time": self.wall_time,
        }


class Preemption:
    """Turns SIGTERM into a stop at a step every process agrees on: one process polls a flag set by a signal
    handler; several use JAX's preemption service (`multihost_utils.reached_preemption_sync_point` at every step)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        self._multi = jax.process_count() > 1

    def __enter__(self) -> Preemption:
        if not self._multi:
            try:
                self._previous = signal.signal(signal.SIGTERM, lambda *_: setattr(self, "requested", True))
            except ValueError:  # not the main thread (e.g. a notebook worker): no signal handling
                self._previous = None
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def should_stop(self, step: int) -> bool:
        if not self._multi:
            return self.requested
        from jax.experimental import multihost_utils

        return multihost_utils.reached_preemption_sync_point(step)


class MetricsLog:
    """Reads each step's device metrics one step late, stops on a non-finite loss, writes a log line every
    `log_every` steps (JSONL + TensorBoard through `writer`) and moves the progress bar."""

    def __init__(
        self,
        writer: MetricWriter,
        log_every: int,
        flops_per_token: float,
        peak_flops: float,
        last_good: Callable[[], int | None],
        progress_bar: Any = None,
    ):
        self.writer, self.log_every, self.bar = writer, log_every, progress_bar
        self.flops_per_token, self.peak_flops, self.last_good = flops_per_token, peak_flops, last_good
        self.pending: list[tuple[int, dict]] = []  # dispatched steps whose metrics were not read yet
        self.last_loss: float | None = None
        self.restart_window()

    def restart_window(self) -> None:
        """Start a new averaging window (after a dev evaluation, whose time is not training time)."""
        self.window: dict[str, Any] = {
            "loss": [],
            "grad_norm": [],
            "accuracy": [],
            "lr": 0.0,
            "tokens": 0.0,
            "t0": time.perf_counter(),
        }

    def drain(self, keep: int = 0) -> None:
        """Read the metrics of every dispatched step but the newest `keep`, oldest first."""
        while len(self.pending) > keep:
            step, m = self.pending.pop(0)
            m = jax.device_get(m)
            loss = float(m["loss"])
            if not math.isfinite(loss):
                raise TrainingError(
                    f"non-finite loss ({loss}) at step {step}; training stopped. The last good resume checkpoint is "
                    f"step {self.last_good()}, the series is intact; lower --config.optim.lr or check the data"
                )
            self.last_loss = loss
            self.window["loss"].append(loss)
            self.window["grad_norm"].append(float(m["grad_norm"]))
            self.window["lr"] = float(m["lr"])
            if "accuracy" in m:  # masked objectives: the share of masked tokens predicted right
                self.window["accuracy"].append(float(m["accuracy"]))

    def __call__(self, p: Progress, state: Any, stop: bool) -> None:
        del state
        self.pending.append((p.step, p.metrics))
        self.window["tokens"] += p.step_tokens
        log_now = p.step % self.log_every == 0
        self.drain(keep=0 if log_now else 1)
        if log_now and self.window["loss"]:
            self._write(p)
        if self.bar is not None:
            self.bar.update(1)

    def _write(self, p: Progress) -> None:
        tps = self.window["tokens"] / (time.perf_counter() - self.window["t0"])
        scalars = {
            "loss": float(np.mean(self.window["loss"])),
            "lr": self.window["lr"],
            "grad_norm": float(np.mean(self.window["grad_norm"])),
            "tokens_per_s": tps,
            "tokens_seen": p.tokens_seen,
            "words_seen": p.words_seen,
            "mfu": tps * self.flops_per_token / self.peak_flops,
        }
        if self.window["accuracy"]:
            scalars["accuracy"] = float(np.mean(self.window["accuracy"]))
        self.writer.write(p.step, scalars)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{scalars['loss']:.3f}", tok_s=f"{tps:,.0f}", refresh=False)
        self.restart_window()


class DevEval:
    """The token-weighted dev loss every `eval_every` steps and at the end (0 = never)."""

    def __init__(self, evaluate: Callable[[Any], float], eval_every: int, writer: MetricWriter, metrics: MetricsLog):
        self.evaluate, self.eval_every, self.writer, self.metrics = evaluate, eval_every, writer, metrics

    def __call__(self, p: Progress, state: Any, stop: bool) -> None:
        del stop
        if self.eval_every > 0 and (p.step % self.eval_every == 0 or p.final):
            dev = self.evaluate(state)
            self.writer.write(p.step, {"dev_loss": dev, "tokens_seen": p.tokens_seen, "words_seen": p.words_seen})
            self.metrics.restart_window()


class SeriesSaves:
    """The dense series: the parameters at every step the schedule names (and the last), from an on-device copy (the
    next step donates the originals), saved only when the step's loss is finite. With one process a background thread
    saves, so the loop hardly waits; with several, the main thread, where a multi-process save's collectives belong."""

    def __init__(self, ckpt: RunCheckpoints, lock: threading.Lock, copy_params: Callable[[Any], Any]):
        self.ckpt, self.lock, self.copy_params = ckpt, lock, copy_params
        self.busy_s = 0.0  # time spent saving
        self.waited_s = 0.0  # time the loop waited for background saves (at resume points)
        self._error: BaseException | None = None
        self._queue: queue.Queue | None = None
        if jax.process_count() == 1:
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._work, name="babyjax-series", daemon=True)
            self._thread.start()

    def __call__(self, p: Progress, state: Any, stop: bool) -> None:
        del stop
        if not (self.ckpt.schedule.should_save(p.step, p.words_before, p.words_seen) or p.final):
            return
        item = (p.step, self.copy_params(state.params), p.meta(), p.metrics["loss"] if p.metrics else 0.0)
        if self._queue is None:
            self._save(*item)
        else:
            self._queue.put(item)

    def _save(self, step: int, params: Any, meta: dict, loss: Any) -> None:
        if not math.isfinite(float(jax.device_get(loss))):
            return  # the loop stops on this loss; the series keeps only finite steps
        t0 = time.perf_counter()
        with self.lock:
            self.ckpt.save_series(step, params, meta)
        self.busy_s += time.perf_counter() - t0

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                if self._error is None:
                    self._save(*item)
            except BaseException as e:
                self._error = e
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def flush(self) -> None:
        """Wait until every submitted save has been handed to Orbax; re-raise a failure of the thread."""
        if self._queue is not None:
            t0 = time.perf_counter()
            self._queue.join()
            self.waited_s += time.perf_counter() - t0
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        if self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None


class ResumeSaves:
    """Full train state + data-iterator state every `resume_every` steps, at the end and when preempted; first every
    earlier loss is checked (a non-finite one stops training) and every series save is with Orbax (never lags)."""

    def __init__(
        self,
        ckpt: RunCheckpoints,
        lock: threading.Lock,
        loader: Any,
        resume_every: int,
        metrics: MetricsLog,
        series: SeriesSaves,
    ):
        self.ckpt, self.lock, self.loader, self.every = ckpt, lock, loader, resume_every
        self.metrics, self.series = metrics, series

    def __call__(self, p: Progress, state: Any, stop: bool) -> None:
        if stop or p.final or p.step % self.every == 0:
            self.metrics.drain()
            self.series.flush()
            with self.lock:
                self.ckpt.save_resume(p.step, state, self.loader, p.meta(), force=stop or p.final)

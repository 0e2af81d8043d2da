"""What happens around each training step: hooks, each fed by the loop's events alone (babyjax/train/loop.py).

The loop owns the train state and its resume checkpoints; hooks observe. For every step it calls each hook's
`on_step(progress, state)` with the step's host-side `Progress` (tokens and words seen counted on the host, the step's
device metrics not read yet) before the next step donates that state; before writing a resume checkpoint it calls
each hook's `before_resume_save(progress)`; when the loop ends (done or preempted), `on_stop(progress)`. No hook holds
another: what one needs from the others' work reaches it through these events or the shared `RunCheckpoints` (a
resume save waits for the series' pending writes itself). Every collective (a parameter hash's gather, Orbax's
multi-process save) runs on the main thread; Orbax writes the checkpoints in the background.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from babyjax.checkpoints.series import RunCheckpoints
from babyjax.errors import TrainingError
from babyjax.train.metrics import MetricWriter

log = logging.getLogger("babyjax")


@dataclasses.dataclass(frozen=True)
class Progress:
    """Where training stands after `step` optimizer updates, kept on the host: tokens (padding excluded) and words
    seen over updates 1..step (words_before: 1..step-1, for the words-seen schedule), the run's training seconds
    (every start of a resumed run included), this step's tokens and its device metrics (not read yet), whether it is
    the last step."""

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


class Hook:
    """The loop's events; a hook overrides the ones it needs (the others do nothing)."""

    def on_step(self, progress: Progress, state: Any) -> None:
        """Step `progress.step` was dispatched; `state` is its result, valid until the next step donates it."""

    def before_resume_save(self, progress: Progress) -> None:
        """A resume checkpoint of this step is about to be written: finish what it must not run ahead of."""

    def on_stop(self, progress: Progress) -> None:
        """The loop ended at this step (the last step, or preempted): finish the step's work."""


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


class MetricsLog(Hook):
    """Reads each step's device metrics one step late, stops on a non-finite loss (at the latest before a resume
    checkpoint records the step), writes a log line every `log_every` steps (JSONL + TensorBoard through `writer`)
    and moves the progress bar. Tokens per second are timed from a window's first step to its log line: what happens
    between windows (compiling; a dev evaluation at a log step, as every shipped config has it) is not counted."""

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
        self.window: dict[str, Any] = {}

    def _drain(self, keep: int = 0) -> None:
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
            self.window["loss"].append(loss)
            self.window["grad_norm"].append(float(m["grad_norm"]))
            self.window["lr"] = float(m["lr"])
            if "accuracy" in m:  # masked objectives: the share of masked tokens predicted right
                self.window["accuracy"].append(float(m["accuracy"]))

    def on_step(self, progress: Progress, state: Any) -> None:
        del state
        if not self.window:
            self.window = {"loss": [], "grad_norm": [], "accuracy": [], "lr": 0.0, "tokens": 0.0}
            self.window["t0"] = time.perf_counter()
        self.pending.append((progress.step, progress.metrics))
        self.window["tokens"] += progress.step_tokens
        log_now = progress.step % self.log_every == 0
        self._drain(keep=0 if log_now else 1)
        if log_now and self.window["loss"]:
            self._write(progress)
        if self.bar is not None:
            self.bar.update(1)

    def before_resume_save(self, progress: Progress) -> None:
        self._drain()

    def on_stop(self, progress: Progress) -> None:
        self._drain()

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
        self.window = {}


class DevEval(Hook):
    """The token-weighted dev loss every `eval_every` steps and at the end (0 = never)."""

    def __init__(self, evaluate: Callable[[Any], float], eval_every: int, writer: MetricWriter):
        self.evaluate, self.eval_every, self.writer = evaluate, eval_every, writer

    def on_step(self, progress: Progress, state: Any) -> None:
        p = progress
        if self.eval_every > 0 and (p.step % self.eval_every == 0 or p.final):
            dev = self.evaluate(state)
            self.writer.write(p.step, {"dev_loss": dev, "tokens_seen": p.tokens_seen, "words_seen": p.words_seen})


class SeriesSaves(Hook):
    """The dense series: the parameters at every step the schedule names (and the last), saved only when the step's
    loss is finite. Orbax copies them to host memory before `save_series` returns (the next step may donate them)
    and writes them in the background; a resume save waits for those writes (RunCheckpoints.save_resume)."""

    def __init__(self, ckpt: RunCheckpoints):
        self.ckpt = ckpt
        self.saves, self.blocked_s = 0, 0.0  # series saves, and the time the loop spent in them

    def on_step(self, progress: Progress, state: Any) -> None:
        p = progress
        if not (self.ckpt.schedule.should_save(p.step, p.words_before, p.words_seen) or p.final):
            return
        if p.metrics is not None and not math.isfinite(float(jax.device_get(p.metrics["loss"]))):
            return  # the loop stops on this loss (MetricsLog); the series keeps only finite steps
        t0 = time.perf_counter()
        self.saves += self.ckpt.save_series(p.step, state.params, p.meta())
        self.blocked_s += time.perf_counter() - t0

    def on_stop(self, progress: Progress) -> None:
        log.info(
            "series checkpoints: %d saved, the loop spent %.1f s handing them to Orbax", self.saves, self.blocked_s
        )

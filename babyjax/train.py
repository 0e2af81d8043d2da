"""The training loop: BabyLM batches -> sharded jitted train step -> a dense checkpoint series and resume checkpoints.

`train(config, workdir)` is the one library call behind `launch/train.py`. Running it again on the same workdir
continues from the latest resume checkpoint (after `kill -9`, SIGTERM or preemption) and reproduces the loss sequence
and parameters of an uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import queue
import signal
import threading
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath

from babyjax.errors import TrainingError
from babyjax.run import RunDir
from babyjax import checkpoints, distributed, metrics as metrics_lib, model as model_lib, sharding, step as step_lib
from babyjax.data import babylm, pipeline, tokenizer as tokenizer_lib

log = logging.getLogger("babyjax")

@dataclasses.dataclass
class TrainResult:
    step: int
    tokens_seen: float
    words_seen: float
    last_loss: float | None
    preempted: bool


class _Preemption:
    """Turns SIGTERM into a stop at a step every process agrees on.

    One process: a Python SIGTERM handler sets a flag that the loop polls. Several processes: JAX's preemption
    service (started by jax.distributed) catches SIGTERM on any host and the hosts agree on a safe step through
    `multihost_utils.reached_preemption_sync_point`, which the loop calls at every step.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        self._multi = jax.process_count() > 1

    def __enter__(self) -> "_Preemption":
        if not self._multi:
            try:
                self._previous = signal.signal(signal.SIGTERM, self._handler)
            except ValueError:  # not the main thread (e.g. a notebook worker): no signal handling
                self._previous = None
        return self

    def _handler(self, signum, frame) -> None:  # noqa: ARG002
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def should_stop(self, step: int) -> bool:
        if not self._multi:
            return self.requested
        from jax.experimental import multihost_utils

        return multihost_utils.reached_preemption_sync_point(step)


class _SeriesWriter:
    """Saves series checkpoints from a background thread, so a dense series costs the training loop almost nothing.

    The loop hands over every step's metrics (device arrays, in order) and, at a series step, an on-device copy of
    the parameters (the next step donates the originals). The thread reads the metrics as they complete, keeps the
    tokens and words seen, and saves through the Checkpointer (under `lock`, shared with the loop's resume saves).
    A step whose loss is not finite is not saved: the loop stops on it.
    """

    def __init__(self, ckpt: checkpoints.RunCheckpoints, lock: threading.Lock, tokens_seen: float, words_seen: float):
        self._ckpt, self._lock = ckpt, lock
        self._tokens, self._words, self._loss = tokens_seen, words_seen, 0.0
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self.waited_s = 0.0  # time the training loop spent waiting for series saves (at resume points)
        self.busy_s = 0.0  # time the thread spent saving
        self._thread = threading.Thread(target=self._run, name="babyjax-series", daemon=True)
        self._thread.start()

    def observe(self, metrics: dict) -> None:
        self._queue.put(("metrics", metrics))

    def submit(self, step: int, params: Any, wall_time: float) -> None:
        self._queue.put(("save", step, params, wall_time))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                if self._error is None and item[0] == "metrics":
                    m = jax.device_get({k: item[1][k] for k in ("loss", "num_tokens", "num_words")})
                    self._tokens += float(m["num_tokens"])
                    self._words += float(m["num_words"])
                    self._loss = float(m["loss"])
                elif self._error is None and math.isfinite(self._loss):
                    _, step, params, wall = item
                    meta = {"step": step, "tokens_seen": self._tokens, "words_seen": self._words, "wall_time": wall}
                    t0 = time.perf_counter()
                    with self._lock:
                        self._ckpt.save_series(step, params, meta)
                    self.busy_s += time.perf_counter() - t0
            except BaseException as e:  # noqa: BLE001 - re-raised in the loop's thread by flush()
                self._error = e
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def flush(self) -> None:
        """Waits until every submitted save has been handed to Orbax; re-raises a failure of the thread."""
        t0 = time.perf_counter()
        self._queue.join()
        self.waited_s += time.perf_counter() - t0
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def evaluate(eval_step, state, loader_factory, max_batches: int) -> float:
    """Token-weighted mean loss over (at most `max_batches` of) one pass of the dev split."""
    total, weight = 0.0, 0.0
    for i, batch in enumerate(loader_factory()):
        if max_batches > 0 and i >= max_batches:
            break
        loss_sum, w_sum = eval_step(state, batch)
        total += float(loss_sum)
        weight += float(w_sum)
    return total / weight if weight > 0 else float("nan")


def _prepare_data(config: ml_collections.ConfigDict, workdir: epath.Path):
    """Dataset and tokenizer; with several processes, process 0 prepares first and the others then reuse its work."""

    def prepare():
        sources = babylm.prepare(config.data)
        return sources, tokenizer_lib.get_tokenizer(config.tokenizer, sources["train"], workdir)

    if jax.process_count() == 1:
        return prepare()
    from jax.experimental import multihost_utils

    if jax.process_index() == 0:
        result = prepare()
    multihost_utils.sync_global_devices("babyjax: data prepared by process 0")
    if jax.process_index() != 0:
        result = prepare()
    return result


def train(config: ml_collections.ConfigDict, workdir: str | epath.Path) -> TrainResult:
    """Trains (or resumes) the run in `workdir` as `config` says. Returns where it stopped."""
    distributed.check_same_everywhere(config.to_json_best_effort(sort_keys=True), "config")
    run = RunDir(workdir)
    workdir = run.path
    workdir.mkdir(parents=True, exist_ok=True)
    run.pin_config(config, primary=jax.process_index() == 0)
    tc = config.train

    mesh = sharding.make_mesh(config.mesh)
    log.info("processes: %d, devices: %d (local %d), mesh: %s", jax.process_count(), jax.device_count(),
             jax.local_device_count(), dict(mesh.shape))

    sources, tok = _prepare_data(config, workdir)
    model_cfg = model_lib.ModelConfig.from_config(config.model, tok.vocab_size)
    if model_cfg.style == "gpt2" and config.data.seq_len > model_cfg.max_len:
        raise TrainingError(f"data.seq_len={config.data.seq_len} exceeds model.max_len={model_cfg.max_len}; "
                            "raise --config.model.max_len")
    log.info("model: %s, %.2fM parameters", model_cfg.style, model_lib.num_params(model_cfg) / 1e6)

    graphdef, state, state_shardings, tx, lr_schedule = step_lib.init_train_state(
        model_cfg, config.optim, tc.num_steps, mesh, config.seed)
    train_step = step_lib.make_train_step(graphdef, tx, lr_schedule, mesh, state_shardings,
                                         grad_accum_steps=config.optim.grad_accum_steps)
    eval_step = step_lib.make_eval_step(graphdef, mesh, state_shardings)

    data_seed = config.seed if config.data.shuffle_seed < 0 else config.data.shuffle_seed
    loader = pipeline.make_loader(config.data, tok, split="train", global_batch_size=tc.batch_size,
                                  seed=data_seed, mesh=mesh)

    def dev_loader():
        return pipeline.make_loader(config.data, tok, split=config.data.dev_split,
                                    global_batch_size=tc.batch_size, seed=data_seed, mesh=mesh,
                                    shuffle=False, num_epochs=1)

    ckpt = checkpoints.RunCheckpoints(workdir, config.ckpt, num_steps=tc.num_steps)
    schedule = ckpt.schedule
    writer = metrics_lib.MetricWriter(workdir)

    tokens_seen = words_seen = 0.0
    wall_before = 0.0  # training wall time of earlier (interrupted) sessions of this run
    resume_step = ckpt.latest_resume_step()
    if resume_step is not None:
        state, meta = ckpt.restore_resume(_abstract(state), loader)
        # Copy the restored arrays into buffers XLA allocated itself: on CPU, the alignment of host-allocated
        # buffers can change the summation order of the first step and break bit-exact resumption.
        state = jax.jit(lambda s: jax.tree.map(lambda x: x.copy(), s), out_shardings=state_shardings)(state)
        tokens_seen, words_seen = float(meta["tokens_seen"]), float(meta["words_seen"])
        wall_before = float(meta.get("wall_time", 0.0))
        log.info("resumed from step %d (%.0f tokens, %.0f words seen)", resume_step, tokens_seen, words_seen)
    start_step = int(jax.device_get(state.step))
    t_start = time.time()
    if start_step >= tc.num_steps:
        log.info("run already finished at step %d (train.num_steps=%d): nothing to do", start_step, tc.num_steps)
        ckpt.close()
        writer.close()
        return TrainResult(step=start_step, tokens_seen=tokens_seen, words_seen=words_seen, last_loss=None,
                           preempted=False)

    def meta(step: int) -> dict:
        return {"step": step, "tokens_seen": tokens_seen, "words_seen": words_seen,
                "wall_time": wall_before + time.time() - t_start}

    if start_step == 0:
        ckpt.save_series(0, state.params, meta(0))

    # Compile once up front: log the memory analysis, and fail early on a mesh or shape problem.
    first_batch = next(loader)
    compiled = train_step.lower(state, first_batch).compile()
    log.info("train step memory: %s", step_lib.memory_analysis_summary(compiled))
    flops_per_token = model_lib.flops_per_token(model_cfg, config.data.seq_len)
    peak = metrics_lib.measure_matmul_peak(config.model.dtype) * jax.device_count()

    pbar = None
    if tc.progress_bar and jax.process_index() == 0:
        from tqdm.auto import tqdm

        pbar = tqdm(total=tc.num_steps, initial=start_step, unit="step", dynamic_ncols=True)

    lock = threading.Lock()
    series = _SeriesWriter(ckpt, lock, tokens_seen, words_seen)
    copy_params = jax.jit(lambda p: jax.tree.map(lambda x: x.copy(), p), out_shardings=state_shardings.params)
    window = {"loss": [], "grad_norm": [], "tokens": 0.0, "t0": time.perf_counter()}
    last_loss: float | None = None
    step = start_step
    pending: list[tuple[int, dict]] = []  # dispatched steps whose metrics were not read yet
    preempted = False

    def drain() -> None:
        """Reads the metrics of every dispatched step (oldest first); stops on a non-finite loss."""
        nonlocal tokens_seen, words_seen, last_loss
        while pending:
            s, m = pending.pop(0)
            m = jax.device_get(m)
            loss = float(m["loss"])
            if not math.isfinite(loss):
                with lock:
                    good = ckpt.latest_resume_step()
                raise TrainingError(
                    f"non-finite loss ({loss}) at step {s}; training stopped. The last good resume checkpoint is "
                    f"step {good}, the series is intact; lower --config.optim.lr or check the data")
            tokens_seen += float(m["num_tokens"])
            words_seen += float(m["num_words"])
            last_loss = loss
            window["loss"].append(loss)
            window["grad_norm"].append(float(m["grad_norm"]))
            window["tokens"] += float(m["num_tokens"])
            window["lr"] = float(m["lr"])

    batch = first_batch
    with _Preemption() as preemption:
        try:
            while step < tc.num_steps:
                words_before = words_seen
                state, m = compiled(state, batch)
                step += 1
                pending.append((step, m))
                series.observe(m)
                # Decide what this step needs before the next dispatch donates `state`.
                series_due = schedule.should_save(step, words_before, None) or step == tc.num_steps
                if schedule.needs_words or step % tc.log_every == 0:
                    drain()  # the words schedule decides on this step's words seen
                elif len(pending) > 1:  # keep one step in flight: read the previous step's metrics only
                    last = pending.pop()
                    drain()
                    pending.append(last)
                if schedule.needs_words:
                    series_due = series_due or schedule.should_save(step, words_before, words_seen)
                if series_due:
                    series.submit(step, copy_params(state.params), wall_before + time.time() - t_start)
                if step % tc.log_every == 0 and window["loss"]:
                    dt = time.perf_counter() - window["t0"]
                    tps = window["tokens"] / dt
                    scalars = {"loss": float(np.mean(window["loss"])), "lr": window["lr"],
                               "grad_norm": float(np.mean(window["grad_norm"])), "tokens_per_s": tps,
                               "tokens_seen": tokens_seen, "words_seen": words_seen,
                               "mfu": tps * flops_per_token / peak}
                    writer.write(step, scalars)
                    if pbar is not None:
                        pbar.set_postfix(loss=f"{scalars['loss']:.3f}", tok_s=f"{tps:,.0f}", refresh=False)
                    window = {"loss": [], "grad_norm": [], "tokens": 0.0, "t0": time.perf_counter()}
                if tc.eval_every > 0 and (step % tc.eval_every == 0 or step == tc.num_steps):
                    dev = evaluate(eval_step, state, dev_loader, tc.eval_batches)
                    writer.write(step, {"dev_loss": dev, "tokens_seen": tokens_seen, "words_seen": words_seen})
                    window["t0"] = time.perf_counter()
                if pbar is not None:
                    pbar.update(1)
                stop = preemption.should_stop(step)
                if stop or step % config.ckpt.resume_every == 0 or step == tc.num_steps:
                    drain()
                    series.flush()  # series saves up to this step are with Orbax before the resume point moves
                    with lock:
                        ckpt.save_resume(step, state, loader, meta(step), force=stop or step == tc.num_steps)
                if stop:
                    preempted = True
                    log.warning("SIGTERM: saved a resume checkpoint at step %d; run the same command to continue",
                                step)
                    break
                if step < tc.num_steps:
                    batch = next(loader)
            drain()
            series.flush()
            log.info("series checkpoints: %.1f s of saving in the background, the loop waited %.1f s for them",
                     series.busy_s, series.waited_s)
        finally:
            series.close()
            ckpt.wait()
            ckpt.close()
            writer.close()
            if pbar is not None:
                pbar.close()
    return TrainResult(step=step, tokens_seen=tokens_seen, words_seen=words_seen, last_loss=last_loss,
                       preempted=preempted)

"""The training loop: BabyLM batches -> sharded jitted train step -> a dense checkpoint series and resume checkpoints.

`train(config, workdir)`, behind `launch/train.py`: `_set_up`, `_restore_or_init`, then `_loop`, which dispatches each
step, hands its host-side `Progress` to the hooks (babyjax/train/hooks.py) and writes the resume checkpoints. Running
it again on the same workdir continues from the latest resume checkpoint and reproduces the losses and parameters of
an uninterrupted run.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from babyjax import distributed
from babyjax.checkpoints.run import RunDir
from babyjax.checkpoints.series import RunCheckpoints
from babyjax.data import babylm, pipeline, tracks
from babyjax.data import tokenizer as tokenizer_lib
from babyjax.errors import InputError, writing_to
from babyjax.model import objectives, sharding
from babyjax.model import transformer as model_lib
from babyjax.train import hooks
from babyjax.train import metrics as metrics_lib
from babyjax.train import step as step_lib

log = logging.getLogger("babyjax")


@dataclasses.dataclass
class TrainResult:  # where `train` stopped
    step: int
    tokens_seen: float
    words_seen: float
    last_loss: float | None
    preempted: bool


@dataclasses.dataclass
class _Session:
    """Everything set up for training one run (built by `_set_up`)."""

    config: ml_collections.ConfigDict
    run: RunDir
    model_cfg: model_lib.ModelConfig
    state: step_lib.TrainState
    state_shardings: step_lib.TrainState
    train_step: Any  # jitted (state, batch) -> (state, metrics); compiled on the first batch
    evaluate: Callable[[step_lib.TrainState], float]
    loader: pipeline.Loader
    ckpt: RunCheckpoints
    writer: metrics_lib.MetricWriter
    num_steps: int
    head_fraction: float  # share of positions the output projection reads (masked objectives: their capacity)


def _open_run(config: ml_collections.ConfigDict, workdir: Any) -> RunDir:
    """The run directory, created and pinned to `config` (the same config on every process)."""
    distributed.check_same_everywhere(config.to_json_best_effort(sort_keys=True), "config")
    run = RunDir(workdir)
    if run.path.exists() and not run.path.is_dir():
        raise InputError(f"--workdir {run.path} is a file: give a folder for the run")
    run.path.mkdir(parents=True, exist_ok=True)
    run.pin_config(config, primary=jax.process_index() == 0)
    return run


def _make_mesh(config: ml_collections.ConfigDict) -> jax.sharding.Mesh:
    mesh = sharding.make_mesh(config.mesh)
    log.info(
        "processes: %d, devices: %d (local %d), mesh: %s",
        jax.process_count(),
        jax.device_count(),
        jax.local_device_count(),
        dict(mesh.shape),
    )
    return mesh


def _prepare_tokenizer(config: ml_collections.ConfigDict, run: RunDir) -> tokenizer_lib.Tokenizer:
    """Dataset and tokenizer; with several processes, process 0 prepares first and the others then reuse its work."""

    def prepare() -> tokenizer_lib.Tokenizer:
        return tokenizer_lib.get_tokenizer(config.tokenizer, babylm.prepare(config.data)["train"], run.path)

    tok = prepare() if jax.process_index() == 0 else None
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("babyjax: data prepared by process 0")
    return tok if tok is not None else prepare()


def evaluate(eval_step, state, loader_factory, max_batches: int) -> float:
    """Token-weighted mean loss over (at most `max_batches` of) one pass of the dev split."""
    total, weight, batches = 0.0, 0.0, loader_factory()
    for batch in itertools.islice(batches, max_batches) if max_batches > 0 else batches:
        loss_sum, w_sum = eval_step(state, batch)
        total, weight = total + float(loss_sum), weight + float(w_sum)
    return total / weight if weight > 0 else float("nan")


def _loaders(config: ml_collections.ConfigDict, tok: tokenizer_lib.Tokenizer, mesh) -> tuple[pipeline.Loader, Any]:
    """The training split's loader, and a factory of one pass over the dev split."""
    data_seed = config.seed if config.data.shuffle_seed < 0 else config.data.shuffle_seed
    batch_size = config.train.batch_size
    loader = pipeline.make_loader(
        config.data, tok, split="train", global_batch_size=batch_size, seed=data_seed, mesh=mesh
    )

    def dev_loader() -> pipeline.Loader:
        return pipeline.make_loader(
            config.data,
            tok,
            split=config.data.dev_split,
            global_batch_size=batch_size,
            seed=data_seed,
            mesh=mesh,
            shuffle=False,
            num_epochs=1,
        )

    return loader, dev_loader


def _plan(config: ml_collections.ConfigDict, loader: pipeline.Loader, run: RunDir) -> ml_collections.ConfigDict:
    """The run's steps (train.num_steps, or with 0 the steps that read data.num_epochs epochs of the prepared training
    split, the last batch padded) and its planned words seen, checked against its track's cap; written to the run's
    plan.json. Returns the config with its steps (a copy when they were derived)."""
    tc = config.train
    if not tc.num_steps:
        if not loader.num_epochs:
            raise InputError("train.num_steps=0 reads data.num_epochs epochs: set data.num_epochs > 0, or the steps")
        config = copy.deepcopy(config)
        config.train.num_steps = math.ceil(loader.num_epochs * loader.num_rows / tc.batch_size)
        tc = config.train
    planned = tracks.planned_words(
        loader.words_per_epoch, loader.num_rows, tc.num_steps * tc.batch_size, loader.num_epochs
    )
    epochs = planned / max(loader.words_per_epoch, 1)
    log.info(
        "plan: %d steps, %.1fM words seen, %.2f epochs (data.track %s)",
        tc.num_steps,
        planned / 1e6,
        epochs,
        config.data.track,
    )
    tracks.check_words_cap(config.data.track, planned, tc.allow_over_cap)
    if jax.process_index() == 0:
        run.write_plan({"num_steps": int(tc.num_steps), "words_planned": planned, "epochs": epochs})
    return config


def _set_up(config: ml_collections.ConfigDict, workdir: Any) -> _Session:
    """Run directory, mesh, data, tokenizer, model, optimizer, steps, loaders, checkpoints and metric writer."""
    run = _open_run(config, workdir)
    mesh = _make_mesh(config)
    tok = _prepare_tokenizer(config, run)
    loader, dev_loader = _loaders(config, tok, mesh)
    config = _plan(config, loader, run)
    model_cfg = model_lib.ModelConfig.from_config(config.model, tok.vocab_size)
    model_cfg.check_length(config.data.seq_len)
    objective = objectives.Objective.from_config(config, tok, model_cfg.encoder)
    log.info(
        "model: %s, %.2fM parameters; objective: %s",
        model_cfg.style,
        model_lib.num_params(model_cfg) / 1e6,
        objective.kind,
    )
    tc = config.train
    graphdef, state, shardings, tx, lr_schedule = step_lib.init_train_state(
        model_cfg, config.optim, tc.num_steps, mesh, config.seed
    )
    train_step = step_lib.make_train_step(
        graphdef, tx, lr_schedule, mesh, shardings, grad_accum_steps=config.optim.grad_accum_steps, objective=objective
    )
    eval_step = step_lib.make_eval_step(graphdef, mesh, shardings, objective)
    return _Session(
        config,
        run,
        model_cfg,
        state,
        shardings,
        train_step,
        lambda s: evaluate(eval_step, s, dev_loader, tc.eval_batches),
        loader,
        RunCheckpoints(run.path, config.ckpt, num_steps=tc.num_steps),
        metrics_lib.MetricWriter(run.path),
        int(tc.num_steps),
        objective.head_fraction(config.data.seq_len),
    )


def _restore_or_init(s: _Session) -> hooks.Progress:
    """Restore the latest resume checkpoint into `s.state` (and the loader), or save the series' step 0."""
    resume_step = s.ckpt.latest_resume_step()
    if resume_step is None:
        progress = hooks.Progress(step=0, tokens_seen=0.0, words_seen=0.0, wall_time=0.0)
        s.ckpt.save_series(0, s.state.params, progress.meta())
        return progress
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), s.state)
    state, meta = s.ckpt.restore_resume(abstract, s.loader)
    # Copy the restored arrays into buffers XLA allocated itself: on CPU, the alignment of host-allocated
    # buffers can change the summation order of the first step and break bit-exact resumption.
    s.state = jax.jit(lambda t: jax.tree.map(lambda x: x.copy(), t), out_shardings=s.state_shardings)(state)
    progress = hooks.Progress(
        step=int(jax.device_get(s.state.step)),
        tokens_seen=float(meta["tokens_seen"]),
        words_seen=float(meta["words_seen"]),
        wall_time=float(meta.get("wall_time", 0.0)),
    )
    log.info(
        "resumed from step %d (%.0f tokens, %.0f words seen)", progress.step, progress.tokens_seen, progress.words_seen
    )
    return progress


def _make_hooks(s: _Session, progress_bar: Any) -> list[hooks.Hook]:
    """The hooks, in the order they see each event (babyjax/train/hooks.py)."""
    tc = s.config.train
    peak = metrics_lib.measure_matmul_peak(s.config.model.dtype) * jax.device_count()
    flops = model_lib.flops_per_token(s.model_cfg, s.config.data.seq_len, head_fraction=s.head_fraction)
    return [
        hooks.MetricsLog(s.writer, tc.log_every, flops, peak, s.ckpt.latest_resume_step, progress_bar),
        hooks.DevEval(s.evaluate, tc.eval_every, s.writer),
        hooks.SeriesSaves(s.ckpt),
    ]


def _after_step(s: _Session, hook_list: list[hooks.Hook], progress: hooks.Progress, stop: bool) -> None:
    """A dispatched step's events: every hook sees it; at a resume point (every ckpt.resume_every steps, the last
    step, a preemption) every hook is told, then the full state and the loader's position are saved."""
    for hook in hook_list:
        hook.on_step(progress, s.state)
    force = stop or progress.final
    if s.ckpt.resume_due(progress.step, force=force):
        for hook in hook_list:
            hook.before_resume_save(progress)
        s.ckpt.save_resume(progress.step, s.state, s.loader, progress.meta(), force=force)


def _loop(s: _Session, progress: hooks.Progress, hook_list: list[hooks.Hook]) -> tuple[hooks.Progress, bool, float]:
    """Dispatch a step, hand its `Progress` to the hooks, fetch the next batch; until done or preempted. Returns
    where it stopped, whether preempted, and the time.time() of the first step's dispatch (after compiling)."""
    batch, totals = s.loader.next_with_totals()
    compiled = s.train_step.lower(s.state, batch).compile()  # fail early on a mesh or shape problem
    log.info("train step memory: %s", step_lib.memory_analysis_summary(compiled))
    t0, wall_before = time.time(), progress.wall_time
    with hooks.Preemption() as preemption:
        while progress.step < s.num_steps:
            s.state, metrics = compiled(s.state, batch)
            progress = progress.after(*totals, metrics, wall_before + time.time() - t0, s.num_steps)
            stop = preemption.should_stop(progress.step)
            _after_step(s, hook_list, progress, stop)
            if stop:
                log.warning(
                    "SIGTERM: saved a resume checkpoint at step %d; run the same command to continue", progress.step
                )
                return progress, True, t0
            if not progress.final:
                batch, totals = s.loader.next_with_totals()
    return progress, False, t0


def train(config: ml_collections.ConfigDict, workdir: Any) -> TrainResult:
    """Trains (or resumes) the run in `workdir` as `config` says. Returns where it stopped. A full disk stops it as
    a resumable failure reported for `workdir` (errors.disk_full)."""
    with writing_to(workdir):
        return _train(config, workdir)


def _train(config: ml_collections.ConfigDict, workdir: Any) -> TrainResult:
    """`train` within its folder: set up, restore or start, loop, then close the checkpoints and the writers."""
    s = _set_up(config, workdir)
    bar = None
    try:
        progress = first = _restore_or_init(s)
        if progress.step >= s.num_steps:
            log.info("run already finished at step %d (train.num_steps=%d): nothing to do", progress.step, s.num_steps)
            return TrainResult(progress.step, progress.tokens_seen, progress.words_seen, None, preempted=False)
        if config.train.progress_bar and jax.process_index() == 0:
            bar = tqdm(total=s.num_steps, initial=progress.step, unit="step", dynamic_ncols=True)
        hook_list = _make_hooks(s, bar)
        progress, preempted, t0 = _loop(s, progress, hook_list)
        for hook in hook_list:
            hook.on_stop(progress)
        steps = progress.step - first.step
        log.info("loop: %.2f s from the first step to the last save (%d steps)", time.time() - t0, steps)
    finally:
        try:
            s.ckpt.close()
        finally:  # a full disk fails both closes: the writer must still stop its thread
            s.writer.close()
            if bar is not None:
                bar.close()
    last_loss = float(jax.device_get(progress.metrics["loss"])) if progress.metrics else None
    return TrainResult(progress.step, progress.tokens_seen, progress.words_seen, last_loss, preempted)

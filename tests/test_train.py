"""End-to-end training: a tiny run on the real BabyLM sample, kill -9 / SIGTERM and resume, bad input."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# A run small enough for a test: 1 layer, vocab 512, a capped slice of the training lines.
OVERRIDES = [
    "--config.tokenizer.vocab_size=512",
    "--config.model.num_layers=1",
    "--config.model.d_model=64",
    "--config.model.num_heads=2",
    "--config.model.mlp_dim=128",
    "--config.model.dropout=0.1",
    "--config.data.max_train_lines=20000",
    "--config.train.batch_size=8",
    "--config.train.num_steps=24",
    "--config.optim.warmup_steps=4",
    "--config.train.log_every=1",
    "--config.train.eval_every=12",
    "--config.train.eval_batches=2",
    "--config.train.progress_bar=False",
    "--config.ckpt.resume_every=4",
    "--config.ckpt.schedule=list",
    "--config.ckpt.steps=(3,8,16)",
]


def _env(tmp: pathlib.Path) -> dict:
    env = dict(os.environ)
    env["BABYJAX_TFDS_DIR"] = str(tmp / "tfds")
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("BABYJAX_TRACEBACK", None)
    return env


def _launch(workdir, tmp, extra=(), **kw) -> subprocess.Popen:
    cmd = [
        sys.executable,
        str(ROOT / "launch" / "train.py"),
        "--config",
        str(ROOT / "configs" / "tiny.py"),
        "--workdir",
        str(workdir),
        *OVERRIDES,
        *extra,
    ]
    return subprocess.Popen(
        cmd, env=_env(tmp), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw
    )


def _run(workdir, tmp, extra=(), timeout=300) -> subprocess.CompletedProcess:
    p = _launch(workdir, tmp, extra)
    out, _ = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, "")


def _losses(workdir) -> dict[int, float]:
    rows = [json.loads(line) for line in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}  # a resumed run's repeated steps replace earlier rows


def _final_params(workdir, step):
    from babyjax.checkpoints import series as checkpoints

    return checkpoints.restore_params(workdir, step)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("train")


@pytest.fixture(scope="module")
def uninterrupted(tmp):
    workdir = tmp / "full"
    r = _run(workdir, tmp)
    assert r.returncode == 0, r.stdout[-3000:]
    return workdir


def test_run_leaves_series_metrics_and_tokenizer(uninterrupted):
    from babyjax.checkpoints import series as checkpoints

    index = checkpoints.load_series_index(uninterrupted)
    steps = [row["step"] for row in index]
    assert steps == [0, 3, 8, 16, 24]  # step 0 and the final step are always in the series
    words = [row["words_seen"] for row in index]
    tokens = [row["tokens_seen"] for row in index]
    assert words[0] == 0 and tokens[0] == 0
    assert all(b > a for a, b in zip(words, words[1:])) and all(b > a for a, b in zip(tokens, tokens[1:]))
    assert len({row["params_hash"] for row in index}) == len(index)  # every checkpoint holds other weights
    assert (uninterrupted / "tokenizer.model").exists() and (uninterrupted / "config.json").exists()
    losses = _losses(uninterrupted)
    assert sorted(losses) == list(range(1, 25))
    assert losses[1] == pytest.approx(np.log(512), rel=0.1)  # starts near chance
    assert np.mean([losses[s] for s in range(20, 25)]) < losses[1] - 0.5  # and learns
    rows = [json.loads(x) for x in (uninterrupted / "metrics.jsonl").read_text().splitlines()]
    dev = [r for r in rows if "dev_loss" in r]
    assert [r["step"] for r in dev] == [12, 24] and all(np.isfinite(r["dev_loss"]) for r in dev)
    last = [r for r in rows if "loss" in r][-1]
    for key in ("lr", "grad_norm", "tokens_per_s", "words_seen", "tokens_seen", "mfu"):
        assert key in last and last[key] is not None and last[key] > 0
    assert list((uninterrupted / "tensorboard").glob("events.out.tfevents.*"))


def _wait_for_resume_step(workdir: pathlib.Path, p: subprocess.Popen, min_step: int, timeout=240) -> None:
    deadline = time.time() + timeout
    resume = workdir / "checkpoints" / "resume"
    while time.time() < deadline:
        done = [int(d.name) for d in resume.glob("*") if d.name.isdigit()] if resume.exists() else []
        if done and max(done) >= min_step:
            return
        if p.poll() is not None:
            raise AssertionError(f"run ended early: {p.stdout.read()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError("no resume checkpoint appeared in time")


def test_kill9_then_resume_equals_uninterrupted(tmp, uninterrupted):
    workdir = tmp / "killed"
    p = _launch(workdir, tmp)
    _wait_for_resume_step(workdir, p, 8)
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = _run(workdir, tmp)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "resumed from step" in r.stdout
    a, b = _losses(uninterrupted), _losses(workdir)
    assert sorted(a) == sorted(b)
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(a)], rtol=0, atol=1e-6)
    pa, pb = _final_params(uninterrupted, 24), _final_params(workdir, 24)
    import jax

    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-6)
    from babyjax.checkpoints import series as checkpoints

    assert [r["step"] for r in checkpoints.load_series_index(workdir)] == [0, 3, 8, 16, 24]


HYBRID = [
    "--config.model.style=ltg_bert",
    "--config.objective.kind=hybrid",
    "--config.objective.causal_share=0.25",
    "--config.objective.masking=span",
    "--config.objective.mask_rate=0.3",
]


def test_hybrid_kill9_then_resume_equals_uninterrupted(tmp):
    """GPT-BERT's objective (masks drawn in the step from the step's key) resumes exactly too."""
    full, killed = tmp / "hybrid_full", tmp / "hybrid_killed"
    r = _run(full, tmp, HYBRID)
    assert r.returncode == 0, r.stdout[-3000:]
    p = _launch(killed, tmp, HYBRID)
    _wait_for_resume_step(killed, p, 8)
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = _run(killed, tmp, HYBRID)
    assert r.returncode == 0 and "resumed from step" in r.stdout, r.stdout[-3000:]
    a, b = _losses(full), _losses(killed)
    assert sorted(a) == sorted(b)
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(a)], rtol=0, atol=1e-6)
    import jax

    for x, y in zip(jax.tree.leaves(_final_params(full, 24)), jax.tree.leaves(_final_params(killed, 24))):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-6)


def test_sigterm_saves_and_resumes(tmp, uninterrupted):
    workdir = tmp / "sigterm"
    p = _launch(workdir, tmp)
    _wait_for_resume_step(workdir, p, 4)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0, out[-3000:]
    saved = re.search(r"SIGTERM: saved a resume checkpoint at step (\d+)", out)
    assert saved, out[-3000:]
    step = int(saved.group(1))
    assert 4 <= step < 24 and (workdir / "checkpoints" / "resume" / str(step)).is_dir()
    r = _run(workdir, tmp)
    assert r.returncode == 0, r.stdout[-3000:]
    assert f"resumed from step {step} " in r.stdout, r.stdout[-3000:]  # not a fresh start with the same losses
    a, b = _losses(uninterrupted), _losses(workdir)
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(a)], rtol=0, atol=1e-6)


def _one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode != 0
    assert "Traceback" not in r.stdout, r.stdout[-3000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("error:") or "Error" in ln or "FATAL" in ln]
    assert lines, r.stdout[-3000:]
    return lines[-1]


def test_unknown_config_key(tmp):
    r = _run(tmp / "bad_key", tmp, ["--config.optim.learning_rate_typo=1.0"])
    assert "learning_rate_typo" in _one_line_error(r)


def test_mesh_that_does_not_fit(tmp):
    r = _run(tmp / "bad_mesh", tmp, ["--config.mesh.data=4", "--config.mesh.fsdp=4"])
    line = _one_line_error(r)
    assert "mesh" in line.lower()


def test_missing_data_folder(tmp):
    r = _run(tmp / "no_data", tmp, [f"--config.data.dir={tmp / 'does_not_exist'}"])
    line = _one_line_error(r)
    assert "does_not_exist" in line


def test_non_finite_loss_stops_and_keeps_checkpoints(tmp):
    workdir = tmp / "nan"
    r = _run(
        workdir,
        tmp,
        [
            "--config.optim.lr=1e12",
            "--config.optim.grad_clip=0",
            "--config.optim.warmup_steps=0",
            "--config.optim.schedule=constant",
        ],
    )
    line = _one_line_error(r)
    assert "non-finite loss" in line and "at step" in line
    from babyjax.checkpoints import series as checkpoints

    index = checkpoints.load_series_index(workdir)
    assert index and index[0]["step"] == 0
    for row in index:  # everything the series lists restores and matches its hash
        params = checkpoints.restore_params(workdir, row["step"])
        assert checkpoints.params_hash(params) == row["params_hash"]


def test_other_config_in_same_workdir_is_refused(tmp, uninterrupted):
    r = _run(uninterrupted, tmp, ["--config.model.d_model=32"])
    assert "model.d_model" in _one_line_error(r)


def test_a_start_that_failed_early_does_not_pin_the_workdir(tmp):
    workdir = tmp / "failed_start"
    r = _run(workdir, tmp, [f"--config.data.dir={tmp / 'no_such_release'}"])
    assert "no_such_release" in _one_line_error(r)
    assert (workdir / "config.json").exists() and not (workdir / "checkpoints").exists()
    r = _run(workdir, tmp)  # the same command with the right data folder: trains, and the config is replaced
    assert r.returncode == 0, r.stdout[-3000:]
    assert "no_such_release" not in (workdir / "config.json").read_text()


# -- the loop's events and the hooks, without training ----------------------------------------------------------------


def _progress(step, loss=1.0, final=False):
    from babyjax.train import hooks

    metrics = {"loss": np.float32(loss), "grad_norm": np.float32(0.5), "lr": np.float32(1e-3)}
    p = hooks.Progress(step=step - 1, tokens_seen=100.0 * (step - 1), words_seen=80.0 * (step - 1), wall_time=0.0)
    return p.after(100.0, 80.0, metrics, wall_time=float(step), num_steps=step if final else step + 100)


def test_every_hook_sees_every_event_before_the_resume_save():
    import types

    from babyjax.train import hooks, loop

    events = []

    class Recorder(hooks.Hook):
        def __init__(self, name):
            self.name = name

        def on_step(self, progress, state):
            events.append((self.name, "step", progress.step, state))

        def before_resume_save(self, progress):
            events.append((self.name, "before_resume_save", progress.step))

    class Checkpoints:
        def resume_due(self, step, force=False):
            return force or step % 4 == 0

        def save_resume(self, step, state, loader, meta, force=False):
            events.append(("ckpt", "save_resume", step, state, loader, meta["words_seen"], force))

    s = types.SimpleNamespace(ckpt=Checkpoints(), state="state", loader="loader")
    recorders = [Recorder("a"), Recorder("b")]
    loop._after_step(s, recorders, _progress(3), stop=False)
    assert events == [("a", "step", 3, "state"), ("b", "step", 3, "state")]
    events.clear()
    loop._after_step(s, recorders, _progress(4), stop=False)
    assert events == [
        ("a", "step", 4, "state"),
        ("b", "step", 4, "state"),
        ("a", "before_resume_save", 4),
        ("b", "before_resume_save", 4),
        ("ckpt", "save_resume", 4, "state", "loader", 320.0, False),
    ]
    events.clear()
    loop._after_step(s, recorders, _progress(5), stop=True)  # preempted: a forced resume save
    assert events[-1] == ("ckpt", "save_resume", 5, "state", "loader", 400.0, True)


def test_metrics_log_reads_every_loss_before_a_resume_save(tmp_path):
    from babyjax.errors import TrainingError
    from babyjax.train import hooks, metrics

    log = hooks.MetricsLog(metrics.MetricWriter(tmp_path, enabled=False), 10, 1.0, 1.0, lambda: 4)
    log.on_step(_progress(5), None)
    log.on_step(_progress(6, loss=float("nan")), None)  # read one step late: not yet
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) at step 6.*resume checkpoint is step 4"):
        log.before_resume_save(_progress(6))


def test_series_saves_keep_the_schedule_and_only_finite_steps(tmp_path):
    from babyjax.checkpoints import series as checkpoints
    from babyjax.train import hooks
    from configs import base

    cfg = base.get_config().ckpt
    cfg.schedule, cfg.steps = "list", (2, 3)
    with checkpoints.RunCheckpoints(tmp_path, cfg, num_steps=5) as ckpt:
        series = hooks.SeriesSaves(ckpt)
        for step, loss in ((1, 1.0), (2, 1.0), (3, float("nan")), (4, 1.0), (5, 1.0)):
            series.on_step(_progress(step, loss=loss, final=step == 5), _state(step))
    index = checkpoints.load_series_index(tmp_path)
    assert [e["step"] for e in index] == [2, 5]  # 3 had a non-finite loss; 5 is the last step
    assert index[1]["words_seen"] == 400.0
    assert index[1]["params_hash"] == checkpoints.params_hash(_state(5).params)


def _state(step):
    import types

    return types.SimpleNamespace(params={"w": np.arange(6.0, dtype=np.float32) + step})


def test_a_plan_over_the_track_cap_stops_before_the_first_step(tmp):
    """10M steps of 8 rows over the capped sample plan billions of words: refused after the data is prepared (the
    planned words come from the prepared split) and before the step 0 checkpoint or any step."""
    workdir = tmp / "over_cap"
    r = _run(workdir, tmp, ["--config.train.num_steps=10000000"])
    line = _one_line_error(r)
    assert "strict_small cap of 100M" in line and "train.allow_over_cap" in line, line
    planned = float(re.search(r"plans ([\d,.]+)M words", line).group(1).replace(",", ""))
    assert planned > 100
    assert not (workdir / "checkpoints").exists() and not (workdir / "metrics.jsonl").exists()
    assert (workdir / "tokenizer.model").exists()  # the data and tokenizer were prepared first


def test_a_run_of_whole_epochs_counted_as_nominal_words_ends_at_its_last_mark(tmp):
    """train.num_steps=0 derives the steps from data.num_epochs on the prepared split (the last batch padded), and
    data.words_per_epoch counts each epoch as the release's nominal words, as the BabyLM rules count them: the last
    step is exactly the last mark (chck_6M here), whatever a word count of the files gives."""
    from babyjax.checkpoints import schedules

    workdir = tmp / "epochs"
    extra = [
        "--config.data.max_train_lines=1500",
        "--config.data.num_epochs=2",
        "--config.data.words_per_epoch=3000000",
        "--config.train.num_steps=0",
        "--config.ckpt.schedule=words",
        "--config.ckpt.words_marks_max=6000000",
    ]
    r = _run(workdir, tmp, extra)
    assert r.returncode == 0, r.stdout[-3000:]
    plan = json.loads((workdir / "plan.json").read_text())
    assert plan["words_planned"] == pytest.approx(6e6) and plan["epochs"] == pytest.approx(2.0)
    index = json.loads((workdir / "checkpoints" / "series.json").read_text())
    steps = [int(e["step"]) for e in index]
    assert steps[-1] == plan["num_steps"] > 10 and round(index[-1]["words_seen"]) == 6_000_000
    names = schedules.words_checkpoint_names(index, 6e6)
    assert list(names) == [f"chck_{n}M" for n in range(1, 7)] and names["chck_6M"] == steps[-1]
    # chck_3M is the step that reads the last row of epoch 1: ceil(rows / 8), while the run is ceil(2 rows / 8)
    assert 2 * names["chck_3M"] - 1 <= steps[-1] <= 2 * names["chck_3M"]
    again = _run(workdir, tmp, extra)  # the same command: the same derived steps, the run is finished
    assert again.returncode == 0 and "run already finished" in again.stdout, again.stdout[-2000:]

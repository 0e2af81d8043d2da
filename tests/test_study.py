"""python -m babyjax.study: a real two-seed study of a small model on the BabyLM sample, killed with SIGKILL during
training, during scoring and during analysis, must end with the outputs of an uninterrupted study (run with two runs
training at once); the runs share the tokenizer and the token sample; a changed study config is refused; the SLURM
and TPU launchers are driven against faked sbatch/sacct and gcloud, and a failed cluster run is named with its log.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from babyjax.errors import InputError
from babyjax.study import spec
from babyjax.study.runner import Study

ROOT = pathlib.Path(__file__).resolve().parents[1]

STUDY = """\
from babyjax.study import base_study, over, axis


def get_config():
    s = base_study()
    s.base = "configs/tiny.py"
    s.overrides = ("data.dir={data}", "data.tfds_dir={tfds}", "data.max_train_lines=3000", "train.num_steps=40",
                   "model.d_model=32", "model.mlp_dim=64", "tokenizer.vocab_size=512", "optim.warmup_steps=5",
                   "ckpt.resume_every=10", "train.eval_every=20", "train.log_every=5", "ckpt.chang_t1=100.0")
    s.axes = ({axes},)
    s.tokens.num_sequences = 40
    s.tokens.num_positions = 5
    s.pairs = {pairs}
    s.pairs_limit = 4
    s.generate.heldout_prompts = {prompts}
    s.generate.max_new_tokens = 6
    s.analysis.xia_p = "0.3"
    return s
"""
SEEDS = 'over("seed", [0, 1])'


def write_study(
    path: pathlib.Path,
    shared: pathlib.Path,
    tfds: pathlib.Path,
    axes: str = SEEDS,
    *,
    pairs: bool = True,
    prompts: int = 2,
) -> pathlib.Path:
    zorro = {"zorro": str(shared / "zorro")} if pairs else {}
    path.write_text(STUDY.format(data=shared / "babylm_sample", tfds=tfds, pairs=zorro, axes=axes, prompts=prompts))
    return path


def child_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device per child: faster here
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def study_cmd(config: pathlib.Path, workdir: pathlib.Path, *flags: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "babyjax.study",
        f"--config={config}",
        f"--workdir={workdir}",
        "--no-progress",
        *flags,
    ]


def run_study(config, workdir, *flags, env=None, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run(
        study_cmd(config, workdir, *flags),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env or child_env(),
        timeout=900,
    )
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def setup(tmp_path_factory, shared_data):
    base = tmp_path_factory.mktemp("study")
    config = write_study(base / "two_seeds.py", shared_data, base / "tfds")
    reference = base / "reference"
    run_study(config, reference, "--parallel=2")
    return config, reference, base


def outputs(d: pathlib.Path) -> dict[str, bytes]:
    """Every science output of a study folder (not logs, done markers, timings)."""
    files = {}
    for pattern in (
        "scores/*/runs/*/surprisal.npy",
        "scores/*/tokens.csv",
        "scores/*/pairs.csv",
        "report/*.md",
        "report/*.csv",
        "report/*.csv.gz",
        "runs/*/generations.json",
        "tokenizer.model",
        "token_sample.npz",
        "runs/*/tokenizer.model",
    ):
        for p in sorted(d.glob(pattern)):  # the report names its inputs by path: the study folder's differs
            files[str(p.relative_to(d))] = p.read_bytes().replace(str(d).encode(), b"<study>")
    for p in sorted(d.glob("runs/*/checkpoints/series.json")):
        files[str(p.relative_to(d))] = json.dumps([(e["step"], e["params_hash"]) for e in json.loads(p.read_text())])
    return files


def _wait_then_kill(proc: subprocess.Popen, ready, what: str, timeout: float = 600, before=None) -> None:
    t0 = time.time()
    while not ready():
        assert proc.poll() is None, f"the study ended before {what}"
        assert time.time() - t0 < timeout, f"no {what} after {timeout} s"
        time.sleep(0.02)
    if before is not None:
        before()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _refused_while_running(config: pathlib.Path, work: pathlib.Path):
    def check() -> None:  # a second study command on the same folder is refused while the first works
        second = run_study(config, work, check=False)
        assert second.returncode == 2 and "another study command is working in" in second.stderr, second.stderr

    return check


def _scored_some(d: pathlib.Path) -> bool:
    for p in d.glob("scores/*/runs/*/checkpoints.csv"):
        try:
            if (pd.read_csv(p)["status"] == "done").any():
                return True
        except (ValueError, KeyError, pd.errors.EmptyDataError):
            pass
    return False


def test_a_study_killed_in_every_stage_ends_as_an_uninterrupted_one(setup):
    config, reference, base = setup
    work = base / "killed"
    stages = [  # (when to kill, what the kill interrupted)
        (
            lambda: any((work / "runs" / "seed0" / "checkpoints" / "resume").glob("*/commit_success.txt")),
            lambda: not (work / "done" / "train-seed1").exists(),
            "training",
        ),
        (lambda: _scored_some(work), lambda: not (work / "done" / "score-zorro").exists(), "scoring"),
        (lambda: (work / ".report.partial").is_dir(), lambda: not (work / "report").exists(), "the analysis"),
    ]
    for ready, interrupted, what in stages:
        proc = subprocess.Popen(
            study_cmd(config, work), cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_then_kill(proc, ready, what, before=_refused_while_running(config, work) if what == "training" else None)
        assert interrupted(), f"the kill came after {what}"
    run_study(config, work)
    ref, got = outputs(reference), outputs(work)
    assert sorted(ref) == sorted(got)
    assert len(ref) > 20 and "report/report.md" in ref
    differ = [k for k in ref if ref[k] != got[k]]
    assert not differ, differ
    # a finished study run again does nothing and says where the report is
    again = run_study(config, work)
    assert "study report written to" in again.stdout and "train" not in again.stderr


def test_the_runs_share_one_tokenizer_and_one_token_sample(setup):
    _, reference, _ = setup
    sha = hashlib.sha256((reference / "tokenizer.model").read_bytes()).hexdigest()
    for run in ("seed0", "seed1"):
        assert hashlib.sha256((reference / "runs" / run / "tokenizer.model").read_bytes()).hexdigest() == sha
        assert json.loads((reference / "runs" / run / "config.json").read_text())["seed"] == int(run[-1])
    with np.load(reference / "token_sample.npz") as z:
        assert json.loads(str(z["meta"]))["tokenizer_sha256"] == sha
    for out in ("tokens", "zorro"):
        meta = json.loads((reference / "scores" / out / "meta.json").read_text())
        assert meta["tokenizer_hash"] == sha and sorted(meta["runs"]) == ["seed0", "seed1"]
    s0 = np.load(reference / "scores" / "tokens" / "runs" / "seed0" / "surprisal.npy")
    s1 = np.load(reference / "scores" / "tokens" / "runs" / "seed1" / "surprisal.npy")
    assert s0.shape == s1.shape == (s0.shape[0], 200) and not np.array_equal(s0, s1)  # same tokens, other seeds


def test_the_report_holds_the_cross_run_sections(setup):
    _, reference, _ = setup
    md = (reference / "report" / "report.md").read_text()
    for heading in (
        "## Across runs",
        "### Spread of the measures over runs",
        "### Loss across runs",
        "### Minimal pairs across runs: `zorro` per field",
        "per paradigm",
    ):
        assert heading in md
    band = pd.read_csv(reference / "report" / "zorro_paradigm_across_runs.csv")
    assert (band["runs"] == 2).all() and (band["min"] <= band["mean"]).all() and (band["mean"] <= band["max"]).all()
    pairs = pd.read_csv(reference / "scores" / "zorro" / "pairs.csv")
    last = pairs[pairs["step"] == pairs["step"].max()]
    acc = last.groupby(["run", "paradigm"])["correct"].sum() / last.groupby(["run", "paradigm"])["n"].sum()
    got = band[band["step"] == band["step"].max()].set_index("paradigm")
    for paradigm, by_run in acc.groupby(level="paradigm"):
        assert got.loc[paradigm, "max"] == pytest.approx(by_run.max())
        assert got.loc[paradigm, "min"] == pytest.approx(by_run.min())
    # the spread of Chang et al.'s measures over the runs, from the scores themselves: a token's final surprisal and
    # within-run variability are the mean and population sd over its run's last 11 scored checkpoints
    per_run = {}
    for run in ("seed0", "seed1"):
        s = np.load(reference / "scores" / "tokens" / "runs" / run / "surprisal.npy").astype(np.float64)
        last = s[np.isfinite(s).any(1)][-11:]
        per_run[run] = {"final_surprisal": np.nanmean(last.mean(0)), "within_run_var": np.nanmean(last.std(0))}
    across = pd.read_csv(reference / "report" / "tokens_measures_across_runs.csv").set_index("measure")
    for measure in ("final_surprisal", "within_run_var"):
        values = [per_run[r][measure] for r in per_run]
        assert across.loc[measure, "runs"] == 2
        assert across.loc[measure, "min"] == pytest.approx(min(values), rel=1e-6)
        assert across.loc[measure, "max"] == pytest.approx(max(values), rel=1e-6)


def test_a_changed_study_config_refuses_the_old_workdir(setup, tmp_path, shared_data):
    config, reference, base = setup
    changed = write_study(tmp_path / "two_seeds.py", shared_data, base / "tfds", axes='over("seed", [0, 2])')
    r = run_study(changed, reference, check=False)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1 and "holds another study" in lines[0] and "use a new --workdir" in lines[0], r.stderr
    assert "(runs.seed1: only in the stored study)" in lines[0] and len(lines[0]) < 300


def test_spec_crosses_axes_in_order_and_refuses_bad_ones(tmp_path, shared_data):
    study = spec.load(
        str(
            write_study(
                tmp_path / "s.py",
                shared_data,
                tmp_path / "tfds",
                axes='axis("size", small=("model.d_model=32",), big=("model.d_model=64",)), over("seed", [0, 1, 2])',
            )
        )
    )
    runs = spec.expand(study)
    assert [r.name for r in runs] == [
        "small_seed0",
        "small_seed1",
        "small_seed2",
        "big_seed0",
        "big_seed1",
        "big_seed2",
    ]
    assert {r.condition() for r in runs} == {"small", "big"}
    c = spec.run_config(study, runs[4])
    assert (c.model.d_model, c.seed, c.train.num_steps) == (64, 1, 40)
    study.axes = (spec.axis("vocab", a=("tokenizer.vocab_size=256",)),)
    with pytest.raises(InputError, match="same corpus and tokenizer"):
        spec.expand(study)
    study.axes = (spec.over("optim.lrr", [1e-3]),)
    with pytest.raises(InputError, match=r"unknown config key in --config.optim.lrr=0.001 \(did you mean lr\?\)"):
        spec.run_config(study, spec.expand(study)[0])


# ---------------------------------------------------------------------------------------------- cluster launchers

FAKE_SBATCH = """#!/bin/bash
echo "sbatch $*" >> "{log}"
n=$(cat "{dir}/next_job" 2>/dev/null || echo 4242)
echo $((n + 1)) > "{dir}/next_job"
echo "$n"
"""
FAKE_SACCT = """#!/bin/bash
echo "sacct $*" >> "{log}"
cat "{dir}/sacct_out" 2>/dev/null || true
"""


@pytest.fixture
def fake_slurm_bin(tmp_path):
    d = tmp_path / "bin"
    d.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("sacct", FAKE_SACCT)):
        (d / name).write_text(text.format(log=tmp_path / "calls.log", dir=tmp_path))
        (d / name).chmod(0o755)
    return d


def test_slurm_launcher_submits_one_job_array_and_names_a_failed_run(setup, tmp_path, fake_slurm_bin):
    config, _, _ = setup
    work = tmp_path / "study"
    env = child_env(PATH=f"{fake_slurm_bin}{os.pathsep}{os.environ['PATH']}")
    r = run_study(
        config,
        work,
        "--launcher=slurm",
        "--no-wait",
        "--parallel=1",
        "--",
        "--partition=gpu",
        "--gpus-per-node=1",
        env=env,
    )
    assert "run the same command later" in r.stdout
    calls = (tmp_path / "calls.log").read_text().splitlines()
    sbatch = [c.split() for c in calls if c.startswith("sbatch")]
    assert len(sbatch) == 1
    argv = sbatch[0]
    assert "--array=0-1%1" in argv and "--partition=gpu" in argv and "--gpus-per-node=1" in argv
    assert argv[-3].endswith("launch/slurm/train.sbatch") and argv[-2].startswith("--array-args=")
    assert any(a.startswith("--output=") and a.endswith("%x-%A_%a.out") for a in argv)
    args_dir = pathlib.Path(argv[-2].split("=", 1)[1])
    study = Study(spec.load(str(config)), work, progress=False)
    for i, name in enumerate(["seed0", "seed1"]):
        assert (args_dir / f"{i}.args").read_text().splitlines() == study.train_command(name)[2:]
    # what a task runs: train.sbatch reads its own args file (dry run, as inside the allocation)
    task = subprocess.run(
        ["bash", str(ROOT / "launch/slurm/train.sbatch"), "--dry-run", f"--array-args={args_dir}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**env, "SLURM_ARRAY_TASK_ID": "1"},
    )
    assert task.returncode == 0, task.stderr
    srun = next(line for line in task.stdout.splitlines() if line.startswith("srun"))
    assert f"--workdir {work / 'runs' / 'seed1'}" in srun and "--config.seed=1" in srun
    # the cluster ran seed0 (still running) and seed1 failed: the study names it with its log
    (tmp_path / "sacct_out").write_text("4242_0|RUNNING|0:0\n4242_1|FAILED|1:0\n4242_1.batch|FAILED|1:0\n")
    r = run_study(config, work, "--launcher=slurm", "--no-wait", env=env, check=False)
    assert r.returncode == 2
    err = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(err) == 1 and "run seed1 failed on the cluster (job 4242_1, FAILED, exit 1:0)" in err[0]
    assert "logs/slurm/babyjax-study-study-4242_1.out" in err[0] and "--resubmit" in err[0]
    r = run_study(
        config,
        work,
        "--launcher=slurm",
        "--no-wait",
        "--resubmit",
        "--parallel=1",
        "--",
        "--partition=gpu",
        "--gpus-per-node=1",
        env=env,
    )
    again = [c.split() for c in (tmp_path / "calls.log").read_text().splitlines() if c.startswith("sbatch")]
    assert len(again) == 2 and "--array=0-0%1" in again[1] and "--gpus-per-node=1" in again[1]
    assert (pathlib.Path(again[1][-2].split("=", 1)[1]) / "0.args").read_text().splitlines() == study.train_command(
        "seed1"
    )[2:]


def test_tpu_launcher_babysits_one_slice_per_run_and_names_a_failed_one(setup, tmp_path):
    from tests.test_launch_scripts import FAKE_GCLOUD

    config, _, _ = setup
    fake = tmp_path / "gcloud_dir"
    (fake / "home").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD.format(python=sys.executable))
    (bin_dir / "gcloud").chmod(0o755)
    (fake / "ssh_fails_on").write_text("--config.seed=0")  # the set-ups work; training fails on seed0's "slice"
    (fake / "ssh_slow_on").write_text("--config.seed=1")  # and goes on for a while on seed1's, then gives up (exit 0)
    env = child_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_GCLOUD_DIR=str(fake))
    work = tmp_path / "study"
    r = run_study(
        config,
        work,
        "--launcher=tpu",
        "--parallel=2",
        "--",
        "--zone=us-central2-b",
        "--accelerator-type=v4-8",
        "--max-restarts=0",
        "--backoff=0",
        env=env,
        check=False,
    )
    assert r.returncode == 2, r.stderr
    err = [ln for ln in r.stderr.splitlines() if "error:" in ln and "waiting for the other runs" not in ln]
    assert len(err) == 1, r.stderr
    for n, rc in (("seed0", 1), ("seed1", 0)):  # seed1's babysitter ran to its end: not killed with the study
        assert f"run {n} failed on TPU slice bj-study-{n} (babysitter exit {rc}" in err[0], err[0]
        assert str(work / "logs" / f"tpu-{n}.log") in err[0], err[0]
    assert "run seed0 failed" in r.stderr.split("waiting for the other runs to end first")[0]  # said at once
    calls = [json.loads(line) for line in (fake / "calls.jsonl").read_text().splitlines()]
    ssh = [c for c in calls if "ssh" in c and any("launch/train.py" in a for a in c)]
    assert {c[c.index("ssh") + 1] for c in ssh} == {"bj-study-seed0", "bj-study-seed1"}  # one slice per run
    for c in ssh:
        run = c[c.index("ssh") + 1].rsplit("-", 1)[1]
        remote = next(a for a in c if a.startswith("--command="))
        assert f"--workdir {work / 'runs' / run}" in remote and f"--config.seed={run[-1]}" in remote
        assert f"--config.tokenizer.path={work / 'tokenizer.model'}" in remote


# ---------------------------------------------------------------------------------------------- across sizes (Xia)


def _synthetic_output(rates: dict[str, float]):
    """A tokens output of one run per condition: 4 tokens fall, 2 rise and 2 stay flat as training goes on."""
    from babyjax.score.store import ScoreOutput

    t = np.arange(12, dtype=np.float64)
    surprisal, checkpoints = {}, {}
    for run, rate in rates.items():
        s = np.concatenate(
            [
                np.repeat((8 - rate * t)[:, None], 4, 1),
                np.repeat((2 + 0.2 * rate * t)[:, None], 2, 1),
                np.full((12, 2), 5.0),
            ],
            1,
        )
        surprisal[run] = s
        checkpoints[run] = pd.DataFrame({"step": (t + 1) * 10, "tokens_seen": (t + 1) * 1e3, "words_seen": t})
    tokens = pd.DataFrame({"index": np.arange(8), "token": list("abcdefgh")})
    return ScoreOutput(
        path=pathlib.Path("tokens"),
        meta={"kind": "tokens"},
        tokens=tokens,
        surprisal=surprisal,
        checkpoints=checkpoints,
        pairs=None,
    )


def test_xia_classes_at_matched_perplexity_use_the_shared_range(tmp_path):
    from babyjax.analysis import crossrun

    so = _synthetic_output({"small_seed0": 0.4, "big_seed0": 0.6})
    notes: list[str] = []
    md = "\n".join(
        crossrun.xia_matched(so, {"small_seed0": "small", "big_seed0": "big"}, tmp_path, notes, xia_p=(0.0, 0.5))
    )
    per_run = pd.read_csv(tmp_path / "tokens_xia_matched_per_run.csv").set_index(["p", "run"])
    ppl = {r: np.exp2(s.mean(1)) for r, s in so.surprisal.items()}
    hi, lo = min(p[0] for p in ppl.values()), max(p.min() for p in ppl.values())
    for p_start in (0.0, 0.5):  # the checkpoints from hi^(1-p) lo^p down to lo: a range every run passes through
        top = hi ** (1 - p_start) * lo**p_start
        for r, p in ppl.items():
            row = per_run.loc[(p_start, r)]
            assert row["checkpoints"] == ((p <= top * (1 + 1e-9)) & (p >= lo * (1 - 1e-9))).sum() >= 3
            assert (row["downward"], row["upward"], row["stagnated"]) == (0.5, 0.25, 0.25)
            assert row["from_ppl"] == pytest.approx(top) and row["to_ppl"] == pytest.approx(lo)
    assert f"[{lo:.4g}, {hi:.4g}]" in md and (tmp_path / "tokens_xia_matched.png").stat().st_size > 10_000
    assert not notes


def test_a_scale_study_compares_sizes_at_matched_perplexity(tmp_path, shared_data):
    axes = 'axis("size", d16=("model.d_model=16", "model.num_heads=2"), d64=("model.d_model=64",)), over("seed", [0])'
    config = write_study(tmp_path / "scale.py", shared_data, tmp_path / "tfds", axes=axes, pairs=False, prompts=0)
    config.write_text(config.read_text().replace('xia_p = "0.3"', 'xia_p = "0,0.3"'))  # 40 steps: a wide window
    run_study(config, tmp_path / "scale")
    md = (tmp_path / "scale" / "report" / "report.md").read_text()
    assert "### Trajectory classes at matched validation perplexity (Xia et al. 2023), `tokens`" in md
    table = md.split("Shares per condition:")[1]
    assert "| p | condition | runs | from / to ppl | upward | downward | stagnated | other |" in table
    for size in ("d16", "d64"):
        assert f"| 0 | {size} | 1 |" in table
    assert (tmp_path / "scale" / "report" / "tokens_xia_matched.png").exists()
    per_run = pd.read_csv(tmp_path / "scale" / "report" / "tokens_xia_matched_per_run.csv")
    assert sorted(per_run[per_run["p"] == 0]["run"]) == ["d16_seed0", "d64_seed0"]
    assert (per_run["checkpoints"] >= 3).all()
    assert np.allclose(per_run[["upward", "downward", "stagnated", "other"]].sum(axis=1), 1.0)


def test_an_objective_axis_scores_each_objective_into_its_own_output(tmp_path, shared_data):
    axes = (
        'axis("arch", gpt=(), gptbert=("model.style=ltg_bert", "objective.kind=hybrid", '
        '"objective.causal_share=0.25")), over("seed", [0, 1])'
    )
    study = Study(
        spec.load(str(write_study(tmp_path / "s.py", shared_data, tmp_path / "tfds", axes=axes))),
        tmp_path / "w",
        progress=False,
    )
    jobs = {out: runs for out, runs, _ in study.score_jobs()}
    assert jobs == {
        "tokens-causal": ["gpt_seed0", "gpt_seed1"],
        "tokens-hybrid": ["gptbert_seed0", "gptbert_seed1"],
        "zorro-causal": ["gpt_seed0", "gpt_seed1"],
        "zorro-hybrid": ["gptbert_seed0", "gptbert_seed1"],
    }
    assert {r.name: r.condition() for r in study.runs} == {
        "gpt_seed0": "gpt",
        "gpt_seed1": "gpt",
        "gptbert_seed0": "gptbert",
        "gptbert_seed1": "gptbert",
    }
    cmd = study.train_command("gptbert_seed1")
    assert cmd[1:5] == ["launch/train.py", "--config", "configs/tiny.py", "--workdir"]
    assert (
        "--config.objective.kind=hybrid" in cmd
        and cmd[-2] == f"--config.tokenizer.path={tmp_path / 'w' / 'tokenizer.model'}"
    )


def test_a_bucket_url_as_the_study_folder_is_refused_in_one_line(tmp_path, shared_data, monkeypatch):
    study = spec.load(str(write_study(tmp_path / "s.py", shared_data, tmp_path / "tfds")))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"^--workdir gs://b/studies/x: a study folder is a file-system path") as e:
        Study(study, "gs://b/studies/x")
    assert "\n" not in str(e.value) and "gcsfuse" in str(e.value)
    assert not (tmp_path / "gs:").exists()  # nothing made in the current folder
    (tmp_path / "a_file").write_text("mine")
    with pytest.raises(InputError, match="a_file is a file: give a folder for the study"):
        Study(study, tmp_path / "a_file")


def test_an_evaluation_set_that_does_not_exist_is_refused_before_training(tmp_path, shared_data):
    study = spec.load(str(write_study(tmp_path / "s.py", shared_data, tmp_path / "tfds")))
    study.pairs["blimp_typo"] = str(tmp_path / "no_such_blimp")
    with pytest.raises(InputError, match=r"study.pairs.blimp_typo: .*no_such_blimp does not exist: fix the study"):
        Study(study, tmp_path / "study")
    assert not (tmp_path / "study").exists()


def test_a_fast_babylm2025_evaluation_reads_the_organisers_fast_sets(tmp_path, shared_data, caplog):
    study = spec.load(str(write_study(tmp_path / "s.py", shared_data, tmp_path / "tfds", pairs=False)))
    release = shared_data / "babylm_eval_2025"
    study.babylm2025.update({"sets": "fast", "dir": str(release)})
    jobs = {out: config for out, _, config in Study(study, tmp_path / "w", progress=False).score_jobs()}
    fast = jobs["babylm2025_fast"]
    assert fast.kind == "babylm2025" and fast.limit == 0  # the released files whole, not the first rows
    assert [pathlib.Path(e).name for e in fast.eval] == [
        "blimp_fast",
        "supplement_fast",
        "ewok_fast.zip",
        "entity_tracking_fast",
        "wug_adj_nominalization",
        "wug_past_tense",
        "reading",
    ]
    assert sum(a.startswith("--eval=") for a in fast.to_argv()) == 7  # what the score child is given
    # the full sets: EWoK full and COMPS come from the user's download, left out with a warning when absent
    study.babylm2025.sets = "full"
    with caplog.at_level("WARNING", logger="babyjax"):
        jobs = {out: config for out, _, config in Study(study, tmp_path / "w2", progress=False).score_jobs()}
    assert "['ewok_filtered', 'comps'] not in" in caplog.text
    assert [pathlib.Path(e).name for e in jobs["babylm2025_full"].eval][-2:] == ["reading", "aoa"]
    study.babylm2025.dir = str(tmp_path)
    with pytest.raises(InputError, match=r"babylm2025.dir=.* lacks blimp_filtered: give the release's evaluation"):
        Study(study, tmp_path / "w3")
    study.babylm2025.sets = "quick"
    with pytest.raises(InputError, match=r"babylm2025.sets='quick': use 'fast'"):
        Study(study, tmp_path / "w3")
    assert not (tmp_path / "w3").exists()


def test_a_study_fine_tunes_every_run_with_the_options_it_names(tmp_path, shared_data):
    study = spec.load(str(write_study(tmp_path / "s.py", shared_data, tmp_path / "tfds", pairs=False)))
    glue = shared_data / "babylm_eval_2025" / "glue_filtered"
    study.finetune.options = (f"data_dir={glue}", "tasks=rte,wsc", "every=5", "seeds=42,43")
    s = Study(study, tmp_path / "w", progress=False)
    argv = s.finetune_argv()
    assert [a for a in argv if a.startswith("--run=")] == [f"--run={r.name}={s.run_dir(r.name)}" for r in s.runs]
    assert argv[len(s.runs) :] == [
        f"--out={tmp_path / 'w' / 'finetune'}", f"--data_dir={glue}", "--tasks=rte,wsc", "--every=5", "--seeds=42,43"
    ]  # fmt: skip
    study.finetune.options = ("data_dir=/nowhere", "tasks=rte")
    with pytest.raises(InputError, match=r"/nowhere/rte.train.jsonl does not exist: set data_dir="):
        Study(study, tmp_path / "w2")
    study.finetune.options = (f"data_dir={glue}", "out=/elsewhere")
    with pytest.raises(InputError, match=r"'out=/elsewhere' is not key=value of a babyjax.finetune flag"):
        Study(study, tmp_path / "w3")
    assert not (tmp_path / "w2").exists() and not (tmp_path / "w3").exists()
    study.finetune.options = ()
    assert Study(study, tmp_path / "w4", progress=False).finetune_argv() == []


def test_an_imported_series_is_scored_beside_the_runs_into_its_own_folders(tmp_path, shared_data):
    """study.imported: each series scored on the pairs and text sets into folders of its own (its tokenizer is its
    own), a condition of its own in runs.json; a missing path or a name of a trained run refused before training."""
    loaded = spec.load(str(write_study(tmp_path / "s.py", shared_data, tmp_path / "tfds")))
    (tmp_path / "neox").mkdir()
    loaded.imported = {"neox": f"hf:{tmp_path / 'neox'}"}
    study = Study(loaded, tmp_path / "w", progress=False)
    jobs = {out: (runs, config) for out, runs, config in study.score_jobs()}
    assert {out: runs for out, (runs, _) in jobs.items()} == {
        "tokens": ["seed0", "seed1"],
        "zorro": ["seed0", "seed1"],
        "zorro-neox": ["neox"],
    }
    assert [str(r) for r in jobs["zorro-neox"][1].run] == [f"neox=hf:{tmp_path / 'neox'}"]
    with study.locked():
        pass
    runs = json.loads((tmp_path / "w" / "runs.json").read_text())
    assert runs["neox"]["condition"] == "neox" and runs["seed0"]["condition"] == "all"
    loaded.imported = {"seed0": f"hf:{tmp_path / 'neox'}"}
    with pytest.raises(InputError, match=r"^study.imported names \['seed0'\] are names of the study's runs"):
        Study(loaded, tmp_path / "w2", progress=False)
    loaded.imported = {"other": str(tmp_path / "nowhere")}
    with pytest.raises(InputError, match=r"^study.imported.other: .*nowhere does not exist"):
        Study(loaded, tmp_path / "w3", progress=False)

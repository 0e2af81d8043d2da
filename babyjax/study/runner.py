"""A study's stages, each resumable and idempotent: pin -> tokenizer -> token sample -> train (a launcher) -> score ->
generate -> analyze. The study folder:

    <dir>/study.json              the study pinned: its config and every run's resolved config (a changed study
                                  config is refused)
    <dir>/tokenizer.model         one SentencePiece model, shared by every run
    <dir>/token_sample.npz        one tokens-in-context sample, scored for every run
    <dir>/runs/<run>/             the training runs (babyjax.checkpoints.run.RunDir)
    <dir>/scores/<eval>[-<objective>]/   score outputs (python -m babyjax.score), one per evaluation set
    <dir>/report/                 report.md, figures and CSVs (python -m babyjax.analyze), renamed into place whole
    <dir>/logs/<stage>-<what>.log every child command's output
    <dir>/done/<stage>-<what>     a stage finished (its outputs are whole)

Every stage but the tokenizer and the sample runs as a child command (the same ones a user runs by hand), killed
with the study when the study is killed; a stage that was interrupted is simply run again, and the commands
themselves resume (training from its resume checkpoint, scoring from its done checkpoints).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import fcntl
import json
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

import ml_collections
from tqdm.auto import tqdm

from babyjax import paths
from babyjax.checkpoints.run import RunDir, first_difference
from babyjax.errors import DiskFullError, InputError, TrainingError, UserError, disk_full, writing_to
from babyjax.finetune.config import DEFAULT_DATA, FinetuneConfig
from babyjax.finetune.tasks import RECIPE_TASKS
from babyjax.model import objectives
from babyjax.score.config import HF_PREFIX, RunSpec, ScoreConfig
from babyjax.study import spec as spec_lib

log = logging.getLogger("babyjax")


class StageError(UserError, RuntimeError):
    """A child command of the study failed."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def start_child(cmd: Sequence[str], log_path: pathlib.Path, env: dict | None = None) -> subprocess.Popen:
    """A child command with its output appended to `log_path`; it is killed when the study process dies."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as f:
        f.write(f"\n$ {' '.join(map(str, cmd))}\n".encode())
        f.flush()
        return subprocess.Popen(
            [str(c) for c in cmd],
            stdout=f,
            stderr=subprocess.STDOUT,
            cwd=spec_lib.ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )


def error_line(text: str) -> str:
    """A command's one-line error in its output: the last `error:` line, else the last line."""
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    return (errors or lines or [""])[-1].strip()


def last_error(log_path: pathlib.Path) -> str:
    """`error_line` of a failed child's log ('' when it cannot be read). A child that could not even write its error
    line, the log's disk having no room left, is said to have met a full disk, in the words a child uses for it."""
    try:
        line = error_line(log_path.read_text(errors="replace"))
    except OSError:
        line = ""
    if disk_full(Exception(line)) is None and _no_room(log_path.parent):
        line = f"error: {DiskFullError(str(log_path.parent.parent), os.strerror(errno.ENOSPC))}"
    return line


def _no_room(folder: pathlib.Path) -> bool:
    """Whether the disk holding `folder` has less than 1 MiB left for this user."""
    try:
        disk = os.statvfs(folder)
    except OSError:
        return False
    return disk.f_bavail * disk.f_frsize < 1 << 20


def imported_runs(study: ml_collections.ConfigDict) -> dict[str, RunSpec]:
    """The study's imported series (study key `imported`: name -> hf:PATH, or a bare PATH) as score runs."""
    out = {}
    for name, source in sorted(study.get("imported", {}).items()):
        source = str(source) if str(source).startswith(HF_PREFIX) else f"{HF_PREFIX}{source}"
        out[name] = RunSpec.parse(f"{name}={source}")
    return out


def _check_eval_paths(study: ml_collections.ConfigDict) -> None:
    """Every evaluation set and imported series the study names exists, before any run trains (a wrong path found
    after training could not be mended: the study folder is pinned to its config)."""
    for name, spec in imported_runs(study).items():
        if not spec.workdir.exists():
            raise InputError(
                f"study.imported.{name}: {spec.workdir} does not exist: fix the study config (nothing was trained)"
            )
    for group in ("pairs", "text"):
        for name, path in study[group].items():
            if "://" not in str(path) and not os.path.exists(str(path)):
                raise InputError(
                    f"study.{group}.{name}: {path} does not exist: fix the study config (nothing was trained)"
                )


class Study:
    """One study folder and the stages that fill it."""

    def __init__(self, study: ml_collections.ConfigDict, workdir: paths.PathLike, *, progress: bool = True):
        if "://" in os.fspath(workdir):
            raise InputError(
                f"--workdir {workdir}: a study folder is a file-system path (it is locked and its runs "
                "are followed there); for SLURM or TPU runs, put it on storage every node mounts at the "
                "same path (NFS, Filestore, a gcsfuse mount of the bucket)"
            )
        self.study = study
        _check_eval_paths(study)
        if absent := spec_lib.babylm2025_folders(study)[1]:
            log.warning(
                "BabyLM 2025 %s sets: %s not in %s, left out", study.babylm2025.sets, absent, study.babylm2025.dir
            )
        self.dir = pathlib.Path(os.path.abspath(os.fspath(workdir)))
        if self.dir.exists() and not self.dir.is_dir():
            raise InputError(f"--workdir {self.dir} is a file: give a folder for the study")
        self.runs = spec_lib.expand(study)
        self.imported = imported_runs(study)
        if clash := sorted(set(self.imported) & {r.name for r in self.runs}):
            raise InputError(f"study.imported names {clash} are names of the study's runs: give them other names")
        self.progress = progress
        self.finetune_argv()  # a bad fine-tuning option is refused before anything trains
        self.tokenizer_path = self.dir / "tokenizer.model"
        self.sample_path = self.dir / "token_sample.npz"
        self.configs = {r.name: spec_lib.run_config(study, r) for r in self.runs}

    # -- layout ----------------------------------------------------------------------------------------------------
    def run_dir(self, name: str) -> pathlib.Path:
        return self.dir / "runs" / name

    def log_path(self, stage: str, what: str) -> pathlib.Path:
        return self.dir / "logs" / f"{stage}-{what}.log"

    def done(self, stage: str, what: str) -> bool:
        return (self.dir / "done" / f"{stage}-{what}").exists()

    def mark_done(self, stage: str, what: str) -> None:
        paths.write_atomic(self.dir / "done" / f"{stage}-{what}", time.strftime("%Y-%m-%d %H:%M:%S\n"))

    def extra_overrides(self) -> tuple[str, ...]:
        """What the study sets in every run: the shared tokenizer; no progress bar (the study draws its own)."""
        return (f"tokenizer.path={self.tokenizer_path}", "train.progress_bar=False")

    # -- pin and lock ------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self):
        """The study folder, pinned to this study config and locked against a second study command."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise InputError(
                    f"another study command is working in {self.dir}: wait for it, or stop it first"
                ) from None
            with writing_to(self.dir):
                self.pin()
                yield self

    def pin(self) -> None:
        """Write study.json at the first start; refuse a study config whose runs or evaluations differ."""
        current = spec_lib.fingerprint(self.study, self.configs)
        path = self.dir / "study.json"
        if path.exists():
            try:
                stored = json.loads(path.read_text())
            except ValueError:
                raise InputError(f"{path} is damaged: it must be a babyjax study.json; use a new --workdir") from None
            if stored.get("sha256") != current["sha256"]:
                why = first_difference(stored, current, ignore=("sha256",), what="study")
                raise InputError(
                    f"{self.dir} holds another study ({why}): use a new --workdir, or the study config it was made with"
                )
            return
        if any(not p.name.startswith(".") and p.name != "runs.json" for p in self.dir.iterdir()):
            raise InputError(f"{self.dir} is not empty and holds no study.json: give a new or empty --workdir")
        paths.write_atomic(
            self.dir / "runs.json",
            json.dumps(
                {
                    **{
                        r.name: {"labels": r.labels, "condition": r.condition(), "overrides": list(r.overrides)}
                        for r in self.runs
                    },
                    **{  # an imported series is a condition of its own
                        n: {"labels": {"imported": n}, "condition": n, "overrides": [], "source": spec.source}
                        for n, spec in self.imported.items()
                    },
                },
                indent=1,
            ),
        )
        paths.write_atomic(path, json.dumps(current, indent=1, sort_keys=True))  # last: the study is pinned

    # -- shared inputs -------------------------------------------------------------------------------------------------
    def shared_inputs(self) -> None:
        """The one tokenizer (trained on the first run's corpus) and the one token sample, in-process."""
        from babyjax.data import babylm, evalsets
        from babyjax.data import tokenizer as tokenizer_lib

        first = self.configs[self.runs[0].name]
        if not self.tokenizer_path.exists() or (self.study.tokens.num_sequences and not self.sample_path.exists()):
            log.info("study: preparing the corpus and the shared tokenizer")
            train_split = babylm.prepare(first.data)["train"]
            tok = tokenizer_lib.get_tokenizer(first.tokenizer, train_split, self.dir)
            t = self.study.tokens
            if t.num_sequences and not self.sample_path.exists():
                evalsets.make_token_sample(
                    first.data,
                    tok,
                    self.sample_path,
                    split=t.split,
                    seed=t.seed,
                    num_sequences=t.num_sequences,
                    seq_len=t.seq_len,
                    num_positions=t.num_positions,
                )
                log.info("study: token sample of %d x %d targets written", t.num_sequences, t.num_positions)

    # -- training ------------------------------------------------------------------------------------------------------
    def train_command(self, name: str) -> list[str]:
        """`python launch/train.py --config BASE --workdir RUN --config.key=value ...` (run from the checkout)."""
        argv = spec_lib.run_argv(self.study, next(r for r in self.runs if r.name == name), self.extra_overrides())
        return [sys.executable, "launch/train.py", *argv[:2], "--workdir", str(self.run_dir(name)), *argv[2:]]

    def finished(self, name: str) -> bool:
        """Whether a run's series holds its last step (train.num_steps)."""
        try:
            index = RunDir(self.run_dir(name)).series_index()
        except UserError:
            return False
        steps = int(self.configs[name].train.num_steps) or RunDir(self.run_dir(name)).num_steps()
        return bool(index) and steps > 0 and int(index[-1]["step"]) >= steps

    def step_of(self, name: str) -> int:
        """The last step a run logged (its metrics.jsonl), for the progress bar."""
        path = self.run_dir(name) / "metrics.jsonl"
        try:
            with open(path, "rb") as f:
                f.seek(max(0, f.seek(0, 2) - 4096))
                lines = f.read().decode(errors="replace").splitlines()
            return max(int(json.loads(ln).get("step", 0)) for ln in lines[1:] or lines if ln.startswith("{"))
        except (OSError, ValueError):
            return 0

    def pending_runs(self) -> list[str]:
        return [r.name for r in self.runs if not (self.done("train", r.name) and self.finished(r.name))]

    # -- scoring, generation, analysis ---------------------------------------------------------------------------------
    def score_jobs(self) -> list[tuple[str, list[str], ScoreConfig]]:
        """(output name, its runs, its score config) for every evaluation set and objective."""
        by_kind: dict[str, list[str]] = {}
        for r in self.runs:
            by_kind.setdefault(objectives.features(self.configs[r.name]).kind, []).append(r.name)
        evals: list[tuple[str, dict]] = []
        if self.study.tokens.num_sequences:
            evals.append(("tokens", {"kind": "tokens", "eval": self.sample_path}))
        for name, path in sorted(self.study.pairs.items()):
            evals.append((name, {"kind": "pairs", "eval": path, "limit": self.study.pairs_limit}))
        for name, path in sorted(self.study.text.items()):
            evals.append((name, {"kind": "text", "eval": path}))
        if folders := spec_lib.babylm2025_folders(self.study)[0]:
            evals.append((f"babylm2025_{self.study.babylm2025.sets}", {"kind": "babylm2025", "eval": folders}))
        jobs = []
        for ev, options in evals:
            for kind, names in sorted(by_kind.items()):
                out = ev if len(by_kind) == 1 else f"{ev}-{kind}"
                runs = [RunSpec(n, self.run_dir(n)) for n in names]
                jobs.append((out, names, ScoreConfig(run=runs, out=self.dir / "scores" / out, **options)))
            for name, spec in self.imported.items() if options["kind"] in ("pairs", "text") else ():
                out = f"{ev}-{name}"  # an imported series' own folder: its tokenizer is its own
                jobs.append((out, [name], ScoreConfig(run=(spec,), out=self.dir / "scores" / out, **options)))
        return jobs

    def finetune_argv(self) -> list[str]:
        """The flags of the fine-tuning job over every run (study key `finetune.options`); [] when none is asked."""
        options = [str(o) for o in self.study.finetune.options]
        if not options:
            return []
        fields = {f.name for f in dataclasses.fields(FinetuneConfig)} - {"run", "out"}
        for option in options:
            key = option.split("=", 1)[0]
            if key not in fields:
                raise InputError(
                    f"study finetune.options: {option!r} is not key=value of a babyjax.finetune flag the study may "
                    f"set ({', '.join(sorted(fields))})"
                )
        given = dict(o.split("=", 1) for o in options)
        folder = pathlib.Path(given.get("data_dir", DEFAULT_DATA))
        for task in given.get("tasks", ",".join(RECIPE_TASKS)).split(","):
            for split in ("train", "valid"):
                if not (folder / f"{task}.{split}.jsonl").is_file():
                    raise InputError(
                        f"study finetune.options: {folder / f'{task}.{split}.jsonl'} does not exist: set data_dir= "
                        "to the glue_filtered folder of the BabyLM evaluation data, or choose tasks= it holds"
                    )
        runs = [f"--run={r.name}={self.run_dir(r.name)}" for r in self.runs]
        runs += [f"--run={spec}" for spec in self.imported.values()]
        return [*runs, f"--out={self.dir / 'finetune'}", *(f"--{o}" for o in options)]

    def finetune(self) -> None:
        argv = self.finetune_argv()
        if not argv or self.done("finetune", "all"):
            return
        with tqdm(total=1, desc="finetune", unit="job", disable=not self.progress) as bar:
            self.child([sys.executable, "-m", "babyjax.finetune", *argv], "finetune", "all", bar)
            bar.update(1)
        self.mark_done("finetune", "all")

    def child(self, cmd: Sequence[str], stage: str, what: str, bar: tqdm | None = None) -> None:
        """Run one child command to its end; a failure is one line naming the stage and the log."""
        log_path = self.log_path(stage, what)
        proc = start_child(cmd, log_path)
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                if bar is not None:
                    bar.refresh()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode:
            raise StageError(f"{stage} {what} failed (exit {proc.returncode}): {last_error(log_path)}; see {log_path}")

    def score(self) -> None:
        jobs = [j for j in self.score_jobs() if not self.done("score", j[0])]
        with tqdm(total=len(jobs), desc="score", unit="output", disable=not self.progress or not jobs) as bar:
            for out, runs, config in jobs:
                bar.set_postfix_str(f"{out}: {', '.join(runs)}")
                self.child([sys.executable, "-m", "babyjax.score", *config.to_argv()], "score", out, bar)
                self.mark_done("score", out)
                bar.update(1)

    def generate(self) -> None:
        n = int(self.study.generate.heldout_prompts)
        names = [
            r.name
            for r in self.runs
            if n and not self.done("generate", r.name) and objectives.features(self.configs[r.name]).causal_capable
        ]
        with tqdm(total=len(names), desc="generate", unit="run", disable=not self.progress or not names) as bar:
            for name in names:
                bar.set_postfix_str(name)
                self.child(
                    [
                        sys.executable,
                        "-m",
                        "babyjax.generate",
                        f"--workdir={self.run_dir(name)}",
                        f"--heldout_prompts={n}",
                        f"--max_new_tokens={self.study.generate.max_new_tokens}",
                    ],
                    "generate",
                    name,
                    bar,
                )
                self.mark_done("generate", name)
                bar.update(1)

    def analyze(self) -> pathlib.Path:
        """The report, written into a temporary folder and renamed into place whole."""
        report = self.dir / "report"
        if self.done("analyze", "report") and (report / "report.md").exists():
            return report / "report.md"
        tmp = self.dir / ".report.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        a = self.study.analysis
        cmd = [
            sys.executable,
            "-m",
            "babyjax.analyze",
            *[str(self.dir / "scores" / j[0]) for j in self.score_jobs()],
            *([str(self.dir / "finetune")] if self.finetune_argv() else []),
            f"--runs-dir={self.dir / 'runs'}",
            f"--study={self.dir / 'runs.json'}",
            f"--out={tmp}",
            f"--xia-p={a.xia_p}",
            f"--x-axis={a.x_axis}",
            *([f"--aoa-words={a.aoa_words}"] if a.aoa_words else []),
            *([] if self.progress else ["--noprogress"]),
        ]
        with tqdm(total=1, desc="analyze", unit="report", disable=not self.progress) as bar:
            self.child(cmd, "analyze", "report", bar)
            shutil.rmtree(report, ignore_errors=True)
            os.rename(tmp, report)
            bar.update(1)
        self.mark_done("analyze", "report")
        return report / "report.md"


def check_trained(study: Study) -> None:
    """Every run finished (called before scoring)."""
    missing = [n for n in (r.name for r in study.runs) if not study.finished(n)]
    if missing:
        raise TrainingError(f"runs {', '.join(missing)} have not finished training: run the study command again")

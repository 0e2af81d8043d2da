"""Where a study's runs train: here (one after the other, or several at once), on a SLURM cluster as one job array
(launch/slurm/submit.sh --array-args), or on TPU VM slices (launch/tpu/babysit.sh, one slice per run). Every launcher
runs the same `launch/train.py` command line per run (Study.train_command); the study waits for the runs, or, with
`wait=False`, returns and is run again later. A run that failed is reported by name with its log.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import subprocess
import time
from collections.abc import Sequence

from tqdm.auto import tqdm

from babyjax import paths
from babyjax.errors import InputError
from babyjax.study import spec as spec_lib
from babyjax.study.runner import StageError, Study, error_line, last_error, start_child

log = logging.getLogger("babyjax")
LAUNCHERS = ("local", "slurm", "tpu")
# sacct states after which a task no longer runs (a requeued task shows REQUEUED/PENDING instead)
_ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"}


@dataclasses.dataclass
class LaunchOptions:
    """The launcher and its options (python -m babyjax.study flags)."""

    launcher: str = "local"
    parallel: int = 1  # local: runs at once; slurm: array tasks at once (0 = no limit); tpu: slices at once
    devices_per_run: int = 0  # local with parallel > 1 on GPUs: CUDA devices each run gets (0 = all)
    wait: bool = True
    resubmit: bool = False  # slurm/tpu: launch again the runs that failed
    poll_s: float = 30.0
    extra: tuple[str, ...] = ()  # slurm: submit.sh flags; tpu: babysit.sh flags (--zone, --accelerator-type, ...)


def train_runs(study: Study, opts: LaunchOptions) -> bool:
    """Train the runs not yet finished; True when all are, False when they go on elsewhere (wait=False)."""
    pending = study.pending_runs()
    if not pending:
        return True
    if opts.launcher not in LAUNCHERS:
        raise InputError(f"unknown --launcher={opts.launcher!r}: use one of {', '.join(LAUNCHERS)}")
    if opts.launcher == "local":
        _local(study, pending, opts)
        return True
    return _Cluster(study, opts).train(pending)


def _local(study: Study, pending: Sequence[str], opts: LaunchOptions) -> None:
    """Runs in child processes here, `parallel` at a time; the bar counts steps over all runs."""
    total = sum(int(study.configs[n].train.num_steps) for n in pending)
    queue, running = list(pending), {}
    with tqdm(total=total, desc="train", unit="step", disable=not study.progress) as bar:
        slots = list(range(max(1, opts.parallel)))
        while queue or running:
            while queue and slots:
                name, slot = queue.pop(0), slots.pop(0)
                env = {}
                if opts.devices_per_run and opts.parallel > 1:
                    k = opts.devices_per_run
                    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(slot * k + i) for i in range(k))
                running[name] = (start_child(study.train_command(name), study.log_path("train", name), env), slot)
            time.sleep(0.5)
            bar.n = sum(min(study.step_of(n), int(study.configs[n].train.num_steps)) for n in pending)
            bar.set_postfix_str(", ".join(running), refresh=True)
            for name, (proc, slot) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[name]
                slots.append(slot)
                if proc.returncode or not study.finished(name):
                    for other, _ in running.values():
                        other.kill()
                    path = study.log_path("train", name)
                    raise StageError(
                        f"training run {name} failed (exit {proc.returncode}): {last_error(path)}; see {path}"
                    )
                study.mark_done("train", name)


class _Cluster:
    """SLURM and TPU: launch each pending run once, remember what was launched (launch/<launcher>.json), then
    follow the runs through their run folders until they finish or fail."""

    def __init__(self, study: Study, opts: LaunchOptions):
        self.study, self.opts = study, opts
        self.state_path = study.dir / "launch" / f"{opts.launcher}.json"
        self.state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {"runs": {}}
        self.procs: dict[str, subprocess.Popen] = {}  # TPU: the babysitters, this command's children
        self.warned: set[str] = set()  # TPU: failed runs already reported while their siblings go on

    def save(self) -> None:
        paths.write_atomic(self.state_path, json.dumps(self.state, indent=1, sort_keys=True))

    def train(self, pending: Sequence[str]) -> bool:
        if self.opts.launcher == "tpu":  # the babysitters are this command's children: start the missing ones
            self._start_tpu(pending)
        else:
            failed = self.failures(pending)
            if failed and not self.opts.resubmit:
                raise StageError(
                    "; ".join(failed.values()) + " -- fix the cause, then run the study again with --resubmit"
                )
            fresh = [n for n in pending if n not in self.state["runs"] or n in failed]
            if fresh:
                self._submit_slurm(fresh)
        while True:
            waiting = [n for n in pending if not self.study.finished(n)]
            for n in set(pending) - set(waiting):
                self.study.mark_done("train", n)
            if not waiting:
                return True
            failed = self.failures(waiting)
            if failed and self._others_running(failed):
                for n in set(failed) - self.warned:
                    log.warning("study: %s; waiting for the other runs to end first", failed[n])
                self.warned |= set(failed)
            elif failed:
                hint = "run the study again with --resubmit" if self.opts.launcher == "slurm" else "run it again"
                raise StageError("; ".join(failed.values()) + f" -- fix the cause, then {hint}")
            if not self.opts.wait:
                log.info(
                    "study: %d run(s) still training on %s; run the same command later to go on",
                    len(waiting),
                    self.opts.launcher,
                )
                return False
            self._sleep()

    def _others_running(self, failed: dict[str, str]) -> bool:
        """On TPU the babysitters are this command's children and die with it: a failed run waits for its siblings
        (a five-seed study does not lose four healthy runs to one bad slice). SLURM jobs outlive the study."""
        return self.opts.launcher == "tpu" and any(p.poll() is None for n, p in self.procs.items() if n not in failed)

    def _sleep(self) -> None:
        """Wait `poll_s` between looks at the runs; a TPU babysitter that exits ends the wait at once."""
        end = time.time() + self.opts.poll_s
        running = [p for p in self.procs.values() if p.poll() is None]
        while time.time() < end:
            if any(p.poll() is not None for p in running):
                return
            time.sleep(min(1.0, self.opts.poll_s))

    # -- SLURM -------------------------------------------------------------------------------------------------------
    def _submit_slurm(self, names: Sequence[str]) -> None:
        """One job array: the args of task i in launch/slurm/<job>/<i>.args, one argument per line."""
        args_dir = self.study.dir / "launch" / "slurm" / f"array-{len(self.state.get('jobs', []))}"
        args_dir.mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            argv = self.study.train_command(name)[2:]  # after python launch/train.py
            paths.write_atomic(args_dir / f"{i}.args", "\n".join(argv) + "\n")
        job_name = f"babyjax-study-{self.study.dir.name}"
        cmd = [
            "bash",
            str(spec_lib.ROOT / "launch" / "slurm" / "submit.sh"),
            f"--array-args={args_dir}",
            f"--array-tasks={len(names)}",
            f"--array-parallel={self.opts.parallel}",
            f"--job-name={job_name}",
            *self.opts.extra,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=spec_lib.ROOT)
        if out.returncode:
            raise StageError(f"submitting the study's job array failed: {error_line(out.stderr or out.stdout)}")
        job_id = out.stdout.strip().splitlines()[-1].split(";")[0].strip()
        if not job_id.isdigit():
            raise StageError(f"sbatch answered {out.stdout.strip()!r}, not a job id")
        logdir = spec_lib.ROOT / "logs" / "slurm"
        for i, name in enumerate(names):
            self.state["runs"][name] = {"job": f"{job_id}_{i}", "log": str(logdir / f"{job_name}-{job_id}_{i}.out")}
        self.state.setdefault("jobs", []).append(job_id)
        self.save()
        log.info("study: submitted job array %s (%d runs); logs in %s", job_id, len(names), logdir)

    def _slurm_states(self) -> dict[str, tuple[str, str]]:
        """sacct: task id (JOB_i) -> (state, exit code)."""
        jobs = ",".join(self.state.get("jobs", []))
        out = subprocess.run(
            ["sacct", "-j", jobs, "--format=JobID,State,ExitCode", "--parsable2", "--noheader"],
            capture_output=True,
            text=True,
        )
        if out.returncode:
            raise StageError(f"sacct failed: {error_line(out.stderr)}; is this a SLURM login node?")
        states = {}
        for line in out.stdout.splitlines():
            parts = line.split("|")
            if len(parts) >= 3 and "." not in parts[0]:
                states[parts[0]] = (parts[1].split()[0] if parts[1] else "", parts[2])
        return states

    # -- TPU -----------------------------------------------------------------------------------------------------------
    def _start_tpu(self, names: Sequence[str]) -> None:
        """One babysitter per run, each on its own slice <study>-<run>; they run while this command waits."""
        for name in names:
            argv = self.study.train_command(name)[2:]
            slice_name = f"bj-{self.study.dir.name}-{name}".lower().replace("_", "-").replace(".", "-")[:60]
            cmd = [
                "bash",
                str(spec_lib.ROOT / "launch" / "tpu" / "babysit.sh"),
                f"--name={slice_name}",
                "--delete-when-done",
                *self.opts.extra,
                *argv,
            ]
            log_path = self.study.log_path("tpu", name)
            self.procs[name] = start_child(cmd, log_path)
            self.state["runs"][name] = {"slice": slice_name, "log": str(log_path), "pid": self.procs[name].pid}
        self.save()

    # -- both ----------------------------------------------------------------------------------------------------------
    def failures(self, names: Sequence[str]) -> dict[str, str]:
        """'run NAME failed ... log: PATH' for each launched run that ended unfinished (a babysitter that exited 0
        on an unfinished run counts too: it gave up)."""
        launched = [n for n in names if n in self.state["runs"] and not self.study.finished(n)]
        if not launched:
            return {}
        out = {}
        if self.opts.launcher == "slurm":
            states = self._slurm_states()
            for n in launched:
                rec = self.state["runs"][n]
                state, code = states.get(rec["job"], ("", ""))
                if state in _ENDED:
                    out[n] = (
                        f"run {n} failed on the cluster (job {rec['job']}, {state}, exit {code}), log: {rec['log']}"
                    )
        else:
            for n in launched:
                rec, proc = self.state["runs"][n], self.procs[n]
                rc = proc.poll()
                if rc is not None:
                    out[n] = (
                        f"run {n} failed on TPU slice {rec['slice']} (babysitter exit {rc}: "
                        f"{last_error(pathlib.Path(rec['log']))}), log: {rec['log']}"
                    )
        return out

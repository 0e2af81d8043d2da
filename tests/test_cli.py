"""The one command-line runner (babyjax/commands/cli.py): a user error is one line and exit status 2; a bug keeps its
traceback and exits with status 1; bad flags and config overrides are one line too."""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys
import textwrap
from collections.abc import Callable
from subprocess import PIPE

import pytest
from absl import flags

from babyjax.commands import analyze, cli, evalsets, export, generate, study
from babyjax.errors import DataError, InputError, UserError

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_in_process_user_error_is_one_line_and_2(capsys):
    def main(argv):
        raise DataError(f"no release in {argv[0]}: point data.dir at one\nsecond line never shown")

    assert cli.run(main, ["/nowhere"], prog="babyjax.x") == 2
    assert capsys.readouterr().err == "babyjax.x: error: no release in /nowhere: point data.dir at one\n"
    assert cli.run(lambda argv: 0, []) == 0


def test_in_process_bug_propagates():
    def main(argv):
        raise KeyError("a bug, not the user's doing")  # a plain KeyError/ValueError is not a UserError

    with pytest.raises(KeyError):
        cli.run(main, [])
    assert issubclass(InputError, ValueError) and issubclass(InputError, UserError)


SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from absl import flags
    from babyjax.commands import cli
    from babyjax.errors import InputError
    flags.DEFINE_string("what", "user", "user | bug")

    def main(argv):
        if flags.FLAGS.what == "user":
            raise InputError("--what=user: this is how a user error reads")
        1 / 0

    cli.run_absl(main)
""")


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("cli") / "babyjax_cli_probe.py"
    path.write_text(SCRIPT.format(root=str(ROOT)))
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_absl_user_error_is_one_line_and_2(script):
    r = _run(str(script), "--what=user")
    assert r.returncode == 2 and r.stderr == "error: --what=user: this is how a user error reads\n", r.stderr


def test_absl_bug_keeps_its_traceback_and_1(script):
    r = _run(str(script), "--what=bug")
    assert r.returncode == 1 and "Traceback" in r.stderr and "ZeroDivisionError" in r.stderr


def test_absl_bad_flag_and_stray_argument(script):
    r = _run(str(script), "--whta=1")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and "whta" in r.stderr
    r = _run(str(script), "stray")
    assert r.returncode == 2 and r.stderr == "error: unexpected arguments stray: every option is a --flag\n"


# every entry point: how it is started, the start of its --help, the prefix of its error lines, some of its flags
COMMANDS = {
    "train": (["launch/train.py"], "usage: python launch/train.py", "", ["--config", "--workdir", "--distributed"]),
    "score": (
        ["-m", "babyjax.score"],
        "usage: python -m babyjax.score",
        "",
        ["--run", "--kind", "--eval", "--out", "--steps"],
    ),
    "export": (["-m", "babyjax.export"], "usage: python -m babyjax.export", "", ["--workdir", "--[no]series"]),
    "generate": (["-m", "babyjax.generate"], "usage: python -m babyjax.generate", "babyjax.generate: ", ["--prompt"]),
    "analyze": (["-m", "babyjax.analyze"], "usage: python -m babyjax.analyze", "babyjax.analyze: ", ["--runs-dir"]),
    "evalsets": (
        ["-m", "babyjax.data.evalsets"],
        "usage: python -m babyjax.data.evalsets tokens",
        "babyjax.data.evalsets: ",
        ["--workdir", "--num_sequences", "--split"],
    ),
    "study": (["-m", "babyjax.study"], "usage: python -m babyjax.study", "babyjax.study: ", ["--config", "--[no]wait"]),
    "submit": (
        ["-m", "babyjax.submit"],
        "usage: python -m babyjax.submit",
        "babyjax.submit: ",
        ["--model_path_or_name", "--results_dir", "--[no]fast", "--fast_eval_dir", "--ewok_password", "--[no]check"],
    ),
}


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_lists_its_flags_and_gives_a_bad_flag_in_one_line(name):
    start, usage, prefix, some_flags = COMMANDS[name]
    runs = [
        subprocess.Popen([sys.executable, *start, arg], stdout=PIPE, stderr=PIPE, text=True, cwd=ROOT)
        for arg in ("--help", "--bogus=1")
    ]
    (out, err), (_, bad) = (p.communicate(timeout=180) for p in runs)
    assert runs[0].returncode == 0 and out.startswith(usage), (out[:500], err[-2000:])
    assert all(f"\n  {flag}: " in out for flag in some_flags), out
    assert runs[1].returncode == 2 and bad.count("\n") == 1, bad
    assert bad.startswith(f"{prefix}error: Unknown command line flag 'bogus'") and bad.endswith(
        "--help to list the flags\n"
    )


def _keep(got: dict, *names: str) -> Callable[[flags.FlagValues, list[str]], int]:
    """A command's main that keeps its parsed flags and positional arguments."""

    def main(f: flags.FlagValues, args: list[str]) -> int:
        got.update({n: f[n].value for n in names}, args=args)
        return 0

    return main


def test_the_argparse_spellings_still_read():
    got: dict = {}
    command = dataclasses.replace(analyze.main, main=_keep(got, "out", "runs-dir", "xia-p", "x-axis", "progress"))
    argv = ["s1", "--runs-dir", "runs", "--xia-p=0.5", "s2", "--x-axis", "words", "--no-progress", "--out", "rep"]
    assert command(argv) == 0
    assert got == {
        "out": "rep",
        "runs-dir": "runs",
        "xia-p": "0.5",
        "x-axis": "words",
        "progress": False,
        "args": ["s1", "s2"],
    }
    # argparse's unique prefixes, absl's underscores and --noflag; nothing after -- read as a flag
    assert command(["s1", "--ou=rep", "--runs_dir=r2", "--x_axis=tokens", "--noprogress", "--", "--s3"]) == 0
    assert (got["out"], got["runs-dir"], got["x-axis"], got["progress"], got["args"]) == (
        "rep",
        "r2",
        "tokens",
        False,
        ["s1", "--s3"],
    )
    assert command(["s1", "--out=rep", "--progress"]) == 0 and got["progress"] is True
    generate_command = dataclasses.replace(generate.main, main=_keep(got, "prompt", "max_new_tokens", "steps"))
    assert generate_command(["--workdir", "w", "--prompt", "the little", "--prompt=do you", "--max_new=5"]) == 0
    assert (got["prompt"], got["max_new_tokens"], got["steps"], got["args"]) == (["the little", "do you"], 5, "", [])


def test_the_study_reads_its_config_overrides_and_passes_launcher_flags_on(capsys):
    got: dict = {}
    command = dataclasses.replace(study.main, main=_keep(got, "config", "wait", "devices-per-run", "launcher"))
    config = "configs/studies/chang_tiny.py"
    argv = [f"--config={config}", "--workdir=w", "--config.pairs_limit=3", "--no-wait", "--devices-per-run", "2"]
    assert command([*argv, "--launcher=slurm", "--", "--partition=gpu", "--gpus-per-node=1"]) == 0
    assert got["config"].pairs_limit == 3 and got["config"].base == "configs/tiny.py"
    assert (got["wait"], got["devices-per-run"], got["args"]) == (False, 2, ["--partition=gpu", "--gpus-per-node=1"])
    with pytest.raises(SystemExit) as e:
        command([f"--config={config}", "--workdir=w", "--config.pairs_limitt=3"])
    assert e.value.code == 2
    assert capsys.readouterr().err == (
        "babyjax.study: error: unknown config key in --config.pairs_limitt=3 (did you mean pairs_limit?): every key is "
        "listed in babyjax/study/spec.py\n"
    )
    with pytest.raises(SystemExit) as e:
        command(["--config=nope.py", "--workdir=w"])
    assert e.value.code == 2 and capsys.readouterr().err.startswith(
        "babyjax.study: error: cannot load the config file nope.py: no such file; give a Python file whose "
        "get_config() returns the config (configs/studies/chang_tiny.py)"
    )


def test_positional_arguments_only_where_a_command_takes_them(capsys):
    assert evalsets.main(["--workdir=w", "--out=o.npz"]) == 2
    assert capsys.readouterr().err == (
        "babyjax.data.evalsets: error: give the set to build, one of tokens (none given): see --help\n"
    )
    assert analyze.main(["--out=o"]) == 2
    assert capsys.readouterr().err.startswith("babyjax.analyze: error: no score folder: ")
    assert export.main(["--workdir=w", "--out=o", "stray"]) == 2
    assert capsys.readouterr().err == "error: unexpected arguments stray: every option is a --flag\n"


def test_unknown_config_key_names_the_override_and_the_closest_key(tmp_path):
    r = _run("launch/train.py", "--config", "configs/tiny.py", "--workdir", str(tmp_path), "--config.optim.lrr=1")
    assert r.returncode == 2, r.stderr
    assert r.stderr == (
        "error: unknown config key in --config.optim.lrr=1 (did you mean lr?): every key is listed in configs/base.py\n"
    )
    r = _run("launch/train.py", "--config", "configs/tiny.py", "--workdir", str(tmp_path), "--config.optim.lr=fast")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "config.json").exists()  # nothing was written for a bad command


def test_a_config_file_that_cannot_be_loaded_is_one_line(tmp_path):
    (tmp_path / "syntax.py").write_text("def get_config(:\n")
    (tmp_path / "empty.py").write_text("X = 1\n")
    for config, why in [
        (tmp_path / "nope.py", "no such file"),
        (tmp_path / "syntax.py", "SyntaxError"),
        (tmp_path / "empty.py", "it defines no get_config()"),
        (tmp_path, "IsADirectoryError"),
    ]:
        r = _run("launch/train.py", "--config", str(config), "--workdir", str(tmp_path / "w"))
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr[-2000:]
        assert r.stderr.startswith(f"error: cannot load the config file {config}: {why}"), r.stderr
    assert not (tmp_path / "w").exists()
    (tmp_path / "a_file").write_text("mine")
    r = _run("launch/train.py", "--config", "configs/tiny.py", "--workdir", str(tmp_path / "a_file"))
    assert (
        r.returncode == 2
        and r.stderr.splitlines()[-1] == f"error: --workdir {tmp_path / 'a_file'} is a file: give a folder for the run"
    ), r.stderr[-2000:]
    assert (tmp_path / "a_file").read_text() == "mine"
    r = _run("-m", "babyjax.score", f"--run=a={tmp_path}", "--steps=10,abc", f"--out={tmp_path / 's'}")
    assert r.returncode == 2 and r.stderr.endswith(
        "error: --steps takes series steps as whole numbers, e.g. --steps=0,100,2000; got '10,abc'\n"
    ), r.stderr[-2000:]

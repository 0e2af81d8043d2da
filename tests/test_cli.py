"""The one command-line runner (babyjax/commands/cli.py): a user error is one line and exit status 2; a bug keeps its
traceback and exits with status 1; bad flags and config overrides are one line too."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import pytest

from babyjax.commands import cli
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


@pytest.mark.parametrize("module", ["babyjax.generate", "babyjax.analyze", "babyjax.data.evalsets", "babyjax.study"])
def test_argparse_commands_give_a_bad_option_in_one_line(module):
    r = _run("-m", module, "--bogus=1")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"python -m {module}: error: ") and r.stderr.endswith("(see --help)\n"), r.stderr
    r = _run("-m", module, "--help")
    assert r.returncode == 0 and r.stdout.startswith(f"usage: python -m {module}")


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

"""A full disk is one line, and a clean exit prints nothing after its summary. Training and scoring write onto a small
tmpfs filled while they work: each stops with exactly one `error:` line naming its folder and exit status 2, and the
same command after space is freed ends with the outputs of an uninterrupted run. A score job that skips a truncated
and a bit-flipped checkpoint ends with its summary. A study says a child's full disk in one line.

The tmpfs is mounted with `mount -t tmpfs`, which needs root (CI runs as root): a refused mount fails, never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from flax import nnx
from orbax.checkpoint._src import asyncio_utils

from babyjax import errors
from babyjax.checkpoints import orbax_loops
from babyjax.checkpoints import series as checkpoints
from babyjax.checkpoints.run import RunDir
from babyjax.commands import cli
from babyjax.model.transformer import ModelConfig
from babyjax.study import runner, spec
from babyjax.train.metrics import read_metrics
from configs import base
from tests.test_score import random_model, train_tiny_tokenizer
from tests.test_study import write_study

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

TRAIN = [
    "--config.data.max_train_lines=3000",
    "--config.tokenizer.vocab_size=512",
    "--config.model.num_layers=1",
    "--config.model.d_model=64",
    "--config.model.num_heads=2",
    "--config.model.mlp_dim=128",
    "--config.train.batch_size=8",
    "--config.train.num_steps=16",
    "--config.optim.warmup_steps=4",
    "--config.train.log_every=4",
    "--config.train.eval_every=0",
    "--config.train.progress_bar=False",
    "--config.ckpt.resume_every=4",
    "--config.ckpt.schedule=list",
    "--config.ckpt.steps=(3,8)",
]


def full_disk_line(folder: pathlib.Path) -> str:
    return (
        f"error: the disk holding {folder} is full (No space left on device): free space or move the run elsewhere, "
        "then run the same command again"
    )


@contextlib.contextmanager
def tmpfs(folder: pathlib.Path, size_kib: int):
    """A tmpfs of `size_kib` KiB mounted on `folder`, unmounted at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder)]
    done = subprocess.run(mount, capture_output=True, text=True)
    if done.returncode:
        pytest.fail(f"cannot mount a tmpfs on {folder} ({done.stderr.strip()}): this test runs as root, as on CI")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)]).returncode:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: pathlib.Path, leave: int) -> pathlib.Path:
    """A file that takes the free space of the disk holding `folder`, all but `leave` bytes."""
    disk = os.statvfs(folder)
    filler = folder / "filler"
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, disk.f_bavail * disk.f_frsize - leave)
    return filler


def command(*args: str, tfds: pathlib.Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    if tfds is not None:
        env["BABYJAX_TFDS_DIR"] = str(tfds)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def assert_one_full_disk_line(done: subprocess.CompletedProcess, folder: pathlib.Path) -> None:
    """Exit status 2, one `error:` line naming `folder`, last, and no traceback."""
    assert done.returncode == 2, done.stderr[-3000:]
    assert [ln for ln in done.stderr.splitlines() if ln.startswith("error:")] == [full_disk_line(folder)]
    assert done.stderr.rstrip().splitlines()[-1] == full_disk_line(folder), done.stderr[-3000:]
    assert "Traceback" not in done.stderr + done.stdout and "Exception" not in done.stderr, done.stderr[-3000:]


def hashes(workdir: pathlib.Path) -> dict[int, str]:
    return {int(e["step"]): e["params_hash"] for e in RunDir(workdir).series_index()}


def test_training_on_a_disk_that_fills_stops_in_one_line_and_resumes_as_uninterrupted(tmp_path):
    train = ["launch/train.py", "--config", "configs/tiny.py", *TRAIN]
    whole = command(*train, "--workdir", str(tmp_path / "whole"), tfds=tmp_path / "tfds")
    assert whole.returncode == 0, whole.stderr[-3000:]
    with tmpfs(tmp_path / "disk", 16 * 1024) as disk:
        workdir = disk / "run"
        filler = fill(disk, leave=1536 * 1024)  # the tokenizer and the first saves fit, the run (about 5 MB) not
        assert_one_full_disk_line(command(*train, "--workdir", str(workdir), tfds=tmp_path / "tfds"), workdir)
        kept = hashes(workdir)
        assert 0 in kept and len(kept) < len(hashes(tmp_path / "whole"))  # it failed at a save after it started
        assert kept.items() <= hashes(tmp_path / "whole").items()  # and what it saved is whole
        filler.unlink()
        again = command(*train, "--workdir", str(workdir), tfds=tmp_path / "tfds")
        assert again.returncode == 0, again.stderr[-3000:]
        assert hashes(workdir) == hashes(tmp_path / "whole")
        losses = [{r["step"]: r["loss"] for r in read_metrics(w) if "loss" in r} for w in (workdir, tmp_path / "whole")]
        assert losses[0] == losses[1] and len(losses[0]) == 4


def series_run(workdir: pathlib.Path, tok, steps: tuple[int, ...], **dims: int) -> None:
    """A run directory holding a series of random models (test_score.make_run, with other sizes)."""
    c = base.get_config()
    c.data.seq_len, c.tokenizer.vocab_size, c.model.style, c.model.max_len = 64, tok.vocab_size, "gpt2", 64
    c.model.num_layers, c.model.d_model, c.model.num_heads, c.model.mlp_dim = 2, 32, 4, 48
    c.model.update(dims)
    c.model.dropout, c.ckpt.schedule, c.ckpt.steps = 0.0, "list", steps
    workdir.mkdir(parents=True)
    (workdir / "config.json").write_text(c.to_json_best_effort())
    shutil.copy(tok.path, workdir / "tokenizer.model")
    cfg = ModelConfig.from_config(c.model, tok.vocab_size)
    with checkpoints.RunCheckpoints(workdir, c.ckpt, num_steps=max(steps)) as ckpt:
        for i, step in enumerate(steps):
            meta = {"tokens_seen": 64.0 * step, "words_seen": 50.0 * step, "wall_time": float(step)}
            ckpt.save_series(step, nnx.state(random_model(cfg, seed=i), nnx.Param), meta)


@pytest.fixture(scope="module")
def tok(tmp_path_factory, babylm_sample):
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok"), babylm_sample)


@pytest.fixture
def text(tmp_path, babylm_sample) -> pathlib.Path:
    path = tmp_path / "text.txt"
    path.write_text("\n".join((babylm_sample / "babylm_dev" / "cbt.dev").read_text().splitlines()[:12]))
    return path


def test_scoring_onto_a_disk_that_fills_stops_in_one_line_and_resumes_as_uninterrupted(tmp_path, tok, text):
    series_run(tmp_path / "run", tok, (0, 10, 20, 30))
    score = ["-m", "babyjax.score", f"--run=a={tmp_path / 'run'}", "--kind=text", f"--eval={text}"]
    assert command(*score, f"--out={tmp_path / 'whole'}").returncode == 0
    with tmpfs(tmp_path / "disk", 2048) as disk:
        out = disk / "scores"
        assert command(*score, f"--out={out}", "--steps=0,10").returncode == 0
        filler = fill(disk, leave=8 * 1024)  # the next job must grow the surprisal matrix: no room for it
        assert_one_full_disk_line(command(*score, f"--out={out}"), out)
        rows = (out / "runs" / "a" / "checkpoints.csv").read_text().splitlines()
        assert [r.split(",")[0] for r in rows[1:]] == ["0", "10"] and all(r.endswith(",done") for r in rows[1:])
        filler.unlink()
        again = command(*score, f"--out={out}")
        assert again.returncode == 0, again.stderr[-3000:]
        for name in ("runs/a/surprisal.npy", "runs/a/checkpoints.csv", "tokens.csv", "sequences.csv"):
            assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_a_score_job_that_skips_corrupt_checkpoints_ends_with_its_summary(tmp_path, tok, text):
    # Large arrays keep many reads in flight when a small one fails: the case that printed tracebacks at exit.
    series_run(tmp_path / "run", tok, (0, 10, 20), d_model=256, mlp_dim=1024)
    series = pathlib.Path(RunDir(tmp_path / "run").series_dir)
    truncated, flipped = (series / str(s) / "params" / "blocks.0.attn.bk.value" / "0.0" for s in (10, 20))
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    data = flipped.read_bytes()
    flipped.write_bytes(bytes([data[0] ^ 0x01]) + data[1:])
    out = tmp_path / "scores"
    args = ["-m", "babyjax.score", f"--run=a={tmp_path / 'run'}", "--kind=text", f"--eval={text}", f"--out={out}"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env
    )
    assert done.returncode == 0, done.stdout[-3000:]
    lines = done.stdout.rstrip().splitlines()
    assert lines[-3].startswith("scored 1 checkpoints") and "2 skipped" in lines[-3], done.stdout[-3000:]
    assert lines[-2].startswith("skipped: run a step 10: corrupt: ") and "\n" not in lines[-2]
    assert lines[-1].startswith("skipped: run a step 20: corrupt: ")
    assert "Traceback" not in done.stdout and "Event loop is closed" not in done.stdout, done.stdout[-3000:]
    statuses = [r.rsplit(",", 1)[1] for r in (out / "runs" / "a" / "checkpoints.csv").read_text().splitlines()[1:]]
    assert statuses == ["done", "corrupt", "corrupt"]


def test_a_study_says_a_childs_full_disk_in_one_line(tmp_path, shared_data, capsys):
    study = runner.Study(spec.load(str(write_study(tmp_path / "s.py", shared_data, tmp_path / "tfds"))), tmp_path / "w")
    child = f"import sys; print({full_disk_line(study.run_dir('r0'))!r}, file=sys.stderr); sys.exit(2)"
    assert cli.run(lambda _: study.child([sys.executable, "-c", child], "score", "tokens"), []) == 2
    assert capsys.readouterr().err == full_disk_line(study.run_dir("r0")) + "\n"
    with tmpfs(tmp_path / "disk", 4096) as disk:  # a child that could not even write its error line
        log = disk / "study" / "logs" / "train-r0.log"
        log.parent.mkdir(parents=True)
        log.write_text("$ python launch/train.py ...\n12:00:00 babyjax: resumed from step 4\n")
        assert runner.last_error(log) == "12:00:00 babyjax: resumed from step 4"
        fill(disk, leave=0)
        assert runner.last_error(log) == full_disk_line(disk / "study")


def test_a_full_disk_is_found_however_it_is_wrapped_and_named_by_its_folder(tmp_path):
    full = OSError(28, "No space left on device")
    assert errors.disk_full(ValueError("nothing")) is None
    assert f"error: {errors.disk_full(full)}" == full_disk_line(pathlib.Path("the command's output"))
    quota = errors.disk_full(OSError(122, "Disk quota exceeded", str(tmp_path / "f.txt")))
    assert "holding" in str(quota) and f"{tmp_path} is full (Disk quota exceeded)" in str(quota)
    wrapped = RuntimeError("Save Finalize thread failed")
    wrapped.__context__ = ValueError(
        f'Error writing local file "{tmp_path}/x/0.0": [OS error 28: No space left on device]'
    )
    assert errors.disk_full(wrapped).folder == str(tmp_path / "x")
    with pytest.raises(RuntimeError) as caught, errors.writing_to(tmp_path):
        try:
            raise full
        finally:
            raise RuntimeError("the close after it failed too")  # as a `finally: close()` does
    assert errors.disk_full(caught.value).folder == str(tmp_path)
    assert isinstance(errors.disk_full(caught.value), (errors.UserError, OSError))


def test_a_failed_orbax_coroutine_lets_its_siblings_end_before_its_loop_closes():
    orbax_loops.install()
    ended = []

    async def read(fail: bool) -> None:
        if fail:
            raise ValueError("a corrupt file")
        await asyncio.sleep(0.2)
        ended.append(True)

    async def restore() -> None:
        await asyncio.gather(read(True), read(False), read(False))

    with pytest.raises(ValueError, match="a corrupt file"):
        asyncio_utils.run_sync(restore())
    assert ended == [True, True]
    assert asyncio_utils.run_sync(asyncio.sleep(0, result=1)) == 1  # a coroutine that succeeds is untouched


def test_a_late_sibling_s_closed_loop_error_is_not_printed(capsys):
    """What TensorStore's thread raises when a write completes into an already closed loop prints nothing; any other
    error prints as before."""
    printed = []
    hook = orbax_loops.quiet_closed_loop(lambda kind, value, tb: printed.append(str(value)))
    hook(RuntimeError, RuntimeError("Event loop is closed"), None)
    hook(RuntimeError, RuntimeError("something else"), None)
    hook(ValueError, ValueError("Event loop is closed"), None)
    assert printed == ["something else", "Event loop is closed"]
    orbax_loops.install()
    orbax_loops.install()  # idempotent: the hook is not wrapped twice
    import sys

    sys.excepthook(RuntimeError, RuntimeError("Event loop is closed"), None)
    assert capsys.readouterr().err == ""

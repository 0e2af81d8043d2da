"""Multi-process training on loopback: 2 processes x 2 fake CPU devices, gloo collectives, jax.distributed.

Shows: same losses as one process with the same global batch; a checkpoint written by both processes restores in a
single process; SIGTERM to the job saves a resume checkpoint and the relaunch ends with the uninterrupted parameters;
bad input (unreachable coordinator, processes that disagree on the config) fails within a bounded time.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.test_train import OVERRIDES, ROOT, _losses

pytestmark = pytest.mark.slow
STEPS = [
    "--config.train.num_steps=12",
    "--config.ckpt.steps=(4,8)",
    "--config.train.eval_every=0",
    "--config.ckpt.resume_every=2",
]
_OVERRIDDEN = {s.split("=")[0] for s in STEPS}
BASE = [o for o in OVERRIDES if o.split("=")[0] not in _OVERRIDDEN]  # a repeated config flag keeps its first value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp, devices: int) -> dict:
    env = dict(os.environ)
    env.update(
        BABYJAX_TFDS_DIR=str(tmp / "tfds"),
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
    )
    return env


def _cmd(workdir, extra=()):
    return [
        sys.executable,
        str(ROOT / "launch" / "train.py"),
        "--config",
        str(ROOT / "configs" / "tiny.py"),
        "--workdir",
        str(workdir),
        *BASE,
        *STEPS,
        *extra,
    ]


def _launch_pair(workdir, tmp, extra=(), extra_by_process=((), ()), timeout_flag=60):
    port = _free_port()
    procs = []
    for i in range(2):
        cmd = _cmd(
            workdir,
            [
                *extra,
                *extra_by_process[i],
                f"--coordinator_address=127.0.0.1:{port}",
                "--num_processes=2",
                f"--process_id={i}",
                f"--distributed_timeout={timeout_flag}",
            ],
        )
        procs.append(
            subprocess.Popen(
                cmd, env=_env(tmp, 2), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    return procs


def _finish(procs, timeout=400):
    outs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        outs.append(out)
    return [p.returncode for p in procs], outs


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("multi")


@pytest.fixture(scope="module")
def single(tmp):
    workdir = tmp / "single"
    r = subprocess.run(_cmd(workdir), env=_env(tmp, 4), cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return workdir


@pytest.fixture(scope="module")
def multi(tmp, single):
    workdir = tmp / "multi"
    codes, outs = _finish(_launch_pair(workdir, tmp))
    assert codes == [0, 0], "\n".join(o[-2000:] for o in outs)
    return workdir


def test_two_processes_match_one(single, multi):
    a, b = _losses(single), _losses(multi)
    assert sorted(a) == sorted(b) == list(range(1, 13))
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(a)], rtol=1e-5, atol=1e-5)


def test_multiprocess_checkpoint_restores_in_one_process(single, multi):
    from babyjax.checkpoints import series as checkpoints

    index = checkpoints.load_series_index(multi)
    assert [r["step"] for r in index] == [0, 4, 8, 12]
    import jax

    pm, ps = checkpoints.restore_params(multi, 12), checkpoints.restore_params(single, 12)
    for x, y in zip(jax.tree.leaves(pm), jax.tree.leaves(ps)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)
    assert checkpoints.params_hash(pm) == index[-1]["params_hash"]


def test_sigterm_to_multiprocess_job_then_relaunch(tmp, multi):
    workdir = tmp / "preempted"
    procs = _launch_pair(workdir, tmp)
    resume = workdir / "checkpoints" / "resume"
    deadline = time.time() + 300
    while time.time() < deadline:
        if resume.exists() and any(d.name.isdigit() and int(d.name) >= 2 for d in resume.iterdir()):
            break
        assert all(p.poll() is None for p in procs), "job ended before it could be preempted"
        time.sleep(0.2)
    else:
        for p in procs:
            p.kill()
        pytest.fail("no resume checkpoint within 300 s")
    for p in procs:  # the scheduler signals every process of the job
        p.send_signal(signal.SIGTERM)
    codes, outs = _finish(procs)
    assert codes == [0, 0], "\n".join(o[-2000:] for o in outs)
    saved = re.search(r"SIGTERM: saved a resume checkpoint at step (\d+)", outs[0])
    assert saved and int(saved.group(1)) < 12, outs[0][-3000:]
    codes, outs = _finish(_launch_pair(workdir, tmp))
    assert codes == [0, 0], "\n".join(o[-2000:] for o in outs)
    assert all(f"resumed from step {saved.group(1)} " in o for o in outs), "\n".join(o[-2000:] for o in outs)
    import jax

    from babyjax.checkpoints import series as checkpoints

    pa, pb = checkpoints.restore_params(multi, 12), checkpoints.restore_params(workdir, 12)
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "process_id, message",
    [
        (1, "could not join the distributed job"),  # nobody listens at the coordinator address
        (0, "not every process joined the distributed job"),  # the coordinator waits for a process that never comes
    ],
)
def test_incomplete_job_fails_in_bounded_time_with_one_line(tmp, process_id, message):
    port = _free_port()
    t0 = time.time()
    r = subprocess.run(
        _cmd(
            tmp / f"alone{process_id}",
            [
                f"--coordinator_address=127.0.0.1:{port}",
                "--num_processes=2",
                f"--process_id={process_id}",
                "--distributed_timeout=8",
            ],
        ),
        env=_env(tmp, 2),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and time.time() - t0 < 60
    assert message in r.stderr
    assert "Traceback" not in r.stderr and "Fatal" not in r.stderr


def test_processes_that_disagree_on_config_fail(tmp):
    procs = _launch_pair(tmp / "disagree", tmp, extra_by_process=(("--config.optim.lr=1e-3",), ()))
    codes, outs = _finish(procs, timeout=300)
    assert all(c != 0 for c in codes)
    assert any("disagree on the config" in o for o in outs), "\n".join(o[-2000:] for o in outs)


def test_hybrid_two_processes_match_one(tmp):
    """GPT-BERT's hybrid objective on an LTG-BERT network: masks drawn inside the step are the same whether the global
    batch lives on one process or two."""
    from tests.test_train import HYBRID

    single_dir, multi_dir = tmp / "hybrid_single", tmp / "hybrid_multi"
    r = subprocess.run(
        _cmd(single_dir, HYBRID), env=_env(tmp, 4), cwd=ROOT, capture_output=True, text=True, timeout=400
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    codes, outs = _finish(_launch_pair(multi_dir, tmp, HYBRID))
    assert codes == [0, 0], "\n".join(o[-2000:] for o in outs)
    a, b = _losses(single_dir), _losses(multi_dir)
    assert sorted(a) == sorted(b) == list(range(1, 13))
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(a)], rtol=1e-5, atol=1e-5)

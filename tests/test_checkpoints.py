"""The Orbax checkpoint layer: series + index with hashes, resume checkpoints, resharding, async saves, crash safety."""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx, struct
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from babyjax.checkpoints import series as ck
from babyjax.checkpoints.run import RunDir, committed_steps
from configs import base


@struct.dataclass
class TrainState:
    params: nnx.State
    opt_state: optax.OptState
    step: jax.Array
    rng: jax.Array


class FakeLoader:
    """The data-iterator contract of babyjax/data/pipeline.py: get_state() -> JSON dict, set_state(dict)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed, self.position = seed, 0

    def __next__(self) -> int:
        self.position += 1
        return self.seed * 1000 + self.position

    def get_state(self) -> dict:
        return {"seed": self.seed, "position": self.position, "shard": [jax.process_index(), jax.process_count()]}

    def set_state(self, state: dict) -> None:
        self.seed, self.position = state["seed"], state["position"]


class Net(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.embed = nnx.Embed(16, 8, rngs=rngs)
        self.out = nnx.Linear(8, 12, rngs=rngs)


def _cfg(schedule="list", steps=(), resume_every=2, resume_keep=2):
    c = base.get_config().ckpt
    c.schedule, c.steps, c.resume_every, c.resume_keep = schedule, steps, resume_every, resume_keep
    return c


def _mesh(shape):
    return jax.make_mesh(shape, ("data", "fsdp"), devices=jax.devices()[: shape[0] * shape[1]])


def _spec(x):
    return P("data", "fsdp") if getattr(x, "ndim", 0) == 2 else P()


def _shard(tree, mesh):
    return jax.tree.map(lambda x: jax.device_put(x, NamedSharding(mesh, _spec(x))), tree)


def _abstract(tree, mesh):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(mesh, _spec(x))), tree)


def _params(seed=0, mesh=None):
    params = nnx.state(Net(nnx.Rngs(seed)), nnx.Param)
    return _shard(params, mesh) if mesh is not None else params


def _train_state(mesh, seed=0):
    params = _params(seed)
    tx = optax.chain(
        optax.clip_by_global_norm(1.0), optax.adamw(1e-3, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p))
    )
    return _shard(TrainState(params, tx.init(params), jnp.array(7, jnp.int32), jax.random.key(seed)), mesh)


def _meta(step, scale=1.0):
    return {
        "step": step,
        "tokens_seen": 128.0 * step * scale,
        "words_seen": 100.0 * step * scale,
        "wall_time": 0.5 * step,
    }


def _host(tree):
    return jax.tree.map(
        lambda x: np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x), tree
    )


def _assert_equal(a, b):
    leaves_a = jax.tree_util.tree_leaves(_host(a))
    leaves_b = jax.tree_util.tree_leaves(_host(b))
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------------------------------------------------------


def test_params_hash_is_stable_across_forms_and_layouts():
    params = _params()
    h = ck.params_hash(params)
    assert len(h) == 64 and h == ck.params_hash(params)
    assert ck.params_hash(params.to_pure_dict()) == h  # nnx.State and its pure dict
    assert ck.params_hash(_shard(params, _mesh((2, 4)))) == h  # sharded over 8 devices
    assert ck.params_hash(jax.tree.map(np.asarray, params)) == h  # numpy
    changed = jax.tree.map(lambda x: x, params)
    changed["out"]["bias"].value = changed["out"]["bias"].value.at[3].add(1e-7)
    assert ck.params_hash(changed) != h
    assert ck.params_hash(jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)) != h


def test_series_round_trip_with_index_and_hashes(tmp_path):
    mesh = _mesh((2, 4))
    ckpt = ck.RunCheckpoints(tmp_path, _cfg(steps=(3, 7)), num_steps=9)
    assert ckpt.schedule.planned_steps() == [0, 3, 7, 9]
    saved = {}
    for step in ckpt.schedule.planned_steps():
        saved[step] = _params(seed=step, mesh=mesh)
        assert ckpt.save_series(step, saved[step], _meta(step))
    ckpt.close()

    index = ck.load_series_index(tmp_path)
    assert [e["step"] for e in index] == [0, 3, 7, 9]
    for e in index:
        assert set(ck.META_KEYS) <= set(e)
        assert e["params_hash"] == ck.params_hash(saved[e["step"]])
        assert e["words_seen"] == 100.0 * e["step"]
    assert index == json.loads((tmp_path / "checkpoints" / "series.json").read_text())

    raw = ck.restore_params(tmp_path, 7)  # no abstract: the stored tree on the default device
    assert ck.params_hash(raw) == index[2]["params_hash"]
    assert raw["out"]["kernel"]["value"].sharding.device_set == {jax.local_devices()[0]}
    into = ck.restore_params(tmp_path, 7, _abstract(_params(), mesh))
    assert isinstance(into, nnx.State)
    _assert_equal(into, saved[7])
    assert into["out"]["kernel"].value.sharding.spec == P("data", "fsdp")
    host = ck.restore_params(tmp_path, 7, _abstract(_params(), mesh), host=True)  # the scorer's background restore
    assert isinstance(host["out"]["kernel"].value, np.ndarray) and ck.params_hash(host) == index[2]["params_hash"]
    assert index[2]["params_hash"] != ck.params_hash(saved[3])  # the index tells step 7's parameters from others


def test_duplicate_series_save_is_skipped(tmp_path, caplog):
    params = _params()
    with ck.RunCheckpoints(tmp_path, _cfg(steps=(4,)), num_steps=8) as ckpt:
        assert ckpt.save_series(4, params, _meta(4))
        assert not ckpt.save_series(4, params, _meta(4))  # still in flight: skipped
    files_before = sorted((tmp_path / "checkpoints" / "series" / "4").rglob("*"))
    mtime = (tmp_path / "checkpoints" / "series" / "4").stat().st_mtime_ns
    with ck.RunCheckpoints(tmp_path, _cfg(steps=(4,)), num_steps=8) as ckpt:  # a resumed run re-saves step 4
        assert not ckpt.save_series(4, params, _meta(4))
        with caplog.at_level(logging.WARNING, logger="babyjax"):
            assert not ckpt.save_series(4, _params(seed=1), _meta(4))
        assert "already exists with other parameters" in caplog.text
    assert sorted((tmp_path / "checkpoints" / "series" / "4").rglob("*")) == files_before
    assert (tmp_path / "checkpoints" / "series" / "4").stat().st_mtime_ns == mtime
    index = ck.load_series_index(tmp_path)
    assert [e["step"] for e in index] == [4]
    assert index[0]["params_hash"] == ck.params_hash(params)


def test_async_save_survives_donation_and_finishes_on_wait(tmp_path):
    params = _params(mesh=_mesh((2, 4)))
    expected_hash = ck.params_hash(params)
    ckpt = ck.RunCheckpoints(tmp_path, _cfg(), num_steps=5)
    ckpt.save_series(0, params, _meta(0))
    for leaf in jax.tree_util.tree_leaves(params):  # as a donated train step would
        leaf.delete()
    ckpt.wait()
    assert [e["step"] for e in ck.load_series_index(tmp_path)] == [0]
    assert ck.params_hash(ck.restore_params(tmp_path, 0)) == expected_hash
    ckpt.close()
    ckpt.close()  # idempotent


def test_index_lists_only_committed_steps(tmp_path):
    ckpt = ck.RunCheckpoints(tmp_path, _cfg(), num_steps=5)
    ckpt._series.wait_until_finished()
    ckpt.save_series(1, _params(), _meta(1))
    committed = committed_steps(RunDir(tmp_path).series_dir)
    listed = (
        [e["step"] for e in json.loads(RunDir(tmp_path).index_path.read_text())]
        if RunDir(tmp_path).index_path.exists()
        else []
    )
    assert set(listed) <= set(committed)
    ckpt.close()
    assert [e["step"] for e in ck.load_series_index(tmp_path)] == [1]


def test_meta_must_carry_the_counters(tmp_path):
    with ck.RunCheckpoints(tmp_path, _cfg(), num_steps=5) as ckpt:
        with pytest.raises(ValueError, match="lacks \\['words_seen'\\]"):
            ckpt.save_series(1, _params(), {"tokens_seen": 1.0, "wall_time": 0.0})
        with pytest.raises(ValueError, match="says step 2"):
            ckpt.save_series(1, _params(), _meta(2))
        ckpt.save_series(1, _params(), {**_meta(1), "words_seen": np.float32(3.5), "loss": jnp.float32(2.0)})
    assert ck.load_series_index(tmp_path)[0]["words_seen"] == 3.5


def test_resume_keeps_latest_n_with_iterator_state_and_meta(tmp_path):
    mesh = _mesh((2, 4))
    loader = FakeLoader(seed=3)
    ckpt = ck.RunCheckpoints(tmp_path, _cfg(resume_every=2, resume_keep=2), num_steps=9)
    assert ckpt.latest_resume_step() is None
    states = {}
    for step in range(1, 8):
        next(loader)
        states[step] = _train_state(mesh, seed=step)
        saved = ckpt.save_resume(step, states[step], loader, _meta(step))
        assert saved == (step % 2 == 0)
    assert ckpt.save_resume(7, states[7], loader, _meta(7), force=True)  # e.g. on SIGTERM
    assert not ckpt.save_resume(7, states[7], loader, _meta(7), force=True)  # never twice
    ckpt.close()
    resume = tmp_path / "checkpoints" / "resume"
    assert sorted(int(p.name) for p in resume.iterdir()) == [6, 7]
    assert json.loads((resume / "7" / "data" / "process_0-of-1.json").read_text())["position"] == 7

    ckpt = ck.RunCheckpoints(tmp_path, _cfg(resume_every=2, resume_keep=2), num_steps=9)
    assert ckpt.latest_resume_step() == 7
    fresh = FakeLoader(seed=0)
    state, meta = ckpt.restore_resume(_abstract(_train_state(mesh), mesh), fresh)
    _assert_equal(state, states[7])
    assert isinstance(state, TrainState) and isinstance(state.params, nnx.State)
    assert (fresh.seed, fresh.position) == (3, 7) and next(fresh) == 3008
    assert meta["step"] == 7 and meta["words_seen"] == 700.0 and meta["tokens_seen"] == 896.0
    assert meta["params_hash"] == ck.params_hash(states[7].params)
    ckpt.close()


def test_a_resume_save_never_runs_ahead_of_the_series(tmp_path):
    state = _train_state(_mesh((2, 4)))
    ckpt = ck.RunCheckpoints(tmp_path, _cfg(resume_every=2), num_steps=9)
    assert not ckpt.resume_due(1) and ckpt.resume_due(1, force=True) and ckpt.resume_due(2)
    for step in (1, 2):
        assert ckpt.save_series(step, state.params, _meta(step))
    assert ckpt.save_resume(2, state, FakeLoader(), _meta(2))
    # before the resume save started, every series save was committed and listed: a run killed now and restarted
    # from step 2 does not save the series' steps 1 and 2 again
    assert committed_steps(RunDir(tmp_path).series_dir) == [1, 2]
    assert [e["step"] for e in json.loads(RunDir(tmp_path).index_path.read_text())] == [1, 2]
    assert not ckpt.resume_due(2, force=True)  # never twice
    ckpt.close()


@pytest.mark.parametrize("target", [(8, 1), (1, 1)])
def test_reshard_restore(tmp_path, target):
    source = _mesh((2, 4))
    state = _train_state(source, seed=5)
    with ck.RunCheckpoints(tmp_path, _cfg(), num_steps=4) as ckpt:
        ckpt.save_series(0, state.params, _meta(0))
        ckpt.save_resume(2, state, FakeLoader(), _meta(2))
    mesh = _mesh(target)
    with ck.RunCheckpoints(tmp_path, _cfg(), num_steps=4) as ckpt:
        restored, _ = ckpt.restore_resume(_abstract(_train_state(source), mesh), FakeLoader())
    _assert_equal(restored, state)
    kernel = restored.params["out"]["kernel"].value
    assert kernel.sharding.mesh.devices.shape == target
    assert len(kernel.addressable_shards) == target[0] * target[1]
    mu = restored.opt_state[1][0].mu["embed"]["embedding"].value
    assert mu.sharding == NamedSharding(mesh, P("data", "fsdp"))
    params = ck.restore_params(tmp_path, 0, _abstract(_params(), mesh))
    _assert_equal(params, state.params)
    assert params["embed"]["embedding"].value.sharding.mesh.devices.shape == target


def test_unfinalized_tmp_checkpoint_is_ignored_and_cleaned(tmp_path):
    with ck.RunCheckpoints(tmp_path, _cfg(), num_steps=9) as ckpt:
        ckpt.save_series(0, _params(), _meta(0))
    # a save of step 5 killed half-way: orbax's temporary directory, never renamed
    tmp_dir = RunDir(tmp_path).series_dir / "5.orbax-checkpoint-tmp"
    (tmp_dir / "params").mkdir(parents=True)
    (tmp_dir / "params" / "half_written").write_bytes(b"\0" * 100)
    assert [e["step"] for e in ck.load_series_index(tmp_path)] == [0]
    with pytest.raises(ck.CheckpointError, match="no committed series checkpoint at step 5"):
        ck.restore_params(tmp_path, 5)
    with ck.RunCheckpoints(tmp_path, _cfg(), num_steps=9) as ckpt:  # restart: cleaned up, step 5 saved afresh
        assert ckpt.save_series(5, _params(seed=5), _meta(5))
    assert not tmp_dir.exists()
    assert [e["step"] for e in ck.load_series_index(tmp_path)] == [0, 5]


def test_interrupted_or_damaged_index_is_rebuilt(tmp_path):
    with ck.RunCheckpoints(tmp_path, _cfg(), num_steps=9) as ckpt:
        for step in (0, 2, 4):
            ckpt.save_series(step, _params(seed=step), _meta(step))
    path = RunDir(tmp_path).index_path
    good = json.loads(path.read_text())
    # killed between a commit and the index write: the index misses step 4; a temp file of a write was left behind
    path.write_text(json.dumps(good[:2]))
    (path.parent / ".series.json.tmp-999").write_text('[{"step": 0, "wor')
    with ck.RunCheckpoints(tmp_path, _cfg(), num_steps=9):
        pass
    assert json.loads(path.read_text()) == good
    assert not (path.parent / ".series.json.tmp-999").exists()
    # damaged index (not written by us, e.g. a disk-full copy): readers fall back to the checkpoints, restart repairs
    path.write_text(json.dumps(good)[:40])
    assert ck.load_series_index(tmp_path) == good
    with ck.RunCheckpoints(tmp_path, _cfg(), num_steps=9):
        pass
    assert json.loads(path.read_text()) == good


def test_kill_9_during_async_saves_leaves_a_consistent_series(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, jax, jax.numpy as jnp
        from babyjax.checkpoints import series as ck
        from configs import base
        cfg = base.get_config().ckpt
        cfg.schedule = "none"
        ckpt = ck.RunCheckpoints({str(tmp_path)!r}, cfg, num_steps=100)
        for step in range(6):
            params = {{"w": jnp.full((512, 1024), float(step)), "b": jnp.arange(1000.0) + step}}
            ckpt.save_series(step, params, {{"tokens_seen": step, "words_seen": step, "wall_time": 0.0}})
        os.kill(os.getpid(), signal.SIGKILL)  # the last save is still in flight
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    listed = [e["step"] for e in json.loads(RunDir(tmp_path).index_path.read_text())]
    committed = committed_steps(RunDir(tmp_path).series_dir)
    assert set(listed) <= set(committed) and listed == list(range(len(listed)))
    with ck.RunCheckpoints(tmp_path, _cfg(), num_steps=100) as ckpt:  # the rerun skips committed steps
        for step in range(6):
            params = {"w": jnp.full((512, 1024), float(step)), "b": jnp.arange(1000.0) + step}
            assert ckpt.save_series(step, params, _meta(step)) == (step not in committed)
    assert not any(".orbax-checkpoint-tmp" in p.name for p in RunDir(tmp_path).series_dir.iterdir())
    index = ck.load_series_index(tmp_path)
    assert [e["step"] for e in index] == list(range(6))
    for e in index:
        assert ck.params_hash(ck.restore_params(tmp_path, e["step"])) == e["params_hash"]


# Restoring the deliberately corrupted checkpoint below fails inside tensorstore; orbax's event loop is closed before
# tensorstore's last callback arrives, which Python reports as an ignored exception (harmless, orbax-internal).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_clear_errors(tmp_path):
    with pytest.raises(ck.CheckpointError, match="no series checkpoints in"):
        ck.load_series_index(tmp_path)
    with pytest.raises(ck.CheckpointError, match="no series checkpoints in"):
        ck.restore_params(tmp_path, 0)
    with pytest.raises(ValueError, match="resume_every"):
        ck.RunCheckpoints(tmp_path, _cfg(resume_every=0), num_steps=3)
    with ck.RunCheckpoints(tmp_path, _cfg(), num_steps=9) as ckpt:
        with pytest.raises(ck.CheckpointError, match="no resume checkpoint"):
            ckpt.restore_resume(_abstract(_train_state(_mesh((1, 1))), _mesh((1, 1))), FakeLoader())
        for step in (0, 1, 2):
            ckpt.save_series(step, _params(seed=step), _meta(step))
    with pytest.raises(
        ck.CheckpointError, match="no committed series checkpoint at step 3 in .*; 3 steps exist, from 0 to 2"
    ):
        ck.restore_params(tmp_path, 3)
    # hash mismatch: the recorded hash does not match the stored arrays
    meta_file = RunDir(tmp_path).series_dir / "1" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "params_hash": "0" * 64}))
    with pytest.raises(ck.CheckpointError, match="do not match their recorded hash"):
        ck.restore_params(tmp_path, 1)
    assert ck.params_hash(ck.restore_params(tmp_path, 1, verify=False)) == meta["params_hash"]
    # corrupt checkpoint: array data gone
    for f in (tmp_path / "checkpoints" / "series" / "2" / "params").rglob("*"):
        if f.is_file() and f.name != "_METADATA":
            f.write_bytes(b"garbage")
    with pytest.raises(ck.CheckpointError, match="corrupt"):
        ck.restore_params(tmp_path, 2)

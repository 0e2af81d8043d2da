"""The run directory (babyjax/checkpoints/run.py) and the file rules under it (babyjax/paths.py): layout, the same-run
check, atomic writes, and a cloud (gs://) run directory through etils.epath."""

from __future__ import annotations

import json
import sys

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from babyjax import paths
from babyjax.checkpoints import run
from babyjax.errors import CheckpointError, InputError, MissingError, TrainingError, UserError
from babyjax.model import objectives
from babyjax.model.transformer import ModelConfig
from configs import base


def test_layout(tmp_path):
    r = run.RunDir(tmp_path / "r")
    assert r.path == paths.absolute(tmp_path / "r")
    assert (r.config_path.name, r.tokenizer_path.name, r.metrics_path.name) == (
        "config.json",
        "tokenizer.model",
        "metrics.jsonl",
    )
    assert r.series_dir == r.path / "checkpoints" / "series" and r.resume_dir == r.path / "checkpoints" / "resume"
    assert r.index_path == r.path / "checkpoints" / "series.json"
    assert run.RunDir("relative/dir").path.is_absolute()  # Orbax needs absolute paths


def test_open_and_read_errors_are_one_line_user_errors(tmp_path):
    with pytest.raises(MissingError, match="--workdir must be a babyjax run directory") as e:
        run.RunDir.open(tmp_path / "nothing")
    assert isinstance(e.value, UserError) and "\n" not in str(e.value)
    (tmp_path / "config.json").write_text("{not json")
    r = run.RunDir.open(tmp_path, what="--run")
    with pytest.raises(InputError, match="not valid JSON"):
        r.config()
    with pytest.raises(MissingError, match="tokenizer.model not found"):
        r.tokenizer()
    with pytest.raises(CheckpointError, match="no series checkpoints"):
        r.series_index()


def test_same_run_check(tmp_path):
    r, c = run.RunDir(tmp_path / "r"), base.get_config()
    r.path.mkdir()
    r.pin_config(c)
    assert json.loads(r.config_path.read_text())["model"]["d_model"] == c.model.d_model
    c.model.d_model = 64
    r.pin_config(c)  # no checkpoint yet: a start that failed early does not pin the config
    assert json.loads(r.config_path.read_text())["model"]["d_model"] == 64
    (r.path / "checkpoints").mkdir()
    other = base.get_config()
    other.model.d_model = 64
    other.data.dir, other.train.log_every = "/moved/release", 7  # a location and bookkeeping may differ
    r.pin_config(other)
    other.optim.lr = 1.0
    with pytest.raises(TrainingError, match=r"another config \(optim.lr: stored 0.0006, now 1.0\)"):
        r.pin_config(other)


def test_a_run_config_carries_the_packages_defaults(tmp_path):
    """A run started from configs/base.py stores, and reads back, exactly the package's objective and model defaults."""
    r = run.RunDir(tmp_path / "r")
    r.pin_config(base.get_config())
    stored, read = json.loads(r.config_path.read_text()), r.config()
    assert stored["objective"] == {**objectives.DEFAULT, "replace": list(objectives.DEFAULT["replace"])}
    assert stored["model"] == ModelConfig.defaults() == read.model.to_dict()
    assert read.objective.to_dict() == stored["objective"] and objectives.features(read).kind == "causal"


def test_an_older_run_config_is_migrated_where_it_is_read_and_continues(tmp_path):
    """A config.json written before the objective section, model.position_buckets and data.words_per_epoch existed
    reads with today's defaults (a causal run), passes the same-run check against today's config, and stays as it was
    on disk."""
    r = run.RunDir(tmp_path / "old")
    r.path.mkdir()
    old = json.loads(base.get_config().to_json_best_effort())
    del old["objective"], old["model"]["position_buckets"], old["data"]["words_per_epoch"]
    r.config_path.write_text(json.dumps(old))
    (r.path / "checkpoints").mkdir()
    written = r.config_path.read_bytes()
    c = r.config()
    assert c.objective.to_dict() == objectives.config_of({}) and c.model.position_buckets == 32
    assert c.data.words_per_epoch == 0 and r.num_steps() == base.get_config().train.num_steps
    assert objectives.features(c).kind == "causal" and objectives.describe(c) == "causal LM"
    r.pin_config(base.get_config())  # the same run: it continues
    assert r.config_path.read_bytes() == written  # the run's pin is never rewritten
    masked = base.get_config()
    masked.objective.kind = "mlm"
    with pytest.raises(TrainingError, match=r"another config \(objective.kind: stored 'causal', now 'mlm'\)"):
        r.pin_config(masked)
    nominal = base.get_config()
    nominal.data.words_per_epoch = 10_000_000
    with pytest.raises(TrainingError, match=r"another config \(data.words_per_epoch: stored 0, now 10000000\)"):
        r.pin_config(nominal)
    masked = base.get_config()
    masked.model.position_buckets = 16
    with pytest.raises(TrainingError, match=r"another config \(model.position_buckets: stored 32, now 16\)"):
        r.pin_config(masked)
    r.config_path.write_text("[1, 2]")
    with pytest.raises(InputError, match="is not a JSON object: it must be a babyjax run's config.json"):
        r.config()


def test_write_atomic_keeps_the_old_file_when_a_write_fails(tmp_path):
    target = tmp_path / "sub" / "a.json"
    paths.write_atomic(target, "old")
    assert target.read_text() == "old"
    paths.write_atomic(target, b"new", fsync=True)
    assert target.read_bytes() == b"new"

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        paths.write_atomic(target, half_then_fail)
    assert target.read_text() == "new" and sorted(p.name for p in target.parent.iterdir()) == ["a.json"]


class _MemoryBucket(MemoryFileSystem):
    """An in-memory object store that etils.epath reaches for gs:// paths (as it would reach gcsfs)."""

    protocol = ("gcs", "gs")

    def __init__(self, *args, finalize_on_close=None, **kwargs):
        del finalize_on_close
        super().__init__(*args, **kwargs)


@pytest.fixture
def bucket():
    saved = {p: fsspec.registry.get(p) for p in ("gcs", "gs")}
    for p in saved:
        fsspec.register_implementation(p, _MemoryBucket, clobber=True)
    yield "gs://babyjax-test-bucket"
    _MemoryBucket.store.clear()
    for p, cls in saved.items():
        if cls is None:
            sys.modules["fsspec.registry"]._registry.pop(p, None)
        else:
            fsspec.register_implementation(p, cls, clobber=True)


def test_cloud_run_directory_through_epath(bucket):
    assert paths.is_cloud(f"{bucket}/run") and not paths.is_cloud("/local/run")
    r = run.RunDir(f"{bucket}/runs/tiny")
    assert str(r.path) == f"{bucket}/runs/tiny"  # kept as it is, not made local
    r.pin_config(base.get_config())
    assert r.config().model.d_model == base.get_config().model.d_model
    paths.write_atomic(r.index_path, json.dumps([{"step": 0, "words_seen": 0.0}]))
    assert r.series_index() == [{"step": 0, "words_seen": 0.0}]
    assert not [p for p in r.index_path.parent.iterdir() if ".tmp-" in p.name]  # one object write, no temp file
    assert run.RunDir.open(f"{bucket}/runs/tiny").name == "tiny"


def test_write_folder_is_atomic_keeps_or_replaces_and_cleans_up(tmp_path):
    target = tmp_path / "cache" / "split"
    assert paths.write_folder(target, lambda tmp: (tmp / "a.npy").write_text("1")) == target
    paths.write_folder(target, lambda tmp: (tmp / "b.npy").write_text("2"))  # made already: kept as it is
    assert sorted(p.name for p in target.iterdir()) == ["a.npy"]

    def fail(tmp):
        (tmp / "half").write_text("x")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        paths.write_folder(target, fail, overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == ["a.npy"] and len(list(target.parent.iterdir())) == 1
    paths.write_folder(target, lambda tmp: (tmp / "c.npy").write_text("3"), overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == ["c.npy"] and len(list(target.parent.iterdir())) == 1

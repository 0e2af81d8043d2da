"""babyjax.imported.weights and .revisions: Hugging Face revisions read from real files (safetensors, sharded,
.bin, LFS pointers, truncated files), series found in folders and git repositories (branches, main, remote-tracking
refs of a clone, bare repositories), and the integrity findings of a series."""

from __future__ import annotations

import hashlib
import json
import pathlib
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

from babyjax import errors
from babyjax.checkpoints.schedules import chang_steps, crfm_steps, pythia_steps
from babyjax.imported import revisions, weights

LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"


def _tensors(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "embed.weight": rng.standard_normal((5, 3)).astype(np.float32),
        "layer.0.weight": rng.standard_normal((3, 3)).astype(np.float32),
        "layer.0.bias": rng.standard_normal(3).astype(np.float32),
        "head.weight": rng.standard_normal((3, 5)).astype(np.float32),
    }


SHARD_1 = ("embed.weight", "layer.0.bias")  # the first shard of a sharded revision


def _write(folder: pathlib.Path, tensors: dict, *, info: dict | None = None, sharded: bool = False) -> pathlib.Path:
    """A model folder: config.json, tokenizer.json, the weights (one file or two shards and an index) and, given
    `info`, babyjax_export.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 3}))
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE"}}))
    if info is not None:
        (folder / revisions.EXPORT_INFO).write_text(json.dumps(info))
    if not sharded:
        safetensors.numpy.save_file(tensors, str(folder / weights.SAFETENSORS), metadata={"format": "pt"})
        return folder
    shards = {"model-00001-of-00002.safetensors": SHARD_1}
    shards["model-00002-of-00002.safetensors"] = tuple(k for k in tensors if k not in SHARD_1)
    for file, keys in shards.items():
        safetensors.numpy.save_file({k: tensors[k] for k in keys}, str(folder / file))
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    (folder / weights.SAFETENSORS_INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def _pointer(data: bytes) -> str:
    return LFS_POINTER.format(oid=hashlib.sha256(data).hexdigest(), size=len(data))


def _git(gitdir: pathlib.Path, *args: str, env: dict | None = None, cwd: pathlib.Path | None = None) -> str:
    who = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    done = subprocess.run(
        ["git", "--git-dir", str(gitdir), *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
        env={**weights.clean_env(), **who, **(env or {})},
    )
    return done.stdout.strip()


def _repo(path: pathlib.Path) -> pathlib.Path:
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=weights.clean_env())
    return path / ".git"


def _commit(gitdir: pathlib.Path, folder: pathlib.Path, branch: str) -> str:
    """Commit exactly the files of `folder` (plumbing, no checkout) as branch `branch`; returns the commit."""
    env = {"GIT_INDEX_FILE": str(folder.parent / f"{folder.name}.index"), "GIT_WORK_TREE": str(folder)}
    _git(gitdir, "add", "-A", ".", env=env, cwd=folder)
    commit = _git(gitdir, "commit-tree", _git(gitdir, "write-tree", env=env), "-m", branch)
    _git(gitdir, "update-ref", f"refs/heads/{branch}", commit)
    return commit


def _by_name(found: list[revisions.Finding]) -> dict[str, str]:
    return {f.revision: f.status for f in found}


# -- weights -----------------------------------------------------------------------------------------------------------
def test_safetensors_read_as_stored_with_bf16_and_metadata(tmp_path):
    stored = {
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "f16": np.array([1.5, -2.25], np.float16),
        "i64": np.array([[1, -2]], np.int64),
        "u8": np.array([0, 255], np.uint8),
        "mask": np.array([True, False, True]),
        "scalar": np.array(3.0, np.float64),
        "empty": np.zeros((0, 4), np.float32),
    }
    safetensors.numpy.save_file(stored, str(tmp_path / "np.safetensors"), metadata={"format": "np"})
    buf = np.memmap(tmp_path / "np.safetensors", np.uint8, mode="r")
    got = dict(weights.safetensors_arrays(buf))
    assert set(got) == set(stored)
    for name, array in stored.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape
        np.testing.assert_array_equal(got[name], array)

    bf16 = torch.tensor([[0.1, -3.0], [7.5, 1e-3]], dtype=torch.bfloat16)
    safetensors.torch.save_file({"w": bf16, "b": torch.ones(2)}, str(tmp_path / "bf16.safetensors"))
    got = dict(weights.safetensors_arrays(np.fromfile(tmp_path / "bf16.safetensors", np.uint8)))
    assert got["w"].dtype == ml_dtypes.bfloat16  # as stored: the caller casts
    np.testing.assert_array_equal(got["w"].astype(np.float32), bf16.float().numpy())
    np.testing.assert_array_equal(got["b"], np.ones(2, np.float32))


def test_sharded_checkpoint_read_through_its_index_and_preferred_to_bin(tmp_path):
    tensors = _tensors(0)
    folder = _write(tmp_path / "m", tensors, sharded=True)
    torch.save({k: torch.zeros(1) for k in tensors}, folder / weights.BIN)  # other weights: safetensors win
    source = weights.FolderSource(folder)
    assert weights.weight_files(source) == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    got = weights.read(source)
    assert set(got) == set(tensors)
    for name, array in tensors.items():
        np.testing.assert_array_equal(got[name], array)
    assert weights.digests(source) == weights.digests(weights.FolderSource(_write(tmp_path / "one", tensors)))

    index = json.loads((folder / weights.SAFETENSORS_INDEX).read_text())
    index["weight_map"]["lost.weight"] = "model-00002-of-00002.safetensors"
    (folder / weights.SAFETENSORS_INDEX).write_text(json.dumps(index))
    with pytest.raises(weights.Unreadable, match="lost.weight") as e:
        weights.read(source)
    assert e.value.status == "corrupt"


def test_bin_read_through_torch_hashes_like_the_same_safetensors(tmp_path):
    state = {"w": torch.randn(3, 2).to(torch.bfloat16), "b": torch.randn(4), "n": torch.tensor([1, 2])}
    safetensors.torch.save_file(state, str(tmp_path / "st.safetensors"))
    (tmp_path / "bin").mkdir()
    torch.save(state, tmp_path / "bin" / weights.BIN)
    source = weights.FolderSource(tmp_path / "bin")
    got = weights.read(source)
    assert got["w"].dtype == ml_dtypes.bfloat16 and got["n"].dtype == np.int64
    np.testing.assert_array_equal(got["w"].astype(np.float32), state["w"].float().numpy())
    buf = np.fromfile(tmp_path / "st.safetensors", np.uint8)
    from_st = {k: weights.tensor_digest(k, a) for k, a in weights.safetensors_arrays(buf)}
    assert weights.digests(source) == from_st  # dtype codes and raw bytes agree across formats

    sharded = tmp_path / "sharded"
    sharded.mkdir()
    torch.save({"w": state["w"]}, sharded / "pytorch_model-00001-of-00002.bin")
    torch.save({"b": state["b"], "n": state["n"]}, sharded / "pytorch_model-00002-of-00002.bin")
    weight_map = {"w": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"}
    weight_map["n"] = "pytorch_model-00002-of-00002.bin"
    (sharded / weights.BIN_INDEX).write_text(json.dumps({"weight_map": weight_map}))
    assert weights.digests(weights.FolderSource(sharded)) == from_st


def test_bin_without_torch_is_refused_with_the_fix(tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    torch.save({"b": torch.ones(2)}, tmp_path / "m" / weights.BIN)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    with pytest.raises(weights.Unreadable) as e:
        weights.read(weights.FolderSource(tmp_path / "m"))
    assert e.value.status == "needs_torch" and "pip install 'babyjax[peers]'" in str(e.value)
    assert isinstance(e.value, errors.CheckpointError) and "\n" not in str(e.value)


def test_lfs_pointers_truncated_and_garbled_files_are_unreadable(tmp_path):
    real = _write(tmp_path / "real", _tensors(0)) / weights.SAFETENSORS
    data = real.read_bytes()
    cases = {
        "pointer": (_pointer(data).encode(), "lfs_pointer"),
        "truncated": (data[:-5], "corrupt"),
        "short": (data[:6], "corrupt"),
        "header": (data[:8] + b"{not json" + data[17:], "corrupt"),
        "empty": (b"", "corrupt"),
    }
    for name, (content, status) in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / weights.SAFETENSORS).write_bytes(content)
        with pytest.raises(weights.Unreadable) as e:
            weights.digests(weights.FolderSource(tmp_path / name))
        assert e.value.status == status, name
        assert "\n" not in str(e.value)
    with pytest.raises(weights.Unreadable) as e:
        weights.read(weights.FolderSource(tmp_path / "pointer"))
    assert e.value.oid == hashlib.sha256(data).hexdigest() and "git lfs pull" in str(e.value)

    (tmp_path / "bin").mkdir()
    torch.save({"b": torch.ones(64)}, tmp_path / "bin" / weights.BIN)
    whole = (tmp_path / "bin" / weights.BIN).read_bytes()
    (tmp_path / "bin" / weights.BIN).write_bytes(whole[: len(whole) // 2])
    with pytest.raises(weights.Unreadable) as e:
        weights.read(weights.FolderSource(tmp_path / "bin"))
    assert e.value.status == "corrupt"
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "config.json").write_text("{}")
    with pytest.raises(weights.Unreadable) as e:
        weights.read(weights.FolderSource(tmp_path / "none"))
    assert e.value.status == "no_weights"


def test_tensor_digest_covers_name_dtype_shape_and_bytes():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    base = weights.tensor_digest("w", a)
    assert base == weights.tensor_digest("w", a.copy())
    others = [
        weights.tensor_digest("v", a),
        weights.tensor_digest("w", a.reshape(3, 2)),
        weights.tensor_digest("w", a.view(np.int32)),
        weights.tensor_digest("w", a + 1),
    ]
    assert len({base, *others}) == 5
    assert weights.tensor_digest("w", a.T) == weights.tensor_digest("w", np.ascontiguousarray(a.T))
    d = {"x": "1", "y": "2"}
    assert weights.revision_digest(d) == weights.revision_digest(dict(reversed(d.items())))
    assert weights.revision_digest(d) != weights.revision_digest({"x": "1", "y": "3"})


# -- finding revisions -------------------------------------------------------------------------------------------------
def test_folder_of_revisions_steps_from_export_info_names_and_table(tmp_path):
    info = {"step": 100, "tokens_seen": 51200, "words_seen": 1_000_000.4, "params_hash": "abc", "objective": "causal"}
    _write(tmp_path / "s" / "step_0", _tensors(0))
    _write(tmp_path / "s" / "chck_1M", _tensors(1), info=info)  # the true step comes from the export info
    _write(tmp_path / "s" / "step_200", _tensors(2))
    (tmp_path / "s" / "notes").mkdir()  # no model files: not a revision
    found = revisions.find(tmp_path / "s")
    assert [(r.name, r.step) for r in found] == [("step_0", 0), ("chck_1M", 100), ("step_200", 200)]
    assert found[1].entry() == {
        "revision": "chck_1M",
        "step": 100,
        "tokens_seen": 51200,
        "words_seen": 1_000_000.4,  # as the run recorded it
        "params_hash": "abc",
    }
    assert found[0].entry() == {"revision": "step_0", "step": 0}  # unknown counts omitted, never None
    assert found[1].info["objective"] == "causal"
    assert found[2].read_json("config.json")["model_type"] == "gpt2"
    assert found[2].read_bytes("tokenizer.model") is None
    copied = found[2].copy_files(tmp_path / "small")
    assert sorted(p.name for p in copied.iterdir()) == ["config.json", "tokenizer.json"]

    (tmp_path / "s" / revisions.TABLE).write_text("revision,step,tokens_seen,words_seen\nstep_0,5,,\nstep_200,9,90,\n")
    found = revisions.find(tmp_path / "s")  # PATH/revisions.csv: the table overrides names, not export info
    assert [r.entry() for r in found if r.name != "chck_1M"] == [
        {"revision": "step_0", "step": 5},
        {"revision": "step_200", "step": 9, "tokens_seen": 90},
    ]
    table = tmp_path / "partial.csv"
    table.write_text("revision,step\nstep_0,0\n")
    with pytest.raises(errors.InputError, match="step_200 is not in the table"):
        revisions.find(tmp_path / "s", table)

    _write(tmp_path / "odd" / "best", _tensors(3))
    _write(tmp_path / "odd" / "step_5", _tensors(4))
    with pytest.raises(errors.InputError, match="give a table revisions.csv"):
        revisions.find(tmp_path / "odd")


def test_one_model_folder_and_pythia_and_words_names(tmp_path):
    one = revisions.find(_write(tmp_path / "step143000", _tensors(0)))
    assert [(r.name, r.step) for r in one] == [("step143000", 143000)]
    for name in ("step2000", "step0", "step4", "step1", "step1000", "step2"):
        _write(tmp_path / "pythia" / name, _tensors(int(name[4:])))
    found = revisions.find(tmp_path / "pythia")
    assert [r.name for r in found] == ["step0", "step1", "step2", "step4", "step1000", "step2000"]
    assert revisions.check(found, {}, {}) == []  # a subset of Pythia's schedule: nothing missing

    for name, seed in (("chck_10M", 10), ("chck_1M", 1), ("chck_2M", 2), ("main", 10)):  # main: chck_10M's weights
        _write(tmp_path / "words" / name, _tensors(seed))
    found = revisions.find(tmp_path / "words")
    assert found.final.name == "main"
    assert [(r.name, r.step, r.words_seen) for r in found] == [
        ("chck_1M", 1_000_000, 1_000_000),
        ("chck_2M", 2_000_000, 2_000_000),
        ("chck_10M", 10_000_000, 10_000_000),
    ]
    missing = revisions.check(found, *revisions.scan(found))
    assert [(f.revision, f.step) for f in missing] == [(f"chck_{n}M", n * 10**6) for n in range(3, 10)]
    assert {f.status for f in missing} == {"missing"}
    table = tmp_path / "steps.csv"
    table.write_text("revision,step\nchck_1M,10\nchck_2M,20\nchck_10M,100\n")
    found = revisions.find(tmp_path / "words", table)  # the table's steps, the names' words
    assert [r.entry() for r in found][0] == {"revision": "chck_1M", "step": 10, "words_seen": 1_000_000}


def test_git_branches_main_alias_lfs_objects_clone_and_bare(tmp_path, monkeypatch):
    gitdir = _repo(tmp_path / "repo")
    commits = {}
    for i, step in enumerate((0, 100, 200)):
        folder = _write(tmp_path / "f" / f"step_{step}", _tensors(i), info={"step": step, "words_seen": step * 10})
        if step == 100:  # the weights in Git LFS, the object fetched
            data = (folder / weights.SAFETENSORS).read_bytes()
            oid = hashlib.sha256(data).hexdigest()
            (gitdir / "lfs" / "objects" / oid[:2] / oid[2:4]).mkdir(parents=True)
            (gitdir / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).write_bytes(data)
            (folder / weights.SAFETENSORS).write_text(_pointer(data))
        commits[step] = _commit(gitdir, folder, f"step_{step}")
    _git(gitdir, "update-ref", "refs/heads/main", commits[200])
    _git(gitdir, "branch", "-q", "notes", _git(gitdir, "commit-tree", _git(gitdir, "mktree"), "-m", "empty"))

    found = revisions.find(tmp_path / "repo")
    assert [(r.name, r.step, r.commit) for r in found] == [(f"step_{s}", s, commits[s]) for s in (0, 100, 200)]
    assert found[-1].aliases == ("main",) and found.final is None
    assert found[0].entry() == {"revision": "step_0", "step": 0, "words_seen": 0}
    assert found[2].read_json("config.json")["model_type"] == "gpt2"
    for i, rev in enumerate(found):  # step_100's pointer read as the LFS object
        got = weights.read(rev.files)
        assert {k: a.tolist() for k, a in got.items()} == {k: a.tolist() for k, a in _tensors(i).items()}
    monkeypatch.setattr(weights, "_BIG_BLOB", 0)  # big blobs are streamed to a temporary file and memory-mapped
    np.testing.assert_array_equal(weights.read(found[0].files)["head.weight"], _tensors(0)["head.weight"])
    assert revisions.check(found, *revisions.scan(found)) == []

    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(tmp_path / "repo"), str(bare)], check=True)
    assert [r.name for r in revisions.find(bare)] == ["step_0", "step_100", "step_200"]
    clone = tmp_path / "clone"  # as a clone of the Hub: main local, the revisions as origin/<branch>
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(tmp_path / "repo"), str(clone)], check=True)
    refs = _git(clone / ".git", "for-each-ref", "--format=%(refname)")
    assert "refs/remotes/origin/step_0" in refs and "refs/heads/step_0" not in refs
    found = revisions.find(clone)
    assert [r.name for r in found] == ["step_0", "step_100", "step_200"]
    digests, unreadable = revisions.scan(found)
    assert unreadable["step_100"].status == "lfs_pointer"  # git-lfs objects are not cloned
    assert _by_name(revisions.check(found, digests, unreadable)) == {"step_100": "lfs_pointer"}


def test_git_main_with_other_weights_is_the_final_one(tmp_path):
    gitdir = _repo(tmp_path / "repo")
    final = _tensors(9)
    for i, name in enumerate(("step1000", "step2000", "step3000", "step4000")):
        _commit(gitdir, _write(tmp_path / "f" / name, final if name == "step2000" else _tensors(i)), name)
    folder = _write(tmp_path / "f" / "main", final)
    (folder / "README.md").write_text("the final model")  # another tree than any step branch
    _commit(gitdir, folder, "main")
    found = revisions.find(tmp_path / "repo")
    assert [r.name for r in found] == ["step1000", "step2000", "step3000", "step4000"]
    assert found.final.name == "main" and found.final.step is None
    digests, unreadable = revisions.scan(found)
    assert "main" in digests and not unreadable
    (flag,) = revisions.check(found, digests, unreadable)
    assert (flag.revision, flag.status, flag.step) == ("step2000", "equals_final", 2000)
    assert flag.message == "step2000 holds the final weights (main)"
    without = {k: v for k, v in digests.items() if k != "main"}  # check digests the final itself
    assert revisions.check(found, without, unreadable) == [flag]

    lone = _repo(tmp_path / "lone")
    _commit(lone, folder, "main")
    with pytest.raises(errors.InputError, match="step of main .* is unknown: give a table"):
        revisions.find(tmp_path / "lone")


# -- integrity ---------------------------------------------------------------------------------------------------------
def test_each_kind_of_problem_is_flagged_and_nothing_else(tmp_path):
    series, final = tmp_path / "series", _tensors(900)
    for step in (0, 100, 200, 300, 500, 600, 700, 800, 900):  # every 100 steps, step_400 absent
        tensors = {
            200: _tensors(100),  # a copy of step_100
            300: final,  # the final weights again (pythia#205)
            500: {**_tensors(500), **{k: final[k] for k in SHARD_1}},  # the final's first shard (pythia#206)
            900: final,
        }.get(step, _tensors(step))
        _write(series / f"step_{step}", tensors, sharded=True)
    shard = series / "step_600" / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-4])
    shard = series / "step_700" / "model-00001-of-00002.safetensors"
    shard.write_text(_pointer(shard.read_bytes()))
    found = revisions.audit(series)
    assert _by_name(found) == {
        "step_200": "duplicate",
        "step_300": "equals_final",
        "step_400": "missing",
        "step_500": "partial_duplicate",
        "step_600": "corrupt",
        "step_700": "lfs_pointer",
    }
    assert [f.step for f in found] == [200, 300, 400, 500, 600, 700]
    messages = {f.revision: f.message for f in found}
    assert messages["step_200"] == "step_200 holds the same weights as step_100"
    assert messages["step_500"].startswith("step_500 shares 2 of 4 tensors with step_900")
    assert "step_400 is missing" in messages["step_400"] and "every 100 steps" in messages["step_400"]
    assert all("\n" not in m for m in messages.values())


def test_a_clean_series_has_no_findings_and_digests_are_cached(tmp_path):
    series, steps = tmp_path / "pythia", pythia_steps(4000)  # 0, 1, 2, 4, ..., 512, 1000, ..., 4000
    for step in steps:
        tensors = _tensors(step)
        tensors["rotary.inv_freq"] = np.linspace(0, 1, 4, dtype=np.float32)  # a buffer: equal in every revision
        if step <= 2:  # a tensor not yet changed in the first revisions
            tensors["layer.0.bias"] = np.ones(3, np.float32)
        _write(series / f"step{step}", tensors)
    found = revisions.find(series)
    cache = tmp_path / "digests.json"
    digests, unreadable = revisions.scan(found, cache)
    assert revisions.check(found, digests, unreadable) == [] and not unreadable

    stored = json.loads(cache.read_text())
    key = next(iter(stored["digests"]))
    stored["digests"][key] = {"planted": "x"}
    cache.write_text(json.dumps(stored))
    again, _ = revisions.scan(found, cache)
    assert sum(d == {"planted": "x"} for d in again.values()) == 1  # read from the cache, not hashed again
    (series / "step4000" / weights.SAFETENSORS).unlink()
    _write(series / "step4000", _tensors(7))
    fresh, _ = revisions.scan(found, cache)
    assert fresh["step4000"] == weights.digests(found[-1].files)  # a changed file is hashed again


@pytest.mark.parametrize(
    "steps,missing",
    [
        ([s for s in pythia_steps(20000) if s != 19000], [19000]),  # Pythia's grid, near its end
        ([s for s in pythia_steps(20000) if s != 8], [8]),
        ([s for s in pythia_steps(20000) if s != 0], [0]),
        (crfm_steps(3000), []),
        ([s for s in crfm_steps(3000) if s != 1050], [1050]),
        (chang_steps(60000), []),
        (chang_steps(600, s0=1, s1=25, t1=1000), []),  # configs/tiny.py: gaps of 1 and 2 mixed, then wider
        ([0, 12, 24, 37, 49, 61, 74, 86, 98, 110, 232, 355, 477], []),  # first steps reaching words marks
        ([0, 10, 20, 50, 60, 70], [30, 40]),
        ([0, 10, 30], []),  # too short to call regular
    ],
)
def test_missing_steps_of_regular_schedules(tmp_path, steps, missing):
    series = revisions.Series([revisions.Revision(f"step{s}", s, weights.FolderSource(tmp_path)) for s in steps])
    found = revisions.check(series, {}, {})
    assert [(f.revision, f.status, f.step) for f in found] == [(f"step{s}", "missing", s) for s in missing]

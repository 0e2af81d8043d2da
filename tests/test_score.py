"""babyjax.score: equal to a float64 numpy forward pass, invariant to batching/padding/devices, resumable job."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pandas as pd
import pytest
from flax import nnx

from babyjax import score
from babyjax.checkpoints import series as checkpoints
from babyjax.checkpoints.run import RunDir
from babyjax.data import evalsets
from babyjax.data import tokenizer as tokenizer_lib
from babyjax.errors import InputError
from babyjax.model import sharding
from babyjax.model.transformer import ModelConfig, Transformer
from configs import base

ROOT = pathlib.Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------------------------
# Helpers shared with tests/test_export.py


def tiny_model_cfg(style: str, vocab_size: int = 97, **kw) -> ModelConfig:
    kv = kw.pop("num_kv_heads", 4 if style == "gpt2" else 2)
    return ModelConfig(
        vocab_size=vocab_size,
        style=style,
        num_layers=2,
        d_model=32,
        num_heads=4,
        num_kv_heads=kv,
        mlp_dim=48,
        max_len=32,
        dropout=0.0,
        **kw,
    )


def random_model(cfg: ModelConfig, seed: int = 0) -> Transformer:
    """A model whose parameters (biases and norms too) are all random, so no parameter is tested by a zero."""
    model = Transformer(cfg, rngs=nnx.Rngs(seed))
    rng = np.random.default_rng(seed)
    state = nnx.state(model, nnx.Param)
    pure = jax.tree.map(
        lambda x: np.asarray(x) + 0.05 * rng.standard_normal(x.shape).astype(np.float32), nnx.to_pure_dict(state)
    )
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)
    return model


def np_logprobs(params: dict, cfg: ModelConfig, ids: list[int]) -> np.ndarray:
    """float64 numpy forward of one unpacked sequence (positions 0..n-1): log p(ids[t+1] | ids[:t+1])."""
    ids = np.asarray(ids)
    return np_log_softmax(params, cfg, ids)[np.arange(len(ids) - 1), ids[1:]]


def np_log_softmax(params: dict, cfg: ModelConfig, ids, np=np):
    """The reference forward written out in float64 (`np`: numpy, or jax.numpy with x64 on, to differentiate it):
    log-softmax over the vocabulary after every token of one unpacked sequence [n, V]."""
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    ids = np.asarray(ids)
    n, h, g, k = len(ids), cfg.num_heads, cfg.num_kv_heads, cfg.head_dim

    def norm(x, q):
        if cfg.style == "llama":
            return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + cfg.norm_eps) * q["scale"]
        mu = x.mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + cfg.norm_eps) * q["scale"] + q["bias"]

    def rope(x):  # [n, heads, k], rotate-half layout
        half = k // 2
        inv = cfg.rope_theta ** (-np.arange(half) / half)
        ang = np.arange(n)[:, None, None] * inv[None, None, :]
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate([x1 * np.cos(ang) - x2 * np.sin(ang), x2 * np.cos(ang) + x1 * np.sin(ang)], -1)

    x = p["embed"][ids]
    if cfg.style == "gpt2":
        x = x + p["pos_embed"][np.arange(n)]
    for i in range(cfg.num_layers):
        blk = p["blocks"][i]
        a = blk["attn"]
        y = norm(x, blk["norm_attn"])
        q = np.einsum("ld,dhk->lhk", y, a["wq"])
        kk = np.einsum("ld,dgk->lgk", y, a["wk"])
        v = np.einsum("ld,dgk->lgk", y, a["wv"])
        if cfg.style == "gpt2":
            q, kk, v = q + a["bq"], kk + a["bk"], v + a["bv"]
        else:
            q, kk = rope(q), rope(kk)
        rep = h // g
        kk, v = np.repeat(kk, rep, axis=1), np.repeat(v, rep, axis=1)
        s = np.einsum("lhk,mhk->hlm", q, kk) / math.sqrt(k)
        s = np.where(np.tril(np.ones((n, n), bool))[None], s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        o = np.einsum("hlm,mhk->lhk", s, v)
        out = np.einsum("lhk,hkd->ld", o, a["wo"])
        x = x + (out + a["bo"] if cfg.style == "gpt2" else out)
        m = blk["mlp"]
        y = norm(x, blk["norm_mlp"])
        if cfg.style == "gpt2":
            u = y @ m["w_in"] + m["b_in"]
            u = 0.5 * u * (1 + np.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3)))
            x = x + u @ m["w_out"] + m["b_out"]
        else:
            gate = y @ m["w_gate"]
            x = x + ((gate / (1 + np.exp(-gate))) * (y @ m["w_in"])) @ m["w_out"]
    x = norm(x, p["norm_out"])
    logits = x @ (p["embed"].T if cfg.tie_embeddings else p["head"])
    mx = logits.max(-1, keepdims=True)
    return logits - (mx + np.log(np.exp(logits - mx).sum(-1, keepdims=True)))


def mesh_of(n_devices: int, data: int = -1, fsdp: int = 1, tensor: int = 1):
    cfg = ml_collections.ConfigDict({"data": data, "fsdp": fsdp, "tensor": tensor})
    return sharding.make_mesh(cfg, jax.devices()[:n_devices])


def train_tiny_tokenizer(directory: pathlib.Path, babylm_sample: pathlib.Path) -> tokenizer_lib.Tokenizer:
    """A 400-piece SentencePiece model of 4,000 aochildes lines (about a second)."""
    lines = (babylm_sample / "babylm_10M" / "aochildes.train").read_text().splitlines()[:4000]
    return tokenizer_lib.train(lines, directory / "tokenizer.model", vocab_size=400)


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory, babylm_sample) -> tokenizer_lib.Tokenizer:
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok"), babylm_sample)


def make_run(
    workdir: pathlib.Path,
    tok: tokenizer_lib.Tokenizer,
    *,
    style: str = "gpt2",
    steps: tuple[int, ...] = (0, 10, 20, 30),
    seed: int = 0,
    words_per_step: float = 50.0,
    objective: str = "causal",
    **model_kw,
) -> ModelConfig:
    """A run directory as babyjax.train.loop leaves it: config.json, tokenizer.model and a series of random models."""
    c = base.get_config()
    c.seed = seed
    c.data.seq_len = 64
    c.tokenizer.vocab_size = tok.vocab_size
    c.model.style = style
    c.model.num_layers, c.model.d_model, c.model.num_heads, c.model.mlp_dim = 2, 32, 4, 48
    c.model.max_len = model_kw.pop("max_len", 64)
    c.model.num_kv_heads = model_kw.pop("num_kv_heads", -1)
    c.model.tie_embeddings = model_kw.pop("tie_embeddings", True)
    c.model.dropout = 0.0
    c.objective.kind = objective
    c.ckpt.schedule = "list"
    c.ckpt.steps = steps
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(c.to_json_best_effort())
    shutil.copy(tok.path, workdir / "tokenizer.model")
    cfg = ModelConfig.from_config(c.model, tok.vocab_size)
    ckpt = checkpoints.RunCheckpoints(workdir, c.ckpt, num_steps=max(steps))
    for i, step in enumerate(steps):
        params = nnx.state(random_model(cfg, seed=1000 * seed + i), nnx.Param)
        ckpt.save_series(
            step, params, {"tokens_seen": 64.0 * step, "words_seen": words_per_step * step, "wall_time": float(step)}
        )
    ckpt.close()
    return cfg


def params_at(workdir: pathlib.Path, step: int) -> dict:
    """The stored parameters of a series step as nested dicts of arrays (orbax's {'value': x} leaves unwrapped;
    nnx.List indices as ints)."""

    def plain(t):
        if isinstance(t, dict):
            if set(t) == {"value"}:
                return np.asarray(t["value"])
            return {int(k) if str(k).isdigit() else k: plain(v) for k, v in t.items()}
        return np.asarray(t)

    return plain(checkpoints.restore_params(workdir, step))


# ---------------------------------------------------------------------------------------------------------------------
# Windows and packing


def test_windows_cover_every_token_once_with_bounded_context():
    ids = list(range(10, 47))  # 37 tokens
    for policy, first in (("eot_context", 0), ("no_context", 1)):
        for stride in (1, 5, 8):
            wins = score.windows(0, ids, policy, seq_len=8, stride=stride)
            positions = [w.start + j for w in wins for j in range(len(w.target_ids))]
            assert positions == list(range(first, len(ids)))
            for w in wins:
                assert 1 <= w.length <= 8
                full = ([tokenizer_lib.EOS_ID] if policy == "eot_context" else []) + ids
                off = 1 if policy == "eot_context" else 0
                assert (
                    list(w.context_ids + w.target_ids)
                    == full[w.start + off - len(w.context_ids) : w.start + off + len(w.target_ids)]
                )
            assert all(len(w.context_ids) >= 8 - stride + 1 for w in wins[1:])  # later windows keep their context
    assert score.windows(0, [5], "no_context", 8) == []
    assert score.windows(0, [5], "eot_context", 8)[0].context_ids == (tokenizer_lib.EOS_ID,)
    with pytest.raises(ValueError, match="first-token policy"):
        score.windows(0, ids, "bos", 8)


def test_pack_places_every_window_without_overlap():
    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(5, 90, size=n)) for n in rng.integers(0, 30, size=200)]
    wins = [w for s, ids in enumerate(seqs) for w in score.windows(s, ids, "eot_context", 16, 4)]
    p = score.pack(wins, 16)
    assert p.weights.sum() == p.num_tokens == sum(len(s) for s in seqs)
    assert len(set(p.token_index.tolist())) == p.num_tokens
    np.testing.assert_array_equal(p.targets.reshape(-1)[p.token_index], [t for w in wins for t in w.target_ids])
    assert (p.segment_ids > 0).mean() > 0.9  # packing, not one window a row
    for r in range(p.num_rows):  # positions restart at 0 in every segment
        for seg in set(p.segment_ids[r].tolist()) - {0}:
            np.testing.assert_array_equal(
                p.positions[r][p.segment_ids[r] == seg], np.arange((p.segment_ids[r] == seg).sum())
            )


# ---------------------------------------------------------------------------------------------------------------------
# The scoring function


@pytest.mark.parametrize("style,extra", [("gpt2", {}), ("gpt2", {"tie_embeddings": False}), ("llama", {})])
def test_scores_equal_float64_numpy_reference(style, extra):
    cfg = tiny_model_cfg(style, **extra)
    model = random_model(cfg, seed=3)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    rng = np.random.default_rng(1)
    seqs = [list(map(int, rng.integers(5, cfg.vocab_size, size=n))) for n in (1, 2, 7, 19, 31, 45)]
    for policy in ("eot_context", "no_context"):
        got = score.score_sequences(model, seqs, policy=policy, seq_len=16, stride=6, batch_rows=4, head_tokens=16)
        for ids, lp in zip(seqs, got):
            wins = score.windows(0, ids, policy, 16, 6)
            want = (
                np.concatenate(
                    [
                        np_logprobs(params, cfg, list(w.context_ids + w.target_ids))[len(w.context_ids) - 1 :]
                        for w in wins
                    ]
                )
                if wins
                else np.zeros(0)
            )
            assert lp.shape == want.shape
            np.testing.assert_allclose(lp, want, atol=2e-5, rtol=1e-5)


def test_scores_invariant_to_batch_size_padding_and_devices():
    cfg = tiny_model_cfg("llama")
    model = random_model(cfg, seed=5)
    rng = np.random.default_rng(2)
    seqs = [list(map(int, rng.integers(5, cfg.vocab_size, size=n))) for n in rng.integers(1, 40, size=23)]
    ref = score.score_sequences(model, seqs, seq_len=32, batch_rows=1, mesh=mesh_of(1))
    flat_ref = np.concatenate(ref)
    for n_dev, mesh_kw, rows, head in (
        (1, {}, 5, 512),
        (1, {}, 6, 64),
        (8, {}, 3, 512),
        (8, {}, 64, 64),
        (8, {"data": 2, "fsdp": 4}, 16, 32),
        (8, {"data": 2, "fsdp": 2, "tensor": 2}, 4, 32),
    ):
        got = score.score_sequences(
            model, seqs, seq_len=32, batch_rows=rows, mesh=mesh_of(n_dev, **mesh_kw), head_tokens=head
        )
        np.testing.assert_allclose(
            np.concatenate(got),
            flat_ref,
            atol=1e-5,
            rtol=1e-5,
            err_msg=f"{n_dev} devices {mesh_kw} batch {rows} head slices of {head}",
        )
    # More sequences in the batch (more padding neighbours, other packing) do not change anyone's scores.
    padded = score.score_sequences(model, seqs + [[7] * 30, [9] * 3], seq_len=32, batch_rows=4, mesh=mesh_of(8))
    np.testing.assert_allclose(np.concatenate(padded[: len(seqs)]), flat_ref, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# The batch job


def _blimp_file(tmp_path: pathlib.Path, shared_data: pathlib.Path, n: int = 12) -> pathlib.Path:
    d = tmp_path / "blimp"
    d.mkdir(exist_ok=True)
    for name in ("anaphor_gender_agreement", "adjunct_island"):
        lines = (shared_data / "blimp" / f"{name}.jsonl").read_text().splitlines()[:n]
        (d / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return d


def _read_out(out: pathlib.Path, run: str) -> tuple[np.ndarray, pd.DataFrame]:
    m, rows, _ = score.load_scores(out, run)
    return np.array(m), rows


def test_pairs_job_layout_and_accuracy(tmp_path, tiny_tokenizer, shared_data):
    cfg = make_run(tmp_path / "r0", tiny_tokenizer)
    make_run(tmp_path / "r1", tiny_tokenizer, seed=1, steps=(0, 15))
    pairs_dir = _blimp_file(tmp_path, shared_data)
    out = tmp_path / "out"
    summary = score.score_job(
        score.ScoreConfig(
            run=[score.RunSpec.parse(f"seed0={tmp_path / 'r0'}"), score.RunSpec.parse(f"seed1={tmp_path / 'r1'}")],
            out=out,
            kind="pairs",
            eval=[str(pairs_dir)],
            batch_rows=8,
        )
    )
    assert len(summary.scored) == 6 and not summary.skipped

    meta = json.loads((out / "meta.json").read_text())
    assert meta["log_base"] == 2 and meta["unit"] == "bits" and meta["first_token_policy"] == "eot_context"
    assert meta["tokenizer_hash"] == tiny_tokenizer.sha256 and meta["runs"] == ["seed0", "seed1"]
    tokens = pd.read_csv(out / "tokens.csv", keep_default_na=False)
    assert list(tokens.columns) == list(score.TOKEN_COLUMNS)
    seqs = pd.read_csv(out / "sequences.csv", keep_default_na=False)
    assert len(seqs) == 2 * 24 and (seqs["which"][0::2] == "good").all()
    # tokens.csv holds every token of every sentence (eot_context scores the first one too)
    first = tiny_tokenizer.encode(seqs["text"][0])
    assert len(first) < 64  # one window
    assert tokens[tokens["seq"] == 0]["token_id"].tolist() == first
    assert tokens[tokens["seq"] == 0]["context_length"].tolist() == list(range(1, len(first) + 1))

    m, rows = _read_out(out, "seed0")
    assert m.shape == (4, len(tokens)) and m.dtype == np.float32 and np.isfinite(m).all()
    assert rows["status"].tolist() == ["done"] * 4 and rows["step"].tolist() == [0, 10, 20, 30]
    assert rows["words_seen"].tolist() == [0.0, 500.0, 1000.0, 1500.0]
    # the surprisal row equals -log2 p of the checkpoint's model, computed independently
    params = params_at(tmp_path / "r0", 20)
    ids = [tokenizer_lib.EOS_ID] + tiny_tokenizer.encode(seqs["text"][5])
    want = -np_logprobs(params, cfg, ids) / math.log(2)
    np.testing.assert_allclose(m[2][tokens["seq"].to_numpy() == 5], want, atol=1e-4)

    pairs = pd.read_csv(out / "pairs.csv")
    assert list(pairs.columns) == list(score.PAIR_COLUMNS)
    assert len(pairs) == (4 + 2) * 2 and set(pairs["paradigm"]) == {"anaphor_gender_agreement", "adjunct_island"}
    r = pairs[(pairs.run == "seed0") & (pairs.step == 20) & (pairs.paradigm == "adjunct_island")].iloc[0]
    sums = np.bincount(tokens["seq"], weights=m[2].astype(np.float64), minlength=len(seqs))
    sel = (seqs["paradigm"] == "adjunct_island").to_numpy()[0::2]
    good, bad = sums[0::2][sel], sums[1::2][sel]
    assert (r.n, r.correct, r.ties) == (12, int((good < bad).sum()), int((good == bad).sum()))
    assert r.accuracy == pytest.approx(r.correct / r.n) and r.field == "syntax" and r.words_seen == 1000.0


def test_resume_after_kill_equals_uninterrupted(tmp_path, tiny_tokenizer, babylm_sample, monkeypatch):
    make_run(tmp_path / "run", tiny_tokenizer, steps=(0, 5, 10, 20, 40))
    text = tmp_path / "held_out.txt"
    text.write_text("\n".join((babylm_sample / "babylm_dev" / "aochildes.dev").read_text().splitlines()[:60]))
    run = [score.RunSpec.parse(f"a={tmp_path / 'run'}")]
    kw = {"kind": "text", "eval": [str(text)], "batch_rows": 4, "seq_len": 16, "stride": 8}
    whole = tmp_path / "whole"
    score.score_job(score.ScoreConfig(run=run, out=whole, **kw))

    # Kill the job after two checkpoints were written (inside the write of the third).
    cut = tmp_path / "cut"
    real_write = score.RunTable.write
    calls = {"n": 0}

    def dying_write(self, step, surprisal):
        calls["n"] += 1
        if calls["n"] == 3:
            self.matrix[self.row_of(step)] = surprisal  # the row lands but the job dies before marking it done
            raise KeyboardInterrupt
        real_write(self, step, surprisal)

    monkeypatch.setattr(score.RunTable, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        score.score_job(score.ScoreConfig(run=run, out=cut, **kw))
    monkeypatch.setattr(score.RunTable, "write", real_write)
    m, rows = _read_out(cut, "a")
    assert rows["status"].tolist() == ["done", "done", "pending", "pending", "pending"]
    assert np.isnan(m[3:]).all()

    summary = score.score_job(score.ScoreConfig(run=run, out=cut, **kw))
    assert summary.already_done == 2 and [s for _, s in summary.scored] == [10, 20, 40]
    for name in ("tokens.csv", "sequences.csv", "runs/a/checkpoints.csv", "runs/a/surprisal.npy"):
        assert (cut / name).read_bytes() == (whole / name).read_bytes(), name
    # A third run has nothing left to do and changes nothing.
    assert score.score_job(score.ScoreConfig(run=run, out=cut, **kw)).scored == []
    assert (cut / "runs/a/surprisal.npy").read_bytes() == (whole / "runs/a/surprisal.npy").read_bytes()


def test_steps_words_and_growing_series(tmp_path, tiny_tokenizer, babylm_sample):
    make_run(tmp_path / "run", tiny_tokenizer, steps=(0, 10, 20, 30))
    text = tmp_path / "t.txt"
    text.write_text("\n".join((babylm_sample / "babylm_dev" / "cbt.dev").read_text().splitlines()[:20]))
    run = [score.RunSpec.parse(f"a={tmp_path / 'run'}")]
    kw = {"kind": "text", "eval": [str(text)], "batch_rows": 4}
    out = tmp_path / "out"
    s = score.score_job(score.ScoreConfig(run=run, out=out, steps=[20], **kw))
    assert s.scored == [("a", 20)]
    # words seen = 50 * step: first reaching -> 10, 20
    s = score.score_job(score.ScoreConfig(run=run, out=out, words=[400, 1000], **kw))
    assert s.scored == [("a", 10)] and s.already_done == 1
    m_partial, rows = _read_out(out, "a")
    assert rows["step"].tolist() == [10, 20]
    s = score.score_job(score.ScoreConfig(run=run, out=out, **kw))  # all: rows merged in step order, scored rows kept
    assert [st for _, st in s.scored] == [0, 30] and s.already_done == 2
    m, rows = _read_out(out, "a")
    assert rows["step"].tolist() == [0, 10, 20, 30] and (rows["status"] == "done").all()
    np.testing.assert_array_equal(m[1:3], m_partial)
    with pytest.raises(ValueError, match="no checkpoint at step 7"):
        score.score_job(score.ScoreConfig(run=run, out=out, steps=[7], **kw))
    with pytest.raises(ValueError, match="no checkpoint has seen 1,000,000 words"):
        score.score_job(score.ScoreConfig(run=run, out=out, words=[score.parse_count("1M")], **kw))
    assert score.parse_count("2.5M") == 2_500_000 and score.parse_count("500K") == 500_000


def test_hash_mismatch_and_corrupt_checkpoints_are_reported_and_skipped(tmp_path, tiny_tokenizer, babylm_sample):
    workdir = tmp_path / "run"
    make_run(workdir, tiny_tokenizer, steps=(0, 10, 20, 30))
    index_file = RunDir(workdir).index_path
    index = json.loads(index_file.read_text())
    index[1]["params_hash"] = "0" * 64  # the index says other parameters were saved at step 10
    index_file.write_text(json.dumps(index))
    params_dir = pathlib.Path(RunDir(workdir).series_dir) / "20" / "params"
    for f in params_dir.rglob("*"):
        if f.is_file() and f.stat().st_size > 1000:
            f.write_bytes(b"\0" * 100)  # damage the stored arrays of step 20
    text = tmp_path / "t.txt"
    text.write_text("\n".join((babylm_sample / "babylm_dev" / "cbt.dev").read_text().splitlines()[:10]))
    out = tmp_path / "out"
    s = score.score_job(
        score.ScoreConfig(run=[score.RunSpec.parse(f"a={workdir}")], out=out, kind="text", eval=[str(text)])
    )
    assert [st for _, st in s.scored] == [0, 30]
    assert [(st, status) for _, st, status, _ in s.skipped] == [(10, "hash_mismatch"), (20, "corrupt")]
    m, rows = _read_out(out, "a")
    assert rows["status"].tolist() == ["done", "hash_mismatch", "corrupt", "done"]
    assert np.isnan(m[1:3]).all() and np.isfinite(m[[0, 3]]).all()


def test_bad_inputs_give_clear_errors_and_keep_written_scores(tmp_path, tiny_tokenizer, shared_data, babylm_sample):
    workdir = tmp_path / "run"
    make_run(workdir, tiny_tokenizer, steps=(0, 10))
    text = tmp_path / "t.txt"
    text.write_text("\n".join((babylm_sample / "babylm_dev" / "cbt.dev").read_text().splitlines()[:10]))
    run = [score.RunSpec.parse(f"a={workdir}")]

    empty = tmp_path / "no_ckpt"
    empty.mkdir()
    (empty / "config.json").write_text((workdir / "config.json").read_text())
    shutil.copy(tiny_tokenizer.path, empty / "tokenizer.model")
    with pytest.raises(checkpoints.CheckpointError, match="has no checkpoints"):
        score.score_job(
            score.ScoreConfig(
                run=[score.RunSpec.parse(f"e={empty}")], out=tmp_path / "o1", kind="text", eval=[str(text)]
            )
        )
    with pytest.raises(FileNotFoundError, match="babyjax run directory"):
        score.score_job(
            score.ScoreConfig(
                run=[score.RunSpec.parse(f"x={tmp_path / 'nowhere'}")],
                out=tmp_path / "o1",
                kind="text",
                eval=[str(text)],
            )
        )

    # A token sample made with another tokenizer (its recorded hash differs).
    sample = evalsets.TokenSample(
        tokens=np.full((3, 16), 7, np.int32),
        positions=np.array([[1, 5]] * 3, np.int32),
        offsets=np.arange(3) * 16,
        meta={"tokenizer_sha256": "f" * 64},
    )
    sample.save(tmp_path / "sample.npz")
    with pytest.raises(ValueError, match="made with another tokenizer"):
        score.score_job(
            score.ScoreConfig(run=run, out=tmp_path / "o2", kind="tokens", eval=[str(tmp_path / "sample.npz")])
        )

    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="no minimal pairs"):
        score.score_job(
            score.ScoreConfig(run=run, out=tmp_path / "o3", kind="pairs", eval=[str(tmp_path / "empty.jsonl")])
        )
    (tmp_path / "bad.jsonl").write_text('{"sentence_good": "a b", "sentence_bad": "b a"}\n{not json\n')
    with pytest.raises(ValueError, match="not valid JSON"):
        score.score_job(
            score.ScoreConfig(run=run, out=tmp_path / "o3", kind="pairs", eval=[str(tmp_path / "bad.jsonl")])
        )
    assert not (tmp_path / "o3").exists() and not (tmp_path / "o2").exists()

    # An output folder of another evaluation is refused and left untouched.
    out = tmp_path / "out"
    score.score_job(score.ScoreConfig(run=run, out=out, kind="text", eval=[str(text)]))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    text2 = tmp_path / "t2.txt"
    text2.write_text("another text\n")
    with pytest.raises(ValueError, match="another evaluation"):
        score.score_job(score.ScoreConfig(run=run, out=out, kind="text", eval=[str(text2)]))
    with pytest.raises(ValueError, match="another evaluation"):
        score.score_job(score.ScoreConfig(run=run, out=out, kind="text", eval=[str(text)], policy="no_context"))
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_token_sample_scores_the_sampled_positions(tmp_path, tiny_tokenizer):
    cfg = make_run(tmp_path / "run", tiny_tokenizer, steps=(0,), style="llama", num_kv_heads=2)
    rng = np.random.default_rng(0)
    tokens = rng.integers(5, tiny_tokenizer.vocab_size, size=(5, 24)).astype(np.int32)
    positions = np.sort(np.stack([rng.choice(np.arange(1, 24), 4, replace=False) for _ in range(5)]), 1)
    evalsets.TokenSample(
        tokens=tokens,
        positions=positions.astype(np.int32),
        offsets=np.arange(5) * 24,
        meta={"tokenizer_sha256": tiny_tokenizer.sha256},
    ).save(tmp_path / "s.npz")
    out = tmp_path / "out"
    score.score_job(
        score.ScoreConfig(
            run=[score.RunSpec.parse(f"a={tmp_path / 'run'}")],
            out=out,
            kind="tokens",
            eval=[str(tmp_path / "s.npz")],
            batch_rows=2,
        )
    )
    m, _ = _read_out(out, "a")
    tok = pd.read_csv(out / "tokens.csv", keep_default_na=False)
    assert json.loads((out / "meta.json").read_text())["first_token_policy"] == "sample_context"
    np.testing.assert_array_equal(tok["position"].to_numpy().reshape(5, 4), positions)
    np.testing.assert_array_equal(tok["context_length"], tok["position"])
    params = params_at(tmp_path / "run", 0)
    for n in range(5):
        want = -np_logprobs(params, cfg, tokens[n].tolist())[positions[n] - 1] / math.log(2)
        np.testing.assert_allclose(m[0, n * 4 : (n + 1) * 4], want, atol=1e-4)


@pytest.mark.parametrize("packing", ["pack", "chunk"])
def test_token_sample_is_scored_as_the_run_was_trained(tmp_path, tiny_tokenizer, packing):
    """A pack-trained run never attends across an EOS: its targets are scored in their own document (the EOS at
    position 0), exactly as that document scored alone; a chunk-trained run reads the whole window."""
    cfg = make_run(tmp_path / "run", tiny_tokenizer, steps=(0,), style="llama", num_kv_heads=2)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    config["data"]["packing"] = packing
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    rng = np.random.default_rng(1)
    tokens = rng.integers(5, tiny_tokenizer.vocab_size, size=(4, 24)).astype(np.int32)
    eos_at = [6, 10, 3, 15]
    for n, e in enumerate(eos_at):
        tokens[n, e] = tokenizer_lib.EOS_ID
    positions = np.array([[2, 5, 8, 20], [11, 12, 17, 23], [1, 4, 5, 9], [3, 14, 16, 22]], np.int32)
    evalsets.TokenSample(
        tokens=tokens, positions=positions, offsets=np.arange(4) * 24, meta={"tokenizer_sha256": tiny_tokenizer.sha256}
    ).save(tmp_path / "s.npz")
    out = tmp_path / "out"
    score.score_job(
        score.ScoreConfig(
            run=[score.RunSpec.parse(f"a={tmp_path / 'run'}")],
            out=out,
            kind="tokens",
            eval=[str(tmp_path / "s.npz")],
            batch_rows=2,
        )
    )
    m, _ = _read_out(out, "a")
    assert json.loads((out / "meta.json").read_text())["contexts"] == {
        "a": {"pack": "documents", "chunk": "window"}[packing]
    }
    params = params_at(tmp_path / "run", 0)
    for n, e in enumerate(eos_at):
        whole = -np_logprobs(params, cfg, tokens[n].tolist()) / math.log(2)
        alone = -np_logprobs(params, cfg, tokens[n, e:].tolist()) / math.log(2)  # the document after the EOS
        for j, pos in enumerate(positions[n]):
            want = alone[pos - 1 - e] if packing == "pack" and pos > e else whole[pos - 1]
            assert m[0, 4 * n + j] == pytest.approx(want, abs=1e-4)
    with pytest.raises(ValueError, match="contexts"):  # an output scored the other way is not continued
        stored = json.loads((out / "meta.json").read_text())
        stored["contexts"] = {"a": "window" if packing == "pack" else "documents"}
        (out / "meta.json").write_text(json.dumps(stored))
        score.score_job(
            score.ScoreConfig(
                run=[score.RunSpec.parse(f"a={tmp_path / 'run'}")],
                out=out,
                kind="tokens",
                eval=[str(tmp_path / "s.npz")],
                batch_rows=2,
            )
        )


def _parsed(argv: list[str]) -> score.ScoreConfig:
    """The ScoreConfig that `python -m babyjax.score ARGV` builds (its flags, parsed in process)."""
    from absl import flags

    from babyjax.commands import score as score_command

    values = flags.FlagValues()
    score_command.define_flags(values)
    values(["babyjax.score", *argv])
    return score_command.config_from_flags(values)


def test_the_study_and_the_command_line_build_the_same_score_config(tmp_path, shared_data):
    from babyjax.study import spec
    from babyjax.study.runner import Study
    from tests.test_study import write_study

    study = Study(
        spec.load(str(write_study(tmp_path / "s.py", shared_data, tmp_path / "tfds"))), tmp_path / "w", progress=False
    )
    jobs = study.score_jobs()
    assert [(out, names) for out, names, _ in jobs] == [(o, ["seed0", "seed1"]) for o in ("tokens", "zorro")]
    for _, _, config in jobs:
        assert _parsed(config.to_argv()) == config
    zorro = jobs[1][2]
    runs = [f"--run=seed{i}={tmp_path / 'w' / 'runs' / f'seed{i}'}" for i in (0, 1)]
    want = [
        *runs,
        "--kind=pairs",
        f"--eval={shared_data / 'zorro'}",
        "--limit=4",
        f"--out={tmp_path / 'w/scores/zorro'}",
    ]
    assert sorted(zorro.to_argv()) == sorted(want)
    assert jobs[0][2].kind == "tokens" and jobs[0][2].eval == (str(tmp_path / "w" / "token_sample.npz"),)


def test_every_score_option_is_one_flag_and_is_checked(tmp_path):
    every = score.ScoreConfig(
        run=["a=/r/a", "/r/b", "c=hf:/hf/c"],
        kind="pairs",
        eval=["/e/1", pathlib.Path("/e/2")],
        out=tmp_path,
        steps=["0", 10],
        words=["1M", 500],
        policy="no_context",
        suspect="score",
        scoring="mntp",
        seq_len=64,
        stride=32,
        batch_rows=4,
        dtype="bfloat16",
        suite="zorro",
        text_unit="file",
        text_suffix=".md",
        head_tokens=128,
        limit=3,
        ewok_password="secret",
        mesh_data=2,
        mesh_fsdp=4,
        mesh_tensor=8,
        cpu_devices=1,
    )
    assert all(getattr(every, f.name) != f.default for f in dataclasses.fields(every))
    assert every.run == (
        score.RunSpec("a", pathlib.Path("/r/a")),
        score.RunSpec("b", pathlib.Path("/r/b")),
        score.RunSpec("c", pathlib.Path("/hf/c"), imported=True),
    )
    assert every.steps == (0, 10) and every.words == (1_000_000, 500) and every.out == str(tmp_path)
    assert dict(every.mesh) == {"data": 2, "fsdp": 4, "tensor": 8}
    assert _parsed(every.to_argv()) == every and _parsed([]) == score.ScoreConfig()
    spelled = [
        "--run",
        "a=/r/a",
        "--run=/r/b",
        "--run=c=hf:/hf/c",
        "--eval",
        "/e/1",
        "--eval=/e/2",
        "--steps",
        "0,10",
        "--words=1M,500",
    ]
    assert _parsed(spelled) == score.ScoreConfig(run=every.run, eval=every.eval, steps=(0, 10), words=every.words)
    every.check()
    for bad, message in [
        ({"out": None}, "--out is required: the folder the scores go to"),
        ({"kind": "nope"}, "unknown --kind='nope': use one of tokens, text, pairs, babylm2025"),
        ({"scoring": "pll"}, "unknown --scoring='pll': use one of auto, causal, pll_original, pll_within_word_l2r"),
        ({"policy": "x"}, "unknown --policy='x': use one of eot_context, no_context"),
        ({"suite": "cola"}, "unknown --suite='cola': use one of blimp, blimp_supplement, zorro"),
        ({"run": []}, "no run to score: pass --run name=workdir"),
        ({"run": ["a=/r/a", "a=/r/b"]}, "two runs have the same name"),
        ({"eval": []}, "no evaluation set: pass --eval"),
    ]:
        with pytest.raises(InputError, match=f"^{re.escape(message)}"):
            dataclasses.replace(every, **bad).check()
    with pytest.raises(ValueError, match="^--steps takes series steps as whole numbers"):
        score.ScoreConfig(steps=["1", "x"])
    with pytest.raises(ValueError, match="^run name 'a b' may only hold"):
        score.ScoreConfig(run=["a b=/r"])


def test_help_lists_every_score_option_and_a_bad_flag_is_one_line():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}

    def run(*argv: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "babyjax.score", *argv]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)

    helped = run("--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: python -m babyjax.score --run NAME=WORKDIR")
    text = " ".join(helped.stdout.split())
    for field in dataclasses.fields(score.ScoreConfig):
        assert f"--{field.name}: " in text and " ".join(field.metadata["help"].split())[:30] in text, field.name
    bad = run("--kind=nope", "--out=x")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: "), bad.stderr


def test_command_line(tmp_path, tiny_tokenizer, babylm_sample):
    make_run(tmp_path / "run", tiny_tokenizer, steps=(0, 10))
    text = tmp_path / "t.txt"
    text.write_text("\n".join((babylm_sample / "babylm_dev" / "cbt.dev").read_text().splitlines()[:10]))
    env = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, "JAX_PLATFORMS": "cpu"}
    cmd = [
        sys.executable,
        "-m",
        "babyjax.score",
        f"--run=a={tmp_path / 'run'}",
        "--kind=text",
        f"--eval={text}",
        f"--out={tmp_path / 'out'}",
        "--batch_rows=4",
    ]
    ok = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "scored 2 checkpoints" in ok.stdout
    assert "mesh {'data': 2, 'fsdp': 1, 'tensor': 1} of cpu devices" in ok.stderr  # --cpu_devices=2 by default
    one = subprocess.run(
        cmd[:-2] + [f"--out={tmp_path / 'one'}", "--batch_rows=4", "--cpu_devices=1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert one.returncode == 0 and "mesh {'data': 1, " in one.stderr, one.stderr[-2000:]
    np.testing.assert_allclose(_read_out(tmp_path / "one", "a")[0], _read_out(tmp_path / "out", "a")[0], atol=1e-5)
    env = {**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=3"}  # the user's count wins
    bad = subprocess.run(
        cmd[:-2] + ["--kind=pairs", f"--eval={tmp_path / 'missing.jsonl'}", f"--out={tmp_path / 'o2'}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "missing.jsonl" in bad.stderr.strip().splitlines()[-1]
    three = subprocess.run(
        cmd[:-2] + [f"--out={tmp_path / 'three'}", "--batch_rows=3"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert three.returncode == 0 and "mesh {'data': 3, " in three.stderr, three.stderr[-2000:]


@pytest.mark.slow
def test_two_processes_write_what_one_process_writes(tmp_path, tiny_tokenizer, babylm_sample):
    """jax.distributed on loopback: 2 processes x 2 CPU devices give the single-process output, written once."""
    import socket

    make_run(tmp_path / "run", tiny_tokenizer, steps=(0, 10, 20), style="llama", num_kv_heads=2)
    text = tmp_path / "t.txt"
    text.write_text("\n".join((babylm_sample / "babylm_dev" / "cbt.dev").read_text().splitlines()[:30]))
    kw = {"kind": "text", "eval": [str(text)], "batch_rows": 8, "seq_len": 32}
    score.score_job(score.ScoreConfig(run=[score.RunSpec.parse(f"a={tmp_path / 'run'}")], out=tmp_path / "one", **kw))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "babyjax.score",
                f"--run=a={tmp_path / 'run'}",
                "--kind=text",
                f"--eval={text}",
                f"--out={tmp_path / 'two'}",
                "--batch_rows=8",
                "--seq_len=32",
                "--mesh_data=2",
                "--mesh_fsdp=2",
                f"--coordinator_address=127.0.0.1:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    one, _ = _read_out(tmp_path / "one", "a")
    two, rows_two = _read_out(tmp_path / "two", "a")
    np.testing.assert_allclose(two, one, atol=1e-5)
    assert rows_two["status"].tolist() == ["done"] * 3
    assert (tmp_path / "one" / "tokens.csv").read_bytes() == (tmp_path / "two" / "tokens.csv").read_bytes()


def test_word_surprisal_sums_the_pieces_of_each_word():
    tokens = pd.DataFrame(
        {
            "seq": [0, 0, 0, 0, 1, 1, 1],
            "position": [0, 1, 2, 3, 0, 1, 2],
            "token": ["\u2581the", "\u2581dog", "gy", "\u2581ran", "\u2581a", "b", "\u2581c"],
        }
    )
    s = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [np.nan, 1, 1, 1, 1, 1, 1]])
    from babyjax.analysis.words import word_surprisal

    words, w = word_surprisal(s, tokens)
    assert words["text"].tolist() == ["the", "doggy", "ran", "ab", "c"]
    assert words["word"].tolist() == [0, 1, 2, 0, 1] and words["num_pieces"].tolist() == [1, 2, 1, 2, 1]
    np.testing.assert_array_equal(w[0], [1, 5, 4, 11, 7])
    assert np.isnan(w[1, 0]) and w[1, 1] == 2


def test_text_units_line_and_file(tmp_path, tiny_tokenizer):
    (tmp_path / "a.txt").write_text("the dog ran\n\nwhere is it\n")
    (tmp_path / "b.txt").write_text("hello\n")
    by_line = score.load_text([str(tmp_path)], tiny_tokenizer)
    assert by_line.token_ids == [tiny_tokenizer.encode(t) for t in ("the dog ran", "where is it", "hello")]
    assert by_line.sequences["line"].tolist() == [0, 2, 0]
    by_file = score.load_text([str(tmp_path)], tiny_tokenizer, unit="file")
    # as in the training stream (EOS d1 EOS d2 ...), after the eot_context EOS
    assert by_file.token_ids[0] == tiny_tokenizer.encode("the dog ran") + [
        tokenizer_lib.EOS_ID
    ] + tiny_tokenizer.encode("where is it")
    assert by_file.eval_hash == by_line.eval_hash != score.load_text([str(tmp_path)], tiny_tokenizer, limit=1).eval_hash
    with pytest.raises(FileNotFoundError):
        score.load_text([str(tmp_path / "none.txt")], tiny_tokenizer)


def test_a_damaged_or_foreign_score_folder_is_refused_and_left_as_it_is(tmp_path):
    from babyjax.analysis.report import write_report
    from babyjax.score.store import RunTable, ScoreFolder

    table = RunTable(tmp_path / "out" / "runs" / "r", num_tokens=6)
    table.add([{"step": s, "tokens_seen": s, "words_seen": s} for s in (0, 10, 20)])
    for s in (0, 10, 20):
        table.write(s, np.full(6, 1.5, np.float32))
    del table
    matrix = tmp_path / "out" / "runs" / "r" / "surprisal.npy"
    with open(matrix, "r+b") as f:  # cut off the last row
        f.truncate(matrix.stat().st_size - 6 * 4)
    size = matrix.stat().st_size
    with pytest.raises(ValueError, match="is truncated"):
        RunTable(tmp_path / "out" / "runs" / "r", num_tokens=6)  # a rerun: never grown with zeros
    assert matrix.stat().st_size == size
    other = tmp_path / "a_run"
    other.mkdir()
    (other / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="holds other files \\(config.json\\) and no score output"):
        ScoreFolder(other, {}, pd.DataFrame({"i": [1]}), pd.DataFrame({"s": [1]}), primary=True)
    assert sorted(p.name for p in other.iterdir()) == ["config.json"]
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        ScoreFolder(tmp_path / "a_file", {}, pd.DataFrame({"i": [1]}), pd.DataFrame({"s": [1]}), primary=True)
    with pytest.raises(ValueError, match="is a score output or a run folder"):
        write_report([tmp_path / "out"], other, progress=False)
    assert sorted(p.name for p in other.iterdir()) == ["config.json"]

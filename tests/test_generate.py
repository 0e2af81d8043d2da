"""babyjax.score.generate: greedy equals step-by-step argmax of the full forward pass, seeded sampling, EOS, bad
input."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from babyjax.checkpoints import series as checkpoints
from babyjax.data.tokenizer import EOS_ID, Tokenizer
from babyjax.model.transformer import ModelConfig, Transformer
from babyjax.score import generate
from configs import base
from tests.test_score import random_model, train_tiny_tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_LEN = 12  # small, so that 20 new tokens slide the window past the context cap
PROMPTS = ["the little", "do you want to", "", "once upon a time there was a little girl who lived in the woods"]


def _bigram_chain(cfg: ModelConfig, chain: dict[int, int], seed: int = 0) -> Transformer:
    """A model whose greedy next token after token a is chain[a]: blocks output zero, no positions, and an untied
    head whose column chain[a] is the normed embedding of a (its own dot product wins)."""
    model = random_model(cfg, seed)
    state = nnx.state(model, nnx.Param)
    pure = jax.tree.map(np.asarray, nnx.to_pure_dict(state))
    for blk in pure["blocks"].values():
        for name in ("wo", "bo"):
            blk["attn"][name] = np.zeros_like(blk["attn"][name])
        for name in ("w_out", "b_out"):
            blk["mlp"][name] = np.zeros_like(blk["mlp"][name])
    pure["pos_embed"] = np.zeros_like(pure["pos_embed"])
    pure["norm_out"] = {"scale": np.ones(cfg.d_model, np.float32), "bias": np.zeros(cfg.d_model, np.float32)}
    e = pure["embed"] - pure["embed"].mean(-1, keepdims=True)
    z = e / np.sqrt((e * e).mean(-1, keepdims=True) + cfg.norm_eps)
    head = np.zeros((cfg.d_model, cfg.vocab_size), np.float32)
    for a, b in chain.items():
        head[:, b] = 10.0 * z[a]
    pure["head"] = head
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)
    return model


def make_run(workdir: pathlib.Path, tok: Tokenizer, models: dict[int, Transformer], cfg: ModelConfig) -> None:
    """A run directory as babyjax.train.loop leaves it, whose series holds the given models."""
    c = base.get_config()
    c.tokenizer.vocab_size = tok.vocab_size
    c.model.num_layers, c.model.d_model, c.model.num_heads, c.model.mlp_dim = cfg.num_layers, cfg.d_model, 4, 48
    c.model.max_len, c.model.dropout, c.model.tie_embeddings = cfg.max_len, 0.0, cfg.tie_embeddings
    c.model.style, c.model.num_kv_heads = cfg.style, cfg.num_kv_heads
    c.ckpt.schedule, c.ckpt.steps = "list", tuple(models)
    workdir.mkdir(parents=True)
    (workdir / "config.json").write_text(c.to_json_best_effort())
    shutil.copy(tok.path, workdir / "tokenizer.model")
    with checkpoints.RunCheckpoints(workdir, c.ckpt, num_steps=max(models)) as ckpt:
        for step, model in models.items():
            ckpt.save_series(
                step,
                nnx.state(model, nnx.Param),
                {"tokens_seen": 10.0 * step, "words_seen": 8.0 * step, "wall_time": float(step)},
            )


@pytest.fixture(scope="module")
def tok(tmp_path_factory, babylm_sample) -> Tokenizer:
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok"), babylm_sample)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tok):
    """Steps 0 and 10: random models; step 20: a bigram chain 'the' -> 'look' -> 'at' -> EOS -> 'the'."""
    cfg = ModelConfig(
        vocab_size=tok.vocab_size,
        num_layers=2,
        d_model=32,
        num_heads=4,
        num_kv_heads=4,
        mlp_dim=48,
        max_len=MAX_LEN,
        dropout=0.0,
        tie_embeddings=False,
    )
    the, look, at = tok.encode("the look at")  # single pieces in the 400-piece vocabulary
    assert len({the, look, at, EOS_ID}) == 4
    chain = {the: look, look: at, at: EOS_ID, EOS_ID: the}  # without the EOS stop: ... at the look at ...
    models = {0: random_model(cfg, 0), 10: random_model(cfg, 1), 20: _bigram_chain(cfg, chain)}
    workdir = tmp_path_factory.mktemp("gen") / "run"
    make_run(workdir, tok, models, cfg)
    return workdir, cfg, (the, look, at)


def _plain_forward(gen: generate.Generator):
    """The model's full forward pass, jitted with the parameters as an argument (one compile per length)."""
    fn = jax.jit(lambda params, ids: nnx.merge(gen.graphdef, params, gen._rest)(ids))
    return lambda params: lambda ids_1xL: fn(params, ids_1xL)


def _reference_greedy(forward, ids: list[int], n: int, max_len: int) -> list[int]:
    """Step-by-step argmax of the full forward pass over the latest max_len tokens (positions from 0)."""
    out = []
    for _ in range(n):
        logits_1xLxV = forward(jnp.asarray([ids[-max_len:]], jnp.int32))
        nxt = int(jnp.argmax(logits_1xLxV[0, -1]))
        out.append(nxt)
        if nxt == EOS_ID:
            break
        ids = ids + [nxt]
    return out


def test_greedy_equals_step_by_step_argmax_and_compiles_once(run):
    workdir, _, _ = run
    gen = generate.Generator(workdir)
    sampling = generate.Sampling(max_new_tokens=20)
    plain = _plain_forward(gen)
    for step in (0, 10):
        params = gen.restore(step)
        forward = plain(params)
        got = gen.generate_ids(params, PROMPTS, sampling)
        for prompt, new in zip(PROMPTS, got):
            assert new == _reference_greedy(forward, gen.prompt_ids(prompt), 20, MAX_LEN), (step, prompt)
        assert max(len(x) for x in got) == 20  # random models rarely say EOS: the context cap is exercised
        assert len(gen.prompt_ids(PROMPTS[-1])) > MAX_LEN  # a prompt longer than the context
    assert gen._fn._cache_size() == 1  # one compilation for every checkpoint of the run
    texts = generate.generate(workdir, [0, 10], PROMPTS, max_new_tokens=20)
    assert set(texts) == {0, 10} and list(texts[0]) == PROMPTS
    again = generate.generate(workdir, [0, 10], PROMPTS[::-1], max_new_tokens=20)
    for step in (0, 10):  # deterministic and independent of the other prompts of the batch
        assert all(texts[step][p] == again[step][p] for p in PROMPTS)
        assert all(texts[step][p].startswith(p) and len(texts[step][p]) > len(p) for p in PROMPTS)
    assert texts[0] != texts[10]


def test_llama_style_greedy_equals_step_by_step_argmax(tok, tmp_path):
    """RoPE and grouped-query attention: the sliding window restarts positions at 0, as the reference does."""
    cfg = ModelConfig(
        vocab_size=tok.vocab_size,
        style="llama",
        num_layers=2,
        d_model=32,
        num_heads=4,
        num_kv_heads=2,
        mlp_dim=48,
        max_len=MAX_LEN,
        dropout=0.0,
        tie_embeddings=True,
    )
    make_run(tmp_path / "llama", tok, {0: random_model(cfg, 3)}, cfg)
    gen = generate.Generator(tmp_path / "llama")
    params = gen.restore(0)
    forward = _plain_forward(gen)(params)
    got = gen.generate_ids(params, PROMPTS[:2], generate.Sampling(max_new_tokens=16))
    for prompt, new in zip(PROMPTS[:2], got):
        assert new == _reference_greedy(forward, gen.prompt_ids(prompt), 16, MAX_LEN), prompt


def test_sampling_repeats_with_a_seed(run):
    workdir, _, _ = run
    gen = generate.Generator(workdir)
    top50 = generate.Sampling(max_new_tokens=30, temperature=1.0, top_k=50, seed=0)
    a = gen.generate(10, PROMPTS, top50)
    assert gen.generate(10, PROMPTS, top50) == a
    assert gen.generate(10, PROMPTS[:1], top50) == {PROMPTS[0]: a[PROMPTS[0]]}  # each prompt has its own stream
    b = gen.generate(10, PROMPTS, dataclasses.replace(top50, seed=1))
    assert all(a[p] != b[p] for p in PROMPTS)  # 30 tokens of a near-uniform model: always differ
    greedy = gen.generate(10, PROMPTS, generate.Sampling(max_new_tokens=30))
    assert gen.generate(10, PROMPTS, generate.Sampling(30, temperature=0.7, top_k=1, seed=5)) == greedy


def test_eos_stops_generation(run, tok):
    workdir, _, (_, look, at) = run
    gen = generate.Generator(workdir)
    ids = gen.generate_ids(gen.restore(20), ["where is the", "the look"], generate.Sampling(max_new_tokens=15))
    assert ids == [[look, at, EOS_ID], [at, EOS_ID]]  # rows stop at different times
    texts = generate.generate(workdir, [20], ["where is the", "the look"], max_new_tokens=15)[20]
    assert texts == {"where is the": "where is the look at", "the look": "the look at"}


def test_bad_input_gives_clear_errors(run, tmp_path):
    workdir, _, _ = run
    with pytest.raises(ValueError, match=r"no checkpoint at step 7 .* 3 steps \(0, 10, 20\)"):
        generate.generate(workdir, [0, 7], ["the"])
    with pytest.raises(FileNotFoundError, match="config.json"):
        generate.generate(tmp_path / "nope", [0], ["the"])
    for kw, what in [
        ({"temperature": -1.0}, "temperature"),
        ({"top_k": 10**6}, "top_k"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
    ]:
        with pytest.raises(ValueError, match=what):
            generate.generate(workdir, [0], ["the"], **kw)
    out = tmp_path / "g.json"
    out.write_text("{}")
    with pytest.raises(ValueError, match="no checkpoint at step 5"):
        generate.write_generations(workdir, [5], out=out)
    assert out.read_text() == "{}"  # nothing written over on error
    foreign = tmp_path / "config.json"  # --out pointing at another file: refused before anything is generated
    foreign.write_text('{"model": {"d_model": 32}}')
    with pytest.raises(ValueError, match="exists and is not a generations file"):
        generate.write_generations(workdir, [0], out=foreign)
    assert foreign.read_text() == '{"model": {"d_model": 32}}'
    with pytest.raises(ValueError, match="is a folder"):
        generate.write_generations(workdir, [0], out=tmp_path)
    with pytest.raises(ValueError, match="ask for at least one prompt"):
        generate.heldout_prompts(workdir, -3)


def test_spread_steps_over_log_step():
    steps = list(range(1001))
    chosen = generate.spread_steps(steps, 6)
    assert chosen[0] == 0 and chosen[-1] == 1000 and len(chosen) == 6
    assert chosen == sorted(chosen) and chosen[1] < 10  # log spacing: dense early
    assert generate.spread_steps([0, 5, 9], 6) == [0, 5, 9]


def test_command_line_writes_generations_json(run, tmp_path):
    workdir, _, _ = run
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu"}
    out = tmp_path / "gens.json"
    cmd = [
        sys.executable,
        "-m",
        "babyjax.generate",
        "--workdir",
        str(workdir),
        "--prompt",
        "the look",
        "--prompt",
        "where is",
        "--max_new_tokens",
        "8",
        "--out",
        str(out),
    ]
    ok = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert ok.returncode == 0, ok.stderr[-2000:]
    gens = json.loads(out.read_text())
    assert list(gens) == ["0", "10", "20"] and set(gens["20"]) == {"the look", "where is"}
    assert gens["20"]["the look"] == "the look at"
    bad = subprocess.run(
        cmd[:5] + ["--steps", "0,3"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("babyjax.generate: error: no checkpoint at step 3")


def test_heldout_prompts_are_the_openings_of_dev_documents(run, tok, monkeypatch):
    from babyjax.data import pipeline

    lines = [
        "the dog ran to the big red barn and back",
        "no",
        "look at the cat on the warm mat today please",
        "where is my ball i want it now mummy",
    ]
    ids = np.concatenate([[EOS_ID, *tok.encode(x)] for x in lines]).astype(np.int32)
    starts = np.r_[0, np.cumsum([1 + len(tok.encode(x)) for x in lines])]
    words_cum = np.r_[0, np.cumsum([len(x.split()) for x in lines])].astype(np.int64)
    fake = pipeline.TokenizedSplit(tokens=ids, doc_starts=starts, words_cum=words_cum)
    monkeypatch.setattr(pipeline, "load_split_tokens", lambda *a, **k: fake)
    prompts = generate.heldout_prompts(run[0], 3, words=3, seed=0)
    assert sorted(prompts) == sorted(" ".join(x.split()[:3]) for x in lines if len(x.split()) >= 8)
    with pytest.raises(ValueError, match="at most"):
        generate.heldout_prompts(run[0], 4, words=3)


def test_text_measures_of_generations():
    from babyjax.analysis import generation

    gens = {
        "0": {"the dog": "the dog the the the the", "look at": "look at"},
        "100": {"the dog": "the dog ran to the big barn", "look at": "look at the cat ."},
    }
    m = generation.text_measures(gens).set_index("step")
    assert m.loc[0, "mean_words"] == 2.0 and m.loc[100, "mean_words"] == 4.0
    assert m.loc[0, "repeated_3gram_rate"] == pytest.approx(1 / 2)  # (the the the) twice: the second repeats
    assert m.loc[100, "repeated_3gram_rate"] == 0.0
    assert m.loc[0, "distinct_1"] == pytest.approx(1 / 4) and m.loc[100, "distinct_2"] == pytest.approx(1.0)

"""Train/eval step: 8-device meshes equal 1 device, sharded state, golden one-step metrics, grad accumulation."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from babyjax.model.sharding import make_mesh
from babyjax.model.transformer import ModelConfig
from babyjax.train.step import (
    TrainState,
    init_train_state,
    make_eval_step,
    make_train_step,
    memory_analysis_summary,
)
from tests.test_score import np_log_softmax
from tests.test_sharding import per_device_bytes

VOCAB, B, L = 97, 8, 16


def tiny_cfg(**overrides) -> ModelConfig:
    base = {
        "vocab_size": VOCAB,
        "num_layers": 2,
        "d_model": 32,
        "num_heads": 4,
        "num_kv_heads": 4,
        "mlp_dim": 64,
        "max_len": L,
        "dropout": 0.0,
    }
    return ModelConfig(**{**base, **overrides})


def optim_cfg(**overrides) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(
        {
            "lr": 1e-2,
            "schedule": "cosine",
            "warmup_steps": 2,
            "end_lr_ratio": 0.1,
            "wsd_decay_fraction": 0.2,
            "b1": 0.9,
            "b2": 0.95,
            "eps": 1e-8,
            "weight_decay": 0.1,
            "grad_clip": 1.0,
            "grad_accum_steps": 1,
        }
    )
    c.update(overrides)
    return c


def mesh_of(data: int, fsdp: int, tensor: int):
    cfg = ml_collections.ConfigDict({"data": data, "fsdp": fsdp, "tensor": tensor})
    return make_mesh(cfg, jax.devices()[: data * fsdp * tensor])


def make_batch(seed: int = 0, batch: int = B) -> dict[str, np.ndarray]:
    """Packed rows: two documents per row (split point varies), a padded tail on odd rows."""
    rng = np.random.default_rng(seed)
    inputs = rng.integers(5, VOCAB, (batch, L)).astype(np.int32)
    targets = rng.integers(5, VOCAB, (batch, L)).astype(np.int32)
    segment_ids = np.ones((batch, L), np.int32)
    positions = np.tile(np.arange(L, dtype=np.int32), (batch, 1))
    weights = np.ones((batch, L), np.float32)
    for r in range(batch):
        cut = 4 + r % 7
        segment_ids[r, cut:] = 2
        positions[r, cut:] = np.arange(L - cut)
        weights[r, cut - 1] = 0.0  # last token of document 1 has no same-document target
        if r % 2:
            segment_ids[r, -3:], positions[r, -3:], weights[r, -4:] = 0, 0, 0.0
    return {
        "inputs": inputs,
        "targets": targets,
        "segment_ids": segment_ids,
        "positions": positions,
        "weights": weights,
        "num_words": np.full((batch,), 5.0, np.float32),
        "num_tokens": weights.sum(1),
    }


def run_steps(cfg: ModelConfig, mesh, n: int = 2, accum: int = 1, **optim) -> tuple[list[dict], TrainState]:
    graphdef, state, shardings, tx, sched = init_train_state(cfg, optim_cfg(**optim), 10, mesh, seed=0)
    step = make_train_step(graphdef, tx, sched, mesh, shardings, grad_accum_steps=accum)
    metrics = []
    for i in range(n):
        state, m = step(state, make_batch(i))
        metrics.append({k: float(v) for k, v in m.items()})
    return metrics, state


def flat_params(state: TrainState) -> dict:
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(state.params)}


def assert_params_match(state, ref_state) -> None:
    """Updated parameters equal the reference, except the key bias, whose true gradient is zero.

    The key bias adds q.b_k to every score of a row: softmax ignores it, so Adam turns float noise (which differs
    with the reduction order of each mesh) into +-lr-sized steps. It only has to stay noise-sized; its effect on the
    loss is checked by the callers.
    """
    ref = flat_params(ref_state)
    for path, x in flat_params(state).items():
        if "['bk']" in path:
            assert np.abs(x).max() < 1e-4 and np.abs(ref[path]).max() < 1e-4
            continue
        np.testing.assert_allclose(x, ref[path], rtol=1e-4, atol=1e-5, err_msg=path)


@pytest.fixture(scope="module")
def reference():
    return run_steps(tiny_cfg(), mesh_of(1, 1, 1))


@pytest.mark.parametrize("shape", [(2, 4, 1), (1, 2, 4), (2, 1, 4)])
def test_meshes_equal_one_device(reference, shape):
    ref_metrics, ref_state = reference
    metrics, state = run_steps(tiny_cfg(), mesh_of(*shape))
    for got, want in zip(metrics, ref_metrics):
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=2e-5, err_msg=key)
    assert_params_match(state, ref_state)


def test_state_sharded_by_the_rules():
    mesh = mesh_of(1, 2, 4)  # fsdp 2 x tensor 4
    _, state, _, _, _ = init_train_state(tiny_cfg(style="llama", num_kv_heads=2), optim_cfg(), 10, mesh, 0)
    attn = state.params["blocks"][0]["attn"]
    assert attn["wq"].get_value().sharding.spec == P("fsdp", "tensor", None)  # (embed, heads, kv)
    assert attn["wk"].get_value().sharding.spec == P("fsdp", None, None)  # 2 kv heads do not divide tensor=4
    assert state.params["blocks"][0]["mlp"]["w_out"].get_value().sharding.spec == P("tensor", "fsdp")
    assert state.params["embed"].get_value().sharding.spec == P(None, "fsdp")  # vocab 97 is prime: replicated
    assert state.params["blocks"][0]["norm_mlp"]["scale"].get_value().sharding.spec == P(None)
    adam = state.opt_state[1][0]  # chain(clip, adamw(scale_by_adam, ...))
    assert adam.mu["blocks"][0]["attn"]["wq"].get_value().sharding.spec == P("fsdp", "tensor", None)
    assert adam.nu["blocks"][1]["mlp"]["w_in"].get_value().sharding.spec == P("fsdp", "tensor")
    one = init_train_state(tiny_cfg(style="llama", num_kv_heads=2), optim_cfg(), 10, mesh_of(1, 1, 1), 0)[1]
    assert per_device_bytes(state.params) < per_device_bytes(one.params) / 3
    assert per_device_bytes(state.opt_state) < per_device_bytes(one.opt_state) / 3


def packed_documents(batch: dict) -> list[np.ndarray]:
    """(inputs, targets, weights) [documents, L] of every packed document of a batch, each from column 0 and padded
    at its end (causal attention: what comes after a token changes nothing before it)."""
    docs = []
    for r in range(batch["inputs"].shape[0]):
        for seg in (1, 2):
            cols = np.flatnonzero(batch["segment_ids"][r] == seg)
            docs.append([np.pad(batch[k][r, cols], (0, L - len(cols))) for k in ("inputs", "targets", "weights")])
    return [np.stack(x) for x in zip(*docs)]


def reference_loss(params: dict, cfg: ModelConfig, batch: dict, xp=np):
    """The step's loss from the float64 reference forward (tests/test_score.py; xp=jnp with x64 on to differentiate
    it), each packed document run alone: sum of weight x cross-entropy over the sum of weights."""
    ids, targets, weights = packed_documents(batch)
    forward = lambda i: np_log_softmax(params, cfg, i, np=xp)
    logp = jax.vmap(forward)(ids) if xp is jnp else np.stack([forward(i) for i in ids])
    ce = -xp.take_along_axis(logp, xp.asarray(targets)[..., None], -1)[..., 0]
    return (weights * ce).sum() / weights.sum()


def test_golden_one_step(reference):
    m = reference[0][0]
    assert abs(m["loss"] - math.log(VOCAB)) < 0.05  # a fresh model predicts ~uniformly
    # the same step computed apart: the float64 reference forward at the initial parameters, its gradient by jax.grad
    cfg, batch = tiny_cfg(), make_batch(0)
    params = nnx.to_pure_dict(init_train_state(cfg, optim_cfg(), 10, mesh_of(1, 1, 1), seed=0)[1].params)
    np.testing.assert_allclose(m["loss"], reference_loss(params, cfg, batch), rtol=1e-5)
    with jax.enable_x64(True):
        grads = jax.jit(jax.grad(lambda p: reference_loss(p, cfg, batch, xp=jnp)))(params)
        norm = float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads))))
    np.testing.assert_allclose(m["grad_norm"], norm, rtol=1e-4)
    assert m["num_tokens"] == batch["weights"].sum() and m["num_words"] == 5.0 * B
    assert m["lr"] == pytest.approx(5e-3)  # warmup over 2 steps: step k uses lr * (k + 1) / 2, never 0
    assert reference[0][1]["lr"] == pytest.approx(1e-2) and int(reference[1].step) == 2


def test_grad_accumulation_equals_one_big_batch(reference):
    ref_metrics, ref_state = reference  # one device, no accumulation
    mesh = mesh_of(2, 2, 1)
    graphdef, state, shardings, tx, sched = init_train_state(tiny_cfg(), optim_cfg(), 10, mesh, seed=0)
    with pytest.raises(ValueError, match="grad_accum_steps"):
        make_train_step(graphdef, tx, sched, mesh, shardings, grad_accum_steps=3)(state, make_batch(0))
    step = make_train_step(graphdef, tx, sched, mesh, shardings, grad_accum_steps=4)
    for i, want in enumerate(ref_metrics):
        state, got = step(state, make_batch(i))
        for key in want:
            np.testing.assert_allclose(float(got[key]), want[key], rtol=2e-5, err_msg=key)
    assert_params_match(state, ref_state)
    assert int(state.step) == 2


@pytest.mark.parametrize(
    "overrides",
    [
        {"style": "llama", "num_kv_heads": 2, "tie_embeddings": False, "dropout": 0.1},
        {"dtype": "bfloat16", "dropout": 0.1},
    ],
)
def test_other_variants_train(overrides):
    metrics, state = run_steps(tiny_cfg(**overrides), mesh_of(2, 2, 2), n=3, lr=3e-2)
    assert all(np.isfinite(m["loss"]) and np.isfinite(m["grad_norm"]) for m in metrics)
    assert int(state.step) == 3 and state.params["embed"].get_value().dtype == jnp.float32


def test_eval_step_and_memory_summary():
    cfg, mesh = tiny_cfg(), mesh_of(2, 4, 1)
    graphdef, state, shardings, tx, sched = init_train_state(cfg, optim_cfg(), 10, mesh, 0)
    eval_step = make_eval_step(graphdef, mesh, shardings)
    batch = make_batch(3)
    loss_sum, weight_sum = eval_step(state, batch)
    assert float(weight_sum) == batch["weights"].sum()
    assert abs(float(loss_sum) / float(weight_sum) - math.log(VOCAB)) < 0.05
    train_step = make_train_step(graphdef, tx, sched, mesh, shardings)
    compiled = train_step.lower(state, batch).compile()
    summary = memory_analysis_summary(compiled)
    assert summary.startswith("memory") and "MiB" in summary
    state, _ = compiled(state, batch)  # the eval step does not consume (donate) its state
    assert np.isfinite(float(eval_step(state, batch)[0]))

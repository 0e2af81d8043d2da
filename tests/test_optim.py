"""Learning-rate schedules, weight-decay mask and clipping."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from babyjax.errors import InputError
from babyjax.model.transformer import ModelConfig, Transformer
from babyjax.train.optim import decay_mask, make_optimizer, make_schedule

LR, END = 1e-3, 0.1


def ocfg(schedule: str = "cosine", warmup: int = 10, **overrides) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(
        {
            "lr": LR,
            "schedule": schedule,
            "warmup_steps": warmup,
            "end_lr_ratio": END,
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


def lrs(schedule: str, num_steps: int = 100, **kw) -> np.ndarray:
    fn = make_schedule(ocfg(schedule, **kw), num_steps)
    return np.array([float(fn(s)) for s in range(num_steps + 1)])


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant", "wsd"])
def test_warmup_then_decay(schedule):
    lr = lrs(schedule)
    # linear warmup whose first step is already non-zero: step k uses LR * (k + 1) / 10
    np.testing.assert_allclose(lr[:10], LR * np.arange(1, 11) / 10, rtol=1e-6, atol=1e-12)
    assert lr[0] > 0
    assert lr.max() == pytest.approx(LR)
    assert np.all(np.diff(lr[10:]) <= 1e-12)  # never increases after warmup
    assert lr[100] == pytest.approx(LR if schedule == "constant" else LR * END, rel=1e-5)


def test_schedule_shapes():
    cos, lin, wsd = lrs("cosine"), lrs("linear"), lrs("wsd")
    assert cos[55] == pytest.approx(LR * (END + (1 - END) * 0.5), rel=1e-5)  # cosine midpoint
    assert lin[55] == pytest.approx(LR * (1 + END) / 2, rel=1e-5)  # linear midpoint
    np.testing.assert_allclose(wsd[10:81], LR)  # stable until the last 20% ...
    assert wsd[90] == pytest.approx(LR * (1 + END) / 2, rel=1e-5)  # ... then linear decay
    assert lrs("cosine", warmup=0)[0] == pytest.approx(LR)


@pytest.mark.parametrize(
    "overrides, num_steps, message",
    [
        ({"schedule": "step"}, 10, "schedule"),
        ({"warmup_steps": 20}, 10, "warmup_steps"),
        ({"lr": 0.0}, 10, "lr"),
        ({"schedule": "wsd", "wsd_decay_fraction": 0.0}, 10, "wsd"),
    ],
)
def test_bad_optim_config(overrides, num_steps, message):
    with pytest.raises(ValueError, match=message):
        make_schedule(ocfg(**{"schedule": "cosine", **overrides}), num_steps)


def test_decay_mask():
    cfg = ModelConfig(
        vocab_size=97,
        num_layers=1,
        d_model=16,
        num_heads=2,
        num_kv_heads=2,
        mlp_dim=32,
        max_len=8,
        tie_embeddings=False,
    )
    params = nnx.state(Transformer(cfg, rngs=nnx.Rngs(0)), nnx.Param)
    mask = dict(nnx.to_flat_state(decay_mask(params)))
    decayed = {".".join(map(str, k)) for k, v in mask.items() if v.get_value()}
    assert decayed == {
        "embed",
        "head",
        "blocks.0.attn.wq",
        "blocks.0.attn.wk",
        "blocks.0.attn.wv",
        "blocks.0.attn.wo",
        "blocks.0.mlp.w_in",
        "blocks.0.mlp.w_out",
    }
    assert decay_mask({"w": jnp.ones((2, 2)), "b": jnp.ones(2)}) == {"w": True, "b": False}


def test_decay_mask_ignores_sharding_names():
    """Weight decay follows the parameters' explicit tag: re-annotating their logical axes (say, for another
    parallelism) changes nothing, for both styles."""
    for style in ("gpt2", "llama"):
        cfg = ModelConfig(
            vocab_size=97,
            style=style,
            num_layers=1,
            d_model=16,
            num_heads=2,
            num_kv_heads=1,
            mlp_dim=32,
            max_len=8,
            tie_embeddings=False,
        )
        params = nnx.state(Transformer(cfg, rngs=nnx.Rngs(0)), nnx.Param)
        flat = nnx.to_flat_state(params)
        want = {k: v.get_value() for k, v in nnx.to_flat_state(decay_mask(params))}
        assert want[("blocks", 0, "mlp", "w_in")] and not want[("blocks", 0, "norm_mlp", "scale")]
        assert ("pos_embed",) not in want or not want[("pos_embed",)]
        for names_of in (lambda n: (None,) * len(n), lambda n: ("embed",) * len(n), lambda n: tuple(reversed(n))):
            moved = nnx.from_flat_state(
                [(k, v.replace(out_sharding=names_of(v.get_metadata()["out_sharding"]))) for k, v in flat]
            )
            assert {k: v.get_value() for k, v in nnx.to_flat_state(decay_mask(moved))} == want, style


def test_weight_decay_and_clipping_applied():
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    tx, _ = make_optimizer(ocfg("constant", warmup=0, b1=0.0, weight_decay=0.5), 10)
    zero = {"w": jnp.zeros((2, 2)), "b": jnp.zeros(2)}
    updates, _ = tx.update(zero, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], -LR * 0.5)  # decoupled decay on the matrix only
    np.testing.assert_allclose(updates["b"], 0.0)
    # clipping happens before Adam: its first moment sees a gradient of global norm 1, not 100 * sqrt(6)
    tx, _ = make_optimizer(ocfg("constant", warmup=0, weight_decay=0.0, grad_clip=1.0), 10)
    big = {"w": jnp.full((2, 2), 100.0), "b": jnp.full(2, 100.0)}
    _, (_, adamw_state) = tx.update(big, tx.init(params), params)
    mu = adamw_state[0].mu
    assert float(optax.tree.norm(mu)) == pytest.approx(0.1 * 1.0, rel=1e-5)  # (1 - b1) * clipped norm 1


def _torch_lamb(params, grads_per_step, lrs, b1, b2, eps, wd, decayed):
    """LTG-BERT's and GPT-BERT's lamb.py, as its update reads: Adam moments with bias correction, the direction
    m_hat / (sqrt(v_hat) + eps), plus wd * p and the trust ratio |p| / |direction| only in the decayed group."""
    import torch

    p = {k: torch.tensor(np.asarray(v), dtype=torch.float64) for k, v in params.items()}
    m = {k: torch.zeros_like(v) for k, v in p.items()}
    v2 = {k: torch.zeros_like(v) for k, v in p.items()}
    for t, (grads, lr) in enumerate(zip(grads_per_step, lrs), start=1):
        for k in p:
            g = torch.tensor(np.asarray(grads[k]), dtype=torch.float64)
            m[k] = b1 * m[k] + (1 - b1) * g
            v2[k] = b2 * v2[k] + (1 - b2) * g * g
            step = (m[k] / (1 - b1**t)) / ((v2[k] / (1 - b2**t)).sqrt() + eps)
            if decayed[k]:
                step = step + wd * p[k]
                pn, un = p[k].norm(), step.norm()
                ratio = pn / un if pn > 0 and un > 0 else 1.0
            else:
                ratio = 1.0
            p[k] = p[k] - lr * ratio * step
    return {k: v.numpy() for k, v in p.items()}


def test_lamb_equals_the_gpt_bert_reference():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32), "b": jnp.asarray(rng.normal(size=3), jnp.float32)}
    grads = [{k: jnp.asarray(rng.normal(size=v.shape), jnp.float32) for k, v in params.items()} for _ in range(5)]
    cfg = ocfg("cosine", warmup=2, name="lamb", b2=0.98, weight_decay=0.1, grad_clip=0.0)
    tx, schedule = make_optimizer(cfg, 5)
    state, got = tx.init(params), params
    for g in grads:
        updates, state = tx.update(g, state, got)
        got = optax.apply_updates(got, updates)
    want = _torch_lamb(params, grads, [float(schedule(i)) for i in range(5)], 0.9, 0.98, 1e-8, 0.1, {"w": 1, "b": 0})
    for k in params:
        np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=1e-5, atol=1e-6)
    # the trust ratio matters: AdamW's first step on the matrix differs, on the vector (no trust ratio) it is equal
    adamw, _ = make_optimizer(ocfg("cosine", warmup=2, b2=0.98, weight_decay=0.0, grad_clip=0.0), 5)
    lamb0 = make_optimizer(cfg.copy_and_resolve_references(), 5)[0]
    a, _ = adamw.update(grads[0], adamw.init(params), params)
    b, _ = lamb0.update(grads[0], lamb0.init(params), params)
    assert not np.allclose(np.asarray(a["w"]), np.asarray(b["w"]), rtol=1e-3)
    np.testing.assert_allclose(np.asarray(a["b"]), np.asarray(b["b"]), rtol=1e-6)
    with pytest.raises(InputError, match=r"^optim.name='sgd': use one of \('adamw', 'lamb'\)$"):
        make_optimizer(ocfg(name="sgd"), 20)

"""Model: causality, packed segments, variants, parameter count, logical axis names, FLOPs formula."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from babyjax.errors import InputError
from babyjax.model.sharding import LOGICAL_RULES
from babyjax.model.transformer import ModelConfig, Transformer, attend, attention_mask, flops_per_token, num_params
from configs.base import get_config

VOCAB, L = 97, 16
VARIANTS = [
    {"style": "gpt2", "tie_embeddings": True},
    {"style": "llama", "tie_embeddings": False, "num_kv_heads": 2},
    {"style": "llama", "tie_embeddings": True, "num_kv_heads": 4, "dtype": "bfloat16"},
    {"style": "gpt2", "tie_embeddings": False, "dtype": "bfloat16"},
]


def tiny(**overrides) -> ModelConfig:
    base = {
        "vocab_size": VOCAB,
        "num_layers": 2,
        "d_model": 32,
        "num_heads": 4,
        "num_kv_heads": 4,
        "mlp_dim": 64,
        "max_len": L,
        "dropout": 0.1,
    }
    return ModelConfig(**{**base, **overrides})


def forward(cfg: ModelConfig):
    model = Transformer(cfg, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)

    @jax.jit
    def f(inputs, segment_ids=None, positions=None):
        return nnx.merge(graphdef, state)(inputs, segment_ids, positions)

    return f


def tokens(seed: int, shape=(2, L)) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).integers(0, VOCAB, shape), jnp.int32)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_causal_and_segments(variant):
    cfg = tiny(**variant)
    f = forward(cfg)
    tol = {"atol": 2e-2} if cfg.dtype == "bfloat16" else {"atol": 1e-5}
    x = tokens(0)
    logits = f(x)
    assert logits.shape == (2, L, VOCAB) and logits.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(logits)))
    # causality: changing token t never changes logits before t
    for t in (3, L - 1):
        changed = f(x.at[:, t].set((x[:, t] + 1) % VOCAB))
        np.testing.assert_allclose(changed[:, :t], logits[:, :t], **tol)
        assert not np.allclose(changed[:, t], logits[:, t])
    # packing: segment 2 sees only itself, exactly as if it were alone at positions 0..
    cut = 6
    seg = jnp.asarray([[1] * cut + [2] * (L - cut)] * 2, jnp.int32)
    pos = jnp.asarray([list(range(cut)) + list(range(L - cut))] * 2, jnp.int32)
    packed = f(x, seg, pos)
    alone = f(x[:, cut:])
    np.testing.assert_allclose(packed[:, cut:], alone, **tol)
    np.testing.assert_allclose(packed[:, :cut], logits[:, :cut], **tol)  # segment 1 unaffected by segment 2
    other = f(x.at[:, :cut].set(tokens(1, (2, cut))), seg, pos)  # a different first document
    np.testing.assert_allclose(other[:, cut:], packed[:, cut:], **tol)


def test_first_logits_near_uniform_and_dropout():
    cfg = tiny()
    model = Transformer(cfg, rngs=nnx.Rngs(0))
    x = tokens(2)
    logits = model(x)
    loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), tokens(3)[..., None], -1))
    assert abs(float(loss) - math.log(VOCAB)) < 0.05
    a = model(x, deterministic=False, rngs=nnx.Rngs(dropout=1))
    b = model(x, deterministic=False, rngs=nnx.Rngs(dropout=2))
    assert not np.allclose(a, b) and not np.allclose(a, logits)
    np.testing.assert_array_equal(a, model(x, deterministic=False, rngs=nnx.Rngs(dropout=1)))
    with pytest.raises(ValueError, match="rngs"):
        model(x, deterministic=False)


@pytest.mark.parametrize("variant", VARIANTS[:2])
def test_params_count_names_dtype(variant):
    cfg = tiny(**variant)
    params = nnx.state(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))), nnx.Param)
    leaves = jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nnx.Variable))
    assert sum(math.prod(v.get_value().shape) for v in leaves) == num_params(cfg)
    known = {name for name, _ in LOGICAL_RULES}
    for v in leaves:
        names = v.get_metadata()["out_sharding"]
        assert len(names) == len(v.get_value().shape) and set(names) - {None} <= known
        assert v.get_value().dtype == jnp.float32
    assert ("head" in params) != cfg.tie_embeddings


def test_bench_config_size_and_flops():
    c = get_config()
    c.model.num_layers, c.model.d_model, c.model.num_heads, c.model.mlp_dim = 4, 256, 4, 1024
    cfg = ModelConfig.from_config(c.model, 16384)
    assert cfg.num_kv_heads == 4 and cfg.head_dim == 64
    assert abs(num_params(cfg) - 7.4e6) < 0.05e6  # benchmarks.md: about 7.4M parameters
    matmul = 4 * (4 * 256 * 256 + 2 * 256 * 1024) + 256 * 16384
    assert flops_per_token(cfg, 128) == 6 * matmul + 12 * 4 * 256 * 128
    assert flops_per_token(cfg, 128, backward=False) == 2 * matmul + 4 * 4 * 256 * 128  # the forward share


@pytest.mark.parametrize("style", ["gpt2", "roberta"])
def test_flops_with_few_columns_read_match_the_compiled_forward(style):
    """head_fraction (a masked objective's share of columns) takes the projection and the last block but its keys and
    values off, as `features(cols=...)` does: the formula's share of the full forward is within 3% of XLA's count of
    the compiled passes, and each count within 8% (XLA also counts the norms' and GELU's elementwise work)."""
    cfg = ModelConfig(
        vocab_size=4096,
        style=style,
        num_layers=2,
        d_model=128,
        num_heads=4,
        num_kv_heads=4,
        mlp_dim=512,
        max_len=128,
        dropout=0.0,
    )
    graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
    ids, cols = jnp.zeros((8, 128), jnp.int32), jnp.zeros((8, 16), jnp.int32)
    forward = lambda p, c: nnx.merge(graphdef, p).logits(nnx.merge(graphdef, p).features(ids, cols=c))
    counted, expected = [], []
    for c, fraction in ((None, 1.0), (cols, 16 / 128)):
        counted.append(jax.jit(forward).lower(params, c).compile().cost_analysis()["flops"] / ids.size)
        expected.append(flops_per_token(cfg, 128, backward=False, head_fraction=fraction))
        assert abs(counted[-1] / expected[-1] - 1) < 0.08, (fraction, counted[-1], expected[-1])
    assert abs((counted[1] / counted[0]) / (expected[1] / expected[0]) - 1) < 0.03, (counted, expected)


def test_matmul_floor_of_a_train_step_counts_the_model_flops():
    """metrics.matmul_floor finds every matrix product of a real train step (inside the sliced loss's scan and the
    custom gradient too): their FLOPs are exactly flops_per_token x tokens, the one definition behind MFU."""
    from babyjax.model import sharding
    from babyjax.train import metrics
    from babyjax.train import step as step_lib

    cfg = get_config()
    cfg.model.update(num_layers=2, d_model=64, num_heads=4, mlp_dim=256, max_len=32, dropout=0.0)
    cfg.data.seq_len, cfg.train.batch_size = 32, 8
    model_cfg = ModelConfig.from_config(cfg.model, 512)
    mesh = sharding.make_mesh(cfg.mesh, devices=jax.devices()[:1])
    graphdef, state, shardings, tx, lr = step_lib.init_train_state(model_cfg, cfg.optim, 10_000, mesh, 0)
    train_step = step_lib.make_train_step(graphdef, tx, lr, mesh, shardings)
    ids = np.random.default_rng(0).integers(5, 512, size=(8, 33)).astype(np.int32)
    batch = {
        "inputs": ids[:, :-1],
        "targets": ids[:, 1:],
        "segment_ids": np.ones((8, 32), np.int32),
        "positions": np.tile(np.arange(32, dtype=np.int32), (8, 1)),
        "weights": np.ones((8, 32), np.float32),
        "num_words": np.ones((8,), np.float32),
        "num_tokens": np.full((8,), 32.0, np.float32),
    }
    floor = metrics.matmul_floor(train_step, state, batch, repeats=2)
    assert floor.flops == flops_per_token(model_cfg, 32) * ids[:, 1:].size
    assert floor.seconds > 0 and sum(times for times, *_ in floor.rows) >= 2 * 6 * 3  # Q, K, V, O, in, out x 3 passes
    with pytest.raises(ValueError, match="while"):
        metrics.matmul_floor(
            lambda x: jax.lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] @ c[1]), (0, x))[1],
            jnp.ones((4, 4)),
        )


@pytest.mark.parametrize(
    "style, features",
    [("gpt2", ("learned", "layernorm", "gelu", True)), ("llama", ("rope", "rmsnorm", "swiglu", False))],
)
def test_style_is_a_preset_of_features(style, features):
    cfg = tiny(style=style)
    assert (cfg.position, cfg.norm, cfg.mlp, cfg.biases) == features
    assert cfg.attention == "mha" and tiny(style=style, num_kv_heads=2).attention == "gqa"
    params = nnx.state(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))), nnx.Param)
    names = {".".join(map(str, k)) for k, _ in nnx.to_flat_state(params)}
    assert ("pos_embed" in names) == (cfg.position == "learned")
    assert ("blocks.0.mlp.w_gate" in names) == (cfg.mlp == "swiglu")
    assert ("blocks.0.attn.bq" in names) == ("blocks.0.mlp.b_in" in names) == cfg.biases
    assert ("blocks.0.norm_attn.bias" in names) == (cfg.norm == "layernorm")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"style": "bert"}, "style"),
        ({"num_heads": 5}, "divisible"),
        ({"num_kv_heads": 3}, "num_kv_heads"),
        ({"dtype": "float16"}, "dtype"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_config(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny(**overrides)


def test_model_config_defaults_are_the_dataclass_fields():
    """configs/base.py's model section is ModelConfig's defaults; num_kv_heads -1 means num_heads wherever it is
    built; a config.model that lacks a key is refused in one line (RunDir fills in an older run's keys)."""
    defaults = ModelConfig.defaults()
    assert set(defaults) == {f for f in ModelConfig.__dataclass_fields__ if f != "vocab_size"}
    assert ModelConfig.from_config(get_config().model, VOCAB) == ModelConfig(vocab_size=VOCAB)
    assert defaults["num_kv_heads"] == -1 and ModelConfig(vocab_size=VOCAB, num_heads=4, d_model=32).num_kv_heads == 4
    assert tiny(num_kv_heads=-1, num_heads=2).attention == "mha"
    partial = get_config().model
    del partial["position_buckets"]
    with pytest.raises(InputError, match="config.model lacks position_buckets: start the config from configs/base.py"):
        ModelConfig.from_config(partial, VOCAB)


def test_too_long_for_learned_positions():
    with pytest.raises(ValueError, match="max_len"):
        Transformer(tiny(), rngs=nnx.Rngs(0))(tokens(0, (1, L + 1)))


def test_remat_changes_nothing():
    x, y = tokens(4), tokens(5)

    def loss_and_grads(remat: bool):
        graphdef, params = nnx.split(Transformer(tiny(style="llama", remat=remat), rngs=nnx.Rngs(0)))

        @jax.jit
        def f(params):
            logits = nnx.merge(graphdef, params)(x, deterministic=False, rngs=nnx.Rngs(dropout=3))
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[..., None], -1))

        return jax.value_and_grad(f)(params)

    (loss, grads), (loss_remat, grads_remat) = loss_and_grads(False), loss_and_grads(True)
    np.testing.assert_allclose(loss_remat, loss, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads_remat, grads)


@pytest.mark.parametrize("blocks", [2, 4, 8])
def test_causal_attention_in_query_blocks_equals_one_block(blocks):
    """Inference attends in query blocks that never score the keys after the block: the same outputs, packed segments
    and padding included, and so the same model features with and without dropout switched off."""
    rng = np.random.default_rng(blocks)
    q, k, v = (jnp.asarray(rng.standard_normal((3, 16, 2, 8)), jnp.float32) for _ in range(3))
    segments = np.ones((3, 16), np.int32)
    segments[1, 5:], segments[2, 9:], segments[2, 14:] = 2, 2, 0
    mask = attention_mask(jnp.asarray(segments), True)
    np.testing.assert_allclose(attend(q, k, v, mask, blocks), attend(q, k, v, mask, 1), atol=1e-6)
    cfg = ModelConfig(
        vocab_size=50, num_layers=2, d_model=16, num_heads=2, num_kv_heads=2, mlp_dim=32, max_len=16, dropout=0.0
    )
    model = Transformer(cfg, rngs=nnx.Rngs(0))
    ids = jnp.asarray(rng.integers(0, 50, (3, 16)), jnp.int32)
    blocked = model.features(ids, jnp.asarray(segments), deterministic=True)
    single = model.features(ids, jnp.asarray(segments), deterministic=False, rngs=nnx.Rngs(dropout=0))
    np.testing.assert_allclose(blocked, single, atol=1e-5)


@pytest.mark.parametrize("style", ["gpt2", "llama", "roberta", "ltg_bert"])
def test_features_at_columns_equal_all_columns_then_taken(style):
    """features(cols=...) runs the last block at a few columns only (the scorer's token samples and masked copies, the
    masked objectives' loss): the same features, and the same gradients, as all columns then taking those, with
    packed segments, padding, per-segment positions and repeated or padding columns."""
    rng = np.random.default_rng(7)
    cfg = tiny(style=style, dropout=0.0, num_kv_heads=2 if style == "llama" else 4)
    graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(1)))
    ids = tokens(8, (3, L))
    segments = np.ones((3, L), np.int32)
    segments[1, 6:], segments[2, 10:], segments[2, 14:] = 2, 2, 0
    positions = np.concatenate(
        [
            np.arange(L)[None],
            np.r_[np.arange(6), np.arange(L - 6)][None],
            np.r_[np.arange(10), np.arange(4), np.zeros(2, int)][None],
        ]
    )
    cols = jnp.asarray(rng.integers(0, L, (3, 5)), jnp.int32).at[0, :2].set(3)
    w = jnp.asarray(rng.standard_normal((3, 5, cfg.d_model)), jnp.float32)
    for causal in [None, False, jnp.asarray([True, False, True])] if cfg.encoder else [None]:

        def run(params, taken: bool, causal=causal):
            model = nnx.merge(graphdef, params)
            args = (ids, jnp.asarray(segments), jnp.asarray(positions), True, None, causal)
            x = (
                model.features(*args, cols=cols)
                if taken
                else jnp.take_along_axis(model.features(*args), cols[..., None], axis=1)
            )
            return jnp.sum(x * w), x

        (v_cols, x_cols), g_cols = jax.jit(jax.value_and_grad(lambda p: run(p, True), has_aux=True))(params)
        (v_all, x_all), g_all = jax.jit(jax.value_and_grad(lambda p: run(p, False), has_aux=True))(params)
        assert x_cols.shape == (3, 5, cfg.d_model)
        np.testing.assert_allclose(x_cols, x_all, atol=2e-5)
        np.testing.assert_allclose(v_cols, v_all, rtol=1e-5)
        scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(g_all))  # float32 sums of terms this size
        jax.tree.map(
            lambda a, b, scale=scale: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * scale), g_cols, g_all
        )

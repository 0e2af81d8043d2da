"""The primitives every model of babyjax is built from (babyjax/model/transformer.py, babyjax/model/ltg.py): float32
parameters with logical axis names (babyjax/model/sharding.py) and a weight-decay tag (babyjax/train/optim.py), the
norm, dropout, reading a few columns of each row (`take_cols`), rotary position embeddings (`rope`), the attention
mask and attention itself (`attend`), and the MLP of babyjax.model.transformer's blocks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from babyjax.errors import InputError
from babyjax.model.sharding import constrain

INIT_STD = 0.02
DECAY_TAG = "decay"  # nnx metadata key: True for parameters that get weight decay (babyjax.train.optim.decay_mask)


def param(
    rngs: nnx.Rngs,
    shape: tuple[int, ...],
    names: tuple[str | None, ...],
    std: float | None,
    *,
    decay: bool,
    truncated: bool = False,
) -> nnx.Param:
    """A float32 Param: normal(std) (cut at +-2 std when `truncated`, as LTG-BERT), ones with std None (norm scales),
    zeros with std 0 (biases). names: logical axis names (sharding); decay: whether weight decay applies (kernels and
    embedding tables; not biases, norm scales or position tables)."""
    if std:
        key = rngs.params()
        noise = jax.random.truncated_normal(key, -2.0, 2.0, shape) if truncated else jax.random.normal(key, shape)
        value = std * noise.astype(jnp.float32)
    else:
        value = jnp.full(shape, 1.0 if std is None else 0.0, jnp.float32)
    # Sharding is applied by jit out_shardings at init (babyjax/train/step.py), not eagerly at creation.
    return nnx.Param(value, out_sharding=names, eager_sharding=False, **{DECAY_TAG: decay})


class Norm(nnx.Module):
    """LayerNorm (with bias) or RMSNorm over the last axis, computed in float32; `affine=False`: no scale or bias (the
    extra norms of LTG-BERT)."""

    def __init__(self, width: int, eps: float, *, rms: bool = False, affine: bool = True, rngs: nnx.Rngs):
        self.rms, self.eps = rms, eps
        self.scale = param(rngs, (width,), ("norm",), None, decay=False) if affine else None
        self.bias = param(rngs, (width,), ("norm",), 0.0, decay=False) if affine and not rms else None

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        x = x_BxLxD.astype(jnp.float32)
        x = x if self.rms else x - jnp.mean(x, axis=-1, keepdims=True)  # LayerNorm centres, RMSNorm does not
        y = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps)
        y = y if self.scale is None else y * self.scale[...]
        return (y if self.bias is None else y + self.bias[...]).astype(x_BxLxD.dtype)


def dropout(x: jax.Array, rate: float, deterministic: bool, rngs: nnx.Rngs | None) -> jax.Array:
    if deterministic or rate == 0.0:
        return x
    if rngs is None:
        raise InputError("dropout with deterministic=False needs rngs=nnx.Rngs(dropout=key)")
    keep = jax.random.bernoulli(rngs.dropout(), 1.0 - rate, x.shape)
    return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros((), x.dtype))


def take_cols(x_BxLx_: jax.Array, cols_BxK: jax.Array | None, axis: int = 1) -> jax.Array:
    """x at the columns `cols_BxK` along `axis` (x itself when cols is None): [B, L, ...] -> [B, K, ...]."""
    if cols_BxK is None:
        return x_BxLx_
    index = cols_BxK.reshape(
        cols_BxK.shape[:1] + (1,) * (axis - 1) + cols_BxK.shape[1:] + (1,) * (x_BxLx_.ndim - axis - 1)
    )
    return jnp.take_along_axis(x_BxLx_, index, axis=axis)


def weighted_values(p_BxHxLxM: jax.Array, v_BxMxHxK: jax.Array) -> jax.Array:
    """[B, L, H, K]: the attention weights times the values, the values moved heads-first before the product (XLA
    on CPU runs the batched product 2.3x faster in that layout than from [B, M, H, K]; on accelerators the same)."""
    o_BxHxLxK = jnp.einsum("bhlm,bhmk->bhlk", p_BxHxLxM, v_BxMxHxK.transpose(0, 2, 1, 3))
    return o_BxHxLxK.transpose(0, 2, 1, 3)


def rope(x_BxLxHxK: jax.Array, positions_BxL: jax.Array, theta: float, dims: int = 0) -> jax.Array:
    """Rotary position embedding (rotate-half layout), angles from per-segment positions. dims (0 = all): rotate only
    the first `dims` features of each head, with frequencies over that width, and pass the rest through (GPT-NeoX's
    partial rotary)."""
    if 0 < dims < x_BxLxHxK.shape[-1]:
        rotated = rope(x_BxLxHxK[..., :dims], positions_BxL, theta)
        return jnp.concatenate([rotated, x_BxLxHxK[..., dims:]], axis=-1)
    half = x_BxLxHxK.shape[-1] // 2
    inv_freq = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle_BxLx1xK = (positions_BxL[..., None].astype(jnp.float32) * inv_freq)[:, :, None, :]
    sin, cos = jnp.sin(angle_BxLx1xK), jnp.cos(angle_BxLx1xK)
    x1, x2 = jnp.split(x_BxLxHxK.astype(jnp.float32), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x_BxLxHxK.dtype)


def attention_mask(segment_ids_BxL: jax.Array, causal: bool | jax.Array = True) -> jax.Array:
    """bool[B, 1, L, L]: query i may see key j iff both are in the same segment and, in a causal row, j <= i. causal:
    one bool for every row, or bool[B] (GPT-BERT's hybrid batches mix causal and bidirectional rows)."""
    length = segment_ids_BxL.shape[1]
    same_BxLxL = segment_ids_BxL[:, :, None] == segment_ids_BxL[:, None, :]
    if isinstance(causal, bool) and not causal:
        return same_BxLxL[:, None]
    causal_LxL = jnp.tril(jnp.ones((length, length), jnp.bool_))
    if not isinstance(causal, bool):
        causal_LxL = causal_LxL | ~jnp.asarray(causal, jnp.bool_)[:, None, None]
    return (causal_LxL & same_BxLxL)[:, None]


CAUSAL_BLOCKS = 4  # query blocks of causal attention at inference: the fastest count for scoring on CPU


def attend(
    q_BxLxHxK: jax.Array, k_BxLxHxK: jax.Array, v_BxLxHxK: jax.Array, mask_Bx1xLxL: jax.Array, blocks: int = 1
) -> jax.Array:
    """softmax(q k^T, masked) v, the scores in float32. blocks > 1 (a causal mask only): the queries in `blocks`
    blocks, each scored against the keys up to its own last query, so the keys every query of a block is masked
    from are never scored (37% fewer scores and exponentials with 4 blocks; the same numbers, as masked keys add exact
    zeros to the softmax). With blocks == 1 the queries may be fewer than the keys (`Transformer.features`' cols:
    q [B, K, H, Dk], mask [B, 1, K, L])."""
    length, dt = q_BxLxHxK.shape[1], q_BxLxHxK.dtype
    if length % blocks or length != k_BxLxHxK.shape[1]:
        blocks = 1
    outs, n = [], length // blocks
    for i in range(blocks):
        lo, hi = i * n, (i + 1) * n if blocks > 1 else k_BxLxHxK.shape[1]
        s_BxHxNxM = jnp.einsum(
            "blhk,bmhk->bhlm", q_BxLxHxK[:, lo : lo + n], k_BxLxHxK[:, :hi], preferred_element_type=jnp.float32
        )
        s_BxHxNxM = jnp.where(mask_Bx1xLxL[:, :, lo : lo + n, :hi], s_BxHxNxM, jnp.finfo(jnp.float32).min)
        p_BxHxNxM = jax.nn.softmax(s_BxHxNxM, axis=-1).astype(dt)
        outs.append(weighted_values(p_BxHxNxM, v_BxLxHxK[:, :hi]))
    return outs[0] if blocks == 1 else jnp.concatenate(outs, axis=1)


PLAIN_MLPS = ("gelu", "gelu_exact", "relu")  # Mlp kinds without a gate: tanh GELU, erf GELU, ReLU


class Mlp(nnx.Module):
    """A plain MLP (`PLAIN_MLPS`) or SwiGLU ('swiglu': silu(x w_gate) * (x w_in)) from `width` features through
    `hidden`; biases on the input and output projections if `biases`; out_std: the output kernel's init std."""

    def __init__(self, width: int, hidden: int, kind: str, *, biases: bool, out_std: float, rngs: nnx.Rngs):
        self.kind, self.gated, self.biases = kind, kind == "swiglu", biases
        self.w_in = param(rngs, (width, hidden), ("embed", "mlp"), INIT_STD, decay=True)
        self.w_out = param(rngs, (hidden, width), ("mlp", "embed"), out_std, decay=True)
        if self.gated:
            self.w_gate = param(rngs, (width, hidden), ("embed", "mlp"), INIT_STD, decay=True)
        if self.biases:
            self.b_in = param(rngs, (hidden,), ("mlp",), 0.0, decay=False)
            self.b_out = param(rngs, (width,), ("norm",), 0.0, decay=False)

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        dt = x_BxLxD.dtype
        h_BxLxF = jnp.einsum("bld,df->blf", x_BxLxD, self.w_in[...].astype(dt))
        if self.biases:
            h_BxLxF += self.b_in[...].astype(dt)
        if self.gated:
            h_BxLxF = jax.nn.silu(jnp.einsum("bld,df->blf", x_BxLxD, self.w_gate[...].astype(dt))) * h_BxLxF
        elif self.kind == "relu":
            h_BxLxF = jax.nn.relu(h_BxLxF)
        else:
            h_BxLxF = jax.nn.gelu(h_BxLxF, approximate=self.kind == "gelu")
        h_BxLxF = constrain(h_BxLxF, ("batch", "length", "mlp"))
        out_BxLxD = jnp.einsum("blf,fd->bld", h_BxLxF, self.w_out[...].astype(dt))
        if self.biases:
            out_BxLxD += self.b_out[...].astype(dt)
        return out_BxLxD

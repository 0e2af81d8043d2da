"""The primitives every model of babyjax is built from (babyjax/model/transformer.py, babyjax/model/ltg.py): float32
parameters with logical axis names (babyjax/model/sharding.py) and a weight-decay tag (babyjax/train/optim.py), the
norm, dropout, and reading a few columns of each row (`take_cols`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from babyjax.errors import InputError

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

"""LTG-BERT's layers (Samuel et al. 2023, github.com/ltgoslo/ltg-bert `babylm/train/model.py`; GPT-BERT, Charpentier &
Samuel 2024, trains the same network on a hybrid objective): relative-position attention with DeBERTa-style
content-to-position and position-to-content terms over log-spaced position buckets, the extra parameter-free layer
norms, and a GEGLU feed-forward with a norm inside. `cfg` is a babyjax.model.transformer.ModelConfig of style
'ltg_bert'.

Where babyjax differs from the reference on purpose: relative positions restart in every packed segment (babyjax's
per-segment positions), and there is no dropout on attention probabilities. GPT-BERT's `model_extra.py` additions (a
GELU gate on the attention output and DenseFormer's depth-weighted averages) are not built.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from babyjax.model.layers import Norm, dropout, param, take_cols, weighted_values
from babyjax.model.sharding import constrain

MAX_POSITION = 512  # LTG-BERT's max_position_embeddings: offsets beyond share the last bucket


def relative_buckets(max_offset: int, buckets: int) -> np.ndarray:
    """int32 [2 * max_offset + 1]: the bucket index (0 .. 2 * buckets - 2) of each offset q - k from -max_offset to
    +max_offset. Offsets up to buckets / 2 keep their own bucket; larger ones are log-spaced up to MAX_POSITION - 1."""
    mid = buckets // 2
    rel = np.arange(-max_offset, max_offset + 1)
    dist = np.where(np.abs(rel) < mid, mid - 1, np.minimum(np.abs(rel), MAX_POSITION - 1)).astype(np.float32)
    log_pos = np.ceil(np.log(dist / mid) / np.log(np.float32((MAX_POSITION - 1) / mid)) * (mid - 1)) + mid
    bucket = np.where(dist <= mid, rel, np.sign(rel) * log_pos.astype(np.int64))
    return (bucket + buckets - 1).astype(np.int32)


def init_std(cfg: Any) -> float:
    """LTG-BERT's initialisation: truncated normal with std sqrt(2 / (5 d_model))."""
    return math.sqrt(2.0 / (5.0 * cfg.d_model))


class RelativeAttention(nnx.Module):
    """Pre-norm (no scale or bias) self-attention; queries and keys come from one projection that also maps the
    normed relative-position table to position queries and keys; scores (q.k + q.k_pos + k.q_pos) / sqrt(3 head_dim);
    the output projection is followed by a LayerNorm with scale and bias."""

    def __init__(self, cfg: Any, *, rngs: nnx.Rngs):
        d, h, k, std = cfg.d_model, cfg.num_heads, cfg.head_dim, init_std(cfg)
        self.head_dim = k
        self.norm_in = Norm(d, cfg.norm_eps, affine=False, rngs=rngs)
        self.w_qk = param(rngs, (d, 2, h, k), ("embed", None, "heads", "kv"), std, decay=True, truncated=True)
        self.b_qk = param(rngs, (2, h, k), (None, "heads", "kv"), 0.0, decay=False)
        self.w_v = param(rngs, (d, h, k), ("embed", "heads", "kv"), std, decay=True, truncated=True)
        self.b_v = param(rngs, (h, k), ("heads", "kv"), 0.0, decay=False)
        self.w_o = param(rngs, (h, k, d), ("heads", "kv", "embed"), std, decay=True, truncated=True)
        self.b_o = param(rngs, (d,), ("norm",), 0.0, decay=False)
        self.norm_out = Norm(d, cfg.norm_eps, rngs=rngs)

    def __call__(
        self,
        x_BxLxD: jax.Array,
        mask_Bx1xLxL: jax.Array,
        buckets_BxLxL: jax.Array,
        rel_RxD: jax.Array,
        cols_BxK: jax.Array | None = None,
    ) -> jax.Array:
        """cols_BxK: queries at these columns only (babyjax.model.layers.take_cols), output [B, K, D]; else L = K."""
        dt = x_BxLxD.dtype
        h_BxLxD = self.norm_in(x_BxLxD)
        w_qk, b_qk = self.w_qk[...].astype(dt), self.b_qk[...].astype(dt)
        q_BxKxHxK = jnp.einsum("bld,dhk->blhk", take_cols(h_BxLxD, cols_BxK), w_qk[:, 0]) + b_qk[0]
        q_BxLxHxK = constrain(q_BxKxHxK, ("batch", "length", "heads", "kv"))
        k_BxLxHxK = jnp.einsum("bld,dhk->blhk", h_BxLxD, w_qk[:, 1]) + b_qk[1]
        k_BxLxHxK = constrain(k_BxLxHxK, ("batch", "length", "heads", "kv"))
        mask_Bx1xLxL, buckets_BxLxL = take_cols(mask_Bx1xLxL, cols_BxK, axis=2), take_cols(buckets_BxLxL, cols_BxK)
        v_BxLxHxK = jnp.einsum("bld,dhk->blhk", h_BxLxD, self.w_v[...].astype(dt)) + self.b_v[...].astype(dt)
        pos_Rx2xHxK = jnp.einsum("rd,dshk->rshk", rel_RxD.astype(dt), w_qk) + b_qk
        f32 = {"preferred_element_type": jnp.float32}
        c2c_BxHxLxL = jnp.einsum("blhk,bmhk->bhlm", q_BxLxHxK, k_BxLxHxK, **f32)
        c2p_BxHxLxR = jnp.einsum("blhk,rhk->bhlr", q_BxLxHxK, pos_Rx2xHxK[:, 1], **f32)
        p2c_BxHxLxR = jnp.einsum("bmhk,rhk->bhmr", k_BxLxHxK, pos_Rx2xHxK[:, 0], **f32)
        # query l, key m: q_l . k_pos[bucket(l, m)] and k_m . q_pos[bucket(l, m)]
        c2p_BxHxLxL = jnp.take_along_axis(c2p_BxHxLxR, buckets_BxLxL[:, None], axis=-1)
        p2c_BxHxLxL = jnp.take_along_axis(p2c_BxHxLxR, buckets_BxLxL.swapaxes(1, 2)[:, None], axis=-1).swapaxes(2, 3)
        s_BxHxLxL = (c2c_BxHxLxL + c2p_BxHxLxL + p2c_BxHxLxL) * (3 * self.head_dim) ** -0.5
        s_BxHxLxL = jnp.where(mask_Bx1xLxL, s_BxHxLxL, jnp.finfo(jnp.float32).min)
        p_BxHxLxL = jax.nn.softmax(s_BxHxLxL, axis=-1).astype(dt)
        o_BxLxHxK = weighted_values(p_BxHxLxL, v_BxLxHxK)
        out_BxLxD = jnp.einsum("blhk,hkd->bld", o_BxLxHxK, self.w_o[...].astype(dt)) + self.b_o[...].astype(dt)
        return self.norm_out(out_BxLxD)


class Geglu(nnx.Module):
    """Pre-norm (no scale or bias) GEGLU feed-forward without biases: value * gelu_tanh(gate), normed (no scale or bias)
    before the output projection; layer i's kernels are scaled by sqrt(1 / (2 (i + 1)))."""

    def __init__(self, cfg: Any, layer: int, *, rngs: nnx.Rngs):
        d, f = cfg.d_model, cfg.mlp_dim
        std = init_std(cfg) * math.sqrt(1.0 / (2.0 * (layer + 1)))
        self.norm_in = Norm(d, cfg.norm_eps, affine=False, rngs=rngs)
        self.w_in = param(rngs, (d, 2, f), ("embed", None, "mlp"), std, decay=True, truncated=True)  # value, gate
        self.norm_mid = Norm(f, cfg.norm_eps, affine=False, rngs=rngs)
        self.w_out = param(rngs, (f, d), ("mlp", "embed"), std, decay=True, truncated=True)

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        dt = x_BxLxD.dtype
        vg_BxLx2xF = jnp.einsum("bld,dsf->blsf", self.norm_in(x_BxLxD), self.w_in[...].astype(dt))
        h_BxLxF = vg_BxLx2xF[:, :, 0] * jax.nn.gelu(vg_BxLx2xF[:, :, 1], approximate=True)
        h_BxLxF = self.norm_mid(constrain(h_BxLxF, ("batch", "length", "mlp")))
        return jnp.einsum("blf,fd->bld", h_BxLxF, self.w_out[...].astype(dt))


class LtgBlock(nnx.Module):
    """x + attention(x), then x + feed_forward(x) (both sublayers norm their own input)."""

    def __init__(self, cfg: Any, layer: int, *, rngs: nnx.Rngs):
        self.dropout = cfg.dropout
        self.attn, self.mlp = RelativeAttention(cfg, rngs=rngs), Geglu(cfg, layer, rngs=rngs)

    def __call__(
        self,
        x_BxLxD: jax.Array,
        mask: jax.Array,
        buckets_BxLxL: jax.Array,
        rel_RxD: jax.Array,
        deterministic: bool,
        rngs: nnx.Rngs | None,
        cols_BxK: jax.Array | None = None,
    ) -> jax.Array:
        """cols_BxK: the block's output at these columns only (babyjax.model.transformer.Block)."""
        attn_BxKxD = self.attn(x_BxLxD, mask, buckets_BxLxL, rel_RxD, cols_BxK)
        x_BxLxD = take_cols(x_BxLxD, cols_BxK) + dropout(attn_BxKxD, self.dropout, deterministic, rngs)
        x_BxLxD = x_BxLxD + dropout(self.mlp(x_BxLxD), self.dropout, deterministic, rngs)
        return constrain(x_BxLxD, ("batch", "length", "embed"))


class RelativePositions(nnx.Module):
    """The shared relative-position table (2 * buckets - 1 rows) and its LayerNorm (with scale and bias), and the
    bucket of every query-key pair of a batch from its per-segment positions."""

    def __init__(self, cfg: Any, *, rngs: nnx.Rngs):
        self.buckets = cfg.position_buckets
        self.table = param(
            rngs, (2 * self.buckets - 1, cfg.d_model), (None, "embed"), init_std(cfg), decay=True, truncated=True
        )
        self.norm = Norm(cfg.d_model, cfg.norm_eps, rngs=rngs)

    def __call__(self, positions_BxL: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(bucket index of every query-key pair int32 [B, L, L], the normed table [R, D])."""
        length = positions_BxL.shape[1]
        lookup = jnp.asarray(relative_buckets(length, self.buckets))
        rel_BxLxL = positions_BxL[:, :, None] - positions_BxL[:, None, :]
        return lookup[jnp.clip(rel_BxLxL, -length, length) + length], self.norm(self.table[...])

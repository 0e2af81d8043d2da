"""Transformers in Flax NNX, built from the features of a `ModelConfig` (docs/architecture.md): decoders (gpt2,
llama) and encoders (roberta, ltg_bert), which attend both ways or causally as each row of a batch says.

`model.style` is a preset of features: the ModelConfig properties, the only code that reads it. Parameters are
float32 with logical axis names (babyjax/model/sharding.py) and a weight-decay tag (babyjax/train/optim.py); compute
runs in `cfg.dtype`, logits come back in float32. Attention stays within packed segments (id 0: padding).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from babyjax.errors import InputError
from babyjax.model import layers, ltg
from babyjax.model.layers import INIT_STD, take_cols, weighted_values
from babyjax.model.layers import dropout as _dropout
from babyjax.model.layers import param as _param
from babyjax.model.sharding import constrain

STYLES = ("gpt2", "llama", "roberta", "ltg_bert")
ENCODERS = ("roberta", "ltg_bert")  # styles whose attention may look both ways
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything the model needs; built from `config.model` with `ModelConfig.from_config`. The fields after
    vocab_size are the config.model keys, each with its one default (configs/base.py reads `defaults()`)."""

    vocab_size: int
    style: str = "gpt2"
    num_layers: int = 12
    d_model: int = 768
    num_heads: int = 12
    num_kv_heads: int = -1  # -1 = num_heads (set in __post_init__)
    mlp_dim: int = 3072
    max_len: int = 128
    tie_embeddings: bool = True
    dropout: float = 0.1
    dtype: str = "float32"
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    remat: bool = False
    position_buckets: int = 32  # relative positions (ltg_bert): 2 * position_buckets - 1 buckets

    def __post_init__(self) -> None:
        if self.num_kv_heads == -1:
            object.__setattr__(self, "num_kv_heads", self.num_heads)
        if self.style not in STYLES:
            raise InputError(f"model.style={self.style!r}: use one of {STYLES}")
        if self.dtype not in DTYPES:
            raise InputError(f"model.dtype={self.dtype!r}: use one of {tuple(DTYPES)}")
        if self.d_model % self.num_heads:
            raise InputError(f"model.d_model={self.d_model} must be divisible by model.num_heads={self.num_heads}")
        if self.num_kv_heads < 1 or self.num_heads % self.num_kv_heads:
            raise InputError(f"model.num_kv_heads={self.num_kv_heads} must divide model.num_heads={self.num_heads}")
        if self.position == "rope" and self.head_dim % 2:
            raise InputError(f"RoPE (model.style={self.style!r}) needs an even head dim, got {self.head_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"model.dropout={self.dropout} must be in [0, 1)")
        if min(self.vocab_size, self.num_layers, self.mlp_dim, self.max_len) < 1:
            raise InputError("vocab_size, model.num_layers, model.mlp_dim and model.max_len must be positive")

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every config.model key with its default."""
        return {f.name: f.default for f in dataclasses.fields(cls) if f.name != "vocab_size"}

    @classmethod
    def from_config(cls, model_cfg: Any, vocab_size: int) -> ModelConfig:
        """From the `config.model` ConfigDict (a run directory's, RunDir.config, has every key: missing ones in an older
        run's config.json are filled in there), each value cast to its field's type."""
        missing = [k for k in cls.defaults() if k not in model_cfg]
        if missing:
            raise InputError(f"config.model lacks {', '.join(missing)}: start the config from configs/base.py")
        return cls(vocab_size=int(vocab_size), **{k: type(v)(model_cfg[k]) for k, v in cls.defaults().items()})

    # -- features: the rest of babyjax asks for these, never for the style name ------------------------------------
    @property
    def position(self) -> str:
        """'learned' (a position table of max_len rows: GPT-2, RoBERTa), 'rope' (rotary, on per-segment positions:
        Llama) or 'relative' (LTG-BERT's bucketed relative positions, babyjax/model/ltg.py)."""
        return {"llama": "rope", "ltg_bert": "relative"}.get(self.style, "learned")

    @property
    def norm(self) -> str:
        """'layernorm' (with bias: GPT-2, RoBERTa) or 'rmsnorm' (Llama)."""
        return "rmsnorm" if self.style == "llama" else "layernorm"

    @property
    def mlp(self) -> str:
        """'gelu' (tanh GELU MLP: GPT-2), 'gelu_exact' (erf GELU: RoBERTa), 'swiglu' (gated SiLU MLP: Llama) or
        'geglu' (gated tanh GELU with a norm inside: LTG-BERT)."""
        return {"gpt2": "gelu", "roberta": "gelu_exact", "ltg_bert": "geglu"}.get(self.style, "swiglu")

    @property
    def biases(self) -> bool:
        """Whether attention and MLP projections have biases (GPT-2 and RoBERTa yes, Llama no)."""
        return self.style != "llama"

    @property
    def encoder(self) -> bool:
        """Whether attention may look both ways (masked LMs; they can also run causally, as GPT-BERT's causal rows)."""
        return self.style in ENCODERS

    @property
    def post_norm(self) -> bool:
        """Post-LayerNorm blocks (norm(x + f(x)): BERT, RoBERTa), a norm on the embeddings and no final norm; else
        pre-norm blocks (x + f(norm(x))) and a final norm."""
        return self.style == "roberta"

    @property
    def embed_norm(self) -> bool:
        """A norm on the embeddings and none after the last block (RoBERTa: with scale and bias; LTG-BERT: without)."""
        return self.style in ("roberta", "ltg_bert")

    @property
    def mlm_head(self) -> bool:
        """BERT's output head: dense, GELU and LayerNorm before the (tied) projection, which has a bias."""
        return self.encoder

    @property
    def attention(self) -> str:
        """'mha' (every query head has its own key/value head) or 'gqa' (grouped-query attention)."""
        return "gqa" if self.num_kv_heads < self.num_heads else "mha"

    def check_length(self, seq_len: int, fix: str = "raise --config.model.max_len") -> None:
        """InputError when learned positions cannot cover `seq_len` tokens; `fix` says what to do."""
        if self.position == "learned" and seq_len > self.max_len:
            raise InputError(f"seq_len={seq_len} exceeds model.max_len={self.max_len} (learned positions): {fix}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def compute_dtype(self) -> Any:
        return DTYPES[self.dtype]


def _norm(cfg: ModelConfig, *, rngs: nnx.Rngs, affine: bool = True, width: int = 0) -> layers.Norm:
    """The model's norm (`cfg.norm`) over `width` features (default d_model)."""
    return layers.Norm(width or cfg.d_model, cfg.norm_eps, rms=cfg.norm == "rmsnorm", affine=affine, rngs=rngs)


def rope(x_BxLxHxK: jax.Array, positions_BxL: jax.Array, theta: float) -> jax.Array:
    """Rotary position embedding (rotate-half layout), angles from per-segment positions."""
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


class Attention(nnx.Module):
    """Multi-head (or grouped-query) self-attention; biases and RoPE as the config's features say."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, h, g, k = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        out_std = INIT_STD / math.sqrt(2 * cfg.num_layers)
        self.wq = _param(rngs, (d, h, k), ("embed", "heads", "kv"), INIT_STD, decay=True)
        self.wk = _param(rngs, (d, g, k), ("embed", "kv_heads", "kv"), INIT_STD, decay=True)
        self.wv = _param(rngs, (d, g, k), ("embed", "kv_heads", "kv"), INIT_STD, decay=True)
        self.wo = _param(rngs, (h, k, d), ("heads", "kv", "embed"), out_std, decay=True)
        if cfg.biases:
            self.bq = _param(rngs, (h, k), ("heads", "kv"), 0.0, decay=False)
            self.bk = _param(rngs, (g, k), ("kv_heads", "kv"), 0.0, decay=False)
            self.bv = _param(rngs, (g, k), ("kv_heads", "kv"), 0.0, decay=False)
            self.bo = _param(rngs, (d,), ("norm",), 0.0, decay=False)

    def __call__(
        self,
        x_BxLxD: jax.Array,
        mask_Bx1xLxL: jax.Array,
        positions_BxL: jax.Array,
        inference: bool = False,
        cols_BxK: jax.Array | None = None,
    ) -> jax.Array:
        """inference (no dropout: scoring, evaluation, generation): causal attention in query blocks (`attend`),
        which skip the scores of keys after the block; training keeps one block, as fast there and simpler to
        differentiate. cols_BxK: queries at these columns only (keys and values at all), output [B, K, D]."""
        cfg, dt = self.cfg, x_BxLxD.dtype
        q_BxLxHxK = jnp.einsum("bld,dhk->blhk", take_cols(x_BxLxD, cols_BxK), self.wq[...].astype(dt))
        k_BxLxGxK = jnp.einsum("bld,dgk->blgk", x_BxLxD, self.wk[...].astype(dt))
        v_BxLxGxK = jnp.einsum("bld,dgk->blgk", x_BxLxD, self.wv[...].astype(dt))
        if cfg.biases:
            q_BxLxHxK += self.bq[...].astype(dt)
            k_BxLxGxK += self.bk[...].astype(dt)
            v_BxLxGxK += self.bv[...].astype(dt)
        if cfg.position == "rope":
            q_BxLxHxK = rope(q_BxLxHxK, take_cols(positions_BxL, cols_BxK), cfg.rope_theta)
            k_BxLxGxK = rope(k_BxLxGxK, positions_BxL, cfg.rope_theta)
        q_BxLxHxK = constrain(q_BxLxHxK, ("batch", "length", "heads", "kv"))
        k_BxLxGxK = constrain(k_BxLxGxK, ("batch", "length", "kv_heads", "kv"))
        v_BxLxGxK = constrain(v_BxLxGxK, ("batch", "length", "kv_heads", "kv"))
        k_BxLxHxK, v_BxLxHxK = k_BxLxGxK, v_BxLxGxK
        if cfg.attention == "gqa":  # grouped-query: query head i reads key/value head i // (H / G)
            k_BxLxHxK = jnp.repeat(k_BxLxGxK, cfg.num_heads // cfg.num_kv_heads, axis=2)
            v_BxLxHxK = jnp.repeat(v_BxLxGxK, cfg.num_heads // cfg.num_kv_heads, axis=2)
        # plain einsums: on CPU at these lengths no slower than jax.nn.dot_product_attention, and exact
        q_BxLxHxK = q_BxLxHxK * jnp.asarray(cfg.head_dim**-0.5, dt)
        blocks = CAUSAL_BLOCKS if inference and not cfg.encoder else 1
        o_BxLxHxK = attend(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, take_cols(mask_Bx1xLxL, cols_BxK, axis=2), blocks)
        out_BxLxD = jnp.einsum("blhk,hkd->bld", o_BxLxHxK, self.wo[...].astype(dt))
        if cfg.biases:
            out_BxLxD += self.bo[...].astype(dt)
        return out_BxLxD


class Mlp(nnx.Module):
    """GELU (tanh or erf) MLP or SwiGLU, as `cfg.mlp` says; biases on the input and output projections if
    `cfg.biases`."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.gated, self.biases, self.approximate = cfg.mlp == "swiglu", cfg.biases, cfg.mlp == "gelu"
        d, f = cfg.d_model, cfg.mlp_dim
        self.w_in = _param(rngs, (d, f), ("embed", "mlp"), INIT_STD, decay=True)
        self.w_out = _param(rngs, (f, d), ("mlp", "embed"), INIT_STD / math.sqrt(2 * cfg.num_layers), decay=True)
        if self.gated:
            self.w_gate = _param(rngs, (d, f), ("embed", "mlp"), INIT_STD, decay=True)
        if self.biases:
            self.b_in = _param(rngs, (f,), ("mlp",), 0.0, decay=False)
            self.b_out = _param(rngs, (d,), ("norm",), 0.0, decay=False)

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        dt = x_BxLxD.dtype
        h_BxLxF = jnp.einsum("bld,df->blf", x_BxLxD, self.w_in[...].astype(dt))
        if self.biases:
            h_BxLxF += self.b_in[...].astype(dt)
        if self.gated:
            h_BxLxF = jax.nn.silu(jnp.einsum("bld,df->blf", x_BxLxD, self.w_gate[...].astype(dt))) * h_BxLxF
        else:
            h_BxLxF = jax.nn.gelu(h_BxLxF, approximate=self.approximate)
        h_BxLxF = constrain(h_BxLxF, ("batch", "length", "mlp"))
        out_BxLxD = jnp.einsum("blf,fd->bld", h_BxLxF, self.w_out[...].astype(dt))
        if self.biases:
            out_BxLxD += self.b_out[...].astype(dt)
        return out_BxLxD


class Block(nnx.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x)); post-norm (`cfg.post_norm`): norm(x + attn(x)), then
    norm(x + mlp(x)). cols_BxK: the block's output at these columns only (its queries there, keys at all)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.dropout, self.post = cfg.dropout, cfg.post_norm
        self.norm_attn, self.attn = _norm(cfg, rngs=rngs), Attention(cfg, rngs=rngs)
        self.norm_mlp, self.mlp = _norm(cfg, rngs=rngs), Mlp(cfg, rngs=rngs)

    def __call__(
        self,
        x_BxLxD: jax.Array,
        mask: jax.Array,
        positions_BxL: jax.Array,
        deterministic: bool,
        rngs: nnx.Rngs | None,
        cols_BxK: jax.Array | None = None,
    ) -> jax.Array:
        attn = lambda x: self.attn(x, mask, positions_BxL, deterministic, cols_BxK)
        for i, (norm, f) in enumerate(((self.norm_attn, attn), (self.norm_mlp, self.mlp))):
            residual = take_cols(x_BxLxD, cols_BxK) if i == 0 else x_BxLxD
            if self.post:
                x_BxLxD = norm(residual + _dropout(f(x_BxLxD), self.dropout, deterministic, rngs))
            else:
                x_BxLxD = residual + _dropout(f(norm(x_BxLxD)), self.dropout, deterministic, rngs)
        return constrain(x_BxLxD, ("batch", "length", "embed"))


class MlmHead(nnx.Module):
    """BERT's prediction-head transform: dense, GELU (erf), LayerNorm; the tied projection after it has a bias.
    LTG-BERT's: a norm first, and both norms without scale or bias."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        ltg_style = cfg.style == "ltg_bert"
        std = ltg.init_std(cfg) if ltg_style else INIT_STD
        self.norm_in = _norm(cfg, rngs=rngs, affine=False) if ltg_style else None
        self.kernel = _param(rngs, (cfg.d_model, cfg.d_model), ("embed", "mlp"), std, decay=True, truncated=ltg_style)
        self.bias = _param(rngs, (cfg.d_model,), ("norm",), 0.0, decay=False)
        self.norm = _norm(cfg, rngs=rngs, affine=not ltg_style)
        self.out_bias = _param(rngs, (cfg.vocab_size,), ("vocab",), 0.0, decay=False)

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        dt = x_BxLxD.dtype
        x_BxLxD = x_BxLxD if self.norm_in is None else self.norm_in(x_BxLxD)
        h_BxLxD = jnp.einsum("bld,de->ble", x_BxLxD, self.kernel[...].astype(dt)) + self.bias[...].astype(dt)
        return self.norm(jax.nn.gelu(h_BxLxD, approximate=False))


class Transformer(nnx.Module):
    """A language model: `logits_BxLxV = model(inputs_BxL, segment_ids, positions, deterministic, rngs, causal)`.
    causal: None = the style's way (decoders causal, encoders bidirectional), or a bool, or bool[B] per row."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg, relative = cfg, cfg.position == "relative"
        std = ltg.init_std(cfg) if relative else INIT_STD
        self.embed = _param(
            rngs, (cfg.vocab_size, cfg.d_model), ("vocab", "embed"), std, decay=True, truncated=relative
        )
        if cfg.position == "learned":  # a position table: no weight decay (as GPT-2/nanoGPT)
            self.pos_embed = _param(rngs, (cfg.max_len, cfg.d_model), (None, "embed"), INIT_STD, decay=False)
        if relative:
            self.relative = ltg.RelativePositions(cfg, rngs=rngs)
        self.blocks = nnx.List(
            [ltg.LtgBlock(cfg, i, rngs=rngs) if relative else Block(cfg, rngs=rngs) for i in range(cfg.num_layers)]
        )
        self.norm_out = _norm(cfg, rngs=rngs, affine=not relative)  # embed_norm models: the norm of the embeddings
        if cfg.mlm_head:
            self.mlm = MlmHead(cfg, rngs=rngs)
        if not cfg.tie_embeddings:
            self.head = _param(rngs, (cfg.d_model, cfg.vocab_size), ("embed", "vocab"), INIT_STD, decay=True)

    def _embed(
        self,
        inputs_BxL: jax.Array,
        positions_BxL: jax.Array,
        deterministic: bool,
        rngs: nnx.Rngs | None,
        offset_D: jax.Array | None = None,
    ) -> jax.Array:
        cfg = self.cfg
        # gather from tables whose model dimension is all-gathered (FSDP), so the rows land batch-sharded
        embed_VxD = constrain(self.embed[...], ("vocab", None))
        x_BxLxD = jnp.take(embed_VxD, inputs_BxL, axis=0).astype(cfg.compute_dtype)
        if cfg.position == "learned":
            pos_embed_LxD = constrain(self.pos_embed[...], (None, None))
            x_BxLxD += jnp.take(pos_embed_LxD, positions_BxL, axis=0).astype(cfg.compute_dtype)
        if offset_D is not None:  # added to every token before the embeddings' norm (RoBERTa's token-type row)
            x_BxLxD += offset_D.astype(cfg.compute_dtype)
        if cfg.embed_norm:
            x_BxLxD = self.norm_out(x_BxLxD)
        return constrain(_dropout(x_BxLxD, cfg.dropout, deterministic, rngs), ("batch", "length", "embed"))

    def features(
        self,
        inputs_BxL: jax.Array,
        segment_ids: jax.Array | None = None,
        positions: jax.Array | None = None,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
        causal: bool | jax.Array | None = None,
        cols: jax.Array | None = None,
    ) -> jax.Array:
        """The input of the output projection x_BxLxD (compute dtype): the final hidden states (`hidden`), through
        the MLM head's transform in encoders. cols (int32 [B, K]): x_BxKxD at these columns only (`hidden`)."""
        x_BxLxD = self.hidden(inputs_BxL, segment_ids, positions, deterministic, rngs, causal, cols)
        return self.mlm(x_BxLxD) if self.cfg.mlm_head else x_BxLxD

    def hidden(
        self,
        inputs_BxL: jax.Array,
        segment_ids: jax.Array | None = None,
        positions: jax.Array | None = None,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
        causal: bool | jax.Array | None = None,
        cols: jax.Array | None = None,
        embed_offset: jax.Array | None = None,
    ) -> jax.Array:
        """The final hidden states x_BxLxD (compute dtype), normed in pre-norm models: what an exported model returns
        as `last_hidden_state`. cols (int32 [B, K]): x_BxKxD at these columns only; the last block computes only their
        queries and what follows (its keys and values at every column), the rest of its work skipped, as the loss,
        the scorer and a classifier read a few columns a row (masked tokens, token samples, the pooled token).
        embed_offset (float32 [D]): added to every token's embedding before the embeddings' norm (fine-tuning
        trains the zero token-type row that a RoBERTa export adds, babyjax.finetune.model)."""
        cfg = self.cfg
        b, length = inputs_BxL.shape
        cfg.check_length(length, fix="feed at most model.max_len tokens per row")
        causal = not cfg.encoder if causal is None else causal
        if not cfg.encoder and causal is not True:
            raise InputError(f"model.style={cfg.style!r} is a decoder: its attention is causal only")
        segment_ids_BxL = jnp.ones((b, length), jnp.int32) if segment_ids is None else segment_ids
        positions_BxL = jnp.broadcast_to(jnp.arange(length), (b, length)) if positions is None else positions
        x_BxLxD = self._embed(inputs_BxL, positions_BxL, deterministic, rngs, embed_offset)
        mask = attention_mask(segment_ids_BxL, causal)
        extra = self.relative(positions_BxL) if cfg.position == "relative" else (positions_BxL,)

        def run_block(block: Block, x: jax.Array, rngs: nnx.Rngs | None, cols_BxK: jax.Array | None) -> jax.Array:
            return block(x, mask, *extra, deterministic, rngs, cols_BxK)

        if cfg.remat:
            run_block = nnx.remat(run_block)
        for i, block in enumerate(self.blocks):
            x_BxLxD = run_block(block, x_BxLxD, rngs, cols if i == cfg.num_layers - 1 else None)
        return x_BxLxD if cfg.embed_norm else self.norm_out(x_BxLxD)

    def head_kernel_DxV(self) -> jax.Array:
        """The output projection (the transposed embedding when tied), float32."""
        return self.embed[...].T if self.cfg.tie_embeddings else self.head[...]

    def head_bias_V(self) -> jax.Array | None:
        """The output projection's bias (MLM heads), float32; None when it has none."""
        return self.mlm.out_bias[...] if self.cfg.mlm_head else None

    def logits(self, x_BxLxD: jax.Array) -> jax.Array:
        """float32 logits from `features`."""
        w_DxV = self.head_kernel_DxV().astype(x_BxLxD.dtype)
        logits_BxLxV = jnp.einsum("bld,dv->blv", x_BxLxD, w_DxV, preferred_element_type=jnp.float32)
        if self.cfg.mlm_head:
            logits_BxLxV += self.head_bias_V()
        return constrain(logits_BxLxV, ("batch", "length", "vocab"))

    def __call__(
        self,
        inputs_BxL: jax.Array,
        segment_ids: jax.Array | None = None,
        positions: jax.Array | None = None,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
        causal: bool | jax.Array | None = None,
    ) -> jax.Array:
        return self.logits(self.features(inputs_BxL, segment_ids, positions, deterministic, rngs, causal))


def num_params(cfg: ModelConfig) -> int:
    """Number of parameters of `Transformer(cfg)` (tied embeddings counted once), counted from its abstract shapes."""
    params = nnx.state(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))), nnx.Param)
    return sum(math.prod(x.shape) for x in jax.tree.leaves(params))


def matmul_params(cfg: ModelConfig) -> int:
    """Parameters used in matmuls per token: block kernels plus the output projection and the MLM head's transform
    (embedding lookups and position tables are gathers, norms and biases are negligible)."""
    d, f, h, g, k = cfg.d_model, cfg.mlp_dim, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    per_layer = 2 * d * h * k + 2 * d * g * k + (3 if cfg.mlp in ("swiglu", "geglu") else 2) * d * f
    return cfg.num_layers * per_layer + d * cfg.vocab_size + (d * d if cfg.mlm_head else 0)


def flops_per_token(cfg: ModelConfig, seq_len: int, *, backward: bool = True, head_fraction: float = 1.0) -> float:
    """THE FLOPs per token of babyjax (training, benchmarks, scoring, the report), PaLM appendix B convention.

    Forward: 2 * matmul_params + 4 * num_layers * num_heads * head_dim * seq_len (QK^T and attention-times-V over the
    full context, not halved for causality; relative positions add 4 * num_layers * d_model * (2 * buckets - 1) for
    the content-to-position and position-to-content scores); `backward=True` (training, the default) counts 3
    forwards, `False` one. head_fraction: the share of positions that reach the output projection (and the MLM head's
    transform, and all of the last block but its keys and values: `Transformer.features`' cols): masked objectives
    read only their chosen columns (babyjax.model.objectives.Objective.capacity)."""
    d, f, h, k = cfg.d_model, cfg.mlp_dim, cfg.num_heads, cfg.head_dim
    head = d * cfg.vocab_size + (d * d if cfg.mlm_head else 0)
    last_block = 2 * d * h * k + (3 if cfg.mlp in ("swiglu", "geglu") else 2) * d * f  # queries, output, MLP
    attention = 4.0 * h * k * (seq_len + (2 * cfg.position_buckets - 1 if cfg.position == "relative" else 0))
    skipped = (1.0 - head_fraction) * (2.0 * (head + last_block) + attention)
    forward = 2.0 * matmul_params(cfg) + cfg.num_layers * attention - skipped
    return 3.0 * forward if backward else forward

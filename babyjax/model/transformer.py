"""Transformers in Flax NNX, built from the features of a `ModelConfig` (docs/architecture.md): decoders (gpt2,
llama, opt, gpt_neox) and encoders (roberta, ltg_bert), which attend both ways or causally as each row of a batch says.

`model.style` is a preset of features: the ModelConfig properties read it, and the feature keys (activation,
rotary_fraction, residual, block_norm, bias) override the preset where set. Parameters are float32 with logical axis
names (babyjax/model/sharding.py) and a weight-decay tag (babyjax/train/optim.py); compute runs in `cfg.dtype`, logits
come back in float32. Attention stays within packed segments (id 0: padding).
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
from babyjax.model.layers import CAUSAL_BLOCKS, INIT_STD, attend, attention_mask, rope, take_cols
from babyjax.model.layers import dropout as _dropout
from babyjax.model.layers import param as _param
from babyjax.model.sharding import constrain

STYLES = ("gpt2", "llama", "roberta", "ltg_bert", "opt", "gpt_neox")
ENCODERS = ("roberta", "ltg_bert")  # styles whose attention may look both ways
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# the values of the feature keys that override one feature of the style ('' = the style's)
FEATURE_KEYS = {
    "activation": ("", "gelu", "gelu_exact", "relu"),
    "residual": ("", "sequential", "parallel"),
    "block_norm": ("", "pre", "post"),
    "bias": ("", "all", "none", "mlp"),
}
# each style's MLP (`ModelConfig.mlp`; the others: swiglu); the plain ones (no gate) may take another `activation`
MLP_PRESETS = {"gpt2": "gelu", "roberta": "gelu_exact", "opt": "relu", "gpt_neox": "gelu_exact", "ltg_bert": "geglu"}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything the model needs; built from `config.model` with `ModelConfig.from_config`. The fields after
    vocab_size are the config.model keys, each with its one default (configs/base.py reads `defaults()`); the last
    five override one feature of the style's preset each, and their defaults keep the preset."""

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
    activation: str = ""  # a plain MLP's activation: gelu (tanh) | gelu_exact (erf) | relu
    rotary_fraction: float = 1.0  # RoPE on the first int(head_dim * rotary_fraction) dims of each head (GPT-NeoX)
    residual: str = ""  # sequential | parallel (x + attn(norm(x)) + mlp(norm(x)): GPT-NeoX)
    block_norm: str = ""  # pre (x + f(norm(x))) | post (norm(x + f(x)))
    bias: str = ""  # all | none | mlp (biases on the MLP only: GPT-NeoX's attention_bias=False)

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
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"model.dropout={self.dropout} must be in [0, 1)")
        if min(self.vocab_size, self.num_layers, self.mlp_dim, self.max_len) < 1:
            raise InputError("vocab_size, model.num_layers, model.mlp_dim and model.max_len must be positive")
        self._check_features()

    def _check_features(self) -> None:
        """InputError for a feature key outside its values, or one that does not apply to the style."""
        for key, values in FEATURE_KEYS.items():
            if getattr(self, key) not in values:
                raise InputError(f"model.{key}={getattr(self, key)!r}: use one of {values} ('' = the style's)")
        if self.style == "ltg_bert" and (self.activation or self.residual or self.block_norm or self.bias):
            raise InputError("model.activation, residual, block_norm and bias do not apply to model.style='ltg_bert'")
        if self.activation and MLP_PRESETS.get(self.style, "swiglu") not in layers.PLAIN_MLPS:
            raise InputError(f"model.activation={self.activation!r}: model.style={self.style!r} has a gated MLP")
        if self.parallel_residual and self.post_norm:
            raise InputError("model.residual='parallel' needs pre-norm blocks (model.block_norm='pre')")
        if not 0.0 < self.rotary_fraction <= 1.0 or self.rotary_fraction != 1.0 and self.position != "rope":
            raise InputError(f"model.rotary_fraction={self.rotary_fraction} must be in (0, 1], and 1 without RoPE")
        if self.position == "rope" and (self.rotary_dim % 2 or self.rotary_dim < 2):
            raise InputError(
                f"RoPE (model.style={self.style!r}) needs an even number of rotated dims, got {self.rotary_dim} "
                f"(head dim {self.head_dim} x model.rotary_fraction {self.rotary_fraction})"
            )

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
        """'learned' (a position table of max_len rows: GPT-2, OPT, RoBERTa), 'rope' (rotary, on per-segment
        positions: Llama, GPT-NeoX) or 'relative' (LTG-BERT's bucketed relative positions, babyjax/model/ltg.py)."""
        return {"llama": "rope", "gpt_neox": "rope", "ltg_bert": "relative"}.get(self.style, "learned")

    @property
    def norm(self) -> str:
        """'layernorm' (with bias: GPT-2, OPT, GPT-NeoX, RoBERTa) or 'rmsnorm' (Llama)."""
        return "rmsnorm" if self.style == "llama" else "layernorm"

    @property
    def mlp(self) -> str:
        """'gelu' (tanh GELU MLP: GPT-2), 'gelu_exact' (erf GELU: RoBERTa, GPT-NeoX), 'relu' (OPT), 'swiglu' (gated
        SiLU MLP: Llama) or 'geglu' (gated tanh GELU with a norm inside: LTG-BERT); `activation` picks a plain one."""
        return self.activation or MLP_PRESETS.get(self.style, "swiglu")

    @property
    def attn_biases(self) -> bool:
        """Whether the attention projections have biases (all styles but Llama; `bias` overrides)."""
        return self.bias == "all" or not self.bias and self.style != "llama"

    @property
    def mlp_biases(self) -> bool:
        """Whether the MLP's projections have biases (all styles but Llama; `bias` overrides)."""
        return self.bias in ("all", "mlp") or not self.bias and self.style != "llama"

    @property
    def biases(self) -> bool:
        """Whether attention and MLP projections all have biases (GPT-2 and RoBERTa yes, Llama no)."""
        return self.attn_biases and self.mlp_biases

    @property
    def encoder(self) -> bool:
        """Whether attention may look both ways (masked LMs; they can also run causally, as GPT-BERT's causal rows)."""
        return self.style in ENCODERS

    @property
    def post_norm(self) -> bool:
        """Post-norm blocks (norm(x + f(x)): BERT, RoBERTa, OPT-350m with `block_norm`='post'); else pre-norm blocks
        (x + f(norm(x)))."""
        return self.block_norm == "post" or not self.block_norm and self.style == "roberta"

    @property
    def embed_norm(self) -> bool:
        """A norm on the embeddings (RoBERTa: with scale and bias; LTG-BERT: without)."""
        return self.style in ("roberta", "ltg_bert")

    @property
    def final_norm(self) -> bool:
        """A norm after the last block: pre-norm models without a norm on the embeddings (GPT-2, Llama, OPT,
        GPT-NeoX); post-norm blocks end in a norm of their own."""
        return not (self.post_norm or self.embed_norm)

    @property
    def parallel_residual(self) -> bool:
        """Blocks x + attn(norm(x)) + mlp(norm(x)) (GPT-NeoX's use_parallel_residual), else the MLP after attention."""
        return self.residual == "parallel" or not self.residual and self.style == "gpt_neox"

    @property
    def rotary_dim(self) -> int:
        """How many features of each head RoPE rotates (the first ones; the rest pass through)."""
        return int(self.head_dim * self.rotary_fraction)

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
        if cfg.attn_biases:
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
        if cfg.attn_biases:
            q_BxLxHxK += self.bq[...].astype(dt)
            k_BxLxGxK += self.bk[...].astype(dt)
            v_BxLxGxK += self.bv[...].astype(dt)
        if cfg.position == "rope":
            q_BxLxHxK = rope(q_BxLxHxK, take_cols(positions_BxL, cols_BxK), cfg.rope_theta, cfg.rotary_dim)
            k_BxLxGxK = rope(k_BxLxGxK, positions_BxL, cfg.rope_theta, cfg.rotary_dim)
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
        if cfg.attn_biases:
            out_BxLxD += self.bo[...].astype(dt)
        return out_BxLxD


class Block(nnx.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x)); post-norm (`cfg.post_norm`): norm(x + attn(x)), then
    norm(x + mlp(x)); parallel (`cfg.parallel_residual`): x + attn(norm(x)) + mlp(norm'(x)). cols_BxK: the block's
    output at these columns only (its queries there, keys at all)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.dropout, self.post, self.parallel = cfg.dropout, cfg.post_norm, cfg.parallel_residual
        self.norm_attn, self.attn = _norm(cfg, rngs=rngs), Attention(cfg, rngs=rngs)
        out_std = INIT_STD / math.sqrt(2 * cfg.num_layers)
        self.norm_mlp = _norm(cfg, rngs=rngs)
        self.mlp = layers.Mlp(cfg.d_model, cfg.mlp_dim, cfg.mlp, biases=cfg.mlp_biases, out_std=out_std, rngs=rngs)

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
        if self.parallel:  # both branches read the block's input (the MLP's only at the columns kept)
            x_BxKxD = take_cols(x_BxLxD, cols_BxK)
            attn_BxKxD = _dropout(attn(self.norm_attn(x_BxLxD)), self.dropout, deterministic, rngs)
            mlp_BxKxD = _dropout(self.mlp(self.norm_mlp(x_BxKxD)), self.dropout, deterministic, rngs)
            return constrain(x_BxKxD + attn_BxKxD + mlp_BxKxD, ("batch", "length", "embed"))
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
        if cfg.embed_norm or cfg.final_norm:  # embed_norm models: the norm of the embeddings
            self.norm_out = _norm(cfg, rngs=rngs, affine=not relative)
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
        """The final hidden states x_BxLxD (compute dtype), normed if `cfg.final_norm`: what an exported model returns
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
        return self.norm_out(x_BxLxD) if cfg.final_norm else x_BxLxD

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

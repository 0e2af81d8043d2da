"""The classifier that fine-tuning trains: a run's transformer (its hidden states, as an export's `last_hidden_state`)
read at one column a row, then the BabyLM 2025 pipeline's head (evaluation_pipeline/finetune/classifier_model.py):
LayerNorm without parameters, dense, GELU, LayerNorm without parameters, dropout, dense to the labels."""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
from flax import nnx

from babyjax.checkpoints.run import RunDir
from babyjax.checkpoints.series import restore_params
from babyjax.errors import InputError
from babyjax.model.layers import Norm, dropout
from babyjax.model.transformer import ModelConfig, Transformer

POOLS = ("auto", "first", "last")  # auto: the last real token for decoders, position 0 for encoders
HEAD_EPS = 1e-5  # the pipeline's --classifier_layer_norm_eps


def pool_columns(lengths: jax.Array, pool: str, cfg: ModelConfig) -> jax.Array:
    """int32, the shape of `lengths`: the column each example is classified from, counted from its first token.
    'first': its first token (the pipeline's default, for every model); 'last': its last token; 'auto': 'last' for
    decoders, which have seen the whole text only there, 'first' for encoders and hybrids. Empty slots (length 0): 0."""
    if pool not in POOLS:
        raise InputError(f"--pool={pool!r}: use one of {', '.join(POOLS)}")
    last = pool == "last" or (pool == "auto" and not cfg.encoder)
    return (jnp.maximum(lengths - 1, 0) if last else jnp.zeros_like(lengths)).astype(jnp.int32)


def _torch_linear(rngs: nnx.Rngs, fan_in: int, fan_out: int) -> tuple[nnx.Param, nnx.Param]:
    """(kernel [in, out], bias [out]) drawn as torch.nn.Linear draws them: uniform within +-1/sqrt(fan_in)."""
    bound = 1.0 / math.sqrt(fan_in)
    kernel = jax.random.uniform(rngs.params(), (fan_in, fan_out), jnp.float32, -bound, bound)
    bias = jax.random.uniform(rngs.params(), (fan_out,), jnp.float32, -bound, bound)
    return nnx.Param(kernel), nnx.Param(bias)


class ClassifierHead(nnx.Module):
    """The pipeline's head on one hidden state per row: x_BxD -> logits_BxN (float32)."""

    def __init__(self, width: int, num_labels: int, rate: float, *, rngs: nnx.Rngs):
        self.rate = rate
        self.norm_in = Norm(width, HEAD_EPS, affine=False, rngs=rngs)
        self.kernel_in, self.bias_in = _torch_linear(rngs, width, width)
        self.norm_mid = Norm(width, HEAD_EPS, affine=False, rngs=rngs)
        self.kernel_out, self.bias_out = _torch_linear(rngs, width, num_labels)

    def __call__(self, x_BxD: jax.Array, deterministic: bool, rngs: nnx.Rngs | None) -> jax.Array:
        x = self.norm_in(x_BxD.astype(jnp.float32))
        x = jax.nn.gelu(x @ self.kernel_in[...] + self.bias_in[...], approximate=False)  # torch.nn.GELU(): erf
        x = dropout(self.norm_mid(x), self.rate, deterministic, rngs)
        return x @ self.kernel_out[...] + self.bias_out[...]


class Classifier(nnx.Module):
    """A run's transformer and the head: `logits_BxN = classifier(inputs_BxL, lengths_B, deterministic, rngs)` on
    right-padded rows (`lengths_B` real tokens each). Decoders attend causally (as their exports always do),
    encoders and hybrids both ways (eval_finetuning.sh passes no --causal)."""

    def __init__(self, backbone: Transformer, num_labels: int, rate: float, pool: str, *, rngs: nnx.Rngs):
        self.backbone, self.pool = backbone, pool
        self.head = ClassifierHead(backbone.cfg.d_model, num_labels, rate, rngs=rngs)
        # a RoBERTa export adds a token-type row (zeros) to every token's embedding, which the pipeline trains
        roberta = backbone.cfg.style == "roberta"
        self.token_type = nnx.Param(jnp.zeros((backbone.cfg.d_model,), jnp.float32)) if roberta else None

    def __call__(
        self, inputs_BxL: jax.Array, lengths_B: jax.Array, deterministic: bool = True, rngs: nnx.Rngs | None = None
    ) -> jax.Array:
        cfg = self.backbone.cfg
        if self.first_token_only:  # causal: position 0 reads its own token only (exact)
            inputs_BxL = inputs_BxL[:, :1]
        length = inputs_BxL.shape[1]
        segment_ids_BxL = (jnp.arange(length)[None, :] < lengths_B[:, None]).astype(jnp.int32)
        cols_Bx1 = pool_columns(lengths_B, self.pool, cfg)[:, None]
        offset_D = None if self.token_type is None else self.token_type[...]
        x_Bx1xD = self.backbone.hidden(
            inputs_BxL, segment_ids_BxL, None, deterministic, rngs, not cfg.encoder, cols_Bx1, offset_D
        )
        return self.head(x_Bx1xD[:, 0], deterministic, rngs)

    @property
    def first_token_only(self) -> bool:
        """Whether a row is read at its first token alone (a decoder pooled at position 0)."""
        return not self.backbone.cfg.encoder and self.pool == "first"

    def packed(self, batch: dict[str, jax.Array], deterministic: bool = True, rngs: nnx.Rngs | None = None):
        """logits_BxN of a packed batch (babyjax.finetune.train.packed): each example attends within its segment
        and is pooled at its own column, so the logits are those of its padded row."""
        cfg = self.backbone.cfg
        cols_RxK = batch["starts"] + pool_columns(batch["lengths"], self.pool, cfg)
        offset_D = None if self.token_type is None else self.token_type[...]
        x_RxKxD = self.backbone.hidden(
            batch["inputs"], batch["segments"], batch["positions"], deterministic, rngs, not cfg.encoder, cols_RxK,
            offset_D,
        )  # fmt: skip
        x_BxD = x_RxKxD.reshape(-1, x_RxKxD.shape[-1])[batch["take"]]
        return self.head(x_BxD, deterministic, rngs)


def backbone_shapes(cfg: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, parameter shapes) of the transformer of `cfg`, for restoring a checkpoint into."""
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))), nnx.Param)
    return graphdef, jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), abstract)


def classifier_at(
    workdir: str | os.PathLike,
    step: int,
    num_labels: int,
    *,
    pool: str = "auto",
    rate: float = 0.1,
    dropout_rate: float | None = None,
    seed: int = 0,
) -> Classifier:
    """The classifier on series step `step` of the run in `workdir`: its transformer restored (the hash checked), the
    head drawn from `seed`. dropout_rate: the transformer's dropout while fine-tuning (None: the run's model.dropout,
    as an export carries it into the pipeline's fine-tuning); rate: the head's."""
    run = RunDir(workdir)
    cfg = run.model_config()
    cfg = dataclasses.replace(cfg, remat=False, dropout=cfg.dropout if dropout_rate is None else dropout_rate)
    graphdef, abstract = backbone_shapes(cfg)
    backbone = nnx.merge(graphdef, restore_params(run.path, step, abstract))
    return Classifier(backbone, num_labels, rate, pool, rngs=nnx.Rngs(params=jax.random.PRNGKey(seed)))

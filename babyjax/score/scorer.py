"""The jitted, sharded scoring function: log p(target | context) of every scored token of packed rows (`Scorer`),
and `score_sequences` for notebooks."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from babyjax.errors import InputError
from babyjax.model import sharding
from babyjax.model.layers import take_cols
from babyjax.model.transformer import ModelConfig, Transformer
from babyjax.model.xent import head_chunks
from babyjax.score.packing import Packed, pack, windows


def _head_logprobs(model: Transformer, x_BxLxD: jax.Array, targets_BxL: jax.Array) -> jax.Array:
    """log p(target) from final hidden states: the model's float32 logits minus their logsumexp."""
    logits_BxLxV = model.logits(x_BxLxD)
    target_BxL = jnp.take_along_axis(logits_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]
    return target_BxL - jax.nn.logsumexp(logits_BxLxV, axis=-1)


def _target_logprobs(
    model: Transformer, batch: Mapping[str, jax.Array], chunks: int = 1, causal: bool = True
) -> jax.Array:
    """log p(target | context) in nats, float32 [B, L] (or [B, K] at the columns `batch['cols']`, `Packed.compact`); 0
    where the weight is 0. The output projection and log-softmax run over `chunks` slices of the batch in turn (a
    lax.map: the logits of one slice stay in cache, faster on CPU than one [B, L, V] pass); slice j holds rows j,
    j + chunks, ..., so every device keeps working on its own rows."""
    cols_BxK = batch.get("cols")  # read the scored columns only (L becomes K below)
    x_BxLxD = model.features(
        batch["inputs"],
        batch["segment_ids"],
        batch["positions"],
        deterministic=True,
        causal=causal if model.cfg.encoder else None,
        cols=cols_BxK,
    )
    targets_BxL, weights_BxL = (take_cols(batch[k], cols_BxK) for k in ("targets", "weights"))
    if chunks == 1:
        logp_BxL = _head_logprobs(model, x_BxLxD, targets_BxL)
    else:
        b, length, d = x_BxLxD.shape
        x_CxBxLxD = x_BxLxD.reshape(b // chunks, chunks, length, d).swapaxes(0, 1)
        x_CxBxLxD = sharding.constrain(x_CxBxLxD, (None, "batch", "length", "embed"))
        t_CxBxL = targets_BxL.reshape(b // chunks, chunks, length).swapaxes(0, 1)
        logp_CxBxL = jax.lax.map(lambda xt: _head_logprobs(model, *xt), (x_CxBxLxD, t_CxBxL))
        logp_BxL = logp_CxBxL.swapaxes(0, 1).reshape(b, length)
    return jnp.where(weights_BxL > 0, logp_BxL, 0.0)


def scoring_mesh(mesh_cfg: Any = None) -> Mesh:
    """The mesh of `mesh_cfg` (sizes of 'data', 'fsdp', 'tensor'); by default every device on 'data'."""
    return sharding.make_mesh(mesh_cfg or ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1}))


class Scorer:
    """The jitted, sharded scoring function for one model shape on one mesh: parameters laid out by their logical axes,
    batches split over ('data', 'fsdp') (the padded last batch fixed before any checkpoint: docs/science.md,
    "Packing"), log-probabilities returned replicated to every process. batch_rows (0 = 8 per data-parallel device on
    CPU, where small batches stay in cache and run faster than 32, or 128 on accelerators) is rounded up to a
    multiple of the data-parallel devices. head_tokens: tokens per device in each slice of the output projection (see
    `_target_logprobs`; 0 = 256 on CPU, 16,384 on accelerators). causal: False for masked LMs (attention both ways
    within each packed segment)."""

    def __init__(
        self, model_cfg: ModelConfig, mesh: Mesh, batch_rows: int = 0, head_tokens: int = 0, causal: bool = True
    ):
        cpu = mesh.devices.flat[0].platform == "cpu"
        if not causal and not model_cfg.encoder:
            raise InputError(f"model.style={model_cfg.style!r} is a decoder: it can only be scored causally")
        head_tokens = head_tokens or (256 if cpu else 16384)
        self.model_cfg, self.mesh = dataclasses.replace(model_cfg, dropout=0.0, remat=False), mesh
        abstract_model = nnx.eval_shape(lambda: Transformer(self.model_cfg, rngs=nnx.Rngs(0)))
        self.graphdef, abstract, rest = nnx.split(abstract_model, nnx.Param, ...)
        if jax.tree.leaves(rest):
            raise InputError("babyjax.score expects a model whose only state is nnx.Param")
        self._rest = rest
        self.param_shardings = sharding.tree_shardings(abstract, mesh)
        self.abstract_params = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, self.param_shardings
        )
        shards = mesh.shape["data"] * mesh.shape["fsdp"]
        batch_rows = batch_rows or (8 if cpu else 128) * shards
        self.batch_rows = max(1, math.ceil(batch_rows / shards)) * shards
        # a whole evaluation set: [batches, batch_rows, length], every batch split over the data-parallel devices
        self.batch_sharding = NamedSharding(mesh, PartitionSpec(None, *sharding.logical_to_spec(("batch", "length"))))
        replicated = NamedSharding(mesh, PartitionSpec())

        def logprobs(params: nnx.State, batches: dict[str, jax.Array]) -> jax.Array:
            read = batches["cols"] if "cols" in batches else batches["inputs"]
            chunks = head_chunks(read.shape[1] // shards, read.shape[2], head_tokens)
            with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
                model = nnx.merge(self.graphdef, params, self._rest)
                return jax.lax.map(lambda batch: _target_logprobs(model, batch, chunks, causal), batches)

        # one call per checkpoint, the batches looped over inside: a call per batch costs host time that, on CPU, is
        # taken from the same cores as the compute
        self._fn = jax.jit(logprobs, in_shardings=(self.param_shardings, self.batch_sharding), out_shardings=replicated)

    def place(self, packed: Packed) -> tuple[Packed, dict[str, jax.Array] | None]:
        """Compact `packed` (read only the scored columns), pad it to whole batches and put them on the mesh once,
        stacked [batches, batch_rows, length] (reused for every checkpoint); None when nothing is scored."""
        packed = packed.compact().padded(self.batch_rows)
        if packed.num_rows == 0:
            return packed, None
        put = lambda x: jax.make_array_from_callback(x.shape, self.batch_sharding, lambda idx: x[idx])
        batches = list(packed.batches(self.batch_rows))
        return packed, {k: put(np.stack([b[k] for b in batches])) for k in batches[0]}

    def logprobs(self, params: Any, packed: Packed, device_batches: dict[str, jax.Array] | None) -> np.ndarray:
        """float32 [T]: natural-log probability of every scored token of `packed`, in window order."""
        if device_batches is None:
            return np.zeros((0,), np.float32)
        out = self._fn(params, device_batches)
        return np.asarray(out.addressable_data(0)).reshape(-1)[packed.token_index]


def score_sequences(
    model: Transformer,
    token_lists: Sequence[Sequence[int]],
    *,
    policy: str = "eot_context",
    seq_len: int | None = None,
    stride: int | None = None,
    batch_rows: int = 0,
    mesh: Mesh | None = None,
    head_tokens: int = 0,
) -> list[np.ndarray]:
    """Natural-log probabilities of the scored tokens of each sequence (a notebook helper around `Scorer`). With
    `eot_context` every token of a sequence is scored; with `no_context` all but the first."""
    cfg = model.cfg
    seq_len = seq_len or cfg.max_len
    mesh = mesh or scoring_mesh()
    scorer = Scorer(cfg, mesh, batch_rows, head_tokens)
    wins = [w for s, ids in enumerate(token_lists) for w in windows(s, ids, policy, seq_len, stride)]
    packed, device_batches = scorer.place(pack(wins, seq_len))
    params = jax.device_put(nnx.state(model, nnx.Param), scorer.param_shardings)  # into the scorer's layout
    logp = scorer.logprobs(params, packed, device_batches)
    counts = np.bincount(
        [w.seq for w in wins], weights=[len(w.target_ids) for w in wins], minlength=len(token_lists)
    ).astype(np.int64)
    return np.split(logp, np.cumsum(counts)[:-1]) if len(token_lists) else []

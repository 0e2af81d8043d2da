"""The functional hot loop: a `TrainState` pytree and jitted, sharded `train_step` / `eval_step`, pure functions of
(state, batch) with explicit in/out shardings, the train state donated. Gradient accumulation scans over micro-batches
and sums token-weighted gradients: k micro-batches give exactly the update of one batch k times larger.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from babyjax.errors import InputError
from babyjax.model.layers import take_cols
from babyjax.model.objectives import Objective
from babyjax.model.sharding import constrain, logical_to_spec, tree_shardings
from babyjax.model.transformer import ModelConfig, Transformer
from babyjax.model.xent import xent_sums
from babyjax.train.optim import make_optimizer

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]
LOSS_FIELDS = ("inputs", "targets", "segment_ids", "positions", "weights")  # the batch entries the loss reads


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training."""

    step: jax.Array  # int32 scalar: optimizer steps taken
    params: nnx.State  # the nnx.Param state (float32)
    opt_state: optax.OptState
    rng: jax.Array  # uint32[2] raw PRNG key for dropout (folded with the step)
    rest: nnx.State  # any non-Param nnx state of the model (empty for babyjax.model.transformer)


def init_train_state(
    model_cfg: ModelConfig, optim_cfg: Any, num_steps: int, mesh: Mesh, seed: int
) -> tuple[nnx.GraphDef, TrainState, TrainState, optax.GradientTransformation, optax.Schedule]:
    """Initialise directly into the sharded layout: (graphdef, state, state_shardings, tx, lr_schedule)."""
    tx, lr_schedule = make_optimizer(optim_cfg, num_steps)
    params_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))

    def init() -> TrainState:
        model = Transformer(model_cfg, rngs=nnx.Rngs(params=params_key))
        _, params, rest = nnx.split(model, nnx.Param, ...)
        return TrainState(
            step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=dropout_key, rest=rest
        )

    graphdef, _, _ = nnx.split(nnx.eval_shape(lambda: Transformer(model_cfg, rngs=nnx.Rngs(0))), nnx.Param, ...)
    state_shardings = tree_shardings(jax.eval_shape(init), mesh)
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
        state = jax.jit(init, out_shardings=state_shardings)()
    return graphdef, state, state_shardings, tx, lr_schedule


def _split_micro(batch: Batch, k: int) -> Batch:
    """[B, ...] -> [k, B/k, ...] with micro-batch j = rows j, j+k, ... so each device's rows feed every micro-batch."""

    def split(x: jax.Array) -> jax.Array:
        if x.shape[0] % k:
            raise InputError(f"batch size {x.shape[0]} is not divisible by optim.grad_accum_steps={k}")
        x = x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1)
        return constrain(x, (None, "batch") + (None,) * (x.ndim - 2))

    return {key: split(x) for key, x in batch.items()}


def _loss_sums(
    graphdef: nnx.GraphDef, params: nnx.State, rest: nnx.State, batch: Batch, deterministic: bool, rng: jax.Array
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """(sum over tokens of weight * cross-entropy, (sum of weights, weighted count of right argmax predictions)),
    float32; the accuracy sum is computed for masked objectives only (batches with a 'causal' entry, else 0)."""
    model = nnx.merge(graphdef, params, rest)
    rngs = None if deterministic else nnx.Rngs(dropout=rng)
    causal = batch.get("causal", True) if model.cfg.encoder else None
    cols_BxK = batch.get("cols")  # masked objectives: the last block and the projection at chosen columns only
    x_BxLxD = model.features(
        batch["inputs"], batch["segment_ids"], batch["positions"], deterministic, rngs, causal, cols=cols_BxK
    )
    targets_BxL, weights_BxL = (take_cols(batch[k], cols_BxK) for k in ("targets", "weights"))
    weights_BxL = weights_BxL.astype(jnp.float32)
    accuracy = "causal" in batch and model.cfg.encoder
    w_DxV = model.head_kernel_DxV().astype(x_BxLxD.dtype)
    loss, correct = xent_sums(x_BxLxD, w_DxV, model.head_bias_V(), targets_BxL, weights_BxL, accuracy=accuracy)
    return loss, (jnp.sum(weights_BxL), correct)


def _batch_shardings(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(("batch",)))


_MASK_STREAM = 0x6D61736B  # folded into the step key for the objective's masks (dropout keeps the step key itself)


def _grads(
    graphdef: nnx.GraphDef, state: TrainState, batch: Batch, rng: jax.Array, grad_accum_steps: int
) -> tuple[tuple[jax.Array, tuple[jax.Array, jax.Array]], nnx.State]:
    """((loss sum, (weight sum, correct sum)), summed gradients) of one batch, over micro-batches when k > 1."""
    grad_fn = jax.value_and_grad(_loss_sums, argnums=1, has_aux=True)
    if grad_accum_steps == 1:
        return grad_fn(graphdef, state.params, state.rest, batch, False, rng)

    def body(carry: tuple, xs: tuple) -> tuple[tuple, None]:
        micro, j = xs
        sums = grad_fn(graphdef, state.params, state.rest, micro, False, jax.random.fold_in(rng, j))
        return jax.tree.map(jnp.add, carry, sums), None

    zeros = ((jnp.float32(0), (jnp.float32(0), jnp.float32(0))), jax.tree.map(jnp.zeros_like, state.params))
    micro_batches = (_split_micro(batch, grad_accum_steps), jnp.arange(grad_accum_steps))
    return jax.lax.scan(body, zeros, micro_batches)[0]


def _loss_rows(batch: Batch, objective: Objective | None, key: jax.Array) -> Batch:
    """The loss's fields of a loader batch, through the objective (masking) when there is one."""
    fields = {k: batch[k] for k in LOSS_FIELDS}
    return fields if objective is None else objective(fields, key)


def make_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    lr_schedule: optax.Schedule,
    mesh: Mesh,
    state_shardings: TrainState,
    grad_accum_steps: int = 1,
    objective: Objective | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """A jitted `train_step(state, batch) -> (state, metrics)`, the input state donated. metrics: loss (token-weighted
    mean over the scored positions), grad_norm (before clipping), lr (of this step), num_tokens (scored positions:
    every target for causal LMs, the masked ones for masked LMs), num_words (sum of batch['num_words']), and for
    masked objectives accuracy (share of scored positions whose argmax is the target). objective: None = causal."""
    if grad_accum_steps < 1:
        raise InputError(f"optim.grad_accum_steps={grad_accum_steps} must be >= 1")
    masked = objective is not None and objective.masked

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            rng = jax.random.fold_in(state.rng, state.step)
            rows = _loss_rows(batch, objective, jax.random.fold_in(rng, _MASK_STREAM))
            (loss_sum, (weight_sum, correct)), grads = _grads(graphdef, state, rows, rng, grad_accum_steps)
            scale = 1.0 / jnp.maximum(weight_sum, 1e-6)
            grads = jax.tree.map(lambda g: g * scale, grads)
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            metrics = {
                "loss": loss_sum * scale,
                "grad_norm": optax.tree.norm(grads),
                "lr": jnp.asarray(lr_schedule(state.step), jnp.float32),
                "num_tokens": weight_sum,
                "num_words": jnp.sum(batch["num_words"].astype(jnp.float32)),
            }
            if masked:
                metrics["accuracy"] = correct * scale
            return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return jax.jit(
        train_step,
        in_shardings=(state_shardings, _batch_shardings(mesh)),
        out_shardings=(state_shardings, NamedSharding(mesh, PartitionSpec())),
        donate_argnums=(0,),
    )


def make_eval_step(
    graphdef: nnx.GraphDef, mesh: Mesh, state_shardings: TrainState, objective: Objective | None = None
) -> Callable[[TrainState, Batch], tuple[jax.Array, jax.Array]]:
    """A jitted `eval_step(state, batch) -> (sum of weighted token losses, sum of weights)`; deterministic: masks
    depend on the run's key and the batch's tokens only, so every checkpoint sees the same masked dev rows."""

    def eval_step(state: TrainState, batch: Batch) -> tuple[jax.Array, jax.Array]:
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            key = jax.random.fold_in(jax.random.fold_in(state.rng, _MASK_STREAM), jnp.sum(batch["inputs"]))
            loss_sum, (weight_sum, _) = _loss_sums(
                graphdef, state.params, state.rest, _loss_rows(batch, objective, key), True, state.rng
            )
            return loss_sum, weight_sum

    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.jit(eval_step, in_shardings=(state_shardings, _batch_shardings(mesh)), out_shardings=(replicated,) * 2)


def memory_analysis_summary(compiled: Any) -> str:
    """One line from `jax.jit(...).lower(...).compile()`'s memory analysis (per device), for the start-up log."""
    analysis = compiled.memory_analysis()
    if analysis is None:
        return "memory analysis: not available on this backend"
    fields = ("argument", "output", "temp", "alias", "generated_code")
    sizes = {f: getattr(analysis, f"{f}_size_in_bytes", 0) or 0 for f in fields}
    peak = sizes["argument"] + sizes["output"] + sizes["temp"] - sizes["alias"]
    parts = ", ".join(f"{f} {sizes[f] / 2**20:.1f} MiB" for f in fields)
    return f"memory per device: ~{peak / 2**20:.1f} MiB peak ({parts})"

"""The output projection and its cross-entropy in chunks: the [B, L, V] logits are never materialised whole.

`xent_sums(x, w, b, targets, weights)` is what the train and eval steps' loss calls. The rows of a batch are cut into
slices (slice j holds rows j, j + chunks, ...: every device keeps working on its own rows) and a `lax.scan` projects one
slice at a time, so its logits stay in cache. Under `jax.grad` the forward pass also computes the gradients
(softmax - one-hot, weighted, times the projection and its input: one exponential per logit and three matmuls, where
autodiff of the plain loss makes two exponentials, a broadcast one-hot and re-reads the whole logits), and the
backward pass only scales them. Same numbers as the plain loss in float32 up to rounding (tests/test_xent.py)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from babyjax.model.sharding import constrain

Sums = tuple[jax.Array, jax.Array]  # (sum of weight * cross-entropy, sum of weight * [argmax == target])


def head_chunks(rows_per_shard: int, seq_len: int, tokens_per_chunk: int) -> int:
    """How many slices the output projection of a batch is split into: about `tokens_per_chunk` tokens per device
    each, and a divisor of the rows each device holds."""
    k = max(1, rows_per_shard // max(1, tokens_per_chunk // seq_len))
    while rows_per_shard % k:
        k -= 1
    return k


def default_chunks(rows: int, length: int) -> int:
    """Slices for a [rows, length] batch under the current mesh: ~512 tokens per device on CPU (slices that stay in
    cache: the fastest size for the bench model's train step, docs/benchmarks.md), ~16k on accelerators (one slice
    for most batches)."""
    mesh = jax.sharding.get_abstract_mesh()
    shards = 1 if mesh.empty else mesh.shape.get("data", 1) * mesh.shape.get("fsdp", 1)
    cpu = jax.devices()[0].platform == "cpu"
    return head_chunks(max(1, rows // shards), length, 512 if cpu else 16384)


def _slices(a: jax.Array, chunks: int) -> jax.Array:
    """[B, ...] -> [chunks, B / chunks, ...], slice j holding rows j, j + chunks, ..."""
    a = a.reshape(a.shape[0] // chunks, chunks, *a.shape[1:]).swapaxes(0, 1)
    return constrain(a, (None, "batch") + (None,) * (a.ndim - 2))


def _unslice(a: jax.Array) -> jax.Array:
    return a.swapaxes(0, 1).reshape(-1, *a.shape[2:])


def _logits(x_BxLxD: jax.Array, w_DxV: jax.Array, b_V: jax.Array | None) -> jax.Array:
    logits_BxLxV = jnp.einsum("bld,dv->blv", x_BxLxD, w_DxV, preferred_element_type=jnp.float32)
    if b_V is not None:
        logits_BxLxV += b_V
    return constrain(logits_BxLxV, ("batch", "length", "vocab"))


def _slice_sums(x_BxLxD, w_DxV, b_V, targets_BxL, weights_BxL, accuracy: bool, grads: bool):
    """One slice: (loss sum, correct sum) and, with `grads`, (d/dx [B, L, D], d/dw [D, V], d/db [V] or None)."""
    logits_BxLxV = _logits(x_BxLxD, w_DxV, b_V)
    max_BxL = jax.lax.stop_gradient(jnp.max(logits_BxLxV, axis=-1))
    exp_BxLxV = jnp.exp(logits_BxLxV - max_BxL[..., None])
    sum_BxL = jnp.sum(exp_BxLxV, axis=-1)
    target_BxL = jnp.take_along_axis(logits_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]
    loss = jnp.sum((jnp.log(sum_BxL) + max_BxL - target_BxL) * weights_BxL)
    correct = jnp.float32(0)
    if accuracy:
        correct = jnp.sum((jnp.argmax(logits_BxLxV, axis=-1) == targets_BxL) * weights_BxL)
    if not grads:
        return (loss, correct), None
    # d loss / d logits = weight * (softmax - one-hot(target))
    d_BxLxV = exp_BxLxV * (weights_BxL / sum_BxL)[..., None]
    d_BxLxV -= jax.nn.one_hot(targets_BxL, d_BxLxV.shape[-1], dtype=d_BxLxV.dtype) * weights_BxL[..., None]
    d_BxLxV = constrain(d_BxLxV, ("batch", "length", "vocab"))
    dx_BxLxD = jnp.einsum("blv,dv->bld", d_BxLxV, w_DxV.astype(jnp.float32)).astype(x_BxLxD.dtype)
    dw_DxV = jnp.einsum("bld,blv->dv", x_BxLxD.astype(jnp.float32), d_BxLxV)
    db_V = None if b_V is None else jnp.sum(d_BxLxV, axis=(0, 1))
    return (loss, correct), (dx_BxLxD, dw_DxV, db_V)


def _scan(x, w, b, targets, weights, chunks: int, accuracy: bool, grads: bool):
    """Every slice in turn: the sums, and with `grads` the gradients (x's rows back in order, w's and b's summed)."""
    f32 = jnp.float32
    zeros = (
        f32(0),
        f32(0),
        jnp.zeros(w.shape, f32) if grads else None,
        None if b is None or not grads else jnp.zeros(b.shape, f32),
    )

    def body(carry, xs):
        loss, correct, dw, db = carry
        x_s, targets_s, weights_s = xs
        (s_loss, c), g = _slice_sums(x_s, w, b, targets_s, weights_s, accuracy, grads)
        if g is None:
            return (loss + s_loss, correct + c, dw, db), None
        return (loss + s_loss, correct + c, dw + g[1], None if db is None else db + g[2]), g[0]

    xs = tuple(_slices(a, chunks) for a in (x, targets, weights))
    (loss, correct, dw, db), dx = jax.lax.scan(body, zeros, xs)
    return (loss, correct), (None if dx is None else _unslice(dx), dw, db)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _xent(x, w, b, targets, weights, chunks: int, accuracy: bool) -> Sums:
    return _scan(x, w, b, targets, weights, chunks, accuracy, grads=False)[0]


def _xent_fwd(x, w, b, targets, weights, chunks, accuracy):
    sums, (dx, dw, db) = _scan(x, w, b, targets, weights, chunks, accuracy, grads=True)
    return sums, (dx, dw.astype(w.dtype), None if db is None else db.astype(b.dtype), targets, weights)


def _xent_bwd(chunks, accuracy, res, g):
    dx, dw, db, targets, weights = res
    scale = g[0]  # the correct count has no gradient
    return (dx * scale.astype(dx.dtype), dw * scale, None if db is None else db * scale, None, jnp.zeros_like(weights))


_xent.defvjp(_xent_fwd, _xent_bwd)


def xent_sums(
    x_BxLxD: jax.Array,
    w_DxV: jax.Array,
    b_V: jax.Array | None,
    targets_BxL: jax.Array,
    weights_BxL: jax.Array,
    *,
    accuracy: bool = False,
    chunks: int = 0,
) -> Sums:
    """(sum of weight * cross-entropy of softmax(x @ w + b) against the targets, sum of weight * [argmax == target]
    (0 unless `accuracy`)), float32; the logits in float32. chunks: slices of the rows (0 = `default_chunks`).
    Differentiable in x, w and b; the weights are constants."""
    chunks = chunks or default_chunks(*targets_BxL.shape)
    return _xent(x_BxLxD, w_DxV, b_V, targets_BxL, weights_BxL.astype(jnp.float32), chunks, accuracy)

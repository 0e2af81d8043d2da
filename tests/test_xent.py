"""The chunked output projection + cross-entropy (babyjax/model/xent.py): loss, accuracy and gradients equal a float64
numpy reference for any number of slices, with and without a bias, on one device and on sharded meshes."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import NamedSharding

from babyjax.model import sharding
from babyjax.model.xent import head_chunks, xent_sums

B, L, D, V = 8, 6, 16, 40


def problem(seed: int = 0, bias: bool = True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, L, D)).astype(np.float32)
    w = (rng.standard_normal((D, V)) * 0.5).astype(np.float32)
    b = (rng.standard_normal(V) * 0.5).astype(np.float32) if bias else None
    targets = rng.integers(0, V, (B, L)).astype(np.int32)
    weights = rng.choice([0.0, 1.0, 0.5], (B, L)).astype(np.float32)
    return x, w, b, targets, weights


def reference(x, w, b, targets, weights):
    """float64 numpy: (loss sum, correct sum, dx, dw, db) of sum(weight * cross-entropy)."""
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    logits = x64 @ w64 + (0.0 if b is None else b.astype(np.float64))
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    target = np.take_along_axis(logits, targets[..., None], -1)[..., 0]
    loss = np.sum((lse - target) * weights)
    correct = np.sum((logits.argmax(-1) == targets) * weights)
    d = np.exp(logits - lse[..., None]) - np.eye(V)[targets]
    d *= weights[..., None]
    return loss, correct, d @ w64.T, np.einsum("bld,blv->dv", x64, d), d.sum((0, 1))


@pytest.mark.parametrize("chunks", [1, 2, 4, 8])
@pytest.mark.parametrize("bias", [True, False])
def test_loss_accuracy_and_gradients_equal_float64(chunks, bias):
    x, w, b, targets, weights = problem(chunks, bias)
    loss_ref, correct_ref, dx_ref, dw_ref, db_ref = reference(x, w, b, targets, weights)

    def loss(x, w, b):
        return xent_sums(x, w, b, targets, weights, accuracy=True, chunks=chunks)

    grads = jax.jit(jax.grad(lambda *a: loss(*a)[0], argnums=(0, 1, 2)))(x, w, b)
    loss_sum, correct = jax.jit(loss)(x, w, b)  # without jax.grad: the primal path, no gradients computed
    np.testing.assert_allclose(loss_sum, loss_ref, rtol=1e-5)
    assert float(correct) == pytest.approx(correct_ref)
    np.testing.assert_allclose(grads[0], dx_ref, atol=1e-5)
    np.testing.assert_allclose(grads[1], dw_ref, atol=1e-5)
    if bias:
        np.testing.assert_allclose(grads[2], db_ref, atol=1e-5)
    else:
        assert grads[2] is None
    # under jax.grad the sums come from the forward pass that also makes the gradients
    np.testing.assert_allclose(jax.value_and_grad(lambda *a: loss(*a)[0])(x, w, b)[0], loss_ref, rtol=1e-5)


def test_second_order_scaling_and_bfloat16_inputs():
    x, w, b, targets, weights = problem(3)
    _, _, dx_ref, dw_ref, _ = reference(x, w, b, targets, weights)
    grads = jax.grad(lambda x, w: 3.0 * xent_sums(x, w, b, targets, weights)[0], argnums=(0, 1))(x, w)
    np.testing.assert_allclose(grads[0], 3 * dx_ref, atol=3e-5)  # the cotangent scales the stored gradients
    np.testing.assert_allclose(grads[1], 3 * dw_ref, atol=3e-5)
    xb = jnp.asarray(x, jnp.bfloat16)
    gx = jax.grad(lambda x: xent_sums(x, jnp.asarray(w, jnp.bfloat16), None, targets, weights)[0])(xb)
    assert gx.dtype == jnp.bfloat16 and gx.shape == x.shape


@pytest.mark.parametrize("shape", [(2, 2, 2), (1, 8, 1), (2, 1, 4)])
def test_sharded_meshes_equal_one_device(shape):
    x, w, b, targets, weights = problem(5)
    mesh = sharding.make_mesh(
        ml_collections.ConfigDict(dict(zip(("data", "fsdp", "tensor"), shape))), jax.devices()[:8]
    )
    put = lambda a, names: jax.device_put(a, NamedSharding(mesh, sharding.logical_to_spec(names, a.shape, mesh)))
    args = (
        put(x, ("batch", "length", "embed")),
        put(w, ("embed", "vocab")),
        put(b, ("vocab",)),
        put(targets, ("batch", "length")),
        put(weights, ("batch", "length")),
    )

    def loss_and_grads(x, w, b, t, wt):
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            f = lambda x, w, b: xent_sums(x, w, b, t, wt, accuracy=True)
            return f(x, w, b), jax.grad(lambda *a: f(*a)[0], argnums=(0, 1, 2))(x, w, b)

    (loss_sum, correct), grads = jax.jit(loss_and_grads)(*args)
    loss_ref, correct_ref, *grads_ref = reference(x, w, b, targets, weights)
    np.testing.assert_allclose(loss_sum, loss_ref, rtol=1e-5)
    assert float(correct) == pytest.approx(correct_ref)
    for got, want in zip(grads, grads_ref):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_head_chunks_divide_the_rows_of_each_device():
    assert head_chunks(32, 128, 256) == 16  # two rows per slice
    assert head_chunks(12, 128, 512) == 3  # four rows per slice
    assert head_chunks(7, 128, 256) == 1  # 7 rows: no smaller whole slices, so one (never uneven slices)
    assert head_chunks(2, 512, 256) == 2  # rows longer than a slice: one row per slice
    assert head_chunks(4, 16, 16384) == 1  # small batches: one slice

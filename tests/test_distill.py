"""The distillation loss (babyjax/model/distill.py) against a PyTorch reference written from BabyLlama's
distillation trainer (timinar/BabyLlama, distill-ensemble-pretraining-baby-llama.py: compute_loss), value and
gradient, and its two reductions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from babyjax.errors import InputError
from babyjax.model.distill import distillation_loss

B, L, V = 3, 7, 11


def _babyllama(student, teachers, input_ids, alpha, temperature):
    """BabyLlama's loss on Hugging Face causal-LM logits [B, L, V]: the student's own loss (labels = input_ids,
    shifted inside: mean over L - 1 positions a row), the teachers' logits averaged, KLDivLoss(batchmean) of the
    softened distributions times T^2."""
    import torch
    import torch.nn.functional as F

    ce = F.cross_entropy(student[:, :-1].reshape(-1, V), input_ids[:, 1:].reshape(-1))
    average = torch.stack(teachers).mean(0)
    kl = torch.nn.KLDivLoss(reduction="batchmean")(
        F.log_softmax(student / temperature, dim=-1), F.softmax(average / temperature, dim=-1)
    )
    return alpha * ce + (1 - alpha) * kl * temperature**2


@pytest.mark.parametrize("alpha,temperature", [(0.5, 2.0), (0.2, 1.0), (1.0, 3.0)])
def test_batchmean_equals_babyllama_in_value_and_gradient(alpha, temperature):
    import torch

    rng = np.random.default_rng(0)
    student = rng.normal(0, 2, (B, L, V)).astype(np.float32)
    teachers = [rng.normal(0, 2, (B, L, V)).astype(np.float32) for _ in range(2)]
    ids = rng.integers(0, V, (B, L))
    s_t = torch.tensor(student, requires_grad=True)
    want = _babyllama(s_t, [torch.tensor(t) for t in teachers], torch.tensor(ids), alpha, temperature)
    want.backward()
    targets = np.concatenate([ids[:, 1:], np.zeros((B, 1), np.int64)], axis=1)  # babyjax rows: aligned targets
    weights = np.concatenate([np.ones((B, L - 1)), np.zeros((B, 1))], axis=1)  # the last input has no target

    def loss(s):
        return distillation_loss(
            s, [jnp.asarray(t) for t in teachers], jnp.asarray(targets), jnp.asarray(weights),
            alpha=alpha, temperature=temperature, reduction="batchmean",
        )[0]  # fmt: skip

    value, grad = jax.value_and_grad(loss)(jnp.asarray(student))
    np.testing.assert_allclose(float(value), want.item(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(grad), s_t.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_the_parts_and_the_per_token_reduction():
    rng = np.random.default_rng(1)
    student = jnp.asarray(rng.normal(0, 2, (B, L, V)), jnp.float32)
    teacher = jnp.asarray(rng.normal(0, 2, (B, L, V)), jnp.float32)
    targets, weights = jnp.asarray(rng.integers(0, V, (B, L))), jnp.ones((B, L))
    run = lambda **kw: distillation_loss(student, [teacher], targets, weights, **kw)[1]
    token, batchmean = run(alpha=0.5, temperature=2.0), run(alpha=0.5, temperature=2.0, reduction="batchmean")
    # the same CE; batchmean's KL is the per-token KL times the positions of a row (why BabyLlama logs ~28 vs ~4)
    np.testing.assert_allclose(float(token["ce"]), float(batchmean["ce"]), rtol=1e-6)
    np.testing.assert_allclose(float(batchmean["kl"]), L * float(token["kl"]), rtol=1e-5)
    np.testing.assert_allclose(float(token["loss"]), 0.5 * float(token["ce"]) + 0.5 * 4.0 * float(token["kl"]))
    assert float(run(alpha=1.0, temperature=2.0)["loss"]) == pytest.approx(float(token["ce"]), rel=1e-6)
    # a student equal to the averaged teachers has no KL to them
    same = distillation_loss(student, [student - 1.0, student + 1.0], targets, weights, alpha=0.0, temperature=2.0)
    assert float(same[1]["kl"]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(InputError, match=r"^distillation reduction 'sum': use one of \('token', 'batchmean'\)$"):
        run(alpha=0.5, temperature=2.0, reduction="sum")

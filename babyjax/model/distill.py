"""Knowledge distillation's loss as BabyLlama (Timiryasov & Tastet 2023; timinar/BabyLlama, its
distill-ensemble-pretraining script) computes it: the teachers' raw logits averaged, both sides softened at temperature
T, and `alpha * CE + (1 - alpha) * T^2 * KL(teachers || student)`.

Two reductions of the KL term:
- 'batchmean', BabyLlama's exactly: `torch.nn.KLDivLoss(reduction="batchmean")` on [B, L, V] logits sums over
  positions and vocabulary and divides by the batch size only, so the KL term grows with the sequence length (its
  logged loss of about 28 beside a cross-entropy of 4, timinar/BabyLlama#3). It reads every position of `kl_mask`.
- 'token' (babyjax's default): the KL summed over the vocabulary and averaged over the scored positions, as the
  cross-entropy is, so both terms are per token and comparable.

The cross-entropy is always the student's plain mean over the scored positions (`weights`), reported beside the
combined loss so the two are never confused. The train step does not call it: it is the loss a teacher-student
step computes from the student's and the teachers' logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from babyjax.errors import InputError

REDUCTIONS = ("token", "batchmean")


def distillation_loss(
    student_BxLxV: jax.Array,
    teachers_BxLxV: Sequence[jax.Array],
    targets_BxL: jax.Array,
    weights_BxL: jax.Array,
    *,
    alpha: float,
    temperature: float,
    reduction: str = "token",
    kl_mask_BxL: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(loss, {'ce', 'kl', 'loss'}): `alpha * ce + (1 - alpha) * temperature**2 * kl`. ce: the student's mean
    cross-entropy (nats) at the positions `weights` marks; kl: KL(softmax(mean teacher logits / T) || softmax(student
    / T)) reduced as `reduction` says (module docstring); kl_mask: the positions 'batchmean' sums over (default all).
    Logits float32 [B, L, V]; the teachers' are not differentiated."""
    if reduction not in REDUCTIONS:
        raise InputError(f"distillation reduction {reduction!r}: use one of {REDUCTIONS}")
    if not teachers_BxLxV:
        raise InputError("distillation needs at least one teacher")
    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
        raise InputError(f"distillation alpha={alpha} must be in [0, 1] and temperature={temperature} > 0")
    student = student_BxLxV.astype(jnp.float32)
    teacher = jax.lax.stop_gradient(jnp.mean(jnp.stack([t.astype(jnp.float32) for t in teachers_BxLxV]), axis=0))
    w = weights_BxL.astype(jnp.float32)
    logp_BxLxV = jax.nn.log_softmax(student, axis=-1)
    nll_BxL = -jnp.take_along_axis(logp_BxLxV, targets_BxL[..., None].astype(jnp.int32), axis=-1)[..., 0]
    ce = jnp.sum(nll_BxL * w) / jnp.maximum(jnp.sum(w), 1.0)
    log_q = jax.nn.log_softmax(student / temperature, axis=-1)
    log_p = jax.nn.log_softmax(teacher / temperature, axis=-1)
    kl_BxL = jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)
    if reduction == "batchmean":
        mask = jnp.ones_like(kl_BxL) if kl_mask_BxL is None else kl_mask_BxL.astype(jnp.float32)
        kl = jnp.sum(kl_BxL * mask) / student.shape[0]
    else:
        kl = jnp.sum(kl_BxL * w) / jnp.maximum(jnp.sum(w), 1.0)
    loss = alpha * ce + (1.0 - alpha) * temperature**2 * kl
    return loss, {"loss": loss, "ce": ce, "kl": kl}

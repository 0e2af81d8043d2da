"""Optax AdamW or LAMB with linear warmup then cosine | linear | constant | wsd decay, global-norm clipping and a
weight-decay mask. Gradient accumulation lives in the train step (babyjax/train/step.py): one `tx.update` per optimizer
step.
"""

from __future__ import annotations

from typing import Any

import jax
import optax
from flax import nnx

from babyjax.errors import InputError
from babyjax.model.layers import DECAY_TAG

SCHEDULES = ("cosine", "linear", "constant", "wsd")
OPTIMIZERS = ("adamw", "lamb")


def make_schedule(optim_cfg: Any, num_steps: int) -> optax.Schedule:
    """Learning rate per optimizer step: linear warmup from lr/warmup_steps to `lr` over `warmup_steps`, then decay."""
    lr, warmup, end = float(optim_cfg.lr), int(optim_cfg.warmup_steps), float(optim_cfg.end_lr_ratio)
    name = str(optim_cfg.schedule)
    if name not in SCHEDULES:
        raise InputError(f"optim.schedule={name!r}: use one of {SCHEDULES}")
    if num_steps < 1 or not 0 <= warmup <= num_steps:
        raise InputError(f"optim.warmup_steps={warmup} must be in [0, train.num_steps={num_steps}]")
    if lr <= 0 or end < 0:
        raise InputError(f"optim.lr={lr} must be > 0 and optim.end_lr_ratio={end} >= 0")
    decay_steps = num_steps - warmup
    if name == "cosine":
        decay = optax.cosine_decay_schedule(lr, max(decay_steps, 1), alpha=end)
    elif name == "linear":
        decay = optax.linear_schedule(lr, lr * end, max(decay_steps, 1))
    elif name == "constant":
        decay = optax.constant_schedule(lr)
    else:  # wsd: stable at lr, then linear decay over the last wsd_decay_fraction of training
        fraction = float(optim_cfg.wsd_decay_fraction)
        if not 0.0 < fraction <= 1.0:
            raise InputError(f"optim.wsd_decay_fraction={fraction} must be in (0, 1]")
        cool = max(1, min(decay_steps, round(fraction * num_steps)))
        decay = optax.join_schedules(
            [optax.constant_schedule(lr), optax.linear_schedule(lr, lr * end, cool)], [decay_steps - cool]
        )
    if warmup == 0:
        return decay
    # Step k of warmup (k = 0, 1, ...) uses lr * (k + 1) / warmup: the first update is not zero, so the checkpoint
    # after step 1 differs from the initialisation (a learning curve has no duplicated weights at its left end).
    return optax.join_schedules([optax.linear_schedule(lr / warmup, lr, max(warmup - 1, 1)), decay], [warmup])


def decay_mask(params: Any) -> Any:
    """True for parameters that get weight decay, as the model tagged them (`decay` metadata,
    babyjax.model.transformer._param), never from their logical axis names; arrays and Variables without the tag:
    decayed when ndim >= 2."""

    def decays(x: Any) -> Any:
        if not isinstance(x, nnx.Variable):
            return x.ndim >= 2
        tag = x.get_metadata().get(DECAY_TAG)
        return x.replace(bool(tag) if tag is not None else x.get_value().ndim >= 2)

    return jax.tree.map(decays, params, is_leaf=lambda x: isinstance(x, nnx.Variable))


def lamb(
    schedule: optax.Schedule, b1: float, b2: float, eps: float, weight_decay: float
) -> optax.GradientTransformation:
    """LAMB (You et al. 2020) as LTG-BERT's and GPT-BERT's lamb.py computes it: the bias-corrected Adam direction,
    plus `weight_decay` x the parameter for decayed parameters, scaled by the trust ratio |p| / |update| (1 when either
    is 0) for the decayed parameters only; the others (biases, norms, as `decay_mask` says) take the plain Adam step.
    optax.lamb differs: it applies the trust ratio to every parameter."""
    return optax.chain(
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
        optax.add_decayed_weights(weight_decay, mask=decay_mask),
        optax.masked(optax.scale_by_trust_ratio(), decay_mask),
        optax.scale_by_learning_rate(schedule),
    )


def make_optimizer(optim_cfg: Any, num_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(AdamW or LAMB, `optim.name`, chained after global-norm clipping; the lr schedule). `optim_cfg` is
    `config.optim`."""
    schedule = make_schedule(optim_cfg, num_steps)
    name = str(optim_cfg.get("name", "adamw"))
    if name not in OPTIMIZERS:
        raise InputError(f"optim.name={name!r}: use one of {OPTIMIZERS}")
    hyper = {"b1": float(optim_cfg.b1), "b2": float(optim_cfg.b2), "eps": float(optim_cfg.eps)}
    wd = float(optim_cfg.weight_decay)
    if name == "lamb":
        tx = lamb(schedule, weight_decay=wd, **hyper)
    else:
        tx = optax.adamw(schedule, weight_decay=wd, mask=decay_mask, **hyper)
    clip = float(optim_cfg.grad_clip)
    return (optax.chain(optax.clip_by_global_norm(clip), tx) if clip > 0 else tx), schedule

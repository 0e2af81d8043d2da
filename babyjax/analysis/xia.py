"""Per-token trajectory classes of Xia et al. (2023) (docs/science.md, "Trajectory classes"), vectorised over
tokens: every curve shares the x axis, so one OLS with a t-test per curve is closed form."""
from __future__ import annotations

import numpy as np
from scipy import stats

from babyjax.errors import InputError

X_AXES = ("step", "tokens", "words", "flops")
CLASSES = ("upward", "downward", "stagnated", "other")


def ols_slope_pvalues(x_T: np.ndarray, y_TxC: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS of each column of y on x (with intercept): slope [C] and its two-sided t-test p-value [C] (df = T - 2)."""
    x_T, y_TxC = np.asarray(x_T, np.float64), np.asarray(y_TxC, np.float64)
    n = len(x_T)
    if n < 3:
        raise InputError(f"an OLS slope with a p-value needs at least 3 points; found {n}")
    xc = x_T - x_T.mean()
    sxx = np.dot(xc, xc)
    if sxx == 0:
        raise InputError("x is constant over the window: no slope can be estimated")
    slope = xc @ y_TxC / sxx
    resid = y_TxC - y_TxC.mean(0) - np.outer(xc, slope)
    se = np.sqrt(np.square(resid).sum(0) / (n - 2) / sxx)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = slope / se
    p = 2 * stats.t.sf(np.abs(t), n - 2)
    p = np.where(se == 0, np.where(slope == 0, 1.0, 0.0), p)  # exact fits: any nonzero slope is certain
    return slope, p


def trajectory_classes(surprisal_TxC: np.ndarray, steps_T: np.ndarray, x_T: np.ndarray | None = None,
                       p: float = 0.5, alpha: float = 0.05) -> dict[str, np.ndarray]:
    """Xia et al. classes (upward, downward, stagnated, other; docs/science.md) of surprisal curves [T, C] in bits
    over the checkpoints with step >= p * last step and x > 0; x: step by default, or tokens / words / FLOPs seen at
    each checkpoint. Returns {"slope", "pvalue", "class"} arrays [C] ("nan": a non-finite value in the window)."""
    if not 0 <= p < 1:
        raise InputError(f"p must be a fraction of training in [0, 1); got {p}")
    steps_T = np.asarray(steps_T, np.float64)
    x_T = steps_T if x_T is None else np.asarray(x_T, np.float64)
    window = (steps_T >= p * steps_T.max()) & (x_T > 0)
    if window.sum() < 3:
        raise InputError(f"the Xia window after p={p} holds {int(window.sum())} checkpoint(s) with x > 0; it needs "
                         "at least 3: lower --xia-p or score more checkpoints")
    ppl = np.exp2(np.asarray(surprisal_TxC, np.float64)[window])
    slope, pval = ols_slope_pvalues(np.log(x_T[window]), ppl / ppl[0])
    m = np.exp(np.log(ppl).mean(0))
    stagnated = ((0.95 < m / ppl[0]) & (m / ppl[0] < 1.05) & (0.95 < m / ppl[-1]) & (m / ppl[-1] < 1.05)
                 & (ppl.var(0) < m))
    up = (slope > 0) & (pval < alpha)
    down = (slope < 0) & (pval < alpha)
    klass = np.where(up, "upward", np.where(down, "downward", np.where(stagnated, "stagnated", "other")))
    klass = np.where(np.isfinite(ppl).all(0), klass, "nan")
    return {"slope": slope, "pvalue": pval, "class": klass}


def class_shares(klass_C: np.ndarray) -> dict[str, float]:
    """Share of each class among tokens with a class (NaN curves excluded)."""
    valid = klass_C[klass_C != "nan"]
    return {c: float(np.mean(valid == c)) if len(valid) else float("nan") for c in CLASSES}

"""Per-token trajectory classes of Xia et al. (2023) (docs/science.md, "Trajectory classes"), vectorised over
tokens: every curve shares the x axis, so one OLS with a t-test per curve is closed form; and the comparison of runs
at equal validation perplexity."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from babyjax.errors import InputError

X_AXES = ("step", "tokens", "words", "flops", "perplexity")
P_SWEEP = (0.1, 0.3, 0.5, 0.7)  # window starts: Xia et al.'s code sweeps 0.1, 0.3, 0.7; the paper quotes 0.1-0.7
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
    yc = y_TxC - y_TxC.mean(0)  # centred first, as scipy's linregress: a constant curve gets slope 0 exactly
    slope = xc @ yc / sxx
    resid = yc - np.outer(xc, slope)
    se = np.sqrt(np.square(resid).sum(0) / (n - 2) / sxx)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = slope / se
    p = 2 * stats.t.sf(np.abs(t), n - 2)
    p = np.where(se == 0, np.where(slope == 0, 1.0, 0.0), p)  # exact fits: any nonzero slope is certain
    return slope, p


def window_start(steps_T: np.ndarray, p: float) -> int:
    """Index of the first checkpoint of the window: the one nearest to p x the last step (Xia et al.'s
    `linear_with_statistical_test`: argmin |checkpoint - threshold x last|, the first of equally near ones)."""
    steps_T = np.asarray(steps_T, np.float64)
    return int(np.argmin(np.abs(steps_T - p * steps_T.max())))


def trajectory_classes(
    surprisal_TxC: np.ndarray, steps_T: np.ndarray, x_T: np.ndarray | None = None, p: float = 0.5, alpha: float = 0.05
) -> dict[str, np.ndarray]:
    """Xia et al. classes (upward, downward, stagnated, other; docs/science.md) of surprisal curves [T, C] in bits
    over the checkpoints from `window_start(steps, p)` on with x > 0; x: step by default, or tokens / words / FLOPs
    seen at each checkpoint, or a validation perplexity (decreasing: its log is negated, so that "upward" still
    means worse as training goes on). Returns {"slope", "pvalue", "class"} arrays [C] ("nan": a non-finite value in
    the window)."""
    if not 0 <= p < 1:
        raise InputError(f"p must be a fraction of training in [0, 1); got {p}")
    steps_T = np.asarray(steps_T, np.float64)
    x_T = steps_T if x_T is None else np.asarray(x_T, np.float64)
    window = (np.arange(len(steps_T)) >= window_start(steps_T, p)) & (x_T > 0)
    if window.sum() < 3:
        raise InputError(
            f"the Xia window after p={p} holds {int(window.sum())} checkpoint(s) with x > 0; it needs "
            "at least 3: lower --xia-p or score more checkpoints"
        )
    ppl = np.exp2(np.asarray(surprisal_TxC, np.float64)[window])
    log_x = np.log(x_T[window])
    decreasing = len(log_x) > 1 and log_x[-1] < log_x[0]  # a perplexity axis
    slope, pval = ols_slope_pvalues(-log_x if decreasing else log_x, ppl / ppl[0])
    m = np.exp(np.log(ppl).mean(0))
    stagnated = (
        (m / ppl[0] > 0.95) & (m / ppl[0] < 1.05) & (m / ppl[-1] > 0.95) & (m / ppl[-1] < 1.05) & (ppl.var(0) < m)
    )
    up = (slope > 0) & (pval < alpha)
    down = (slope < 0) & (pval < alpha)
    klass = np.where(up, "upward", np.where(down, "downward", np.where(stagnated, "stagnated", "other")))
    klass = np.where(np.isfinite(ppl).all(0), klass, "nan")
    return {"slope": slope, "pvalue": pval, "class": klass}


def step_at_perplexity(steps_T: np.ndarray, ppl_T: np.ndarray, level: float) -> float:
    """The step at which a run's validation perplexity first reaches `level`: between the last checkpoint above it
    and the first at or below it, linear in log10 step against ln perplexity. NaN when it never does, or is already
    there at its first scored checkpoint after step 0."""
    ok = np.isfinite(ppl_T) & (np.asarray(steps_T) > 0)
    log_s, log_p = np.log10(np.asarray(steps_T, np.float64)[ok]), np.log(np.asarray(ppl_T, np.float64)[ok])
    hit = np.flatnonzero(log_p <= np.log(level))
    if not len(hit) or hit[0] == 0:
        return float("nan")
    i = hit[0]
    t = (log_p[i - 1] - np.log(level)) / (log_p[i - 1] - log_p[i])
    return float(10 ** (log_s[i - 1] + t * (log_s[i] - log_s[i - 1])))


def equal_perplexity(ppl_by_run: Mapping[str, tuple[np.ndarray, np.ndarray]], n_levels: int = 5) -> pd.DataFrame:
    """Xia et al.'s comparison of runs at equal validation perplexity: `n_levels` geometric levels strictly inside
    the range every run passes through (below the lowest of the runs' perplexities at their first checkpoint after
    step 0, above the highest of their minima), and the step at which each run first reaches each level
    (`step_at_perplexity`). ppl_by_run: run -> (steps [T], perplexity [T]). Columns: perplexity, run, step; empty
    when the runs share no range."""
    first, low = [], []
    for steps, ppl in ppl_by_run.values():
        ok = np.isfinite(ppl) & (np.asarray(steps) > 0)
        if ok.any():
            first.append(np.asarray(ppl)[ok][0])
            low.append(np.asarray(ppl)[ok].min())
    if len(first) < len(ppl_by_run) or not first or max(low) >= min(first):
        return pd.DataFrame(columns=["perplexity", "run", "step"])
    levels = np.geomspace(min(first), max(low), n_levels + 2)[1:-1]
    return pd.DataFrame(
        [
            {"perplexity": lv, "run": r, "step": step_at_perplexity(steps, ppl, lv)}
            for lv in levels
            for r, (steps, ppl) in ppl_by_run.items()
        ]
    )


def class_shares(klass_C: np.ndarray) -> dict[str, float]:
    """Share of each class among tokens with a class (NaN curves excluded)."""
    valid = klass_C[klass_C != "nan"]
    return {c: float(np.mean(valid == c)) if len(valid) else float("nan") for c in CLASSES}

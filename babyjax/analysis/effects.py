"""Effect directions a reviewer can check: Spearman correlations between a measure and a predictor at the token-type
level (occurrences of one type are not independent), per run and pooled over runs, with two-way cluster-bootstrap
95% intervals that resample token types and sequences together, never single occurrences (docs/science.md,
"Effects")."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

N_BOOT = 1000


def _rho(x: np.ndarray, y: np.ndarray, reps: np.ndarray | None = None) -> float:
    """Spearman's rho of (x, y) pairs, each repeated `reps` times (None: once)."""
    if reps is not None:
        x, y = np.repeat(x, reps), np.repeat(y, reps)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(stats.rankdata(x), stats.rankdata(y))[0, 1])


def type_level_effect(
    measure: np.ndarray,
    predictor: np.ndarray,
    types: np.ndarray,
    seqs: np.ndarray,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, float]:
    """Spearman's rho between the per-type means of `measure` and of `predictor` (occurrences where both are finite),
    its p-value over the number of types, and a 95% percentile interval from `n_boot` resamples that draw types and
    sequences with replacement (an occurrence counts as often as its type times its sequence was drawn: a type's
    mean then weighs its occurrences by their sequences' draws, and the type enters rho as often as it was drawn)."""
    from scipy import sparse

    ok = np.isfinite(measure) & np.isfinite(predictor)
    if ok.sum() < 3:  # e.g. cross-run variability of a single run: nothing to correlate
        return {
            "rho": np.nan,
            "ci_low": np.nan,
            "ci_high": np.nan,
            "p_value": np.nan,
            "n_types": len(np.unique(types[ok])),
            "n_sequences": len(np.unique(seqs[ok])),
            "n_occurrences": int(ok.sum()),
        }
    m, x = measure[ok].astype(np.float64), predictor[ok].astype(np.float64)
    uniq_t, t = np.unique(types[ok], return_inverse=True)
    uniq_s, s = np.unique(seqs[ok], return_inverse=True)
    shape = (len(uniq_t), len(uniq_s))
    cells = [sparse.csr_matrix((v, (t, s)), shape=shape) for v in (m, x, np.ones(len(m)))]  # type x sequence sums
    count = np.bincount(t, minlength=len(uniq_t))
    my, mx = np.bincount(t, m, len(uniq_t)) / count, np.bincount(t, x, len(uniq_t)) / count
    rho = _rho(mx, my)
    p = float(stats.spearmanr(mx, my).pvalue) if np.isfinite(rho) else float("nan")
    rng = np.random.default_rng(seed)
    boot = []
    for b0 in range(0, n_boot, 100):
        k = min(100, n_boot - b0)
        ws = rng.multinomial(len(uniq_s), np.full(len(uniq_s), 1 / len(uniq_s)), size=k).T.astype(np.float64)
        wt = rng.multinomial(len(uniq_t), np.full(len(uniq_t), 1 / len(uniq_t)), size=k).T
        num_m, num_x, den = (c @ ws for c in cells)
        with np.errstate(invalid="ignore", divide="ignore"):
            by, bx = num_m / den, num_x / den
        for j in range(k):
            keep = (den[:, j] > 0) & (wt[:, j] > 0)
            boot.append(_rho(bx[keep, j], by[keep, j], wt[keep, j]))
    boot = np.array(boot)
    lo, hi = np.nanpercentile(boot, [2.5, 97.5]) if np.isfinite(boot).any() else (np.nan, np.nan)
    return {
        "rho": rho,
        "ci_low": float(lo),
        "ci_high": float(hi),
        "p_value": p,
        "n_types": len(uniq_t),
        "n_sequences": len(uniq_s),
        "n_occurrences": int(ok.sum()),
    }


def verdict(expected: int | None, lo: float, hi: float) -> str:
    """What the interval says about the expected sign (-1, +1, or None when the paper states none)."""
    if not np.isfinite(lo):
        return "not estimable"
    side = -1 if hi < 0 else 1 if lo > 0 else 0
    if side == 0:
        return "interval includes 0"
    if expected is None:
        return "negative" if side < 0 else "positive"
    return "as expected" if side == expected else "opposite to expected"


def effects_table(
    measures_by_run: Mapping[str, pd.DataFrame],
    pooled: pd.DataFrame,
    predictor: pd.Series,
    types: np.ndarray,
    seqs: np.ndarray,
    expected: Mapping[str, int],
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per measure of `pooled` (the measures averaged over runs, per occurrence): the type-level effect of
    `predictor` pooled and per run, each with its interval, and the verdict on the pooled interval."""
    rows = []
    for m in pooled.columns:
        eff = type_level_effect(pooled[m].to_numpy(), predictor.to_numpy(), types, seqs, n_boot=n_boot, seed=seed)
        per_run = {
            r: type_level_effect(df[m].to_numpy(), predictor.to_numpy(), types, seqs, n_boot=n_boot, seed=seed)
            for r, df in measures_by_run.items()
            if m in df
        }
        rows.append(
            {
                "measure": m,
                "expected": {-1: "-", 1: "+"}.get(expected.get(m), "none stated"),
                **eff,
                "verdict": verdict(expected.get(m), eff["ci_low"], eff["ci_high"]),
                "per_run": "; ".join(
                    f"{r}: {e['rho']:.2f} [{e['ci_low']:.2f}, {e['ci_high']:.2f}]" for r, e in per_run.items()
                ),
            }
        )
    return pd.DataFrame(rows)


def format_p(p: float) -> str:
    """A p-value as text that never reads 0 (float64 underflows below about 1e-308)."""
    if not np.isfinite(p):
        return "n/a"
    return "< 1e-300" if p < 1e-300 else f"{p:.2g}"

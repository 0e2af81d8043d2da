"""Sigmoid AoA against Chang et al.'s released code run as it is written: scipy `curve_fit` with their settings,
retried with ftol x 10 on failure, and their `get_aoa` edge rules (lm-learning-curves, utils/formula_utils.py)."""

import warnings

import numpy as np
import pytest
from scipy.optimize import curve_fit

from babyjax.analysis import sigmoid

X = np.log10(np.unique(np.round(np.geomspace(1, 1e5, 120))))  # 110 checkpoints after step 0
CHANCE = np.log2(512)


def chang_sigmoid(x, start, end, xmid, scale):
    return start + (end - start) / (1.0 + np.exp((xmid - x) / scale))


def chang_fit(x, y, maxfev=1_000_000, with_ftol=False):
    """Their fit: curve_fit from p0, ftol x 10 after each failure; the params (and the ftol it converged with)."""
    ftol = 1e-8
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                params = curve_fit(chang_sigmoid, x, y, p0=[y.min(), y.max(), x.mean(), 1.0], maxfev=maxfev, ftol=ftol)[
                    0
                ]
            return (params, ftol) if with_ftol else params
        except RuntimeError:
            ftol *= 10


def chang_get_aoa(ymin, ymax, proportion, xmin, xmax, params):
    start, end, xmid, scale = params
    thr = ymin * (1 - proportion) + ymax * proportion
    if (thr >= start and thr >= end) or ymin >= ymax or (end < start and scale > 0) or (end > start and scale < 0):
        return xmax
    if thr <= start and thr <= end:
        return xmin
    return float(np.clip(xmid - scale * np.log((end - start) / (thr - start) - 1.0), xmin, xmax))


def chang_aoa(x, surprisal, chance):
    neg = -surprisal
    return chang_get_aoa(-chance, neg.max(), 0.5, x.min(), x.max(), chang_fit(x, neg))


def curves_of(kind, n, seed):
    """Surprisal curves [T, n]: smooth (noise 0.05 bits), noisy (1 bit) or bumpy (0.7 bits and a bump of 1-4 bits)."""
    rng = np.random.default_rng(seed)
    end, xmid, scale = rng.uniform(1, 8, n), rng.uniform(0.5, 4.5, n), rng.uniform(0.05, 0.8, n)
    y = CHANCE + (end - CHANCE) / (1 + np.exp((xmid - X[:, None]) / scale))
    y += rng.normal(0, {"smooth": 0.05, "noisy": 1.0, "bumpy": 0.7}[kind], y.shape)
    if kind == "bumpy":
        y += rng.uniform(1, 4, n) * np.exp(-(((X[:, None] - rng.uniform(1, 4.5, n)) / 0.3) ** 2))
    return y


@pytest.mark.parametrize("kind, n, min_share", [("smooth", 150, 1.0), ("noisy", 300, 1.0), ("bumpy", 300, 0.98)])
def test_aoa_equals_curve_fit_run_changs_way(kind, n, min_share):
    y = curves_of(kind, n, seed=len(kind))
    aoa, thr, params = sigmoid.sigmoid_aoa(X, y, CHANCE)
    ref = np.array([chang_aoa(X, y[:, c], CHANCE) for c in range(n)])
    close = np.abs(aoa - ref) <= 0.01
    # bumpy curves: a few end in another local minimum of a flat sum of squares (docs/science.md)
    assert close.mean() >= min_share, np.flatnonzero(~close)
    np.testing.assert_allclose(thr, 0.5 * (CHANCE + y.min(0)))
    if kind == "smooth":  # one well-defined minimum: the same parameters, not only the same AoA
        for c in range(0, n, 10):
            p = chang_fit(X, -y[:, c])
            np.testing.assert_allclose(params[c], [-p[0], -p[1], p[2], p[3]], rtol=1e-5, atol=1e-6)


def test_a_curves_fit_does_not_depend_on_the_other_curves():
    """Curves stream through slots that the others free: fitting them all at once, in another order or a few at a
    time (other block sizes) gives the same numbers."""
    y = np.concatenate([curves_of("noisy", 300, seed=5), curves_of("bumpy", 300, seed=6)], 1)
    params, ftol = sigmoid.fit_sigmoid(X, -y)
    order = np.random.default_rng(0).permutation(y.shape[1])
    shuffled, _ = sigmoid.fit_sigmoid(X, -y[:, order])
    np.testing.assert_allclose(shuffled, params[order], rtol=1e-9, atol=1e-12)
    for part in np.array_split(np.arange(y.shape[1]), 17):
        np.testing.assert_allclose(sigmoid.fit_sigmoid(X, -y[:, part])[0], params[part], rtol=1e-9, atol=1e-12)


def test_fit_reports_the_tolerance_each_curve_converged_with():
    y = curves_of("noisy", 40, seed=3)
    params, ftol = sigmoid.fit_sigmoid(X, -y)
    assert params.shape == (40, 4) and np.all(ftol == 1e-8)  # curve_fit succeeds at once on all of them
    flat = np.full((len(X), 2), 2.0)  # a constant curve: zero residual at p0, MINPACK stops at once (info 4)
    params, ftol = sigmoid.fit_sigmoid(X, flat)
    np.testing.assert_allclose(params[:, :2], 2.0)
    np.testing.assert_array_equal(ftol, 1e-8)


def test_failed_fits_are_retried_at_the_tolerance_curve_fit_reaches():
    """With few function evaluations (maxfev 60) most fits fail at first (MINPACK info 5) and are retried with ftol x
    10: each curve converges at the same ftol as scipy's curve_fit retried Chang's way (lmdif counts the evaluations
    of the next Jacobian after its tests), and at nearly the same parameters."""
    y = np.concatenate([curves_of("noisy", 40, seed=3), curves_of("bumpy", 40, seed=4)], 1)
    params, ftol = sigmoid.fit_sigmoid(X, -y, maxfev=60)
    ref = [chang_fit(X, -y[:, c], maxfev=60, with_ftol=True) for c in range(y.shape[1])]
    np.testing.assert_allclose(ftol, [f for _, f in ref], rtol=1e-9)
    assert (ftol > 1e-8).sum() >= 40 and ftol.max() >= 1e-2  # the retries are exercised, several times over
    diff = np.abs(np.array([p for p, _ in ref]) - params).max(1)
    assert (diff < 1e-5).mean() >= 0.8 and diff.max() < 1e-2  # loose fits (ftol up to 0.1) end a little apart


@pytest.mark.parametrize(
    "params, ymax",
    [
        ((-9.0, -3.0, 2.0, 0.3), -3.0),  # an increasing sigmoid: the crossing
        ((-9.0, -3.0, 2.0, 0.3), -12.0),  # ymax below chance: never acquired (xmax)
        ((-9.0, -3.0, 2.0, -0.3), -3.0),  # decreasing through a negative scale: xmax
        ((-3.0, -9.0, 2.0, 0.3), -3.0),  # decreasing: xmax
        ((-4.0, -3.0, 2.0, 0.3), -1.0),  # threshold below the whole curve: xmin
        ((-9.0, -3.0, 2.0, 0.3), 3.0),  # threshold above the whole curve: xmax
        ((-9.0, -3.0, -8.0, 0.3), -3.0),  # crossing before the first step: clipped to xmin
        ((-9.0, -3.0, 12.0, 0.3), -3.0),  # crossing after the last step: clipped to xmax
    ],
)
def test_crossing_follows_get_aoa(params, ymax):
    got = sigmoid.crossing(np.array([params]), -CHANCE, np.array([ymax]), X.min(), X.max())[0]
    assert got == pytest.approx(chang_get_aoa(-CHANCE, ymax, 0.5, X.min(), X.max(), params), abs=1e-12)

"""Xia et al. (2023) trajectory classes: constructed curves land in the right class; OLS equals statsmodels."""

import numpy as np
import pytest
import statsmodels.api as sm

from babyjax.analysis import xia
from babyjax.score.store import validation_perplexity

STEPS = np.r_[0, np.unique(np.round(np.geomspace(10, 20_000, 60)).astype(int))]


def test_ols_matches_statsmodels():
    rng = np.random.default_rng(0)
    x = np.log(STEPS[STEPS > 0].astype(float))
    y = 0.01 * x[:, None] * rng.normal(size=5) + rng.normal(size=(len(x), 5))
    slope, p = xia.ols_slope_pvalues(x, y)
    for j in range(5):
        fit = sm.OLS(y[:, j], sm.add_constant(x)).fit()
        assert slope[j] == pytest.approx(fit.params[1], rel=1e-10)
        assert p[j] == pytest.approx(fit.pvalues[1], rel=1e-8)


def test_constructed_curves_land_in_their_class():
    rng = np.random.default_rng(1)
    lx = np.log(np.maximum(STEPS, 1).astype(float))
    up = 3 + 0.3 * lx + rng.normal(0, 0.02, len(lx))  # surprisal rising: perplexity up (late forgetting)
    down = 9 - 0.4 * lx + rng.normal(0, 0.02, len(lx))
    flat = 2.0 + rng.normal(0, 0.01, len(lx))  # ppl ~4 with tiny noise: stagnated
    noisy = 3 + rng.normal(0, 1.0, len(lx))  # no trend, too variable to be stagnated
    s = np.stack([up, down, flat, noisy], 1)
    out = xia.trajectory_classes(s, STEPS, p=0.5)
    # noisy: no significant trend, and ppl variance far above the mean ppl, so not stagnated either
    assert list(out["class"]) == ["upward", "downward", "stagnated", "other"]
    assert out["pvalue"][3] >= 0.05
    # tokens / FLOPs axis proportional to steps: same slopes' signs and p-values
    out_t = xia.trajectory_classes(s, STEPS, x_T=STEPS * 4096.0, p=0.5)
    np.testing.assert_allclose(out_t["pvalue"], out["pvalue"], rtol=1e-9)
    shares = xia.class_shares(out["class"])
    assert shares == {"upward": 0.25, "downward": 0.25, "stagnated": 0.25, "other": 0.25}
    nan_curve = s[:, :1].copy()
    nan_curve[-1] = np.nan  # a NaN curve has class "nan" and is left out of the shares
    out_nan = xia.trajectory_classes(np.hstack([s, nan_curve]), STEPS, p=0.5)
    assert out_nan["class"][4] == "nan" and xia.class_shares(out_nan["class"]) == shares


def test_too_short_window_is_a_clear_error():
    with pytest.raises(ValueError, match="lower --xia-p"):
        xia.trajectory_classes(np.ones((len(STEPS), 2)), STEPS, p=0.9999)
    with pytest.raises(ValueError, match="fraction"):
        xia.trajectory_classes(np.ones((len(STEPS), 2)), STEPS, p=1.5)


def test_window_starts_at_the_checkpoint_nearest_p_of_training():
    """Xia et al.'s code: argmin |checkpoint - p x last|, so the window may start just before p of training."""
    steps = np.array([0, 10, 40, 45, 100])
    assert xia.window_start(steps, 0.5) == 3 and xia.window_start(steps, 0.1) == 1 and xia.window_start(steps, 0) == 0
    assert xia.P_SWEEP == (0.1, 0.3, 0.5, 0.7)


def test_perplexity_axis_keeps_the_classes_of_a_power_law_axis():
    """Validation perplexity falls as a power of step here, so ln(ppl) = -a ln(step) + b: regressing on -ln(ppl)
    (x = perplexity) gives exactly the p-values of x = step, and the same classes."""
    rng = np.random.default_rng(2)
    lx = np.log(np.maximum(STEPS, 1).astype(float))
    s = np.stack([3 + 0.3 * lx, 9 - 0.4 * lx, 2.0 + 0 * lx], 1) + rng.normal(0, 0.02, (len(lx), 3))
    ppl_val = 50.0 * np.maximum(STEPS, 1).astype(float) ** -0.3
    by_step = xia.trajectory_classes(s, STEPS, p=0.3)
    by_ppl = xia.trajectory_classes(s, STEPS, x_T=ppl_val, p=0.3)
    np.testing.assert_allclose(by_ppl["pvalue"], by_step["pvalue"], rtol=1e-9)
    assert list(by_ppl["class"]) == list(by_step["class"]) == ["upward", "downward", "stagnated"]
    m = np.array([[1.0, 3.0, np.nan], [np.nan, np.nan, np.nan]])
    got = validation_perplexity(m)
    assert got[0] == pytest.approx(4.0) and np.isnan(got[1])  # 2 ** mean(1, 3) bits; a row with no score: NaN


def test_step_at_perplexity_interpolates_the_first_crossing():
    steps = np.array([0, 10, 100, 1000, 10000])
    ppl = np.array([400.0, 200.0, 50.0, 60.0, 20.0])  # a bump after step 100
    # 100 lies halfway between ln 200 and ln 50: halfway between log10 10 and log10 100
    assert xia.step_at_perplexity(steps, ppl, 100.0) == pytest.approx(10**1.5)
    assert xia.step_at_perplexity(steps, ppl, 55.0) < 100  # the first crossing, not the one after the bump
    assert np.isnan(xia.step_at_perplexity(steps, ppl, 10.0))  # never reached
    assert np.isnan(xia.step_at_perplexity(steps, ppl, 300.0))  # already below at the first step after 0


def test_equal_perplexity_levels_lie_in_every_runs_range():
    steps = np.geomspace(1, 1e4, 30).round()
    small = 300 * steps**-0.3 + 20  # a small model: slower, higher floor
    big = 300 * steps**-0.5 + 10
    df = xia.equal_perplexity({"small": (steps, small), "big": (steps, big)}, n_levels=4)
    assert len(df) == 8 and df["step"].notna().all()
    assert (df["perplexity"] < min(small[0], big[0])).all() and (df["perplexity"] > 20).all()
    wide = df.pivot(index="perplexity", columns="run", values="step")
    assert (wide["big"] < wide["small"]).all()  # the bigger model gets there sooner
    for lv, row in wide.iterrows():  # each step lands where the run's curve has that perplexity
        for run, curve in [("small", small), ("big", big)]:
            assert np.interp(np.log10(row[run]), np.log10(steps), np.log(curve)) == pytest.approx(np.log(lv), abs=0.02)
    assert xia.equal_perplexity({"a": (steps, small), "b": (steps, small / 10)}).empty  # no common range

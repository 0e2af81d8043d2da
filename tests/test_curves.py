"""Chang et al. (2023) curve measures: known answers, agreement with pygam / scipy, and bad input."""

import numpy as np
import pytest

from babyjax.analysis import curves

V = 16384
CHANCE = np.log2(V)


def chang_steps(max_steps: int = 1_000_000, s0: float = 100, s1: float = 25_000, t1: float = 1e6) -> np.ndarray:
    out, n = [], 0
    while (s := round(s0 * t1 / (s1 - s0) * (np.exp(n * (s1 - s0) / t1) - 1))) <= max_steps:
        out.append(s)
        n += 1
    return np.array(out)


STEPS = chang_steps()  # 222 checkpoints incl. step 0
X = np.log10(STEPS[1:].astype(float))


def sig_curve(x, end, xmid, scale, start=CHANCE):
    return start + (end - start) / (1 + np.exp((xmid - x) / scale))


def realistic(rng, n):
    cols = [
        sig_curve(X, rng.uniform(1, 8), rng.uniform(2.5, 5), rng.uniform(0.1, 0.6))
        + rng.normal(0, rng.uniform(0.3, 1.5), len(X))
        + rng.uniform(0, 0.8) * np.sin(3 * X)
        for _ in range(n)
    ]
    return np.stack(cols, 1)


def with_step0(y_TxC):
    return np.vstack([np.full((1, y_TxC.shape[1]), CHANCE), y_TxC]).astype(np.float32)


def test_smoother_matches_pygam():
    import pygam  # the [test] extra installs it: the suite skips nothing

    y = realistic(np.random.default_rng(0), 5)
    sm = curves.GamSmoother.build(X)
    coef, best, gcv = sm.fit(y)
    fitted = sm.predict(coef)
    for j in range(y.shape[1]):
        gam = pygam.LinearGAM(n_splines=25).gridsearch(X[:, None], y[:, j], lam=np.logspace(-3, 3, 11), progress=False)
        assert float(np.ravel(gam.lam)[0]) == sm.lams[best[j]]
        np.testing.assert_allclose(fitted[:, j], gam.predict(X[:, None]), atol=1e-8)
        assert gam.statistics_["GCV"] == pytest.approx(gcv[best[j], j], rel=1e-9)
    basis = pygam.utils.b_spline_basis(X, [X.min(), X.max()], 25, 3, sparse=False, periodic=False)
    np.testing.assert_allclose(curves.pygam_bspline_basis(X, (X.min(), X.max())), basis, atol=1e-14)
    outside = np.array([X.min() - 0.3, X.max() + 0.2])
    np.testing.assert_allclose(
        curves.pygam_bspline_basis(outside, (X.min(), X.max())),
        pygam.utils.b_spline_basis(outside, [X.min(), X.max()], 25, 3, sparse=False, periodic=False),
        atol=1e-12,
    )


def test_noiseless_sigmoid_known_aoa():
    end, xmid, scale = 3.0, 3.7, 0.25
    y = sig_curve(X, end, xmid, scale)[:, None]
    thr = 0.5 * (CHANCE + y.min())
    known = xmid - scale * np.log((end - CHANCE) / (thr - CHANCE) - 1)
    res = curves.compute_curve_measures({"r": with_step0(y.astype(np.float64))}, {"r": STEPS}, V)
    m = res.measures["r"]
    assert m["aoa_threshold"][0] == pytest.approx(thr, abs=0.01)  # the GAM AoA's: halfway to the smoothed minimum
    assert m["aoa_sigmoid"][0] == pytest.approx(known, abs=2e-3)  # float32 storage of the curve
    assert m["aoa_gam"][0] == pytest.approx(known, abs=0.02)  # 1,000-point grid over 4 decades + smoothing
    assert m["final_surprisal"][0] == pytest.approx(y[-11:, 0].mean(), abs=1e-5)
    assert m["within_run_var"][0] == pytest.approx(y[-11:, 0].std(), abs=1e-5)


def test_sigmoid_aoa_threshold_is_halfway_to_the_raw_minimum():
    """Chang's compute_aoa_vals: ymax = np.max(negative_surprisals), the raw curve, not the GAM curve."""
    end, xmid, scale = 3.0, 3.7, 0.25
    spiky = sig_curve(X, end, xmid, scale)[:, None]
    spiky[150, 0] -= 3.0  # one low outlier moves the raw minimum, hardly the smoothed one
    m = curves.compute_curve_measures({"r": with_step0(spiky)}, {"r": STEPS}, V).measures["r"]
    raw_thr = 0.5 * (CHANCE + float(with_step0(spiky)[1:].min()))
    assert m["aoa_threshold"][0] > raw_thr + 0.5  # the GAM AoA's threshold stays near the smooth curve's
    aoa, thr, _ = curves.sigmoid_aoa(X, with_step0(spiky)[1:].astype(np.float64), CHANCE)
    assert thr[0] == pytest.approx(raw_thr) and m["aoa_sigmoid"][0] == pytest.approx(aoa[0], abs=1e-9)
    at_gam_thr = xmid - scale * np.log((end - CHANCE) / (m["aoa_threshold"][0] - CHANCE) - 1)
    assert abs(aoa[0] - at_gam_thr) > 0.05
    flat = np.full((len(X), 1), CHANCE + 0.5)  # never below chance: never acquired
    assert curves.sigmoid_aoa(X, flat, CHANCE)[0][0] == X.max()


def test_steps_as_lists_with_two_runs():
    y = with_step0(realistic(np.random.default_rng(5), 3))
    res = curves.compute_curve_measures(
        {"a": y, "b": y + 0.5}, {"a": STEPS.tolist(), "b": STEPS.tolist()}, V, sigmoid_fit=False
    )
    np.testing.assert_allclose(res.cross_run_var, 0.25, atol=1e-6)


def test_monotone_decreasing_curve_has_zero_forgettability():
    y = np.stack([10 - 2 * X, 12 - 0.3 * X**2, 4 + 6 * np.exp(-(X - 2))], 1)
    res = curves.compute_curve_measures({"r": with_step0(y)}, {"r": STEPS}, V, sigmoid_fit=False)
    np.testing.assert_allclose(res.measures["r"]["forgettability"], 0, atol=1e-4)
    bump = (y[:, 0] + 2 * np.exp(-(((X - 4) / 0.3) ** 2)))[:, None]  # a forgetting episode
    res = curves.compute_curve_measures({"r": with_step0(bump)}, {"r": STEPS}, V, sigmoid_fit=False)
    assert 0.5 < res.measures["r"]["forgettability"][0] < 2.0  # the bump minus the underlying decrease


def test_cross_run_variability():
    y = with_step0(realistic(np.random.default_rng(2), 7))
    same = curves.compute_curve_measures(
        {"a": y, "b": y.copy(), "c": y.copy()}, dict.fromkeys("abc", STEPS), V, sigmoid_fit=False
    )
    np.testing.assert_allclose(same.cross_run_var, 0, atol=1e-12)
    shifted = curves.compute_curve_measures({"a": y, "b": y + 1.0}, {"a": STEPS, "b": STEPS}, V, sigmoid_fit=False)
    np.testing.assert_allclose(shifted.cross_run_var, 1.0, atol=1e-6)  # a constant shift moves the GAM by 1


def test_chunking_does_not_change_results():
    y = with_step0(realistic(np.random.default_rng(3), 37))
    a = curves.compute_curve_measures({"r": y}, {"r": STEPS}, V, chunk_size=8)
    b = curves.compute_curve_measures({"r": y}, {"r": STEPS}, V, chunk_size=1000)
    for k in curves.MEASURES:
        np.testing.assert_allclose(a.measures["r"][k], b.measures["r"][k], rtol=1e-9, atol=1e-12)


def test_bad_input_messages_and_partial_measures():
    y = with_step0(realistic(np.random.default_rng(4), 4))
    with pytest.warns(UserWarning, match="cross-run variability needs at least 2 runs"):
        single = curves.compute_curve_measures({"a": y}, {"a": STEPS}, V, sigmoid_fit=False)
    assert np.isnan(single.cross_run_var).all() and np.isfinite(single.measures["a"]["aoa_gam"]).all()

    y_nan = y.copy()
    y_nan[50, 1] = np.nan  # one token has a hole
    y_nan[-1, :] = np.nan  # last checkpoint not scored yet
    with pytest.warns(UserWarning):
        res = curves.compute_curve_measures({"a": y_nan}, {"a": STEPS}, V, sigmoid_fit=False)
    assert any("not scored yet" in n for n in res.notes) and any("NaN" in n for n in res.notes)
    m = res.measures["a"]
    assert np.isnan(m["aoa_gam"][1]) and np.isfinite(m["aoa_gam"][[0, 2, 3]]).all()
    assert m["final_surprisal"][0] == pytest.approx(y[-12:-1, 0].mean(), rel=1e-6)
    assert len(res.steps["a"]) == len(STEPS) - 1

    few = y[:16]  # step 0 + 15 checkpoints: too few for the 25-spline GAM, enough for the rest
    with pytest.warns(UserWarning, match="needs at least 26 checkpoints"):
        res = curves.compute_curve_measures({"a": few}, {"a": STEPS[:16]}, V)
    m = res.measures["a"]
    assert np.isnan(m["aoa_gam"]).all() and np.isnan(m["forgettability"]).all()
    assert np.isfinite(m["final_surprisal"]).all() and np.isfinite(m["aoa_sigmoid"]).all()
    with pytest.warns(UserWarning, match="need the last 11"):
        res = curves.compute_curve_measures({"a": y[:6]}, {"a": STEPS[:6]}, V)
    assert np.isnan(res.measures["a"]["final_surprisal"]).all() and np.isfinite(res.measures["a"]["aoa_sigmoid"]).all()
    with pytest.raises(ValueError, match="checkpoint steps"):
        curves.compute_curve_measures({"a": y}, {"a": STEPS[:-1]}, V)


def test_partner_ranks_equal_changs_crossrun_similarity():
    """run_crossrun_similarity.py's get_rank: the number of run-b curves closer (mean squared difference) to a run-a
    curve than its own run-b curve."""
    rng = np.random.default_rng(4)
    a = rng.normal(size=(30, 300))
    for sd in (0.5, 3.0):
        b = a + rng.normal(0, sd, a.shape)
        got = curves.partner_ranks(a, b, block=64)
        for i in range(0, 300, 7):
            dists = np.mean(np.square(a[:, i].reshape(1, -1) - b.T), axis=-1)
            assert got[i] == np.sum(dists < dists[i])
    b[0, 5] = np.nan
    assert curves.partner_ranks(a, b)[5] == -1

"""Type-level effects with a two-way (types x sequences) bootstrap: the numbers a reviewer can defend."""

import numpy as np
import pytest

from babyjax.analysis import effects


def study(seed=0, n=6000, n_types=600, n_seqs=600, slope=-0.5):
    rng = np.random.default_rng(seed)
    types = np.minimum(rng.zipf(1.4, n), n_types) - 1
    seqs = rng.integers(0, n_seqs, n)
    logf = np.log(np.bincount(types, minlength=n_types) + 1.0)[types]
    measure = slope * logf + rng.normal(0, 1, n_seqs)[seqs] + rng.normal(0, 1, n)
    return measure, logf, types, seqs


def test_type_level_rho_and_interval():
    m, x, t, s = study()
    e = effects.type_level_effect(m, x, t, s, n_boot=300)
    uniq = np.unique(t)
    my = np.array([m[t == k].mean() for k in uniq])
    mx = np.array([x[t == k].mean() for k in uniq])
    from scipy import stats

    assert e["rho"] == pytest.approx(stats.spearmanr(mx, my).statistic, abs=1e-12)
    assert e["n_types"] == len(uniq) and e["ci_low"] < e["rho"] < e["ci_high"] < 0
    assert effects.verdict(-1, e["ci_low"], e["ci_high"]) == "as expected"
    null = effects.type_level_effect(*study(slope=0.0), n_boot=300)
    assert (
        null["ci_low"] < 0 < null["ci_high"]
        and effects.verdict(-1, null["ci_low"], null["ci_high"]) == "interval includes 0"
    )


def test_repeated_occurrences_do_not_narrow_the_interval():
    """Ten copies of every occurrence are no new evidence: resampling types and sequences (not occurrences) gives
    the same interval, where an occurrence-level bootstrap would shrink it by about sqrt(10)."""
    m, x, t, s = study(seed=1)
    once = effects.type_level_effect(m, x, t, s, n_boot=300, seed=3)
    tenfold = effects.type_level_effect(
        np.tile(m, 10), np.tile(x, 10), np.tile(t, 10), np.tile(s, 10), n_boot=300, seed=3
    )
    assert tenfold["rho"] == pytest.approx(once["rho"])
    assert tenfold["ci_high"] - tenfold["ci_low"] == pytest.approx(once["ci_high"] - once["ci_low"], rel=0.05)


def test_p_values_never_print_as_zero():
    assert effects.format_p(0.0) == "< 1e-300" and effects.format_p(3.2e-7) == "3.2e-07"
    assert effects.format_p(float("nan")) == "n/a"


def test_a_measure_with_nothing_finite_is_not_estimable():
    """Cross-run variability of a single run is all NaN: the row says so instead of failing."""
    m, x, t, s = study()
    e = effects.type_level_effect(np.full_like(m, np.nan), x, t, s, n_boot=10)
    assert np.isnan(e["rho"]) and e["n_occurrences"] == 0
    assert effects.verdict(-1, e["ci_low"], e["ci_high"]) == "not estimable"

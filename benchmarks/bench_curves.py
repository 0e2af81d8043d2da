"""Curves per second: babyjax's vectorised Chang et al. measures vs pygam fitted per curve, on the same curves, with
the fitted values checked against pygam and scipy inside the run.

    python benchmarks/bench_curves.py [--curves 16384] [--pygam-curves 40] [--rounds 3] [--check-curves 200]

Curves: 221 checkpoints after step 0 on Chang et al.'s exponential schedule (s0=100, s1=25,000, t1=1M steps),
sigmoid-shaped surprisal with noise. Peer: pygam LinearGAM(n_splines=25).gridsearch(lam=logspace(-3, 3, 11)) per
curve (what Chang et al.'s scripts run; it gives the smoothed curve only). babyjax: every measure (final surprisal,
within-run variability, GAM with lambda search, GAM AoA on 1,000 points, forgettability, sigmoid AoA fitted as
scipy's curve_fit fits it) for all curves. Sides alternate each round; every round is printed, then the median and
range of each ratio. A first call of babyjax on all the curves, which compiles its kernels (once per process), is
timed apart and printed; the rounds run after it.
"""

import argparse
import pathlib
import sys
import time
import warnings

import numpy as np
from scipy.optimize import curve_fit

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from babyjax.analysis import curves
from benchmarks import common


def chang_steps(max_steps=1_000_000, s0=100.0, s1=25_000.0, t1=1e6):
    out, n = [], 0
    while (s := round(s0 * t1 / (s1 - s0) * (np.exp(n * (s1 - s0) / t1) - 1))) <= max_steps:
        out.append(s)
        n += 1
    return np.array(out)


def make_curves(steps, n, vocab=50_000, seed=0):
    rng = np.random.default_rng(seed)
    x = np.log10(np.maximum(steps, 1))[:, None]
    chance = np.log2(vocab)
    end, xmid, scale = rng.uniform(1, 8, n), rng.uniform(2.5, 5, n), rng.uniform(0.1, 0.6, n)
    y = chance + (end - chance) / (1 + np.exp((xmid - x) / scale)) + rng.normal(0, 1.0, (len(steps), n))
    return y.astype(np.float32)


def machine() -> str:
    return "machine: " + common.machine("scipy", "pygam")


def chang_sigmoid_aoa(x, surprisal, chance):
    """Chang et al.'s compute_aoa_vals, run as released: curve_fit with their settings, ftol x 10 on failure."""
    neg, ftol = -surprisal, 1e-8
    while True:
        try:
            start, end, xmid, scale = curve_fit(
                lambda x, a, b, m, s: a + (b - a) / (1.0 + np.exp((m - x) / s)),
                x,
                neg,
                p0=[neg.min(), neg.max(), x.mean(), 1.0],
                maxfev=1_000_000,
                ftol=ftol,
            )[0]
            break
        except RuntimeError:
            ftol *= 10
    thr = 0.5 * (-chance + neg.max())
    decreasing = (end < start and scale > 0) or (end > start and scale < 0)
    if (thr >= start and thr >= end) or -chance >= neg.max() or decreasing:
        return x.max()
    if thr <= start and thr <= end:
        return x.min()
    return float(np.clip(xmid - scale * np.log((end - start) / (thr - start) - 1.0), x.min(), x.max()))


def check(y, steps, x, n_check, pygam_fits):
    """Assert babyjax's fits against the references on the first curves: GAM values against pygam's, sigmoid AoA
    against curve_fit run Chang's way (within 0.01 log10 steps)."""
    res = curves.compute_curve_measures({"r": y[:, :n_check]}, {"r": steps}, 50_000)
    sm = curves.GamSmoother.build(x)
    coef, _, _ = sm.fit(y[1:, : len(pygam_fits)].astype(np.float64))
    gam_err = float(np.abs(sm.predict(coef) - np.stack(pygam_fits, 1)).max())
    ref = np.array([chang_sigmoid_aoa(x, y[1:, j].astype(np.float64), np.log2(50_000)) for j in range(n_check)])
    aoa_err = np.abs(res.measures["r"]["aoa_sigmoid"] - ref)
    print(
        f"check: GAM fitted values vs pygam on {len(pygam_fits)} curves, max |diff| {gam_err:.1e}; sigmoid AoA vs "
        f"scipy curve_fit on {n_check} curves, max |diff| {aoa_err.max():.1e} log10 steps"
    )
    assert gam_err < 1e-6, gam_err
    assert (aoa_err <= 0.01).mean() >= 0.99, np.flatnonzero(aoa_err > 0.01)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--curves", type=int, default=16384)
    ap.add_argument("--pygam-curves", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--check-curves", type=int, default=200)
    args = ap.parse_args()
    from pygam import LinearGAM

    print(machine())
    steps = chang_steps()
    y = make_curves(steps, args.curves)
    x = np.log10(steps[1:].astype(np.float64))
    warnings.simplefilter("ignore")
    ours, ours_gam, peer, pygam_fits = [], [], [], []
    t = time.perf_counter()
    curves.compute_curve_measures({"r": y}, {"r": steps}, 50_000)
    print(f"first call, compiling included (once per process): {time.perf_counter() - t:.1f} s")
    for r in range(args.rounds):  # alternate ours and the peer
        t = time.perf_counter()
        curves.compute_curve_measures({"r": y}, {"r": steps}, 50_000)
        ours.append(args.curves / (time.perf_counter() - t))
        t = time.perf_counter()
        curves.compute_curve_measures({"r": y}, {"r": steps}, 50_000, sigmoid_fit=False)
        ours_gam.append(args.curves / (time.perf_counter() - t))
        t = time.perf_counter()
        fits = [
            LinearGAM(n_splines=25)
            .gridsearch(x[:, None], y[1:, j].astype(np.float64), lam=np.logspace(-3, 3, 11), progress=False)
            .predict(x[:, None])
            for j in range(args.pygam_curves)
        ]
        peer.append(args.pygam_curves / (time.perf_counter() - t))
        pygam_fits = fits
        print(
            f"round {r + 1}: curves/s  all measures {ours[-1]:,.0f} ({ours[-1] / peer[-1]:,.0f}x pygam), without "
            f"sigmoid {ours_gam[-1]:,.0f} ({ours_gam[-1] / peer[-1]:,.0f}x), pygam {peer[-1]:.1f}"
        )
    check(y, steps, x, args.check_curves, pygam_fits)
    p = np.array(peer)
    print(
        f"curves: {len(steps) - 1} checkpoints after step 0 (Chang schedule); ours on {args.curves}, "
        f"pygam on {args.pygam_curves}; {args.rounds} rounds, ratios per round"
    )
    print(f"{'what':58s} {'curves/s':>10s} {'x pygam: median (min-max)':>28s}")
    print(f"{'pygam gridsearch per curve (smoothed curve only)':58s} {np.median(p):10.1f}")
    for name, v in [
        ("babyjax, all measures incl. sigmoid AoA (vectorised)", np.array(ours)),
        ("babyjax, all measures except sigmoid AoA (vectorised)", np.array(ours_gam)),
    ]:
        ratio = v / p
        print(f"{name:58s} {np.median(v):10.1f} {np.median(ratio):12,.0f} ({ratio.min():,.0f}-{ratio.max():,.0f})")


if __name__ == "__main__":
    main()

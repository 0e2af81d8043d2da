"""How often babyjax's sigmoid AoA differs from Chang et al.'s released fit (scipy curve_fit with their settings, ftol x
10 retries, their get_aoa rules), on smooth, noisy and bumpy surprisal curves (tests/test_sigmoid.py's generator,
110 checkpoints).

    python benchmarks/sigmoid_agreement.py [--curves 1000] [--seeds 1 2]

Prints, per kind and seed, the curves whose AoA is more than 0.01 log10 steps from scipy's and the largest difference.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import test_sigmoid as ref

from babyjax.analysis import sigmoid
from benchmarks import common


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--curves", type=int, default=1000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    print(f"machine: {common.machine('scipy')}")
    print(
        f"{'kind':8s} {'seed':>4s} {'curves':>6s} {'beyond 0.01':>11s} {'max |diff|':>10s} {'scipy s':>8s} "
        f"{'babyjax s':>9s}"
    )
    for kind in ("smooth", "noisy", "bumpy"):
        for seed in args.seeds:
            y = ref.curves_of(kind, args.curves, seed=seed)
            t = time.perf_counter()
            expect = np.array([ref.chang_aoa(ref.X, y[:, c], ref.CHANCE) for c in range(args.curves)])
            t_ref = time.perf_counter() - t
            t = time.perf_counter()
            aoa = sigmoid.sigmoid_aoa(ref.X, y, ref.CHANCE)[0]
            t_ours = time.perf_counter() - t
            diff = np.abs(aoa - expect)
            print(
                f"{kind:8s} {seed:4d} {args.curves:6d} {int((diff > 0.01).sum()):11d} {diff.max():10.2e} "
                f"{t_ref:8.1f} {t_ours:9.1f}"
            )


if __name__ == "__main__":
    main()

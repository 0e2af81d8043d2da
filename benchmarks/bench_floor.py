"""Where the time goes: the matmul floor of babyjax's two hot calls, against their measured time (docs/benchmarks.md).

The floor of a call (babyjax.train.metrics.matmul_floor) is what its matrix products take, each timed alone with the
same shapes on this machine: the call cannot run faster than that unless it does fewer products or XLA's matmul kernels
get faster, whatever else is tuned. Two calls:
  - the bench train step (configs/bench.py, the one bench_train.py times against the PyTorch peers): its ceiling in
    tokens/s is tokens / floor, its MFU ceiling model FLOPs / floor / matmul peak;
  - the tiny model's scoring call for one checkpoint of a Chang-style token sample (333 rows x 15 targets in 128-token
    contexts, the shapes of the chang_tiny study's sample and of bench_series.py; random tokens), beside the tiny
    train step: the floor of scoring a 115-checkpoint series over 600 training steps at their measured step time is
    the lowest scoring / training ratio the tiny run can reach with these products.
Every round measures the matmul peak and times each call (median of `--calls`) next to its floor. Prints the machine,
every round, then medians (min-max), then each call's `--dots` largest products in the last round's floor (where the
floor goes: times per call, time alone, rate alone, shapes).

  python benchmarks/bench_floor.py [--rounds 3] [--calls 5] [--dots 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common

SERIES_CHECKPOINTS, TINY_STEPS = 115, 600  # the tiny run's Chang series and its length (configs/tiny.py)


def train_call(cfg):
    """(a function of no arguments running one train step, its args for the floor, the step function, tokens)."""
    import jax

    from babyjax.model import sharding
    from babyjax.model import transformer as model_lib
    from babyjax.train import step as step_lib
    from benchmarks.bench_train import bench_batch

    mesh = sharding.make_mesh(cfg.mesh, devices=jax.devices()[:1])
    model_cfg = model_lib.ModelConfig.from_config(cfg.model, cfg.tokenizer.vocab_size)
    graphdef, state, shardings, tx, lr = step_lib.init_train_state(model_cfg, cfg.optim, 10_000, mesh, 0)
    train_step = step_lib.make_train_step(graphdef, tx, lr, mesh, shardings)
    batch = {k: jax.device_put(v) for k, v in bench_batch(cfg).items()}
    holder = {"state": state}

    def run() -> None:
        holder["state"], m = train_step(holder["state"], batch)
        jax.block_until_ready(m["loss"])

    floor_args = lambda: (train_step, holder["state"], batch)
    return run, floor_args, model_lib.flops_per_token(model_cfg, cfg.data.seq_len) * batch["targets"].size


def score_call(cfg, rows: int = 333, targets: int = 15):
    """(one checkpoint's scoring call, its args for the floor): `cfg`'s model scored on a token sample's shapes."""
    import jax
    import numpy as np
    from flax import nnx

    from babyjax.model import transformer as model_lib
    from babyjax.score.packing import Window, pack
    from babyjax.score.scorer import Scorer, scoring_mesh

    model_cfg = model_lib.ModelConfig.from_config(cfg.model, cfg.tokenizer.vocab_size)
    scorer, length = Scorer(model_cfg, scoring_mesh()), cfg.data.seq_len
    rng = np.random.default_rng(0)
    wins = []
    for s in range(rows):
        ids = rng.integers(5, cfg.tokenizer.vocab_size, size=length)
        pos = np.sort(rng.choice(np.arange(1, length), targets, replace=False))
        wins.append(
            Window(s, 1, (int(ids[0]),), tuple(int(i) for i in ids[1 : pos[-1] + 1]), tuple(int(p) - 1 for p in pos))
        )
    packed, device_batches = scorer.place(pack(wins, length))
    params = jax.device_put(
        nnx.split(model_lib.Transformer(scorer.model_cfg, rngs=nnx.Rngs(0)), nnx.Param, ...)[1], scorer.param_shardings
    )
    run = lambda: scorer.logprobs(params, packed, device_batches)
    return run, lambda: (scorer._fn, params, device_batches)


def timed(run, calls: int) -> float:
    run()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def one_round(calls: dict, n: int) -> dict:
    from babyjax.train import metrics

    out = {"peak": metrics.measure_matmul_peak("float32"), "floors": {}}
    for name, (run, floor_args) in calls.items():
        floor = metrics.matmul_floor(*floor_args())
        out[name], out["floors"][name] = (timed(run, n), floor.seconds), floor
    return out


def print_dots(floors: dict, top: int) -> None:
    """The `top` products of each call's floor by their share of it."""
    for name, floor in floors.items():
        print(
            f"\n{name}: the largest of its {len(floor.rows)} distinct products ({floor.flops / 1e9:.1f} GFLOP a "
            f"call, floor {floor.seconds * 1e3:.0f} ms)"
        )
        for times, shapes, seconds, rate in sorted(floor.rows, key=lambda r: -r[0] * r[2])[:top]:
            share = times * seconds / floor.seconds
            print(
                f"  {times:4d} x {seconds * 1e3:7.2f} ms = {times * seconds * 1e3:7.1f} ms ({share:4.0%}) at "
                f"{rate / 1e9:4.0f} GFLOP/s  {shapes}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--dots", type=int, default=8, help="products listed per call (0: none)")
    args = ap.parse_args()
    print(f"machine: {common.machine()}", flush=True)
    from configs import bench, tiny

    bench_run, bench_floor_args, bench_flops = train_call(bench.get_config())
    tiny_run, tiny_floor_args, _ = train_call(tiny.get_config())
    calls = {
        "bench train step": (bench_run, bench_floor_args),
        "tiny train step": (tiny_run, tiny_floor_args),
        "tiny scoring, one checkpoint": score_call(tiny.get_config()),
    }
    tokens = bench.get_config().train.batch_size * bench.get_config().data.seq_len
    rows = []
    for r in range(args.rounds):
        rows.append(one_round(calls, args.calls))
        print(
            f"round {r + 1}: matmul peak {rows[-1]['peak'] / 1e9:.0f} GFLOP/s; "
            + "; ".join(f"{k} {rows[-1][k][0] * 1e3:.0f} ms (floor {rows[-1][k][1] * 1e3:.0f})" for k in calls),
            flush=True,
        )
    peak = max(r["peak"] for r in rows)
    print(f"\nmedians over {len(rows)} rounds; matmul peak: the best seen, {peak / 1e9:.0f} GFLOP/s")
    for k in calls:
        print(
            f"{k:30s} {statistics.median(r[k][0] for r in rows) * 1e3:7.0f} ms; its matmul floor "
            f"{statistics.median(r[k][1] for r in rows) * 1e3:5.0f} ms; floor / measured "
            f"{common.spread([r[k][1] / r[k][0] for r in rows])}"
        )
    ceiling = [tokens / r["bench train step"][1] for r in rows]
    print(
        f"bench train step at its floor: {common.spread(ceiling, '{:,.0f}')} tokens/s, MFU "
        f"{common.spread([bench_flops / r['bench train step'][1] / peak for r in rows], '{:.0%}')} of the best peak"
    )
    ratio = [
        SERIES_CHECKPOINTS * r["tiny scoring, one checkpoint"][1] / (TINY_STEPS * r["tiny train step"][0]) for r in rows
    ]
    print(
        f"tiny run: scoring {SERIES_CHECKPOINTS} checkpoints at the scorer's floor / {TINY_STEPS} train steps at "
        f"their measured time: {common.spread(ratio)} x"
    )
    if args.dots:
        print_dots(rows[-1]["floors"], args.dots)


if __name__ == "__main__":
    main()

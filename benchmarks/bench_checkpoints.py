"""What one series checkpoint costs the training loop, and what restoring one costs the scorer.

For parameter trees of a few sizes (float32, sharded over all local devices like a train state), measures:
  hash      params_hash (device-to-host copy + sha256), paid synchronously by every save
  blocking  time save_series() holds its caller (hash + orbax's host copy and dispatch), mean over the series; in
            training the loop waits that long at every series step (babyjax/train/hooks.py, SeriesSaves)
  written   wall time of the whole series including the background writes (back-to-back saves, then wait())
  restore   restore_params() onto the default device, with hash verification
Prints the machine, every round, then per size each column's median (min-max over the rounds).

  python benchmarks/bench_checkpoints.py [--saves 100] [--sizes 1e6,2.5e7] [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/ from a checkout

from babyjax.checkpoints import series as ck
from benchmarks import common
from configs import base


def make_params(n_params: float, seed: int) -> dict:
    """A GPT-like tree: an embedding of 1/4 of the parameters and square blocks for the rest, sharded on dim 0."""
    mesh = jax.make_mesh((jax.device_count(),), ("fsdp",))
    d = 256 if n_params < 5e6 else 768
    vocab = max(jax.device_count(), int(n_params / 4 / d) // jax.device_count() * jax.device_count())
    n_blocks = max(1, int((n_params - vocab * d) / (4 * d * d)))
    key = jax.random.key(seed)
    tree = {
        "embed": jax.random.normal(key, (vocab, d)),
        "blocks": {
            str(i): {"w": jax.random.normal(jax.random.fold_in(key, i), (d, 4 * d)), "b": jnp.zeros((4 * d,))}
            for i in range(n_blocks)
        },
    }
    return jax.tree.map(lambda x: jax.device_put(x, NamedSharding(mesh, P("fsdp") if x.ndim == 2 else P())), tree)


def bench(n_params: float, saves: int) -> dict:
    cfg = base.get_config().ckpt
    cfg.schedule = "none"
    params = make_params(n_params, 0)
    count = sum(x.size for x in jax.tree_util.tree_leaves(params))
    t0 = time.perf_counter()
    for _ in range(3):
        ck.params_hash(params)
    hash_s = (time.perf_counter() - t0) / 3
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = ck.RunCheckpoints(tmp, cfg, num_steps=saves)
        blocking = []
        t_all = time.perf_counter()
        for step in range(saves):
            params = jax.tree.map(lambda x: x + 1, params)  # new values each step, as training would give
            jax.block_until_ready(params)
            t0 = time.perf_counter()
            ckpt.save_series(step, params, {"tokens_seen": step, "words_seen": step, "wall_time": 0.0})
            blocking.append(time.perf_counter() - t0)
        ckpt.close()
        written = time.perf_counter() - t_all
        t0 = time.perf_counter()
        ck.restore_params(tmp, saves - 1)
        restore_s = time.perf_counter() - t0
    return {
        "params": count,
        "hash_ms": 1e3 * hash_s,
        "blocking_ms": 1e3 * statistics.mean(blocking),
        "blocking_p90_ms": 1e3 * float(np.percentile(blocking, 90)),
        "written_s": written,
        "restore_ms": 1e3 * restore_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--saves", type=int, default=100)
    ap.add_argument("--sizes", default="1e6,2.5e7", help="comma-separated parameter counts")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    logging.getLogger("absl").setLevel(logging.WARNING)
    print(f"machine: {common.machine('orbax.checkpoint')}")
    print(f"{jax.device_count()} {jax.devices()[0].platform} devices; {args.saves} series saves per size and round")
    print(
        f"{'round':>5s} {'params':>12s} {'hash ms':>9s} {'save blocks ms (p90)':>21s} {'series written s':>17s} "
        f"{'restore ms':>11s}"
    )
    results = {size: [] for size in args.sizes.split(",")}
    for r in range(args.rounds):
        for size, ms in results.items():
            m = bench(float(size), args.saves)
            ms.append(m)
            print(
                f"{r + 1:5d} {m['params']:12,d} {m['hash_ms']:9.1f} {m['blocking_ms']:12.1f} "
                f"({m['blocking_p90_ms']:6.1f}) {m['written_s']:17.2f} {m['restore_ms']:11.1f}",
                flush=True,
            )
    for ms in results.values():
        print(f"\n{ms[0]['params']:,} parameters, median (min-max over {len(ms)} rounds):")
        for key, what in (
            ("hash_ms", "hash ms"),
            ("blocking_ms", "save_series call, mean ms"),
            ("written_s", "series written s"),
            ("restore_ms", "restore ms"),
        ):
            print(f"  {what:30s} {common.spread([m[key] for m in ms], '{:.1f}')}")


if __name__ == "__main__":
    main()

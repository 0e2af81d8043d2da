"""Training throughput, side by side in one run: babyjax against Hugging Face GPT2LMHeadModel + torch AdamW, three ways.

The bench config (configs/bench.py, docs/benchmarks.md: 4 layers, d_model 256, 4 heads, MLP 1024, vocab 16,384,
context 128, tied embeddings, no dropout, batch 32, float32, AdamW with global-norm clipping 1.0). Every side trains on
the same random token batch. Peers:
  - HF eager, AdamW (foreach, torch's default), with 1 and with 2 torch threads (the faster counts in each round);
  - HF eager, AdamW(fused=True), 2 threads;
  - HF under torch.compile (inductor), AdamW with the faster of foreach and fused (chosen at warm-up), 2 threads.
babyjax runs in one process and the PyTorch peers in another (benchmarks/common.py `Side`: each built and warmed up
once, then asked for its timed calls in turn, so only one side works at a time and no process holds both XLA's and
torch's thread pools). The sides alternate in every round (babyjax first in odd rounds, last in even ones), and every
round also measures the float32 matmul peak (2048^2, one device, in babyjax's process); MFU is model FLOPs/s
(babyjax.model.transformer.flops_per_token, the one definition) over the best peak seen.
Prints the machine, every round, then medians and the babyjax / peer ratio's median and range over rounds.

  pip install -e '.[peers]'
  python benchmarks/bench_train.py [--rounds 5] [--steps 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common


def babyjax_runner(cfg, batch_np):
    import jax

    from babyjax.model import sharding
    from babyjax.model import transformer as model_lib
    from babyjax.train import step as step_lib

    mesh = sharding.make_mesh(cfg.mesh, devices=jax.devices()[:1])
    model_cfg = model_lib.ModelConfig.from_config(cfg.model, cfg.tokenizer.vocab_size)
    graphdef, state, shardings, tx, lr = step_lib.init_train_state(model_cfg, cfg.optim, 10_000, mesh, 0)
    train_step = step_lib.make_train_step(graphdef, tx, lr, mesh, shardings)
    batch = {k: jax.device_put(v) for k, v in batch_np.items()}
    holder = {"state": state}

    def run(steps: int) -> float:
        t0 = time.perf_counter()
        s = holder["state"]
        for _ in range(steps):
            s, m = train_step(s, batch)
        jax.block_until_ready(m["loss"])
        holder["state"] = s
        return time.perf_counter() - t0

    run(2)  # compile + warm-up
    return run, model_lib.flops_per_token(model_cfg, cfg.data.seq_len)


def torch_runner(cfg, batch_np, *, fused: bool = False, compiled: bool = False):
    """(run(steps, threads) -> seconds) for one HF set-up: eager or compiled, AdamW foreach or fused."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    m = cfg.model
    hf = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=cfg.tokenizer.vocab_size,
            n_positions=m.max_len,
            n_embd=m.d_model,
            n_layer=m.num_layers,
            n_head=m.num_heads,
            n_inner=m.mlp_dim,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            tie_word_embeddings=True,
        )
    )
    hf.train()
    opt = torch.optim.AdamW(
        hf.parameters(),
        lr=cfg.optim.lr,
        betas=(cfg.optim.b1, cfg.optim.b2),
        weight_decay=cfg.optim.weight_decay,
        fused=fused or None,
        foreach=None if fused else True,
    )
    inputs = torch.from_numpy(batch_np["inputs"]).long()
    forward = torch.compile(hf) if compiled else hf

    def one_step():
        out = forward(input_ids=inputs, labels=inputs)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), cfg.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def run(steps: int, threads: int = 2) -> float:
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        for _ in range(steps):
            one_step()
        return time.perf_counter() - t0

    run(3 if compiled else 2)  # compile + warm-up
    return run


def make_peers(cfg, batch, steps: int) -> dict:
    """name -> run(steps) for every peer; the compiled peer takes the faster optimizer at warm-up."""
    eager, fused = torch_runner(cfg, batch), torch_runner(cfg, batch, fused=True)
    compiled = {f: torch_runner(cfg, batch, fused=f, compiled=True) for f in (False, True)}
    best = min(compiled, key=lambda f: compiled[f](steps))
    return {
        "HF eager, AdamW foreach, 1 thread": lambda n: eager(n, 1),
        "HF eager, AdamW foreach, 2 threads": lambda n: eager(n, 2),
        "HF eager, AdamW fused, 2 threads": lambda n: fused(n, 2),
        f"HF torch.compile, AdamW {'fused' if best else 'foreach'}, 2 threads": lambda n: compiled[best](n, 2),
    }


def report(rows: list[dict], flops: float, peak: float, tokens: int) -> None:
    names, peaks = list(rows[0]["tps"]), ", ".join(f"{r['peak'] / 1e9:.0f}" for r in rows)
    print(
        f"\nmedians over {len(rows)} rounds; MFU against the best matmul peak seen, {peak / 1e9:.0f} GFLOP/s "
        f"(per round: {peaks}); {tokens:,} tokens per timed call"
    )
    print(f"{'':44s}{'tokens/s':>10s}{'MFU':>7s}   babyjax / this")
    for n in names:
        tps = statistics.median(r["tps"][n] for r in rows)
        ratio = "" if n == "babyjax" else common.spread([r["tps"]["babyjax"] / r["tps"][n] for r in rows]) + " x"
        print(f"{n:44s}{tps:10,.0f}{tps * flops / peak:7.1%}   {ratio}")
    best = [r["tps"]["babyjax"] / max(v for k, v in r["tps"].items() if k != "babyjax") for r in rows]
    print(f"babyjax / the fastest peer of each round: {common.spread(best)} x")


def bench_batch(cfg) -> dict:
    """The random token batch every side trains on (the same seed in each side's process)."""
    import numpy as np

    b, length, v = cfg.train.batch_size, cfg.data.seq_len, cfg.tokenizer.vocab_size
    tokens = np.random.default_rng(0).integers(5, v, size=(b, length + 1), dtype=np.int32)
    return {
        "inputs": tokens[:, :-1],
        "targets": tokens[:, 1:],
        "segment_ids": np.ones((b, length), np.int32),
        "positions": np.tile(np.arange(length, dtype=np.int32), (b, 1)),
        "weights": np.ones((b, length), np.float32),
        "num_words": np.full((b,), 100.0, np.float32),
        "num_tokens": np.full((b,), float(length), np.float32),
    }


def babyjax_side(args) -> dict:
    from babyjax.train import metrics
    from configs import bench

    cfg = bench.get_config()
    run, flops = babyjax_runner(cfg, bench_batch(cfg))
    return {"run": run, "flops": lambda: flops, "peak": lambda: metrics.measure_matmul_peak("float32")}


def torch_side(args) -> dict:
    from configs import bench

    cfg = bench.get_config()
    peers = make_peers(cfg, bench_batch(cfg), args.steps)
    return {"names": lambda: list(peers), "run": lambda name, steps: peers[name](steps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--side", choices=["babyjax", "torch"], help=argparse.SUPPRESS)  # a side's own process
    args = ap.parse_args()
    if args.side:
        return common.serve((babyjax_side if args.side == "babyjax" else torch_side)(args))

    from configs import bench

    print(f"machine: {common.machine('torch', 'transformers')}", flush=True)
    cfg = bench.get_config()
    ours, torch_peers = common.Side(__file__, "babyjax"), common.Side(__file__, "torch", f"--steps={args.steps}")
    flops, names = ours.call("flops"), torch_peers.call("names")
    calls = {
        "babyjax": lambda: ours.call("run", args.steps),
        **{n: (lambda n=n: torch_peers.call("run", n, args.steps)) for n in names},
    }
    n_tok, rows = cfg.train.batch_size * cfg.data.seq_len * args.steps, []
    for i in range(args.rounds):
        seconds = common.in_turn(calls, i)  # babyjax first in rounds 1, 3, ...
        row = {"tps": {name: n_tok / seconds[name] for name in calls}, "peak": ours.call("peak")}
        rows.append(row)
        print(
            f"round {i + 1}: "
            + ", ".join(f"{k} {t:,.0f}" for k, t in row["tps"].items())
            + f" tok/s; matmul {row['peak'] / 1e9:.0f} GFLOP/s",
            flush=True,
        )
    ours.close(), torch_peers.close()
    report(rows, flops, max(r["peak"] for r in rows), n_tok)


if __name__ == "__main__":
    main()

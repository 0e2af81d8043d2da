"""Training throughput, side by side in one run: babyjax vs Hugging Face GPT2LMHeadModel + torch.optim.AdamW.

Bench config of ../shared/docs/benchmarks.md (4 layers, d_model 256, 4 heads, MLP 1024, vocab 16,384, context 128,
tied embeddings, no dropout, batch 32, float32). Both sides train on the same random token batches; the two
frameworks alternate in rounds and the table reports medians over rounds, plus MFU against the matmul peak
measured in the same run.

  pip install -e '.[peers]'
  python benchmarks/bench_train.py [--rounds 5] [--steps 10] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def babyjax_runner(cfg, batch_np):
    import jax

    from babyjax import model as model_lib, sharding, step as step_lib

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
    flops = model_lib.flops_per_token(model_cfg, cfg.data.seq_len)
    return run, flops, model_lib.num_params(model_cfg)


def torch_runner(cfg, batch_np, threads: int):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = cfg.model
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=cfg.tokenizer.vocab_size, n_positions=m.max_len, n_embd=m.d_model,
                                    n_layer=m.num_layers, n_head=m.num_heads, n_inner=m.mlp_dim, resid_pdrop=0.0,
                                    embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True))
    hf.train()
    opt = torch.optim.AdamW(hf.parameters(), lr=cfg.optim.lr, betas=(cfg.optim.b1, cfg.optim.b2),
                            weight_decay=cfg.optim.weight_decay)
    inputs = torch.from_numpy(batch_np["inputs"]).long()

    def run(steps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            out = hf(input_ids=inputs, labels=inputs)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(hf.parameters(), cfg.optim.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    run(2)
    return run, sum(p.numel() for p in hf.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import numpy as np

    from babyjax import metrics
    from configs import bench

    cfg = bench.get_config()
    b, length, v = cfg.train.batch_size, cfg.data.seq_len, cfg.tokenizer.vocab_size
    rng = np.random.default_rng(0)
    tokens = rng.integers(5, v, size=(b, length + 1), dtype=np.int32)
    batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
             "segment_ids": np.ones((b, length), np.int32),
             "positions": np.tile(np.arange(length, dtype=np.int32), (b, 1)),
             "weights": np.ones((b, length), np.float32), "num_words": np.full((b,), 100.0, np.float32),
             "num_tokens": np.full((b,), float(length), np.float32)}

    peak = metrics.measure_matmul_peak("float32")
    jx, flops, n_jax = babyjax_runner(cfg, batch)
    th, n_torch = torch_runner(cfg, batch, args.threads)
    tok = b * length * args.steps
    jax_tps, torch_tps = [], []
    for _ in range(args.rounds):
        jax_tps.append(tok / jx(args.steps))
        torch_tps.append(tok / th(args.steps))
    j, t = statistics.median(jax_tps), statistics.median(torch_tps)
    print(f"bench config: {n_jax / 1e6:.2f}M params (babyjax), {n_torch / 1e6:.2f}M (HF), batch {b}x{length}, "
          f"{args.rounds} rounds x {args.steps} steps, medians")
    print(f"measured matmul peak (2048^2 f32, one device): {peak / 1e9:.1f} GFLOP/s; "
          f"model FLOPs/token {flops / 1e6:.1f}M")
    print(f"{'':28s}{'tokens/s':>12s}{'MFU':>8s}")
    print(f"{'babyjax (JAX, jit)':28s}{j:12,.0f}{j * flops / peak:8.1%}")
    print(f"{'HF GPT2LMHeadModel (torch)':28s}{t:12,.0f}{t * flops / peak:8.1%}")
    print(f"ratio babyjax / HF: {j / t:.2f}x")


if __name__ == "__main__":
    main()

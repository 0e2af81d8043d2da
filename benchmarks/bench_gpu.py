"""GPU figures, one prepared script: a GPT-2-small-shape model in bfloat16, babyjax against Hugging Face transformers +
torch on the same GPU, side by side (docs/benchmarks.md).

Model: 12 layers, d_model 768, 12 heads, MLP 3072, vocab 50,304, context 1,024, tied embeddings, no dropout (124M
parameters); batch 16 x 1,024 tokens; AdamW (b2 0.95, weight decay 0.1), global-norm clipping 1.0; float32
parameters and optimizer state, bfloat16 compute on both sides (babyjax `model.dtype=bfloat16`; `torch.autocast`).
Every side trains on the same random token batch and scores the same random text (rows of 1,024 tokens, all but the
first scored). Measured in every round, the sides alternating, each in its own process (benchmarks/common.py):
  - training tokens/s and MFU: babyjax.model.transformer.flops_per_token (the one definition) x tokens/s over the best
    bfloat16 matmul peak seen (8192^3, measured in babyjax's process every round); HF eager + AdamW(fused), and HF
    under torch.compile + AdamW(fused); the faster HF one is the peer of the round;
  - scoring tokens/s: every token's log-probability of the packed text; babyjax's Scorer against the HF forward and a
    float32 log-softmax gathered at the targets under torch.inference_mode.
The two sides start from their own random weights: a speed comparison only (agreement of the numbers is
bench_score.py's, in float32). JAX would take 75% of the GPU at start: its side is limited to 45%
(XLA_PYTHON_CLIENT_MEM_FRACTION) so torch's side fits. --smoke runs a 2-layer, d_model 64 model on whatever device each
side finds (a check that the script runs, on CPU too; its numbers mean nothing).

  python benchmarks/bench_gpu.py [--rounds 3] [--steps 10] [--smoke]

Needs one NVIDIA GPU with bfloat16 support (A100 or H100 class: both sides share its memory, JAX 45% and torch the
rest) and one environment with babyjax, JAX for CUDA and the peers, from the repository root:
  pip install -e '.[peers]' 'jax[cuda12]'
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common

FULL = {
    "num_layers": 12,
    "d_model": 768,
    "num_heads": 12,
    "mlp_dim": 3072,
    "vocab": 50_304,
    "seq_len": 1024,
    "batch": 16,
    "score_rows": 64,
}
SMOKE = {
    "num_layers": 2,
    "d_model": 64,
    "num_heads": 4,
    "mlp_dim": 256,
    "vocab": 512,
    "seq_len": 64,
    "batch": 4,
    "score_rows": 8,
}


def shape(args) -> dict:
    return SMOKE if args.smoke else FULL


def token_rows(s: dict, rows: int, seed: int):
    import numpy as np

    return np.random.default_rng(seed).integers(5, s["vocab"], size=(rows, s["seq_len"] + 1), dtype=np.int32)


def babyjax_config(s: dict):
    """configs/base.py with this model (not configs/bench.py: that one's tiny.py reads the data set, TFDS)."""
    from configs import base

    c = base.get_config()
    c.model.dropout, c.model.tie_embeddings = 0.0, True
    c.tokenizer.vocab_size, c.data.seq_len, c.train.batch_size = s["vocab"], s["seq_len"], s["batch"]
    for key in ("num_layers", "d_model", "num_heads", "mlp_dim"):
        c.model[key] = s[key]
    c.model.max_len, c.model.dtype = s["seq_len"], "bfloat16"
    return c


def babyjax_side(args) -> dict:
    """Train step (bench_train's runner, this config) and the Scorer on the packed rows, on the first device."""
    import jax
    import numpy as np
    from flax import nnx

    from babyjax.model import transformer as model_lib
    from babyjax.score.packing import pack, windows
    from babyjax.score.scorer import Scorer, scoring_mesh
    from babyjax.train import metrics
    from benchmarks.bench_train import babyjax_runner, bench_batch

    s, cfg = shape(args), babyjax_config(shape(args))
    train, train_flops = babyjax_runner(cfg, bench_batch(cfg))  # token_rows(s, batch, 0), as the torch side
    model_cfg = model_lib.ModelConfig.from_config(cfg.model, s["vocab"])
    scorer = Scorer(model_cfg, scoring_mesh())
    text = token_rows(s, s["score_rows"], 1)[:, :-1]  # rows of seq_len tokens: all but the first scored
    wins = [w for i, row in enumerate(text) for w in windows(i, row.tolist(), "no_context", s["seq_len"])]
    packed, batches = scorer.place(pack(wins, s["seq_len"]))
    params = jax.device_put(
        nnx.split(model_lib.Transformer(scorer.model_cfg, rngs=nnx.Rngs(0)), nnx.Param, ...)[1], scorer.param_shardings
    )

    def score() -> float:
        t0 = time.perf_counter()
        np.asarray(scorer.logprobs(params, packed, batches))
        return time.perf_counter() - t0

    score()  # compile
    return {
        "train": train,
        "score": score,
        "scored": lambda: packed.num_tokens,
        "flops": lambda: [train_flops, model_lib.flops_per_token(model_cfg, s["seq_len"], backward=False)],
        "device": lambda: str(jax.devices()[0].device_kind),
        "peak": lambda: metrics.measure_matmul_peak("bfloat16", 512 if args.smoke else 8192),
    }


def hf_gpt2(s: dict, dev: str):
    """HF GPT2LMHeadModel of this shape on `dev`, seed 0, no dropout, tied embeddings."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(
        GPT2Config(
            vocab_size=s["vocab"],
            n_positions=s["seq_len"],
            n_embd=s["d_model"],
            n_layer=s["num_layers"],
            n_head=s["num_heads"],
            n_inner=s["mlp_dim"],
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            tie_word_embeddings=True,
        )
    ).to(dev)


def torch_side(args) -> dict:
    """HF GPT2LMHeadModel, eager and compiled, AdamW(fused), bfloat16 autocast; scoring under inference_mode."""
    import torch

    s, dev = shape(args), "cuda" if torch.cuda.is_available() else "cpu"
    hf = hf_gpt2(s, dev)
    opt = torch.optim.AdamW(hf.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    inputs = torch.from_numpy(token_rows(s, s["batch"], 0)[:, :-1]).long().to(dev)
    text = torch.from_numpy(token_rows(s, s["score_rows"], 1)[:, :-1]).long().to(dev)  # the rows babyjax scores
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    runners = {"HF eager": hf, "HF torch.compile": torch.compile(hf)}

    def train(name: str, steps: int) -> float:
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            with torch.autocast(dev, dtype=torch.bfloat16):
                loss = runners[name](input_ids=inputs, labels=inputs).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - t0

    @torch.inference_mode()
    def score() -> float:
        sync()
        t0 = time.perf_counter()
        for i in range(0, len(text), s["batch"]):
            rows = text[i : i + s["batch"]]
            with torch.autocast(dev, dtype=torch.bfloat16):
                logits = hf(input_ids=rows).logits[:, :-1]
            torch.log_softmax(logits.float(), -1).gather(-1, rows[:, 1:, None]).cpu()
        sync()
        return time.perf_counter() - t0

    for name in runners:
        train(name, 2)  # compile + warm-up
    score()
    return {
        "train": train,
        "score": score,
        "names": lambda: list(runners),
        "device": lambda: torch.cuda.get_device_name() if dev == "cuda" else "cpu",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--smoke", action="store_true", help="a tiny model: checks that the script runs")
    ap.add_argument("--side", choices=["babyjax", "torch"], help=argparse.SUPPRESS)  # a side's own process
    args = ap.parse_args()
    if args.side:
        return common.serve((babyjax_side if args.side == "babyjax" else torch_side)(args))
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")
    extra = ["--smoke"] if args.smoke else []
    ours, peer = common.Side(__file__, "babyjax", *extra), common.Side(__file__, "torch", *extra)
    print(
        f"machine: {common.machine('torch', 'transformers')}; babyjax on {ours.call('device')}, torch on "
        f"{peer.call('device')}",
        flush=True,
    )
    (train_flops, score_flops), names, scored = ours.call("flops"), peer.call("names"), ours.call("scored")
    s = shape(args)
    tokens = s["batch"] * s["seq_len"] * args.steps
    calls = {
        "babyjax": lambda: ours.call("train", args.steps),
        **{n: (lambda n=n: peer.call("train", n, args.steps)) for n in names},
        "babyjax scoring": lambda: ours.call("score"),
        "HF scoring": lambda: peer.call("score"),
    }
    rows = []
    for i in range(args.rounds):
        sec = common.in_turn(calls, i)
        row = {k: (scored if "scoring" in k else tokens) / v for k, v in sec.items()}
        row["peak"] = ours.call("peak")
        rows.append(row)
        print(
            f"round {i + 1}: "
            + ", ".join(f"{k} {v:,.0f} tok/s" for k, v in row.items() if k != "peak")
            + f"; bf16 matmul {row['peak'] / 1e12:.0f} TFLOP/s",
            flush=True,
        )
    ours.close(), peer.close()
    report(rows, names, train_flops, score_flops)


def report(rows: list[dict], names: list[str], train_flops: float, score_flops: float) -> None:
    peak = max(r["peak"] for r in rows)
    print(
        f"\nmedians (min-max) over {len(rows)} rounds; MFU against the best bf16 matmul peak seen, "
        f"{peak / 1e12:.0f} TFLOP/s"
    )
    for k in ["babyjax", *names, "babyjax scoring", "HF scoring"]:
        flops = score_flops if "scoring" in k else train_flops
        print(
            f"{k:20s} {common.spread([r[k] for r in rows], '{:,.0f}')} tok/s; MFU "
            f"{common.spread([r[k] * flops / peak for r in rows], '{:.1%}')}"
        )
    best = [r["babyjax"] / max(r[n] for n in names) for r in rows]
    print(f"training, babyjax / the faster HF of each round: {common.spread(best)} x")
    print(f"scoring, babyjax / HF: {common.spread([r['babyjax scoring'] / r['HF scoring'] for r in rows])} x")


if __name__ == "__main__":
    main()

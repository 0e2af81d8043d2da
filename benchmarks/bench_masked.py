"""Masked LMs side by side in one run: babyjax against Hugging Face and minicons on the same work (docs/benchmarks.md).

    python benchmarks/bench_masked.py                      # both parts, 5 rounds each
    python benchmarks/bench_masked.py --part train --rounds 7

train: training tokens/s of the RoBERTa-style bench model (configs/bench.py with model.style roberta: 4 layers,
       d_model 256, 4 heads, MLP 1024, vocab 16,384, context 128, batch 32, float32, no dropout; masked LM, 15%,
       80/10/10, masks drawn anew each step on both sides) against transformers' RobertaForMaskedLM of the same shape
       with torch.optim.AdamW (same lr, betas, weight decay, clipping at 1.0), on the same random token batch.
       MFU against the float32 matmul peak measured in every round (the best seen is the denominator).
pll:   sentence pseudo-log-likelihoods (Salazar et al.'s original form) of BLiMP minimal pairs (the first --pairs of
       every paradigm in ../shared/data/blimp) on one exported checkpoint of the same RoBERTa model: babyjax.score
       (masked copies packed into rows of 64, the output projection on the scored columns only) against minicons
       `MaskedLMScorer.sequence_score` (batches of --peer_batch sentences). Both sides are timed from the sentences'
       text: tokenization included. Agreement asserted (every sentence within 1e-3 nats).
Each side runs in its own process (benchmarks/common.py `Side`: built and warmed up once, then asked for its timed
calls in turn, so only one side works at a time and neither shares a process with the other's thread pools); the
sides alternate which goes first from round to round. The ratio is reported as the median and range over rounds, with
the machine. Needs the 'peers' extra (torch, transformers, minicons).
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = pathlib.Path(os.environ.get("BABYJAX_SHARED_DATA", ROOT.parent / "shared" / "data"))

from benchmarks import common


def machine() -> str:
    import torch

    return common.machine("torch", "transformers", "minicons") + f"; torch threads {torch.get_num_threads()}"


def bench_config():
    from configs import bench

    c = bench.get_config()
    c.model.style, c.objective.kind, c.objective.mask_rate = "roberta", "mlm", 0.15
    return c


def train_tokens(c):
    """The random token batch both sides train on (the same seed in each side's process)."""
    import numpy as np

    shape = (c.train.batch_size, c.data.seq_len)
    return np.random.default_rng(0).integers(5, c.tokenizer.vocab_size, shape).astype(np.int32)


def babyjax_trainer(c) -> dict:
    import jax

    from babyjax.model import objectives, sharding
    from babyjax.model import transformer as model_lib
    from babyjax.train import metrics
    from babyjax.train import step as step_lib

    tokens = train_tokens(c)
    mesh = sharding.make_mesh(c.mesh, devices=jax.devices()[:1])
    cfg = model_lib.ModelConfig.from_config(c.model, c.tokenizer.vocab_size)
    graphdef, state, shardings, tx, lr = step_lib.init_train_state(cfg, c.optim, 10_000, mesh, 0)
    objective = objectives.Objective("mlm", cfg.vocab_size, mask_rate=0.15)
    train_step = step_lib.make_train_step(graphdef, tx, lr, mesh, shardings, objective=objective)
    b, length = tokens.shape
    batch = jax.device_put(
        {
            "inputs": tokens,
            "targets": tokens,
            "segment_ids": tokens * 0 + 1,
            "positions": tokens * 0 + jax.numpy.arange(length),
            "weights": (tokens * 0 + 1.0),
            "num_words": jax.numpy.ones((b,)),
        }
    )
    holder = {"state": state}

    def run(steps: int) -> float:
        t0 = time.perf_counter()
        s = holder["state"]
        for _ in range(steps):
            s, m = train_step(s, batch)
        jax.block_until_ready(m["loss"])
        holder["state"] = s
        return time.perf_counter() - t0

    run(2)  # compile and warm up
    # MFU counts the FLOPs each side does: babyjax's output projection reads only the chosen columns
    info = {
        "flops": model_lib.flops_per_token(cfg, length, head_fraction=objective.head_fraction(length)),
        "hf_flops": model_lib.flops_per_token(cfg, length),
        "params": model_lib.num_params(cfg),
    }
    return {"run": run, "info": lambda: info, "peak": lambda: metrics.measure_matmul_peak("float32")}


def hf_trainer(c) -> dict:
    import torch
    from transformers import RobertaConfig, RobertaForMaskedLM

    torch.manual_seed(0)
    m = c.model
    hf = RobertaForMaskedLM(
        RobertaConfig(
            vocab_size=c.tokenizer.vocab_size,
            hidden_size=m.d_model,
            num_hidden_layers=m.num_layers,
            num_attention_heads=m.num_heads,
            intermediate_size=m.mlp_dim,
            max_position_embeddings=m.max_len + 1,
            type_vocab_size=1,
            pad_token_id=0,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
    ).train()
    opt = torch.optim.AdamW(
        hf.parameters(), lr=c.optim.lr, betas=(c.optim.b1, c.optim.b2), weight_decay=c.optim.weight_decay
    )
    tokens = torch.from_numpy(train_tokens(c)).long()

    def run(steps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):  # BERT's rule, as transformers' DataCollatorForLanguageModeling draws it
            chosen = torch.rand(tokens.shape) < 0.15
            r = torch.rand(tokens.shape)
            inputs = torch.where(chosen & (r < 0.8), 4, tokens)
            inputs = torch.where(chosen & (r >= 0.8) & (r < 0.9), torch.randint_like(tokens, 5, 16384), inputs)
            loss = hf(input_ids=inputs, labels=torch.where(chosen, tokens, -100)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(hf.parameters(), c.optim.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    run(2)
    info = {"params": sum(p.numel() for p in hf.parameters()), "threads": torch.get_num_threads()}
    return {"run": run, "info": lambda: info}


def part_train(args) -> dict:
    c = bench_config()
    ours, peer = common.Side(__file__, "train-babyjax"), common.Side(__file__, "train-hf")
    info, peer_info = ours.call("info"), peer.call("info")
    n_tok, rows = c.train.batch_size * c.data.seq_len * args.steps, []
    for r in range(args.rounds):
        peak = ours.call("peak")
        t = common.in_turn({s.name: functools.partial(s.call, "run", args.steps) for s in (ours, peer)}, r)
        rows.append((peak, n_tok / t[ours.name], n_tok / t[peer.name]))
        print(
            f"train round {r}: peak {peak / 1e9:.0f} GFLOP/s, babyjax {rows[-1][1]:,.0f} tok/s, "
            f"HF {rows[-1][2]:,.0f} tok/s ({peer_info['threads']} threads), ratio {rows[-1][1] / rows[-1][2]:.2f}x",
            flush=True,
        )
    ours.close(), peer.close()
    best_peak = max(p for p, _, _ in rows)
    ratios = [o / p for _, o, p in rows]
    out = {
        "params_babyjax": info["params"],
        "params_hf": peer_info["params"],
        "babyjax_tok_s": statistics.median(o for _, o, _ in rows),
        "hf_tok_s": statistics.median(p for _, _, p in rows),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "best_peak_gflops": best_peak / 1e9,
    }
    out["mfu_babyjax"] = out["babyjax_tok_s"] * info["flops"] / best_peak
    out["mfu_hf"] = out["hf_tok_s"] * info["hf_flops"] / best_peak
    return out


def pll_run(workdir: pathlib.Path):
    """A RoBERTa bench run with one random checkpoint, its tokenizer trained on the sample, and its export."""
    from flax import nnx

    from babyjax.checkpoints import series as checkpoints
    from babyjax.checkpoints.run import RunDir
    from babyjax.data import tokenizer as tokenizer_lib
    from babyjax.interop import export
    from babyjax.model.transformer import Transformer

    c, run = bench_config(), RunDir(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if not run.tokenizer_path.exists():
        lines = [
            ln
            for f in sorted((DATA / "babylm_sample" / "babylm_10M").glob("*.train"))
            for ln in f.read_text().splitlines()
            if ln.strip()
        ]
        tokenizer_lib.train(lines, run.tokenizer_path, vocab_size=c.tokenizer.vocab_size)
    run.config_path.write_text(c.to_json_best_effort())
    cfg = run.model_config()
    if not run.series_dir.exists():
        c.ckpt.schedule, c.ckpt.steps = "list", (0,)
        ckpt = checkpoints.RunCheckpoints(workdir, c.ckpt, num_steps=1)
        ckpt.save_series(
            0,
            nnx.state(Transformer(cfg, rngs=nnx.Rngs(0)), nnx.Param),
            {"tokens_seen": 0.0, "words_seen": 0.0, "wall_time": 0.0},
        )
        ckpt.close()
    hf_dir = workdir / "hf"
    if not (hf_dir / export.EXPORT_INFO).exists():
        export.export_checkpoint(workdir, 0, hf_dir, overwrite=True)
    return cfg, run.tokenizer(), hf_dir


def blimp_texts(pairs: int) -> list[str]:
    """The good and bad sentences of the first `pairs` pairs of every BLiMP paradigm."""
    from babyjax.data import evalsets

    seen, texts = collections.Counter(), []
    for p in evalsets.load_pairs(DATA / "blimp"):
        seen[p.paradigm] += 1
        texts += [p.good, p.bad] if seen[p.paradigm] <= pairs else []
    return texts


def timed(score) -> dict:
    """A side's functions from its scoring function: 'run' (seconds of one call) and 'scores' (one call's list)."""

    def run() -> float:
        t0 = time.perf_counter()
        score()
        return time.perf_counter() - t0

    return {"run": run, "scores": lambda: [float(x) for x in score()]}


def pll_babyjax(args) -> dict:
    import numpy as np

    from babyjax import score
    from babyjax.checkpoints import series as checkpoints
    from babyjax.score import packing
    from babyjax.score.scorer import scoring_mesh

    workdir = pathlib.Path(args.workdir)
    cfg, tok, hf_dir = pll_run(workdir)
    texts = blimp_texts(args.pairs)
    scorer = score.Scorer(cfg, scoring_mesh(), causal=False)
    params = checkpoints.restore_params(workdir, 0, scorer.abstract_params)
    starts = tok.word_starts()

    def ours() -> np.ndarray:  # from text: tokenization, copies, packing and placement included
        ids = tok.encode_batch(texts)
        copies = [c for i, s in enumerate(ids) for c in packing.masked_copies(i, s, "pll_original", 128, starts)]
        packed, batches = scorer.place(score.pack(copies, packing.row_length(copies, 128)))
        return np.bincount([c.seq for c in copies], scorer.logprobs(params, packed, batches).astype(np.float64))

    ours()  # compile
    return timed(ours)


def pll_minicons(args) -> dict:
    import numpy as np
    import transformers
    from minicons import scorer as minicons_scorer

    hf_dir, texts = pathlib.Path(args.workdir) / "hf", blimp_texts(args.pairs)
    hf_tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    lm = minicons_scorer.MaskedLMScorer(str(hf_dir), "cpu", tokenizer=hf_tok)

    def peer() -> np.ndarray:  # minicons 0.3.39 calls a tokenizer method transformers 5 removed: encode for it
        out = []
        for i in range(0, len(texts), args.peer_batch):
            enc = hf_tok(texts[i : i + args.peer_batch], padding="longest", return_attention_mask=True)
            out += lm.sequence_score(enc, reduction=lambda x: x.sum(0).item(), PLL_metric="original")
        return np.asarray(out)

    peer()  # warm up
    return timed(peer)


def part_pll(args) -> dict:
    import numpy as np

    extra = [f"--pairs={args.pairs}", f"--peer_batch={args.peer_batch}", f"--workdir={args.workdir}"]
    ours = common.Side(__file__, "pll-babyjax", *extra)  # writes the checkpoint and its export the peer reads
    peer = common.Side(__file__, "pll-minicons", *extra)
    diff = float(np.abs(np.asarray(ours.call("scores")) - np.asarray(peer.call("scores"))).max())
    assert diff < 1e-3, f"babyjax and minicons disagree by {diff} nats"
    n, rows = len(blimp_texts(args.pairs)), []
    for r in range(args.rounds):
        t = common.in_turn({s.name: functools.partial(s.call, "run") for s in (ours, peer)}, r)
        rows.append((n / t[ours.name], n / t[peer.name]))
        print(
            f"pll round {r}: babyjax {rows[-1][0]:,.1f} sentences/s, minicons {rows[-1][1]:,.1f}, "
            f"ratio {rows[-1][0] / rows[-1][1]:.2f}x",
            flush=True,
        )
    ours.close(), peer.close()
    ratios = [o / p for o, p in rows]
    return {
        "sentences": n,
        "max_abs_diff_nats": diff,
        "babyjax_sent_s": statistics.median(o for o, _ in rows),
        "minicons_sent_s": statistics.median(p for _, p in rows),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


SIDES = {
    "train-babyjax": lambda a: babyjax_trainer(bench_config()),
    "train-hf": lambda a: hf_trainer(bench_config()),
    "pll-babyjax": pll_babyjax,
    "pll-minicons": pll_minicons,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["train", "pll", "both"], default="both")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10, help="train: steps per round and side")
    ap.add_argument("--pairs", type=int, default=20, help="pll: pairs per BLiMP paradigm")
    ap.add_argument("--peer_batch", type=int, default=32, help="pll: sentences per minicons call")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "babyjax_bench_masked"))
    ap.add_argument("--side", choices=sorted(SIDES), help=argparse.SUPPRESS)  # a side's own process
    args = ap.parse_args()
    if args.side:
        return common.serve(SIDES[args.side](args))
    print(f"machine: {machine()}", flush=True)
    results = {}
    if args.part in ("train", "both"):
        results["train"] = part_train(args)
    if args.part in ("pll", "both"):
        results["pll"] = part_pll(args)
    for part, r in results.items():
        print(
            f"{part}: ratio babyjax / peer median {r['ratio_median']:.2f}x (range {r['ratio_min']:.2f}-"
            f"{r['ratio_max']:.2f}) over {args.rounds} rounds"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()

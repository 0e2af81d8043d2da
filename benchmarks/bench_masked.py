"""Masked LMs side by side in one run (issue 11): babyjax against Hugging Face and minicons on the same work.

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
Each round runs babyjax then the peer; the ratio is reported as the median and range over rounds, with the machine.
Needs the 'peers' extra (torch, transformers, minicons).
"""
from __future__ import annotations

import argparse
import collections
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

from benchmarks import common  # noqa: E402


def machine() -> str:
    import torch

    return common.machine("torch", "transformers", "minicons") + f"; torch threads {torch.get_num_threads()}"


def bench_config():
    from configs import bench

    c = bench.get_config()
    c.model.style, c.objective.kind, c.objective.mask_rate = "roberta", "mlm", 0.15
    return c


def babyjax_trainer(c, tokens):
    import jax

    from babyjax import model as model_lib, objectives, sharding, step as step_lib

    mesh = sharding.make_mesh(c.mesh, devices=jax.devices()[:1])
    cfg = model_lib.ModelConfig.from_config(c.model, c.tokenizer.vocab_size)
    graphdef, state, shardings, tx, lr = step_lib.init_train_state(cfg, c.optim, 10_000, mesh, 0)
    objective = objectives.Objective("mlm", cfg.vocab_size, mask_rate=0.15)
    train_step = step_lib.make_train_step(graphdef, tx, lr, mesh, shardings, objective=objective)
    b, length = tokens.shape
    batch = jax.device_put({"inputs": tokens, "targets": tokens, "segment_ids": tokens * 0 + 1,
                            "positions": tokens * 0 + jax.numpy.arange(length), "weights": (tokens * 0 + 1.0),
                            "num_words": jax.numpy.ones((b,))})
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
    flops = model_lib.flops_per_token(cfg, length, head_fraction=objective.head_fraction(length))
    return run, flops, model_lib.flops_per_token(cfg, length), model_lib.num_params(cfg)


def hf_trainer(c, tokens_np):
    import torch
    from transformers import RobertaConfig, RobertaForMaskedLM

    torch.manual_seed(0)
    m = c.model
    hf = RobertaForMaskedLM(RobertaConfig(
        vocab_size=c.tokenizer.vocab_size, hidden_size=m.d_model, num_hidden_layers=m.num_layers,
        num_attention_heads=m.num_heads, intermediate_size=m.mlp_dim, max_position_embeddings=m.max_len + 1,
        type_vocab_size=1, pad_token_id=0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).train()
    opt = torch.optim.AdamW(hf.parameters(), lr=c.optim.lr, betas=(c.optim.b1, c.optim.b2),
                            weight_decay=c.optim.weight_decay)
    tokens = torch.from_numpy(tokens_np).long()

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
    return run, sum(p.numel() for p in hf.parameters())


def part_train(args) -> dict:
    import numpy as np

    from babyjax import metrics

    c = bench_config()
    b, length = c.train.batch_size, c.data.seq_len
    tokens = np.random.default_rng(0).integers(5, c.tokenizer.vocab_size, (b, length)).astype(np.int32)
    ours, flops, hf_flops, n_ours = babyjax_trainer(c, tokens)
    peer, n_peer = hf_trainer(c, tokens)
    n_tok, rows = b * length * args.steps, []
    for r in range(args.rounds):
        peak = metrics.measure_matmul_peak("float32")
        rows.append((peak, n_tok / ours(args.steps), n_tok / peer(args.steps)))
        print(f"train round {r}: peak {peak / 1e9:.0f} GFLOP/s, babyjax {rows[-1][1]:,.0f} tok/s, "
              f"HF {rows[-1][2]:,.0f} tok/s, ratio {rows[-1][1] / rows[-1][2]:.2f}x", flush=True)
    best_peak = max(p for p, _, _ in rows)
    ratios = [o / p for _, o, p in rows]
    out = {"params_babyjax": n_ours, "params_hf": n_peer, "babyjax_tok_s": statistics.median(o for _, o, _ in rows),
           "hf_tok_s": statistics.median(p for _, _, p in rows), "ratio_median": statistics.median(ratios),
           "ratio_min": min(ratios), "ratio_max": max(ratios), "best_peak_gflops": best_peak / 1e9}
    out["mfu_babyjax"] = out["babyjax_tok_s"] * flops / best_peak
    out["mfu_hf"] = out["hf_tok_s"] * hf_flops / best_peak
    return out


def pll_run(workdir: pathlib.Path):
    """A RoBERTa bench run with one random checkpoint, its tokenizer trained on the sample, and its export."""
    from flax import nnx

    from babyjax import checkpoints, export
    from babyjax.data import tokenizer as tokenizer_lib
    from babyjax.model import Transformer
    from babyjax.run import RunDir

    c, run = bench_config(), RunDir(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if not run.tokenizer_path.exists():
        lines = [ln for f in sorted((DATA / "babylm_sample" / "babylm_10M").glob("*.train"))
                 for ln in f.read_text().splitlines() if ln.strip()]
        tokenizer_lib.train(lines, run.tokenizer_path, vocab_size=c.tokenizer.vocab_size)
    run.config_path.write_text(c.to_json_best_effort())
    cfg = run.model_config()
    if not run.series_dir.exists():
        c.ckpt.schedule, c.ckpt.steps = "list", (0,)
        ckpt = checkpoints.RunCheckpoints(workdir, c.ckpt, num_steps=1)
        ckpt.save_series(0, nnx.state(Transformer(cfg, rngs=nnx.Rngs(0)), nnx.Param),
                         {"tokens_seen": 0.0, "words_seen": 0.0, "wall_time": 0.0})
        ckpt.close()
    hf_dir = workdir / "hf"
    if not (hf_dir / export.EXPORT_INFO).exists():
        export.export_checkpoint(workdir, 0, hf_dir, overwrite=True)
    return cfg, run.tokenizer(), hf_dir


def part_pll(args) -> dict:
    import numpy as np
    import transformers
    from minicons import scorer as minicons_scorer

    from babyjax import checkpoints, score
    from babyjax.data import evalsets
    from babyjax.score import packing
    from babyjax.score.scorer import scoring_mesh

    workdir = pathlib.Path(args.workdir)
    cfg, tok, hf_dir = pll_run(workdir)
    seen, texts = collections.Counter(), []
    for p in evalsets.load_pairs(DATA / "blimp"):  # the first --pairs of every paradigm
        seen[p.paradigm] += 1
        texts += [p.good, p.bad] if seen[p.paradigm] <= args.pairs else []
    scorer = score.Scorer(cfg, scoring_mesh(), causal=False)
    params = checkpoints.restore_params(workdir, 0, scorer.abstract_params)
    starts = tok.word_starts()

    def ours() -> np.ndarray:  # from text: tokenization, copies, packing and placement included
        ids = tok.encode_batch(texts)
        copies = [c for i, s in enumerate(ids) for c in packing.masked_copies(i, s, "pll_original", 128, starts)]
        packed, batches = scorer.place(score.pack(copies, packing.row_length(copies, 128)))
        return np.bincount([c.seq for c in copies], scorer.logprobs(params, packed, batches).astype(np.float64))

    hf_tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    lm = minicons_scorer.MaskedLMScorer(str(hf_dir), "cpu", tokenizer=hf_tok)

    def peer() -> np.ndarray:  # minicons 0.3.39 calls a tokenizer method transformers 5 removed: encode for it
        out = []
        for i in range(0, len(texts), args.peer_batch):
            enc = hf_tok(texts[i:i + args.peer_batch], padding="longest", return_attention_mask=True)
            out += lm.sequence_score(enc, reduction=lambda x: x.sum(0).item(), PLL_metric="original")
        return np.asarray(out)

    diff = float(np.abs(ours() - peer()).max())
    assert diff < 1e-3, f"babyjax and minicons disagree by {diff} nats"
    rows = []
    for r in range(args.rounds):
        t0 = time.perf_counter()
        ours()
        t1 = time.perf_counter()
        peer()
        rows.append((len(texts) / (t1 - t0), len(texts) / (time.perf_counter() - t1)))
        print(f"pll round {r}: babyjax {rows[-1][0]:,.1f} sentences/s, minicons {rows[-1][1]:,.1f}, "
              f"ratio {rows[-1][0] / rows[-1][1]:.2f}x", flush=True)
    ratios = [o / p for o, p in rows]
    return {"sentences": len(texts), "max_abs_diff_nats": diff,
            "babyjax_sent_s": statistics.median(o for o, _ in rows), "minicons_sent_s": statistics.median(
                p for _, p in rows), "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["train", "pll", "both"], default="both")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10, help="train: steps per round and side")
    ap.add_argument("--pairs", type=int, default=20, help="pll: pairs per BLiMP paradigm")
    ap.add_argument("--peer_batch", type=int, default=32, help="pll: sentences per minicons call")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "babyjax_bench_masked"))
    args = ap.parse_args()
    print(f"machine: {machine()}", flush=True)
    results = {}
    if args.part in ("train", "both"):
        results["train"] = part_train(args)
    if args.part in ("pll", "both"):
        results["pll"] = part_pll(args)
    for part, r in results.items():
        print(f"{part}: ratio babyjax / peer median {r['ratio_median']:.2f}x (range {r['ratio_min']:.2f}-"
              f"{r['ratio_max']:.2f}) over {args.rounds} rounds")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

"""babyjax.score against minicons on the same weights and sentences, side by side in one run (docs/benchmarks.md).

    python benchmarks/bench_score.py                 # bench config (GPT-2 style, 4 x 256, vocab 16,384), CPU
    python benchmarks/bench_score.py --repeats 5 --checkpoints 6

Prints the machine, then measures, alternating ours and the peer in every round (the peer in its own process,
benchmarks/common.py `Side`; ours first in odd rounds, last in even ones):
  (a) short sentences: the first 2,000 non-empty lines of BabyLM aochildes (dev split of ../shared/data/babylm_sample),
      text in, per-token surprisal in bits out, tokenization timed on both sides; babyjax.score (SentencePiece,
      eot_context: every token after one EOS, packed rows of 128) versus minicons `IncrementalLMScorer.token_score(
      surprisal=True, base_two=True, bos_token=True)` in batches of 64 on the babyjax checkpoint exported to Hugging
      Face (same weights and tokens; every score asserted within 1e-3 bits); the peer runs with 1 and 2 torch threads
      in every round and the faster counts; the ratio is given as the median and range over rounds;
  (b) packed held-out text (dev split, 128-token windows): tokens/s and MFU = model FLOP/s (the forward share of
      babyjax.model.transformer.flops_per_token) over a measured 2048x2048 float32 matmul in the same run;
  (c) checkpoints scored per minute by the batch job, restore included: (time of a K-checkpoint job - time of a
      1-checkpoint job) / (K - 1), so start-up (compile, tokenization) is excluded.
Weights are random (initialisation of the bench config with different seeds per checkpoint): throughput does not
depend on their values. Needs the 'peers' extra (torch, transformers, minicons).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax
import ml_collections
import numpy as np
from flax import nnx

from babyjax import score
from babyjax.checkpoints import series as checkpoints
from babyjax.checkpoints.run import RunDir
from babyjax.data import tokenizer as tokenizer_lib
from babyjax.interop import export
from babyjax.model import sharding
from babyjax.model.transformer import ModelConfig, Transformer, flops_per_token
from babyjax.train import metrics
from benchmarks import common
from configs import bench

DATA = pathlib.Path(os.environ.get("BABYJAX_SHARED_DATA", ROOT.parent / "shared" / "data")) / "babylm_sample"


def make_bench_run(workdir: pathlib.Path, num_checkpoints: int) -> tuple[ModelConfig, tokenizer_lib.Tokenizer]:
    """A run directory with the bench config, a 16,384-piece tokenizer of the sample's train split and a series of
    `num_checkpoints` randomly initialised models (reused when it exists)."""
    c = bench.get_config()
    run = RunDir(workdir)
    if not run.tokenizer_path.exists():
        lines = [
            ln for f in sorted((DATA / "babylm_10M").glob("*.train")) for ln in f.read_text().splitlines() if ln.strip()
        ]
        tokenizer_lib.train(
            lines, run.tokenizer_path, vocab_size=c.tokenizer.vocab_size, model_type=c.tokenizer.model_type
        )
    run.config_path.write_text(c.to_json_best_effort())
    tok = run.tokenizer()
    cfg = run.model_config(tok.vocab_size)
    have = {int(e["step"]) for e in run.series_index()} if run.series_dir.exists() else set()
    steps = [100 * i for i in range(num_checkpoints)]
    if not set(steps) <= have:
        c.ckpt.schedule, c.ckpt.steps = "list", tuple(steps)
        ckpt = checkpoints.RunCheckpoints(workdir, c.ckpt, num_steps=max(steps) or 1)
        for i, step in enumerate(steps):
            if step not in have:
                params = nnx.state(Transformer(cfg, rngs=nnx.Rngs(i)), nnx.Param)
                ckpt.save_series(
                    step, params, {"tokens_seen": 4096.0 * step, "words_seen": 3000.0 * step, "wall_time": float(step)}
                )
        ckpt.close()
    return cfg, tok


def aochildes_lines(n: int) -> list[str]:
    """The first `n` non-empty lines of the sample's aochildes dev file."""
    lines = (DATA / "babylm_dev" / "aochildes.dev").read_text().splitlines()
    return [ln for ln in lines if ln.strip()][:n]


def median_time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def minicons_side(args: argparse.Namespace) -> dict:
    """The peer's process: minicons' IncrementalLMScorer on the exported checkpoint. 'bits': every token's surprisal,
    flattened; 'run': seconds to score the sentences from their text with `threads` torch threads."""
    import torch
    from minicons import scorer as mscorer

    sentences = aochildes_lines(args.sentences)
    lm = mscorer.IncrementalLMScorer(str(pathlib.Path(args.workdir) / "hf_step0"), device="cpu")

    def peer_sentences() -> list:
        out = []
        for b in range(0, len(sentences), args.peer_batch):
            out += lm.token_score(sentences[b : b + args.peer_batch], surprisal=True, base_two=True, bos_token=True)
        return out

    def run(threads: int) -> float:
        torch.set_num_threads(threads)
        return median_time(peer_sentences, 1)[0]

    return {"bits": lambda: [float(x[1]) for p in peer_sentences() for x in p[1:]], "run": run}


def sentences_vs_minicons(
    args: argparse.Namespace,
    scorer: score.Scorer,
    params,
    sentences: list[str],
    tok: tokenizer_lib.Tokenizer,
    seq_len: int,
) -> dict:
    """(a) short sentences, ours against minicons on the same weights, text in and surprisal out on both sides (ours:
    SentencePiece, windows, packing, placement and the jitted scorer; minicons: its tokenizer and the HF model, in its
    own process, common.Side). Rounds alternate the sides; the peer runs with 1 and 2 torch threads in every round and
    the faster counts. Agreement is asserted: every token's surprisal within 1e-3 bits."""

    def ours_sentences() -> np.ndarray:
        ids = tok.encode_batch(sentences)
        wins = [w for i, ids_i in enumerate(ids) for w in score.windows(i, ids_i, "eot_context", seq_len)]
        packed, batches = scorer.place(score.pack(wins, seq_len))
        return scorer.logprobs(params, packed, batches)

    peer = common.Side(
        __file__,
        "minicons",
        f"--workdir={args.workdir}",
        f"--sentences={args.sentences}",
        f"--peer_batch={args.peer_batch}",
    )
    n_tokens = sum(len(x) for x in tok.encode_batch(sentences))
    ours_lp = ours_sentences()  # warm-up (compile) and the agreement check
    peer_bits = np.asarray(peer.call("bits"))
    max_diff = float(np.abs(peer_bits - (-ours_lp / np.log(2))).max())
    assert peer_bits.shape == ours_lp.shape and max_diff < 1e-3, f"babyjax and minicons disagree by {max_diff} bits"
    rounds = []
    for i in range(args.repeats):
        t = common.in_turn(
            {
                "ours": lambda: median_time(ours_sentences, 1)[0],
                "peer": lambda: {threads: peer.call("run", threads) for threads in (1, 2)},
            },
            i,
        )
        t_ours, t_peer = t["ours"], t["peer"]
        best = min(t_peer, key=t_peer.get)
        rounds.append({"ours_s": t_ours, "peer_s": t_peer[best], "threads": best, "ratio": t_peer[best] / t_ours})
        print(
            f"  round {len(rounds)}: babyjax {n_tokens / t_ours:,.0f} tok/s, minicons {n_tokens / t_peer[best]:,.0f}"
            f" tok/s ({best} threads; {n_tokens / t_peer[3 - best]:,.0f} with {3 - best}), ratio "
            f"{rounds[-1]['ratio']:.2f}x",
            flush=True,
        )
    peer.close()
    return {
        "ours_tokens_per_s": statistics.median(n_tokens / r["ours_s"] for r in rounds),
        "minicons_tokens_per_s": statistics.median(n_tokens / r["peer_s"] for r in rounds),
        "ratios": [r["ratio"] for r in rounds],
        "ratio": statistics.median(r["ratio"] for r in rounds),
        "minicons_threads": [r["threads"] for r in rounds],
        "max_abs_diff_bits": max_diff,
        "n_tokens": n_tokens,
    }


def packed_text(
    args: argparse.Namespace, scorer: score.Scorer, params, tok: tokenizer_lib.Tokenizer, cfg: ModelConfig, seq_len: int
) -> dict:
    """(b) packed held-out text (disjoint windows of the dev stream): tokens/s and MFU of the forward pass."""
    text_ids: list[int] = []
    for f in sorted((DATA / "babylm_dev").glob("*.dev")):
        for e in tok.encode_batch([ln for ln in f.read_text().splitlines() if ln.strip()]):
            text_ids += [tokenizer_lib.EOS_ID] + e
    text_ids = text_ids[: args.text_windows * seq_len + 1]
    text_wins = score.windows(0, text_ids[1:], "eot_context", seq_len)
    packed, batches = scorer.place(score.pack(text_wins, seq_len))
    scorer.logprobs(params, packed, batches)
    t_text, peaks = [], []
    for _ in range(args.repeats):  # the matmul peak is measured in every round, beside the timed pass
        t_text += median_time(lambda: scorer.logprobs(params, packed, batches), 1)
        peaks.append(metrics.measure_matmul_peak("float32") * jax.device_count())
    text_tps = packed.num_tokens / statistics.median(t_text)
    forward_flops = flops_per_token(cfg, seq_len, backward=False)  # scoring is a forward pass
    peak = max(peaks)  # MFU against the best peak seen
    return {"matmul_peak_flops": peak, "text_tokens_per_s": text_tps, "mfu": text_tps * forward_flops / peak}


def seconds_per_checkpoint(args: argparse.Namespace, workdir: pathlib.Path, sentences: list[str]) -> float:
    """(c) seconds per checkpoint of the batch job, restore included, start-up excluded."""
    sent_file = workdir / "sentences.txt"
    sent_file.write_text("\n".join(sentences) + "\n")
    run = [score.RunSpec("bench", workdir)]

    def job(steps: list[int]) -> float:
        out = workdir / "score_out"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        s = score.score_job(
            score.ScoreConfig(
                run=run, out=out, kind="text", eval=[str(sent_file)], steps=steps, batch_rows=args.batch_rows
            )
        )
        assert len(s.scored) == len(steps), s
        return time.perf_counter() - t0

    all_steps = [100 * i for i in range(args.checkpoints)]
    t_one = statistics.median(job(all_steps[:1]) for _ in range(2))
    t_all = job(all_steps)
    return (t_all - t_one) / max(1, len(all_steps) - 1)


def main() -> None:
    args = _parse_args()
    if args.side:
        return common.serve(minicons_side(args))

    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg, tok = make_bench_run(workdir, args.checkpoints)
    seq_len = 128
    hf_dir = workdir / "hf_step0"
    if not (hf_dir / export.EXPORT_INFO).exists():
        export.export_checkpoint(workdir, 0, hf_dir, overwrite=True)

    sentences = aochildes_lines(args.sentences)

    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1}))
    scorer = score.Scorer(cfg, mesh, args.batch_rows)
    params = checkpoints.restore_params(workdir, 0, scorer.abstract_params)
    print(f"machine: {common.machine('torch', 'transformers', 'minicons')}", flush=True)
    r = sentences_vs_minicons(args, scorer, params, sentences, tok, seq_len)
    r.update(packed_text(args, scorer, params, tok, cfg, seq_len))
    per_ckpt = seconds_per_checkpoint(args, workdir, sentences)
    r["checkpoints_per_min"] = 60 / per_ckpt
    print_results(r, cfg, len(sentences), per_ckpt, args.repeats)


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "babyjax_bench_score"))
    ap.add_argument("--sentences", type=int, default=2000)
    ap.add_argument("--peer_batch", type=int, default=64)
    ap.add_argument("--batch_rows", type=int, default=0, help="0: babyjax.score's default (8 rows on CPU)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--checkpoints", type=int, default=5)
    ap.add_argument("--text_windows", type=int, default=256, help="128-token windows of held-out text")
    ap.add_argument("--side", choices=["minicons"], help=argparse.SUPPRESS)  # the peer's own process
    return ap.parse_args()


def print_results(r: dict, cfg: ModelConfig, num_sentences: int, per_ckpt: float, repeats: int) -> None:
    """The table of (a), (b) and (c), the run's settings, and every figure as one line of JSON."""
    n_tokens = r["n_tokens"]
    rows = [
        (
            "short sentences (aochildes, eot_context)",
            f"{r['ours_tokens_per_s']:,.0f} tok/s",
            f"{r['minicons_tokens_per_s']:,.0f} tok/s (minicons)",
            common.spread(r["ratios"]) + " x",
        ),
        (
            "packed held-out text (128-token windows)",
            f"{r['text_tokens_per_s']:,.0f} tok/s",
            f"MFU {100 * r['mfu']:.0f}%",
            "",
        ),
        (
            "checkpoints scored per minute (restore incl.)",
            f"{60 / per_ckpt:.1f} /min",
            f"{per_ckpt:.2f} s each, {n_tokens:,} tokens",
            "",
        ),
    ]
    print(
        f"\ndevice: {jax.devices()[0].device_kind} x {jax.device_count()}, "
        f"minicons' torch threads per round (the faster of 1, 2): {r['minicons_threads']}, "
        f"model {cfg.style} {cfg.num_layers}x{cfg.d_model} vocab {cfg.vocab_size}, {num_sentences} sentences, "
        f"{n_tokens} tokens; matmul peak {r['matmul_peak_flops'] / 1e9:.0f} GFLOP/s; medians of {repeats}"
    )
    print(f"babyjax vs minicons surprisal: max |difference| {r['max_abs_diff_bits']:.2e} bits")
    print(f"{'what':48s} {'babyjax':>16s} {'peer / detail':>34s}  ratio")
    for row in rows:
        print(f"{row[0]:48s} {row[1]:>16s} {row[2]:>34s}  {row[3]}")
    keys = (
        "ours_tokens_per_s",
        "minicons_tokens_per_s",
        "ratio",
        "ratios",
        "minicons_threads",
        "matmul_peak_flops",
        "text_tokens_per_s",
        "mfu",
        "checkpoints_per_min",
        "max_abs_diff_bits",
    )
    print(json.dumps({k: r[k] for k in keys}))


if __name__ == "__main__":
    main()

"""Input pipeline throughput alone (no model): tokens/s of batches from the Grain loader, on this machine.

Prepares the BabyLM sample (TFDS, ArrayRecord), trains the bench tokenizer (16,384 pieces), tokenizes the train
split once (cached) and then times batches of 32 x 128 tokens, the bench config (configs/bench.py, docs/benchmarks.md):
numpy batches in both packing modes, and global jax.Arrays on a one-device mesh. Prints the machine, then per pipeline
the median (min-max) over repeats; the last column is the median's ratio to the rate the bench model's train step
consumes tokens (--consume, about 3,000 tokens/s on a 2-core CPU).

  python benchmarks/bench_data.py [--data ../shared/data/babylm_sample] [--batches 300] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common


def main() -> None:
    args = _parse_args()
    import jax
    import numpy as np
    from jax.sharding import Mesh

    c, tok = _prepare(args)
    mesh = Mesh(np.array(jax.devices()[:1]).reshape(1, 1, 1), ("data", "fsdp", "tensor"))
    cases = {
        "pack, numpy": {"packing": "pack"},
        "chunk, numpy": {"packing": "chunk"},
        "pack, global jax.Array": {"packing": "pack", "mesh": mesh},
    }
    print(f"\nbatches of {args.batch} x {args.seq_len} tokens, {args.batches} batches x {args.repeats} repeats")
    print(f"{'pipeline':<26}{'tokens/s: median (min-max over repeats)':>48}{'ms / batch':>12}{'x train step':>14}")
    for name, kw in cases.items():
        cfg = c.copy_and_resolve_references()
        cfg.packing = kw["packing"]
        rates = _rates(cfg, tok, args, kw.get("mesh"))
        rate = statistics.median(rates)
        print(
            f"{name:<26}{common.spread(rates, '{:,.0f}'):>48}{1e3 * args.batch * args.seq_len / rate:>12.2f}"
            f"{rate / args.consume:>14,.0f}"
        )


def _parse_args() -> argparse.Namespace:
    root = pathlib.Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(root.parent / "shared" / "data" / "babylm_sample"))
    ap.add_argument("--workdir", default="", help="where to prepare data and the tokenizer (default: a temp dir)")
    ap.add_argument("--vocab", type=int, default=16_384)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--consume", type=float, default=3000.0, help="tokens/s the bench model's train step consumes")
    return ap.parse_args()


def _prepare(args: argparse.Namespace) -> tuple[Any, Any]:
    """The one-off work, timed and printed with the machine: prepare the data, train the tokenizer, tokenize and
    cache the train split. Returns (the data config, the tokenizer)."""
    import jax

    from babyjax.data import babylm, pipeline
    from babyjax.data import tokenizer as T
    from configs.base import get_config

    work = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="bench_data_"))
    c = get_config().data
    c.dir, c.tfds_dir, c.seq_len = args.data, str(work / "tfds"), args.seq_len
    tc = get_config().tokenizer
    tc.vocab_size = args.vocab

    t0 = time.perf_counter()
    sources = babylm.prepare(c)
    t_prepare = time.perf_counter() - t0
    t0 = time.perf_counter()
    tok = T.get_tokenizer(tc, sources["train"], work / "run")
    t_tok = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = pipeline.load_split_tokens(c, tok, "train")
    t_stream = time.perf_counter() - t0

    print(f"machine: {common.machine('grain', 'sentencepiece')}; jax on {jax.devices()[0].platform}")
    print(
        f"data: {args.data} train split, {len(sources['train']):,} lines, {data.num_words:,} words, "
        f"{data.num_tokens:,} tokens (vocab {tok.vocab_size:,})"
    )
    print(
        f"one-off: prepare {t_prepare:.1f} s (reused if already there), tokenizer {t_tok:.1f} s, "
        f"tokenize + cache the split {t_stream:.1f} s ({data.num_tokens / t_stream:,.0f} tokens/s)"
    )
    return c, tok


def _rates(cfg: Any, tok: Any, args: argparse.Namespace, mesh: Any) -> list[float]:
    """Tokens/s of `args.repeats` loaders (seeds 0, 1, ...), each timed over `args.batches` batches."""
    import numpy as np

    from babyjax.data import pipeline

    rates = []
    for r in range(args.repeats):
        loader = pipeline.make_loader(cfg, tok, split="train", global_batch_size=args.batch, seed=r, mesh=mesh)
        next(loader)  # start-up (threads, first batch) is not throughput
        n, t0 = 0.0, time.perf_counter()
        for _, b in zip(range(args.batches), loader):
            n += float(np.asarray(b["num_tokens"]).sum())
        rates.append(n / (time.perf_counter() - t0))
    return rates


if __name__ == "__main__":
    main()

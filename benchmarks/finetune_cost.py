"""The compute of the whole seven-task fine-tuning recipe on one checkpoint of a config, estimated from its FLOPs
(babyjax.model.transformer.flops_per_token, the convention of every figure in docs/benchmarks.md):

    python benchmarks/finetune_cost.py --tokenizer runs/tiny/tokenizer.model --config strict_small --tflops 125

Per task: the recipe's training rows x epochs, each row's tokens as babyjax.finetune.tasks.encode gives them (cut at
512), training at 3 forwards per token (forward and backward) and one forward per validation token each epoch. The
BoolQ and MultiRC training files are not in ../shared/data: their SuperGLUE sizes (9,427 and 27,243 rows) are
assumed, with the tokens per row of their validation files. The tokenizer given stands in for the config's own (a
smaller vocabulary cuts words into more pieces: an upper bound on the tokens). --tflops: the accelerator's sustained
rate assumed (for example an A100 at 40% of its 312 bf16 TFLOP/s)."""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_babylm2025 import DATA

ASSUMED_TRAIN_ROWS = {"boolq": 9427, "multirc": 27243}  # SuperGLUE's train splits


def task_tokens(tok, task: str, seq_len: int, masked: bool) -> tuple[int, float, int]:
    """(training rows, mean tokens per training row, validation tokens) of one task."""
    from babyjax.finetune.tasks import encode, read_examples

    folder = DATA / "glue_filtered"
    valid = encode(tok, read_examples(folder / f"{task}.valid.jsonl", task), seq_len, masked)
    if (folder / f"{task}.train.jsonl").is_file():
        train = encode(tok, read_examples(folder / f"{task}.train.jsonl", task), seq_len, masked)
        return len(train), sum(map(len, train)) / len(train), sum(map(len, valid))
    return ASSUMED_TRAIN_ROWS[task], sum(map(len, valid)) / len(valid), sum(map(len, valid))


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a.add_argument("--tokenizer", required=True)
    a.add_argument("--config", default="strict_small")
    a.add_argument("--seq_len", type=int, default=512)
    a.add_argument("--tflops", type=float, default=125.0)
    args = a.parse_args()
    from babyjax.data.tokenizer import Tokenizer
    from babyjax.finetune.tasks import RECIPE_TASKS, TASKS
    from babyjax.model.transformer import ModelConfig, flops_per_token

    c = importlib.import_module(f"configs.{args.config}").get_config()
    cfg = ModelConfig.from_config(c.model, int(c.tokenizer.vocab_size))
    tok = Tokenizer(args.tokenizer)
    total = 0.0
    print("| task | training rows | epochs | tokens per row | training tokens | PFLOP |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for task in RECIPE_TASKS:
        rows, per_row, valid_tokens = task_tokens(tok, task, args.seq_len, cfg.encoder)
        epochs = TASKS[task].epochs
        steps_rows = rows - rows % TASKS[task].batch_size  # the last partial batch is dropped
        train_tokens = steps_rows * per_row * epochs
        length = int(round(per_row))
        flops = train_tokens * flops_per_token(cfg, length) + epochs * valid_tokens * flops_per_token(
            cfg, length, backward=False
        )
        total += flops
        print(f"| {task} | {rows:,} | {epochs} | {per_row:.0f} | {train_tokens:,.0f} | {flops / 1e15:.1f} |")
    hours = total / (args.tflops * 1e12) / 3600
    print(f"\n{args.config}: {total / 1e15:.0f} PFLOP in all; {hours:.2f} h at a sustained {args.tflops:g} TFLOP/s")


if __name__ == "__main__":
    main()

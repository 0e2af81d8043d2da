"""Fine-tuning by the BabyLM 2025 recipe: babyjax against the official pipeline's own script on the same checkpoint,
side by side in one run: time, and whether the two give the same results over fine-tuning seeds (docs/finetune.md,
docs/benchmarks.md, docs/validation.md).

    python benchmarks/bench_finetune.py --pipeline_python PIPE/bin/python --pipeline_src PIPELINE --tasks rte
    python benchmarks/bench_finetune.py ... --config roberta_tiny --tasks rte,wsc --seeds 1,2,3,4,5

One run of `--config` (configs/tiny.py, a causal decoder, or configs/roberta_tiny.py, a masked encoder) is trained
under <workdir>/runs unless given as --run WORKDIR, and its last checkpoint exported with `python -m babyjax.export`.
Each round runs, in alternating order:
  babyjax:  one `python -m babyjax.finetune` process over every task and seed (compiling included), --pool;
  pipeline: one `python -m evaluation_pipeline.finetune.run` per task and seed, as eval_finetuning.sh runs it (its
            recipe, --sequence_length as --seq_len, no --save), through benchmarks/pipeline_finetune_losses.py,
            which records each epoch's losses (one extra cross-entropy of each batch's logits).
Both sides read position 0 (the pipeline's default pooling), or with --pool last babyjax the last real token and the
pipeline, with --take_final, the batch's last column (a padding column in shorter rows, which under a decoder's causal
attention has read the whole row): the same cost (every column computed), not quite the same classifier.
The seeds draw different heads and shuffles on the two sides, so the comparison is statistical: for each task,
|difference of the mean validation metric over seeds| <= max(sd of either side, 1 / validation rows), and the same for
each epoch's mean train and validation loss (with the sd of that epoch's loss). Printed per task, with the time ratio
(median and range over rounds), and with the permutation p-value of the worst epoch's gap (the seeds split between the
sides in every other way), which tells a systematic gap from the one that 5 seeds a side show by chance. Each task's
losses and metrics per seed are kept as <workdir>/bench_finetune_<run>_<task>_round<r>.json.
Needs the pipeline's requirements (transformers 4.51.3, torch, scikit-learn, wandb) and its source (bf55c11).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import pathlib
import statistics
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import common
from benchmarks.bench_babylm2025 import DATA, OFFLINE, ensure_export, last_step, timed_process

GLUE = DATA / "glue_filtered"


def ensure_run(args: argparse.Namespace) -> pathlib.Path:
    """The run given, or configs/<config>.py trained under --workdir unless done already."""
    if args.run:
        return pathlib.Path(args.run).resolve()
    workdir = pathlib.Path(args.workdir) / "runs" / f"{args.config}_ft"
    config = json.loads((workdir / "config.json").read_text()) if (workdir / "config.json").exists() else None
    if config is None or last_step(workdir) < config["train"]["num_steps"]:
        workdir.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(ROOT / "launch" / "train.py"), f"--config={ROOT / 'configs' / args.config}.py"]
        timed_process([*cmd, f"--workdir={workdir}"], workdir.parent / f"train_{args.config}_ft.log", cwd=ROOT)
    return workdir


def babyjax_side(workdir: pathlib.Path, step: int, out: pathlib.Path, args) -> float:
    cmd = [sys.executable, "-m", "babyjax.finetune", f"--run=model={workdir}", f"--steps={step}", f"--out={out}"]
    cmd += [f"--data_dir={GLUE}", f"--tasks={','.join(args.tasks)}", f"--seeds={','.join(map(str, args.seeds))}"]
    cmd += [f"--pool={args.pool}", f"--seq_len={args.seq_len}"]
    cmd += [f"--num_epochs={args.epochs}"] if args.epochs else []
    return timed_process(cmd, out.parent / "babyjax.log", cwd=ROOT)


def pipeline_command(export: pathlib.Path, task: str, seed: int, out: pathlib.Path, args) -> list[str]:
    """eval_finetuning.sh's command for one task (its recipe), with --seed and --sequence_length."""
    from babyjax.finetune.tasks import TASKS

    t = TASKS[task]
    cmd = [args.pipeline_python, str(ROOT / "benchmarks" / "pipeline_finetune_losses.py"), str(out / "losses.json")]
    cmd += ["--", f"--model_name_or_path={export}", f"--task={task}", f"--num_labels={t.num_labels}"]
    cmd += [f"--{k}_data={GLUE / f'{task}.{s}.jsonl'}" for k, s in (("train", "train"), ("valid", "valid"))]
    cmd += [f"--predict_data={GLUE / f'{task}.valid.jsonl'}", f"--batch_size={t.batch_size}"]
    cmd += ["--learning_rate=3e-5", f"--num_epochs={args.epochs or t.epochs}", f"--sequence_length={args.seq_len}"]
    cmd += [f"--results_dir={out / 'results'}", "--metrics", *t.metrics, f"--metric_for_valid={t.metric_for_valid}"]
    return [*cmd, f"--seed={seed}", *(["--take_final"] if args.pool == "last" else [])]


def pipeline_side(export: pathlib.Path, out: pathlib.Path, args) -> float:
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(args.pipeline_src), "WANDB_MODE": "disabled"}
    env.pop("VIRTUAL_ENV", None)
    seconds = 0.0
    for task in args.tasks:
        for seed in args.seeds:
            unit = out / task / f"seed_{seed}"
            unit.mkdir(parents=True)
            cmd = pipeline_command(export, task, seed, unit, args)
            seconds += timed_process(cmd, unit / "log.txt", cwd=args.pipeline_src, env=env)
    return seconds


def sides(ours: pathlib.Path, theirs: pathlib.Path, export: pathlib.Path, task: str, seeds) -> dict:
    """{side: {"metric": [per seed], "train_loss": [[per epoch] per seed], "valid_loss": ...}} of one task."""
    import pandas as pd

    from babyjax.finetune.tasks import TASKS

    metric, table = TASKS[task].metric_for_valid, pd.read_csv(ours / "finetune.csv")
    out = {"babyjax": {"metric": [], "train_loss": [], "valid_loss": []}, "pipeline": {}}
    for seed in seeds:
        rows = table[(table.task == task) & (table.seed == seed)].sort_values("epoch")
        out["babyjax"]["metric"].append(float(rows[rows.best][metric].iloc[0]))
        for k in ("train_loss", "valid_loss"):
            out["babyjax"][k].append(rows[k].tolist())
    p = out["pipeline"] = {"metric": [], "train_loss": [], "valid_loss": []}
    for seed in seeds:
        unit = theirs / task / f"seed_{seed}"
        results = (unit / "results" / export.name / "main" / "finetune" / task / "results.txt").read_text()
        p["metric"].append(float(dict(line.split(": ") for line in results.splitlines())[metric]))
        losses = json.loads((unit / "losses.json").read_text())
        for k in ("train_loss", "valid_loss"):
            p[k].append([e[k] for e in losses])
    return out


def sd(values) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def loss_gaps(b: dict, p: dict) -> list[float]:
    """Each epoch's |difference of the mean loss| over max(sd of either side), train and validation loss."""
    gaps = []
    for k in ("train_loss", "valid_loss"):
        for e in range(min(len(b[k][0]), len(p[k][0]))):
            xb, xp = [r[e] for r in b[k]], [r[e] for r in p[k]]
            gaps.append(abs(statistics.mean(xb) - statistics.mean(xp)) / max(sd(xb), sd(xp), 1e-12))
    return gaps


def permutation_p(b: dict, p: dict) -> float:
    """How often the worst epoch gap is at least the observed one when the seeds are split between the two sides in
    every other way (each seed keeps its whole loss curve): small if the gap is systematic, not if it is chance."""
    pooled = [
        {k: side[k][i] for k in ("train_loss", "valid_loss")} for side in (b, p) for i in range(len(side["metric"]))
    ]
    n, observed, hits, total = len(b["metric"]), max(loss_gaps(b, p)), 0, 0
    for chosen in itertools.combinations(range(len(pooled)), n):
        left = [pooled[i] for i in chosen]
        right = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        split = [{k: [r[k] for r in rows] for k in ("train_loss", "valid_loss")} for rows in (left, right)]
        hits, total = hits + (max(loss_gaps(*split)) >= observed - 1e-12), total + 1
    return hits / total


def verdict(task: str, s: dict, n_valid: int) -> tuple[str, bool]:
    """One line per task: both sides' mean and sd of the metric, the epochs whose mean loss gap is within its bound,
    the worst gap and its permutation p-value."""
    b, p = s["babyjax"], s["pipeline"]
    bound = max(sd(b["metric"]), sd(p["metric"]), 1 / n_valid)
    gap = abs(statistics.mean(b["metric"]) - statistics.mean(p["metric"]))
    gaps = loss_gaps(b, p)
    ok = gap <= bound and max(gaps) <= 1.0
    line = (
        f"{task}: babyjax {statistics.mean(b['metric']):.3f} +- {sd(b['metric']):.3f}, the pipeline "
        f"{statistics.mean(p['metric']):.3f} +- {sd(p['metric']):.3f} over {len(b['metric'])} seeds: |diff| "
        f"{gap:.3f} {'<=' if gap <= bound else '>'} bound {bound:.3f}; epoch losses within their bound "
        f"{sum(g <= 1.0 for g in gaps)} of {len(gaps)}, worst {max(gaps):.2f} bounds (permutation p "
        f"{permutation_p(b, p):.3f}) -> {'same' if ok else 'DIFFERENT'}"
    )
    return line, ok


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a.add_argument("--pipeline_python", required=True)
    a.add_argument("--pipeline_src", required=True, type=pathlib.Path)
    a.add_argument("--workdir", default=tempfile.gettempdir())
    a.add_argument("--config", default="tiny", choices=("tiny", "roberta_tiny"))
    a.add_argument("--run", default="", help="a trained run's workdir instead of training --config")
    a.add_argument("--tasks", default="rte", type=lambda s: s.split(","))
    a.add_argument("--seeds", default="42", type=lambda s: [int(x) for x in s.split(",")])
    a.add_argument("--seq_len", type=int, default=128)
    a.add_argument("--epochs", type=int, default=0, help="0: the recipe's")
    a.add_argument("--rounds", type=int, default=1)
    a.add_argument("--pool", default="first", choices=("first", "last"), help="last: the pipeline's --take_final")
    args = a.parse_args()
    workdir = ensure_run(args)
    step = last_step(workdir)
    export = ensure_export(f"{workdir.name}", workdir, step, argparse.Namespace(workdir=args.workdir))
    print(common.machine("jax", "numpy"), flush=True)
    ratios, ok = [], True
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for r in range(args.rounds):
            base = pathlib.Path(tmp) / f"round{r}"
            base.mkdir()
            ours, theirs = base / "babyjax" / "out", base / "pipeline"
            ours.parent.mkdir()
            times = common.in_turn(
                {"babyjax": functools.partial(babyjax_side, workdir, step, ours, args),
                 "pipeline": functools.partial(pipeline_side, export, theirs, args)}, r
            )  # fmt: skip
            ratios.append(times["pipeline"] / times["babyjax"])
            print(f"round {r}: babyjax {times['babyjax']:.1f} s, the pipeline {times['pipeline']:.1f} s, "
                  f"ratio {ratios[-1]:.2f}x", flush=True)  # fmt: skip
            for task in args.tasks:
                n_valid = len((GLUE / f"{task}.valid.jsonl").read_text().splitlines())
                both = sides(ours, theirs, export, task, args.seeds)
                kept = pathlib.Path(args.workdir) / f"bench_finetune_{workdir.name}_{task}_round{r}.json"
                kept.write_text(json.dumps(both))
                line, same = verdict(task, both, n_valid)
                print(f"round {r}: {line}", flush=True)
                ok &= same
    same = "the same" if ok else "DIFFERENT"
    print(f"{args.config}, {','.join(args.tasks)}, seq_len {args.seq_len}, {len(args.seeds)} seeds: ratio "
          f"{common.spread(ratios)}x; results {same}")  # fmt: skip


if __name__ == "__main__":
    main()

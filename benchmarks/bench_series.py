"""What a dense checkpoint series costs, and what scoring it costs, on the tiny run (docs/benchmarks.md).

Each round trains the tiny run twice with the same `launch/train.py --config configs/tiny.py` command (same data,
tokenizer, steps and resume checkpoints), once with no series (`ckpt.schedule=none`, the final step only) and once with
Chang et al.'s series, then scores that series' every checkpoint on a Chang-style tokens-in-context sample (333 x 15
targets, 128-token contexts: the chang_tiny study's) with `python -m babyjax.score --kind tokens`. Printed per round
and as median (min-max):
  - the series overhead, in-process: the train log's "loop:" line, from the first step's dispatch (after compiling) to
    the last save, series vs none; and the same for the whole command's wall time;
  - scoring / training: the scoring command's wall time over the series run's, and in-process (the score job's own
    seconds over the train loop's).

  python benchmarks/bench_series.py [--rounds 3] [--steps 600]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common

ROOT = pathlib.Path(__file__).resolve().parents[1]


def command(cmd: list[str], env: dict, pattern: str) -> tuple[float, float]:
    """(wall seconds of `cmd`, the float its log's `pattern` captures)."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed:\n{done.stderr[-3000:]}")
    found = re.findall(pattern, done.stdout + done.stderr)
    if not found:
        raise SystemExit(f"no {pattern!r} in the output of {' '.join(cmd[:4])} ...")
    return wall, float(found[-1])


def train(workdir: pathlib.Path, schedule: str, steps: int, tokenizer: str, env: dict) -> tuple[float, float]:
    cmd = [
        sys.executable,
        str(ROOT / "launch" / "train.py"),
        "--config",
        str(ROOT / "configs" / "tiny.py"),
        "--workdir",
        str(workdir),
        f"--config.ckpt.schedule={schedule}",
        f"--config.train.num_steps={steps}",
        "--config.train.progress_bar=False",
        f"--config.tokenizer.path={tokenizer}",
    ]
    return command(cmd, env, r"loop: ([0-9.]+) s from the first step")


def score(workdir: pathlib.Path, sample: pathlib.Path, out: pathlib.Path, env: dict) -> tuple[float, float]:
    cmd = [
        sys.executable,
        "-m",
        "babyjax.score",
        f"--run=tiny={workdir}",
        "--kind=tokens",
        f"--eval={sample}",
        f"--out={out}",
    ]
    return command(cmd, env, r"scored \d+ checkpoints \(\d+ tokens each\) in ([0-9.]+)s")


def prepare(tmp: pathlib.Path, env: dict) -> tuple[str, pathlib.Path]:
    """One short run prepares the dataset and the tokenizer every timed run reuses; the token sample is drawn from
    its held-out split."""
    warm = tmp / "warm"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "launch" / "train.py"),
            "--config",
            str(ROOT / "configs" / "tiny.py"),
            "--workdir",
            str(warm),
            "--config.ckpt.schedule=none",
            "--config.train.num_steps=2",
            "--config.optim.warmup_steps=0",
            "--config.train.progress_bar=False",
        ],
        check=True,
        env=env,
        cwd=ROOT,
        capture_output=True,
    )
    sample = tmp / "token_sample.npz"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babyjax.data.evalsets",
            "tokens",
            "--workdir",
            str(warm),
            "--out",
            str(sample),
            "--num_sequences",
            "333",
            "--num_positions",
            "15",
        ],
        check=True,
        env=env,
        cwd=ROOT,
        capture_output=True,
    )
    return str(warm / "tokenizer.model"), sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=600)
    args = ap.parse_args()
    print(f"machine: {common.machine('orbax.checkpoint')}", flush=True)
    env = dict(os.environ)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        env.setdefault("BABYJAX_TFDS_DIR", str(tmp / "tfds"))
        tokenizer, sample = prepare(tmp, env)
        for r in range(args.rounds):
            row = {
                "none": train(tmp / f"none{r}", "none", args.steps, tokenizer, env),
                "chang": train(tmp / f"chang{r}", "chang", args.steps, tokenizer, env),
            }
            row["saves"] = len(json.loads((tmp / f"chang{r}" / "checkpoints" / "series.json").read_text()))
            row["score"] = score(tmp / f"chang{r}", sample, tmp / f"scores{r}", env)
            rows.append(row)
            (nw, nl), (cw, cl), (sw, sl) = row["none"], row["chang"], row["score"]
            print(
                f"round {r + 1}: train loop {nl:.1f} s (no series) vs {cl:.1f} s ({row['saves']} checkpoints), "
                f"{cl / nl - 1:+.1%}; wall {nw:.1f} vs {cw:.1f} s, {cw / nw - 1:+.1%}; scoring the series "
                f"{sl:.1f} s in the job, {sw:.1f} s wall: {sw / cw:.2f} x the series run's wall time",
                flush=True,
            )
    pct = "{:+.1%}"
    print(f"\ntiny run, {args.steps} steps, {rows[0]['saves']} series checkpoints, {len(rows)} rounds")
    print(
        "series overhead, in-process (first step to last save):",
        common.spread([r["chang"][1] / r["none"][1] - 1 for r in rows], pct),
    )
    print("series overhead, whole command:", common.spread([r["chang"][0] / r["none"][0] - 1 for r in rows], pct))
    print(
        "scoring the series / training it, whole commands:",
        common.spread([r["score"][0] / r["chang"][0] for r in rows]),
        "x",
    )
    print(
        "scoring / training, in-process (score job / train loop):",
        common.spread([r["score"][1] / r["chang"][1] for r in rows]),
        "x",
    )
    print(
        "checkpoints scored per minute (in the job):",
        common.spread([60 * r["saves"] / r["score"][1] for r in rows], "{:.0f}"),
    )


if __name__ == "__main__":
    main()

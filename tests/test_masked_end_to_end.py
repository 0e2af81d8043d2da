"""End to end for the hybrid path, the way a user runs it: train the tiny GPT-BERT config (an LTG-BERT-style
network, a quarter of the rows causal, the rest masked next-token prediction) on the real BabyLM sample with a dense
series, kill it and resume, sample tokens in context, score them and BLiMP pairs with MNTP (the default) and causally,
generate text, and write the analysis report."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time

import ml_collections
import numpy as np
import pandas as pd
import pytest

from tests.test_end_to_end import BLIMP, NUM_STEPS, OVERRIDES, ROOT, VOCAB, _sh

pytestmark = pytest.mark.slow


def _kill_then_resume(args: list[str], tmp, timings: dict) -> None:
    """Start training, SIGKILL it once a resume checkpoint exists (before the run's end), then run the same command
    to the end: it must resume from that checkpoint."""
    import os

    env = {
        **os.environ,
        "BABYJAX_TFDS_DIR": str(tmp / "tfds"),
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    t0 = time.time()
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    resume = tmp / "runs" / "hybrid" / "checkpoints" / "resume"
    while proc.poll() is None and not (resume.exists() and any(p.name.isdigit() for p in resume.iterdir())):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "training ended before it could be killed"
    timings["train"] = time.time() - t0
    log: list[str] = []
    _sh(args, tmp, timings, "train", log=log)
    assert "resumed from step" in log[0], log[0][-3000:]


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("hybrid")
    runs, scores, report, timings = tmp / "runs", tmp / "scores", tmp / "report", {}
    args = [
        "launch/train.py",
        "--config",
        "configs/gpt_bert_tiny.py",
        "--workdir",
        str(runs / "hybrid"),
        *OVERRIDES,
        "--config.ckpt.resume_every=16",
    ]
    _kill_then_resume(args, tmp, timings)
    from babyjax.data import evalsets
    from babyjax.data.tokenizer import Tokenizer

    config = ml_collections.ConfigDict(json.loads((runs / "hybrid" / "config.json").read_text()))
    config.data.tfds_dir = str(tmp / "tfds")
    sample = tmp / "dev_tokens.npz"
    evalsets.make_token_sample(
        config.data,
        Tokenizer(runs / "hybrid" / "tokenizer.model"),
        sample,
        split="dev",
        num_sequences=100,
        seq_len=64,
        num_positions=5,
    )
    run_flag = f"--run=hybrid={runs / 'hybrid'}"
    _sh(
        ["-m", "babyjax.score", run_flag, "--kind=tokens", f"--eval={sample}", f"--out={scores / 'tokens'}"],
        tmp,
        timings,
        "score",
    )
    blimp = [f"--eval={shared_data / 'blimp' / f}" for f in BLIMP]
    for scoring in ("mntp", "causal"):
        _sh(
            [
                "-m",
                "babyjax.score",
                run_flag,
                "--kind=pairs",
                *blimp,
                "--limit=100",
                f"--scoring={scoring}",
                f"--out={scores / f'pairs_{scoring}'}",
            ],
            tmp,
            timings,
            "score",
        )
    _sh(["-m", "babyjax.generate", "--workdir", str(runs / "hybrid")], tmp, timings, "generate")
    _sh(
        [
            "-m",
            "babyjax.analyze",
            str(scores / "tokens"),
            str(scores / "pairs_mntp"),
            str(scores / "pairs_causal"),
            "--out",
            str(report),
            "--runs-dir",
            str(runs),
            "--no-progress",
        ],
        tmp,
        timings,
        "analyze",
    )
    print("hybrid end-to-end timings (s):", {k: round(v, 1) for k, v in timings.items()})
    return {"runs": runs, "scores": scores, "report": report}


def test_hybrid_run_trains_both_objectives_and_resumes(hybrid):
    from babyjax.checkpoints import series as checkpoints
    from babyjax.train import metrics

    rows = [r for r in metrics.read_metrics(hybrid["runs"] / "hybrid") if "loss" in r]
    assert rows[-1]["step"] == NUM_STEPS and all(0 <= r["accuracy"] <= 1 for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"] - 1.0  # both objectives' loss falls
    steps = [e["step"] for e in checkpoints.load_series_index(hybrid["runs"] / "hybrid")]
    assert len(steps) >= 30 and steps[-1] == NUM_STEPS
    assert (hybrid["runs"] / "hybrid" / "generations.json").is_file()  # hybrid runs generate (causally)


def test_both_scoring_kinds_and_the_report(hybrid):
    meta = {
        name: json.loads((hybrid["scores"] / name / "meta.json").read_text())
        for name in ("tokens", "pairs_mntp", "pairs_causal")
    }
    assert [m["scoring"] for m in meta.values()] == ["mntp", "mntp", "causal"]
    s = np.load(hybrid["scores"] / "tokens" / "runs" / "hybrid" / "surprisal.npy")
    assert s.shape[1] == 500 and np.isfinite(s).all() and float(s[-1].mean()) < math.log2(VOCAB) - 1.0
    for name in ("pairs_mntp", "pairs_causal"):
        pairs = pd.read_csv(hybrid["scores"] / name / "pairs.csv")
        assert set(pairs["field"]) == {"morphology", "syntax"} and pairs["accuracy"].between(0, 1).all()
    text = (hybrid["report"] / "report.md").read_text()
    for section in ("## Token learning curves", "### Trajectory classes (Xia", "## Minimal pairs", "## Training loss"):
        assert section in text, section
    assert "hybrid (25% causal rows, mntp 22.5% span)" in text
    assert "| mntp |" in text and "| causal |" in text

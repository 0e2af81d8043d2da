"""End to end, the way a user runs it (README quick start): train two tiny seeds on the real BabyLM sample with a
dense Chang et al. series, sample tokens in context from the dev split, score them and BLiMP / Zorro minimal pairs at
every checkpoint, generate text at a few checkpoints, and write the analysis report."""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys
import time

import ml_collections
import numpy as np
import pandas as pd
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

NUM_STEPS = 48
VOCAB = 512
# A run small enough for a test; the Chang et al. schedule scaled to 48 steps gives 35 checkpoints (the GAM of
# babyjax.analysis needs 26+ after step 0).
OVERRIDES = [
    f"--config.tokenizer.vocab_size={VOCAB}",
    "--config.model.num_layers=1",
    "--config.model.d_model=64",
    "--config.model.num_heads=2",
    "--config.model.mlp_dim=128",
    "--config.data.seq_len=64",
    "--config.model.max_len=64",
    "--config.data.max_train_lines=20000",
    "--config.train.batch_size=8",
    f"--config.train.num_steps={NUM_STEPS}",
    "--config.optim.warmup_steps=4",
    "--config.train.log_every=4",
    "--config.train.eval_every=24",
    "--config.train.eval_batches=2",
    "--config.train.progress_bar=False",
    "--config.ckpt.resume_every=1000",
    "--config.ckpt.schedule=chang",
    "--config.ckpt.chang_s0=1",
    "--config.ckpt.chang_s1=2",
    "--config.ckpt.chang_t1=50",
]
BLIMP = ("anaphor_number_agreement.jsonl", "passive_1.jsonl")  # fields morphology and syntax
ZORRO = ("agreement_subject_verb-across_relative_clause.txt",)
SECTIONS = [
    "## Token learning curves",
    "### Measures (Chang",
    "### Example learning curves",
    "### Trajectory classes (Xia",
    "### Measures vs. frequency",
    "### Word acquisition",
    "## Minimal pairs",
    "## Training loss",
    "## Generated text at checkpoints",
    "## Notes",
]


def _sh(
    args: list[str], tmp: pathlib.Path, timings: dict, name: str, timeout: int = 300, log: list | None = None
) -> str:
    """Run a command as a user would (cwd = repository root), fail with its output tail, and time it; its stdout
    (and its stderr, where the log goes, appended to `log`)."""
    env = {
        **os.environ,
        "BABYJAX_TFDS_DIR": str(tmp / "tfds"),
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    t0 = time.time()
    r = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    timings[name] = timings.get(name, 0.0) + time.time() - t0
    assert r.returncode == 0, f"{' '.join(args)}\n{(r.stdout + r.stderr)[-3000:]}"
    if log is not None:
        log.append(r.stderr)
    return r.stdout


@pytest.fixture(scope="module")
def study(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("e2e")
    runs, scores, report = tmp / "runs", tmp / "scores", tmp / "report"
    timings: dict[str, float] = {}
    for seed in (0, 1):
        _sh(
            [
                "launch/train.py",
                "--config",
                "configs/tiny.py",
                "--workdir",
                str(runs / f"seed{seed}"),
                *OVERRIDES,
                f"--config.seed={seed}",
            ],
            tmp,
            timings,
            "train",
        )

    # tokens in context from the dev split (Chang et al.): 200 rows of 64 tokens, 5 targets each
    from babyjax.data import evalsets
    from babyjax.data.tokenizer import Tokenizer

    t0 = time.time()
    config = ml_collections.ConfigDict(json.loads((runs / "seed0" / "config.json").read_text()))
    config.data.tfds_dir = str(tmp / "tfds")
    sample = tmp / "dev_tokens.npz"
    evalsets.make_token_sample(
        config.data,
        Tokenizer(runs / "seed0" / "tokenizer.model"),
        sample,
        split="dev",
        num_sequences=200,
        seq_len=64,
        num_positions=5,
    )
    timings["token sample"] = time.time() - t0

    run_flags = [f"--run=seed{s}={runs / f'seed{s}'}" for s in (0, 1)]
    _sh(
        ["-m", "babyjax.score", *run_flags, "--kind=tokens", f"--eval={sample}", f"--out={scores / 'tokens'}"],
        tmp,
        timings,
        "score",
    )
    pair_files = [shared_data / "blimp" / f for f in BLIMP] + [shared_data / "zorro" / f for f in ZORRO]
    _sh(
        [
            "-m",
            "babyjax.score",
            *run_flags,
            "--kind=pairs",
            *[f"--eval={f}" for f in pair_files],
            "--limit=200",
            f"--out={scores / 'pairs'}",
        ],
        tmp,
        timings,
        "score",
    )
    gen_out = _sh(["-m", "babyjax.generate", "--workdir", str(runs / "seed0")], tmp, timings, "generate")
    _sh(
        [
            "-m",
            "babyjax.analyze",
            str(scores / "tokens"),
            str(scores / "pairs"),
            "--out",
            str(report),
            "--runs-dir",
            str(runs),
            "--aoa-words",
            str(shared_data / "aoa" / "word_list.csv"),
            "--no-progress",
        ],
        tmp,
        timings,
        "analyze",
    )
    print("end-to-end timings (s):", {k: round(v, 1) for k, v in timings.items()})
    return {"runs": runs, "scores": scores, "report": report, "gen_stdout": gen_out}


def test_series_and_scores(study):
    from babyjax.checkpoints import series as checkpoints

    steps = [e["step"] for e in checkpoints.load_series_index(study["runs"] / "seed0")]
    assert len(steps) >= 30 and steps[0] == 0 and steps[-1] == NUM_STEPS
    meta = json.loads((study["scores"] / "tokens" / "meta.json").read_text())
    assert meta["kind"] == "tokens" and sorted(meta["runs"]) == ["seed0", "seed1"] and meta["num_tokens"] == 1000
    for run in ("seed0", "seed1"):
        s = np.load(study["scores"] / "tokens" / "runs" / run / "surprisal.npy")
        assert s.shape == (len(steps), 1000) and np.isfinite(s).all()
        # starts near chance, and the trained model predicts better than chance
        assert abs(float(s[0].mean()) - math.log2(VOCAB)) < 1.0
        assert float(s[-1].mean()) < math.log2(VOCAB) - 1.0


def test_report_sections_figures_and_tables(study):
    report = study["report"]
    text = (report / "report.md").read_text()
    for section in SECTIONS:
        assert section in text, section
    for png in [
        "tokens_example_curves.png",
        "tokens_xia_shares.png",
        "tokens_measures_vs_frequency.png",
        "tokens_word_aoa.png",
        "pairs_accuracy.png",
        "training_loss.png",
    ]:
        assert (report / png).stat().st_size > 5000, png
        assert f"]({png})" in text, png
    assert "_Not computed" not in text and "_No " not in text  # every section was filled

    table = pd.read_csv(report / "tokens_token_table.csv.gz")
    assert len(table) == 1000
    assert np.isfinite(table["final_surprisal"]).all() and np.isfinite(table["within_run_var"]).all()
    for measure in ("aoa_gam", "aoa_sigmoid", "forgettability", "cross_run_var"):
        assert np.isfinite(table[measure]).mean() > 0.8, measure
    # n-gram predictors read each target's context from the token sample, not from tokens.csv alone
    assert (table["5gram"] != table["unigram"]).mean() > 0.5
    assert "context is truncated" not in text
    # Chang et al.'s most robust direction already holds in a tiny run: frequent tokens end with lower surprisal
    rank = pd.read_csv(report / "tokens_spearman.csv").set_index(["measure", "predictor"])
    assert rank.loc[("final_surprisal", "unigram"), "spearman_rho"] < -0.3


def test_minimal_pairs_per_field(study):
    pairs = pd.read_csv(study["scores"] / "pairs" / "pairs.csv")
    assert set(zip(pairs["suite"], pairs["field"])) == {
        ("blimp", "morphology"),
        ("blimp", "syntax"),
        ("zorro", "agreement_subject_verb"),
    }
    assert set(pairs["run"]) == {"seed0", "seed1"} and pairs["accuracy"].between(0, 1).all()
    assert (pairs.groupby(["run", "paradigm"])["step"].nunique() >= 30).all()
    text = (study["report"] / "report.md").read_text()
    section = text.split("## Minimal pairs")[1].split("## Training loss")[0]
    for row in ("| blimp | morphology |", "| blimp | syntax |", "| zorro | agreement_subject_verb |"):
        assert row in section, row


def test_generated_text_section(study):
    from babyjax.score.generate import DEFAULT_PROMPTS

    gens = json.loads((study["runs"] / "seed0" / "generations.json").read_text())
    steps = [int(s) for s in gens]
    assert steps[0] == 0 and steps[-1] == NUM_STEPS and 4 <= len(steps) <= 6
    text = (study["report"] / "report.md").read_text()
    section = text.split("## Generated text at checkpoints")[1].split("## Measures and their references")[0]
    assert "### `seed0/generations.json`" in section
    for step in steps:  # one row of measures per step (length, repeated 3-grams, distinct-n)
        assert f"\n| {step:,} | {len(DEFAULT_PROMPTS)} |" in section
    assert f"**step {steps[0]}**" in section and f"**step {NUM_STEPS}**" in section  # examples: first and last step
    for prompt in DEFAULT_PROMPTS[:3]:
        assert f"- *{prompt}* -> {gens[str(NUM_STEPS)][prompt]!r}" in section
    for prompt in DEFAULT_PROMPTS:
        assert all(gens[str(s)][prompt].startswith(prompt) for s in steps)
    assert f"step {NUM_STEPS}" in study["gen_stdout"]

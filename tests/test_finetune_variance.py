"""The report's split of fine-tuning results' variation into fine-tuning seeds and pre-training seeds (docs/science.md,
"Fine-tuning seeds and pre-training seeds"), checked on values whose components are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from babyjax.analysis.finetune_sections import robustness, seed_variances


def units(values: np.ndarray, step: int = 10) -> pd.DataFrame:
    """values [runs, seeds] -> the unit rows of one task at one checkpoint."""
    return pd.DataFrame(
        [
            {"run": f"r{r}", "seed": s, "step": step, "task": "rte", "value": float(v)}
            for r, row in enumerate(values)
            for s, v in enumerate(row)
        ]
    )


def test_the_components_by_hand():
    values = np.array([[0.50, 0.54, 0.52], [0.60, 0.62, 0.64], [0.55, 0.53, 0.57]])
    within = np.mean([np.var(r, ddof=1) for r in values])  # 0.0004, 0.0004, 0.0004
    between = np.var(values.mean(axis=1), ddof=1)
    got = seed_variances(units(values))
    assert within == pytest.approx(0.0004)
    assert got["sd_finetune"] ** 2 == pytest.approx(within)
    assert got["sd_pretrain"] ** 2 == pytest.approx(between - within / 3)
    assert got["share_finetune"] == pytest.approx(within / (within + between - within / 3))
    assert (got["runs"], got["seeds"]) == (3, 3)


def test_the_estimates_recover_known_components_on_average():
    rng = np.random.default_rng(0)
    shares = []
    for _ in range(400):  # pre-training sd 0.03, fine-tuning sd 0.04: fine-tuning's share 0.64
        values = 0.6 + rng.normal(0, 0.03, (5, 1)) + rng.normal(0, 0.04, (5, 4))
        got = seed_variances(units(values))
        shares.append((got["sd_finetune"] ** 2, got["sd_pretrain"] ** 2))
    ft, pt = np.mean(shares, axis=0)
    assert ft == pytest.approx(0.04**2, rel=0.05) and pt == pytest.approx(0.03**2, rel=0.15)


def test_no_pretraining_part_without_two_runs_and_no_finetuning_part_without_two_seeds():
    one_run = seed_variances(units(np.array([[0.5, 0.6, 0.7]])))
    assert np.isnan(one_run["sd_pretrain"]) and one_run["sd_finetune"] == pytest.approx(0.1)
    one_seed = seed_variances(units(np.array([[0.5], [0.7]])))
    assert np.isnan(one_seed["sd_finetune"]) and one_seed["sd_pretrain"] == pytest.approx(np.std([0.5, 0.7], ddof=1))


def test_robustness_per_condition_at_the_last_shared_checkpoint():
    a = units(np.array([[0.5, 0.6], [0.7, 0.8]]), step=10)
    b = units(np.array([[0.5, 0.5], [0.9, 0.9]]), step=20)
    table = robustness(pd.concat([a, b]), {"r0": "small", "r1": "small"})
    assert len(table) == 1 and table.loc[0, "step"] == 20 and table.loc[0, "condition"] == "small"
    assert table.loc[0, "share_finetune"] == 0.0  # at step 20 the seeds agree within each run
    assert table.loc[0, "median_share_finetune"] == pytest.approx(np.median([0.0, seed_variances(a)["share_finetune"]]))

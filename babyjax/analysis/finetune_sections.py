"""The report's fine-tuning section (outputs of `python -m babyjax.finetune`): each task's metric across training with
the spread over fine-tuning seeds and over pre-training seeds, the last checkpoint's table, and how much of the
variation each kind of seed makes (a variance decomposition, docs/science.md "Fine-tuning seeds and pre-training
seeds")."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from babyjax.analysis import plots
from babyjax.analysis.sections import md_table
from babyjax.finetune.outputs import CSV
from babyjax.finetune.tasks import TASKS


def is_finetune_output(path: str | pathlib.Path) -> bool:
    return (pathlib.Path(path) / CSV).is_file()


def finetuned_runs(folders: Sequence[pathlib.Path]) -> set[str]:
    """The runs of the fine-tuning outputs."""
    return {str(r) for f in folders for r in pd.read_csv(pathlib.Path(f) / CSV, usecols=["run"])["run"]}


def kept_epochs(folders: Sequence[pathlib.Path]) -> pd.DataFrame:
    """One row per unit (run, step, task, seed): the kept epoch's `value`, the task's validation metric (accuracy;
    F1 for MRPC and QQP), as the organisers' tables report it, and `chance`, the same metric of predicting the
    training file's majority class (NaN where the unit did not record it)."""
    tables = [pd.read_csv(pathlib.Path(f) / CSV) for f in folders]
    units = pd.concat(tables) if tables else pd.DataFrame()
    columns = ["run", "step", "words_seen", "task", "seed", "metric", "value", "chance"]
    if not len(units):
        return pd.DataFrame(columns=columns)
    units = units[units["best"].astype(bool)].copy()
    units["metric"] = units["task"].map(lambda t: TASKS[t].metric_for_valid)
    cols = units.columns.get_indexer(units["metric"])
    units["value"] = units.to_numpy()[np.arange(len(units)), cols].astype(float)
    units["chance"] = units.get("chance", np.nan)
    return units[columns].reset_index(drop=True)


def seed_variances(units: pd.DataFrame) -> dict[str, float]:
    """Method-of-moments variance components of one task at one checkpoint over R runs (pre-training seeds) with
    S fine-tuning seeds each: fine-tuning = mean within-run variance; pre-training = max(0, variance of the run means
    - fine-tuning / S); NaN where R or S is below 2. S is the fewest seeds any run has (the others' extra seeds
    left out, in seed order)."""
    per_run = {r: g.sort_values("seed")["value"].to_numpy() for r, g in units.groupby("run")}
    s = min(len(v) for v in per_run.values())
    values = np.stack([v[:s] for v in per_run.values()])
    ft = float(values.var(axis=1, ddof=1).mean()) if s >= 2 else np.nan
    between = float(values.mean(axis=1).var(ddof=1)) if len(values) >= 2 else np.nan
    pt = max(0.0, between - (ft if s >= 2 else 0.0) / s) if len(values) >= 2 else np.nan
    total = ft + pt
    return {
        "runs": len(values),
        "seeds": s,
        "sd_finetune": float(np.sqrt(ft)),
        "sd_pretrain": float(np.sqrt(pt)),
        "share_finetune": ft / total if total > 0 else np.nan,
    }


def robustness(units: pd.DataFrame, condition: Mapping[str, str]) -> pd.DataFrame:
    """Per condition and task: the variance components at the last checkpoint all its runs share, and the median
    share of fine-tuning seeds over every shared checkpoint."""
    rows = []
    units = units.assign(condition=units["run"].map(lambda r: condition.get(r, "all")))
    for (cond, task), g in units.groupby(["condition", "task"]):
        shared = sorted(set.intersection(*(set(h["step"]) for _, h in g.groupby("run"))))
        if not shared:
            continue
        per_step = [seed_variances(g[g["step"] == step]) for step in shared]
        last = per_step[-1]
        shares = [p["share_finetune"] for p in per_step if not np.isnan(p["share_finetune"])]
        rows.append(
            {"condition": cond, "task": task, "step": shared[-1], **last,
             "median_share_finetune": float(np.median(shares)) if shares else np.nan}
        )  # fmt: skip
    return pd.DataFrame(rows)


def finetune_section(
    folders: Sequence[pathlib.Path], out: pathlib.Path, condition: Mapping[str, str] | None = None
) -> list[str]:
    """The section's Markdown (the figure and CSVs written under `out`); [] without fine-tuning outputs."""
    units = kept_epochs(folders)
    if not len(units):
        return []
    units.to_csv(out / "finetune_units.csv", index=False)
    xcol = "words_seen" if units["words_seen"].gt(0).all() else "step"
    fig = plots.finetune_tasks(out / "finetune_tasks.png", units.rename(columns={xcol: "x"}), xcol.replace("_", " "))
    last = units[units["step"] == units.groupby("run")["step"].transform("max")]
    final = last.groupby(["task", "metric"]).agg(
        mean=("value", "mean"), std=("value", "std"), count=("value", "count"), chance=("chance", "mean")
    )
    final = final.reset_index()
    parts = robustness(units, condition or {})
    parts.to_csv(out / "finetune_robustness.csv", index=False)
    md = [
        "## Fine-tuning across training (the BabyLM (Super)GLUE recipe)",
        "",
        f"![fine-tuning tasks]({fig.name})",
        "",
        "Each task's validation metric (accuracy; F1 for MRPC and QQP) at the kept epoch, at every fine-tuned "
        "checkpoint: the line is the mean over runs and fine-tuning seeds, the dark band +-1 sd over fine-tuning "
        "seeds (within a run, averaged over runs), the light band +-1 sd of the run means (pre-training seeds), the "
        "dashed line chance: the metric of predicting the training file's most frequent label for every validation "
        "row. Every unit is in finetune_units.csv. At each run's last fine-tuned checkpoint:",
        "",
        md_table(final, "{:.3f}"),
        "",
    ]
    if len(parts):
        md += [
            "How much of the variation is the fine-tuning seed's and how much the pre-training seed's (method of "
            "moments over runs x seeds, docs/science.md; NaN where fewer than 2 runs or 2 seeds), at the last "
            "checkpoint every run of the condition shares, and the median share over all shared checkpoints:",
            "",
            md_table(parts, "{:.3f}"),
            "",
        ]
    return md

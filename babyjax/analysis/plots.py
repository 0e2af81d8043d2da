"""Figures for the learning-curve report (matplotlib, Agg backend, PNG files)."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from babyjax.analysis import curves


def _save(fig: plt.Figure, path: pathlib.Path) -> pathlib.Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def example_curves(
    path: pathlib.Path, steps_T: np.ndarray, surprisal_TxK: np.ndarray, labels: Sequence[str], vocab_size: int
) -> pathlib.Path:
    """Raw curves, the GAM fit (pygam-equivalent) and the GAM AoA with its threshold (Chang et al. Fig. 1 style)."""
    y = np.asarray(surprisal_TxK, np.float64)
    keep = (steps_T > 0) & np.isfinite(y).all(1)  # scored checkpoints on the log axis
    x, y, n = np.log10(steps_T[keep].astype(np.float64)), y[keep], y.shape[1]
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3), squeeze=False, sharey=True)
    chance = curves.chance_surprisal(vocab_size)
    try:
        sm = curves.GamSmoother.build(x)
    except ValueError:
        sm = None
    for k, ax in enumerate(axes[0]):
        ax.plot(x, y[:, k], ".", ms=3, color="0.6", label="surprisal")
        if sm is not None and np.isfinite(y[:, k]).all():
            coef, _, _ = sm.fit(y[:, [k]])
            grid = np.linspace(x[0], x[-1], curves.AOA_GRID)
            g = sm.predict(coef, grid)
            aoa, thr = curves.gam_aoa(g, grid, chance)
            ax.plot(grid, g[:, 0], color="C0", label="GAM")
            ax.axhline(thr[0], color="C1", lw=0.8, ls="--", label="threshold")
            ax.axvline(aoa[0], color="C3", lw=1, label=f"AoA {aoa[0]:.2f}")
        ax.axhline(chance, color="k", lw=0.5, ls=":")
        ax.set_title(labels[k], fontsize=9)
        ax.set_xlabel("log10 step")
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("surprisal (bits)")
    return _save(fig, path)


def measures_vs_frequency(path: pathlib.Path, table: pd.DataFrame, measures: Sequence[str]) -> pathlib.Path:
    """Each measure against unigram log2 probability: hexbin plus binned means."""
    cols = [m for m in measures if m in table and table[m].notna().any()]
    fig, axes = plt.subplots(1, max(len(cols), 1), figsize=(3.2 * max(len(cols), 1), 3), squeeze=False)
    for ax, m in zip(axes[0], cols):
        d = table[["unigram", m]].dropna()
        ax.hexbin(d["unigram"], d[m], gridsize=30, bins="log", cmap="Greys", mincnt=1)
        if len(d) > 10:
            bins = pd.qcut(d["unigram"], min(10, d["unigram"].nunique()), duplicates="drop")
            means = d.groupby(bins, observed=True).mean()
            ax.plot(means["unigram"], means[m], "o-", color="C3", ms=3)
        ax.set_xlabel("unigram log2 p")
        ax.set_title(m, fontsize=9)
    return _save(fig, path)


def xia_shares(path: pathlib.Path, shares: pd.DataFrame) -> pathlib.Path:
    """Stacked bars: share of upward / downward / stagnated / other tokens per run."""
    fig, ax = plt.subplots(figsize=(1.2 + 1.0 * len(shares), 3))
    bottom = np.zeros(len(shares))
    for c, color in zip(["upward", "downward", "stagnated", "other"], ["C3", "C0", "C2", "0.7"]):
        ax.bar(shares.index.astype(str), shares[c], bottom=bottom, label=c, color=color)
        bottom += shares[c].to_numpy()
    ax.set_ylabel("share of tokens")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    return _save(fig, path)


def pairs_accuracy(path: pathlib.Path, pairs: pd.DataFrame) -> pathlib.Path:
    """Minimal-pair accuracy per field (pooled over paradigms, mean over runs) against words seen."""
    xcol = "words_seen" if pairs["words_seen"].gt(0).any() else "step"
    d = pairs.groupby(["run", xcol, "field"], as_index=False)[["correct", "n"]].sum()
    d["accuracy"] = d["correct"] / d["n"]
    d = d.groupby([xcol, "field"], as_index=False)["accuracy"].mean()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for field, g in d.groupby("field"):
        g = g[g[xcol] > 0]
        ax.plot(g[xcol], g["accuracy"], "o-", ms=3, label=field)
    ax.axhline(0.5, color="k", lw=0.5, ls=":")
    ax.set(xscale="log", xlabel=xcol.replace("_", " "), ylabel="accuracy")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1, 1))
    return _save(fig, path)


def babylm2025_tasks(path: pathlib.Path, averages: pd.DataFrame) -> pathlib.Path:
    """Each BabyLM 2025 task's average (columns run, x, subset, value) across training, a line per run and task
    (one style per run), one panel for the accuracies (percent) and one for the wug tasks' Spearman rho and the
    reading task's R² gains."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    styles = dict(zip(sorted(averages["run"].unique()), ["o-", "s--", "^:", "d-."] * 8))
    colors = {s: f"C{i % 10}" for i, s in enumerate(sorted(averages["subset"].unique()))}
    for (run, subset), g in averages.groupby(["run", "subset"]):
        ax = axes[1] if subset.startswith(("wug", "reading")) else axes[0]
        g = g[g["x"] > 0].sort_values("x")
        label = subset if len(styles) == 1 else f"{run}: {subset}"
        ax.plot(g["x"], g["value"], styles[run], ms=3, color=colors[subset], label=label)
    for ax, ylabel in zip(axes, ["accuracy (%)", "rho (wug), R² gain % (reading)"]):
        ax.set(xscale="log", xlabel=averages.attrs.get("xlabel", "words seen"), ylabel=ylabel)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on a short range
        ax.legend(fontsize=6)
    return _save(fig, path)


def finetune_tasks(path: pathlib.Path, units: pd.DataFrame, xlabel: str) -> pathlib.Path:
    """Each fine-tuning task's kept metric (columns run, x, task, seed, value) across training, one panel per task:
    the mean over runs and seeds, +-1 sd over fine-tuning seeds (within runs, averaged; dark) and +-1 sd of the
    run means over pre-training seeds (light); a dashed line at the task's `chance` where the units have it."""
    tasks = sorted(units["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(2.6 * len(tasks) + 0.6, 2.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        g = units[units["task"] == task]
        runs = g.groupby(["x", "run"])["value"].agg(["mean", "std"]).reset_index()
        at = runs.groupby("x").agg(mean=("mean", "mean"), ft=("std", "mean"), pt=("mean", "std")).fillna(0.0)
        ax.fill_between(at.index, at["mean"] - at["pt"], at["mean"] + at["pt"], color="C0", alpha=0.15, lw=0)
        ax.fill_between(at.index, at["mean"] - at["ft"], at["mean"] + at["ft"], color="C0", alpha=0.35, lw=0)
        ax.plot(at.index, at["mean"], "o-", color="C0", ms=3)
        if "chance" in g and g["chance"].notna().any():
            ax.axhline(float(g["chance"].median()), color="0.4", ls="--", lw=0.8)
        ax.set(title=task, xlabel=xlabel, ylabel=g["metric"].iloc[0] if "metric" in g else "metric")
        if (at.index > 0).all() and len(at) > 1:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    return _save(fig, path)


def training_loss(path: pathlib.Path, metrics: Mapping[str, pd.DataFrame]) -> pathlib.Path:
    """Training (and dev) loss per run against step."""
    fig, ax = plt.subplots(figsize=(5, 3))
    for i, (run, m) in enumerate(metrics.items()):
        if "loss" in m:  # dev-only log lines have no training loss: skip them rather than break the line
            t = m[m["loss"].notna()]
            ax.plot(t["step"], t["loss"], color=f"C{i}", lw=1, label=f"{run} train")
        if "dev_loss" in m and m["dev_loss"].notna().any():
            d = m[m["dev_loss"].notna()]
            ax.plot(d["step"], d["dev_loss"], "o--", color=f"C{i}", ms=3, lw=0.8, label=f"{run} dev")
    ax.set(xlabel="step", ylabel="loss (nats/token)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def word_aoa(path: pathlib.Path, words: pd.DataFrame) -> pathlib.Path:
    """Model AoA (log10 step) against children's AoA (months) per CDI word."""
    d = words.dropna(subset=["model_aoa", "child_aoa"])
    fig, ax = plt.subplots(figsize=(4, 3.2))
    for i, (cat, g) in enumerate(d.groupby("lexical_category")):
        ax.scatter(g["child_aoa"], g["model_aoa"], s=8, color=f"C{i}", label=cat)
    for _, r in d.nsmallest(5, "model_aoa").iterrows():
        ax.annotate(r["word"], (r["child_aoa"], r["model_aoa"]), fontsize=6)
    ax.set(xlabel="child AoA (months)", ylabel="model AoA (log10 step)")
    ax.legend(fontsize=6)
    return _save(fig, path)


def bands(
    path: pathlib.Path, band: pd.DataFrame, *, panel: str, x: str, ylabel: str, logx: bool = False, max_panels: int = 80
) -> pathlib.Path:
    """One panel per value of `panel`: per condition, the mean line and the min-max band over its runs (the legend
    gives n runs). band: columns panel, condition, x, mean, min, max, runs."""
    names = list(dict.fromkeys(band[panel]))[:max_panels]
    cols = min(len(names), 4 if len(names) <= 16 else 8)
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        d = band[band[panel] == name]
        for i, (c, g) in enumerate(d.groupby("condition", sort=True)):
            g = g[g[x] > 0] if logx else g
            g = g.sort_values(x)
            ax.plot(g[x], g["mean"], color=f"C{i}", lw=1, label=f"{c} (n={int(g['runs'].max())})")
            ax.fill_between(g[x], g["min"], g["max"], color=f"C{i}", alpha=0.25, lw=0)
        if logx:
            ax.set_xscale("log")
        ax.set_title(str(name), fontsize=8)
        ax.set_xlabel(x, fontsize=7)
        ax.set_ylabel(ylabel, fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    return _save(fig, path)


def class_curves(
    path: pathlib.Path, df: pd.DataFrame | None, hi: float, lo: float, order: Sequence[str] = ()
) -> pathlib.Path:
    """Xia et al.'s class curves: each class's token perplexity against validation perplexity (x, decreasing to the
    right as training goes on), a line per run, colour by condition (in `order`), style by class."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.3), squeeze=False)
    styles = {"upward": "-", "downward": "--", "stagnated": ":"}
    conds = (
        [c for c in order if df is not None and c in set(df["condition"])]
        if order
        else (sorted(df["condition"].unique()) if df is not None else [])
    )
    for ax, klass in zip(axes[0], styles):
        d = df[df["class"] == klass] if df is not None else pd.DataFrame(columns=["condition"])
        for i, c in enumerate(conds):
            runs = d[d["condition"] == c].groupby("run")
            for j, (_, g) in enumerate(runs):
                g = g.sort_values("validation_ppl")
                ax.plot(
                    g["validation_ppl"],
                    g["class_ppl"],
                    styles[klass],
                    color=f"C{i}",
                    lw=1,
                    label=f"{c} (n={runs.ngroups})" if j == 0 else None,
                )
        ax.set_xscale("log")
        ax.set_xlim(hi, lo)
        ticks = np.geomspace(hi, lo, 5)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks])
        ax.set_title(f"{klass} tokens", fontsize=9)
        ax.set_xlabel("validation perplexity")
        ax.set_ylabel("class perplexity")
        if ax.lines:
            ax.set_yscale("log")
            ax.legend(fontsize=6)
        else:
            ax.text(0.5, 0.5, "no token in this class", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)

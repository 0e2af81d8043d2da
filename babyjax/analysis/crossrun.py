"""The report's cross-run sections: runs grouped into conditions (a study's runs.json: runs that differ only in seed
share a condition), then
- the per-seed spread of every Chang et al. measure (mean over tokens per run -> mean, sd, min, max over a
  condition's runs);
- robustness (Bhardwaj et al. 2023): train and dev loss and minimal-pair accuracy per field and per paradigm at every
  checkpoint, as a band (min-max over seeds) around the mean, and the spread across any swept hyperparameter;
- Xia et al. (2023) across conditions (sizes): trajectory classes of the same tokens over the same range of validation
  perplexity, and each class's perplexity with validation perplexity on the x axis.
Every figure and table states how many runs it pools.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from babyjax.analysis import plots, xia
from babyjax.analysis.sections import md_table
from babyjax.errors import InputError
from babyjax.score.store import ScoreOutput
from babyjax.train.metrics import read_metrics

SUMMARY = ("final_surprisal", "within_run_var", "aoa_gam", "aoa_sigmoid", "forgettability")


def conditions(run_names: Sequence[str], study: str | None) -> tuple[dict[str, str], dict[str, dict]]:
    """run -> condition, and run -> labels per axis (from a study's runs.json; without one, one condition)."""
    if not study:
        return dict.fromkeys(run_names, "all"), {r: {} for r in run_names}
    try:
        runs = json.loads(pathlib.Path(study).read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"--study {study}: cannot read it ({err}); give the study folder's runs.json") from None
    missing = [r for r in run_names if r not in runs]
    if missing:
        raise InputError(f"--study {study} does not list runs {missing}: give the runs.json of their study")
    return {r: runs[r]["condition"] for r in run_names}, {r: runs[r]["labels"] for r in run_names}


def spread(df: pd.DataFrame, by: Sequence[str], value: str) -> pd.DataFrame:
    """mean, sd (ddof 1), min, max and n runs of `value` over the rows of each group."""
    g = df.groupby(list(by))[value]
    return pd.DataFrame(
        {"mean": g.mean(), "sd": g.std(ddof=1), "min": g.min(), "max": g.max(), "runs": g.count()}
    ).reset_index()


def cross_run_sections(
    outputs: Sequence[ScoreOutput],
    out: pathlib.Path,
    rd: pathlib.Path | None,
    run_names: Sequence[str],
    study: str | None,
    notes: list[str],
    xia_p: Sequence[float] = (0.5,),
    per_run: Mapping[str, pd.DataFrame] | None = None,
) -> list[str]:
    """Every cross-run section (empty for a single run); `per_run`: each token output's measures per run and token
    (token_sections.measures_section), by output name."""
    if len(run_names) < 2:
        return []
    cond, labels = conditions(run_names, study)
    groups = pd.Series(cond).groupby(lambda r: cond[r]).apply(lambda s: ", ".join(sorted(s.index)))
    md = [
        "## Across runs",
        "",
        f"{len(run_names)} runs in {groups.size} condition(s) (runs that differ only in seed share one):",
        "",
        md_table(
            pd.DataFrame(
                {"condition": groups.index, "runs": groups.values, "n": [len(v.split(", ")) for v in groups.values]}
            )
        ),
    ]
    for so in outputs:
        if (per_run or {}).get(so.name) is not None:
            md += measure_spread(so, per_run[so.name], out, cond)
    md += loss_bands(rd, run_names, cond, labels, out, notes)
    md += pair_bands(outputs, cond, out)
    for so in outputs:
        if so.meta.get("kind") in ("tokens", "text") and len({cond[r] for r in so.surprisal}) >= 2:
            md += xia_matched(so, cond, out, notes, xia_p)
    return md


def measure_spread(so: ScoreOutput, long: pd.DataFrame, out: pathlib.Path, cond: Mapping[str, str]) -> list[str]:
    """Chang et al.'s measures (`long`: one row per run and token), averaged over tokens per run, spread over each
    condition's runs."""
    cols = [m for m in SUMMARY if m in long]
    per_run = long.groupby("run")[cols].mean().reset_index()
    per_run["condition"] = per_run["run"].map(cond)
    rows = [spread(per_run, ["condition"], m).assign(measure=m) for m in cols]
    table = pd.concat(rows)[["measure", "condition", "runs", "mean", "sd", "min", "max"]]
    table.to_csv(out / f"{so.name}_measures_across_runs.csv", index=False)
    return [
        f"### Spread of the measures over runs (`{so.name}`)",
        "",
        "Each run's measure averaged over the "
        f"{len(so.tokens):,} tokens, then mean, standard deviation, min and max over the runs of a condition "
        "(`runs`: how many); the token-level cross-run variability of Chang et al. is in the measures table "
        "above.",
        "",
        md_table(table, "{:.4g}"),
    ]


def loss_bands(
    rd: pathlib.Path | None,
    run_names: Sequence[str],
    cond: Mapping[str, str],
    labels: Mapping[str, dict],
    out: pathlib.Path,
    notes: list[str],
) -> list[str]:
    """Train and dev loss per condition at every logged step: mean and min-max band over its runs."""
    rows = []
    for r in run_names if rd else []:
        try:
            m = pd.DataFrame(read_metrics(rd / r))
        except (InputError, OSError) as err:
            notes.append(f"run {r}: loss bands skipped: {err}")
            continue
        for col in ("loss", "dev_loss"):
            if col in m:
                d = m[["step", col]].dropna()
                rows.append(
                    pd.DataFrame({"run": r, "condition": cond[r], "what": col, "step": d["step"], "value": d[col]})
                )
    if not rows:
        return ["### Loss across runs", "", "_No metrics.jsonl found (--runs-dir)._", ""]
    long = pd.concat(rows)
    band = spread(long, ["what", "condition", "step"], "value")
    band.to_csv(out / "loss_across_runs.csv", index=False)
    f = plots.bands(out / "loss_across_runs.png", band, panel="what", x="step", ylabel="loss (nats)")
    final = long.sort_values("step").groupby(["what", "run"]).tail(1)
    md = [
        "### Loss across runs",
        "",
        f"![loss across runs]({f.name})",
        "",
        "Line: mean over the condition's runs; band: min to max (the legend gives n runs). At the last logged step:",
        "",
        md_table(spread(final, ["what", "condition"], "value"), "{:.4g}"),
    ]
    return md + swept_axes(final[final["what"] == "dev_loss"], labels, "dev loss")


def swept_axes(final: pd.DataFrame, labels: Mapping[str, dict], what: str) -> list[str]:
    """For each swept axis but seed: the final value per label (mean over the other runs) and its range."""
    axes = sorted({a for lab in labels.values() for a in lab if a != "seed"})
    md = []
    for a in axes:
        d = final.assign(label=final["run"].map(lambda r, a=a: labels[r].get(a)))
        s = spread(d, ["label"], "value")
        md += [
            f"Spread of the final {what} across the swept axis `{a}` (each label pools the runs that take it): "
            f"range of the means {s['mean'].max() - s['mean'].min():.4g}.",
            "",
            md_table(s, "{:.4g}"),
        ]
    return md


def pair_bands(outputs: Sequence[ScoreOutput], cond: Mapping[str, str], out: pathlib.Path) -> list[str]:
    """Minimal-pair accuracy per field and per paradigm at every checkpoint, as bands over seeds."""
    md = []
    for so in outputs:
        if so.pairs is None or so.pairs.empty or so.pairs["run"].nunique() < 2:
            continue
        p = so.pairs.assign(condition=so.pairs["run"].map(cond))
        for level in ("field", "paradigm"):
            if level not in p or p[level].isna().all():
                continue
            acc = p.groupby(["condition", "run", level, "step"], as_index=False)[["correct", "n"]].sum()
            acc["accuracy"] = acc["correct"] / acc["n"]
            band = spread(acc, [level, "condition", "step"], "accuracy")
            band.to_csv(out / f"{so.name}_{level}_across_runs.csv", index=False)
            f = plots.bands(
                out / f"{so.name}_{level}_across_runs.png", band, panel=level, x="step", ylabel="accuracy", logx=True
            )
            last = band.sort_values("step").groupby([level, "condition"]).tail(1)
            md += [
                f"### Minimal pairs across runs: `{so.name}` per {level}",
                "",
                f"![{level} bands]({f.name})",
                "",
                f"Accuracy (ties wrong) per {level} at every scored checkpoint: mean over the condition's runs and "
                "min-max band (n runs in the legend). The CSV beside the report holds every step. At the last "
                f"checkpoint, the {min(len(last), 15)} {level}s whose accuracy varies most over seeds:",
                "",
                md_table(last.sort_values("sd", ascending=False).head(15), "{:.3g}"),
            ]
    return md


def _matched_window(
    ppl_by_run: Mapping[str, np.ndarray], steps_by_run: Mapping[str, np.ndarray]
) -> tuple[float, float] | None:
    """The validation-perplexity range every run passes through: from the lowest first value (after step 0) down to
    the highest minimum; None when they share none."""
    first, low = [], []
    for r, ppl in ppl_by_run.items():
        ok = np.isfinite(ppl) & (steps_by_run[r] > 0)
        if not ok.any():
            return None
        first.append(ppl[ok][0])
        low.append(ppl[ok].min())
    hi, lo = min(first), max(low)
    return (hi, lo) if lo < hi else None


def _classes_in(s: np.ndarray, steps: np.ndarray, ppl: np.ndarray, top: float, lo: float):
    """Xia classes of one run over its checkpoints with validation perplexity in [lo, top] (None: under 3)."""
    rows = np.flatnonzero((steps > 0) & (ppl <= top * (1 + 1e-9)) & (ppl >= lo * (1 - 1e-9)))
    if len(rows) < 3:
        return rows, None
    return rows, xia.trajectory_classes(np.asarray(s[rows], np.float64), steps[rows], ppl[rows], p=0.0)["class"]


def _share_table(per_run: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """One row per p and condition: runs, and each class's share as 'mean' or 'mean +- sd'."""
    rows = []
    for (p, c), g in per_run.groupby(["p", "condition"]):
        row = {
            "p": f"{p:g}",
            "condition": c,
            "runs": len(g),
            "from / to ppl": f"{g['from_ppl'].iloc[0]:.4g} / {g['to_ppl'].iloc[0]:.4g}",
        }
        for k in xia.CLASSES:
            row[k] = f"{g[k].mean():.3f}" + (f" +- {g[k].std(ddof=1):.3f}" if len(g) > 1 else "")
        rows.append(row)
    return pd.DataFrame(rows).sort_values(
        ["p", "condition"], key=lambda col: col.map(order.index) if col.name == "condition" else col, kind="stable"
    )


def _matched_run(
    so: ScoreOutput,
    run: str,
    condition: str,
    window: tuple[float, float],
    p: float,
    with_curves: bool,
    notes: list[str],
) -> tuple[dict | None, list[pd.DataFrame]]:
    """One run's Xia class shares over its checkpoints with validation perplexity in `window` (top, lo) and, if
    `with_curves`, each class's perplexity against validation perplexity there; (None, []) and a note when the run
    has under 3 such checkpoints."""
    s, steps, ppl = so.surprisal[run], so.checkpoints[run]["step"].to_numpy(np.float64), so.perplexity(run)
    top, lo = window
    rows, klass = _classes_in(s, steps, ppl, top, lo)
    if klass is None:
        notes.append(f"{so.name}: run {run} has {len(rows)} checkpoint(s) in the matched range from p={p:g}: left out")
        return None, []
    share = {
        "p": p,
        "from_ppl": top,
        "to_ppl": lo,
        "run": run,
        "condition": condition,
        "checkpoints": len(rows),
        **xia.class_shares(klass),
    }
    curves = [
        pd.DataFrame(
            {
                "run": run,
                "condition": condition,
                "class": c,
                "validation_ppl": ppl[rows],
                "class_ppl": np.exp2(np.asarray(s[rows][:, klass == c]).mean(1)),
            }
        )
        for c in ("upward", "downward", "stagnated")
        if with_curves and (klass == c).any()
    ]
    return share, curves


def xia_matched(
    so: ScoreOutput, cond: Mapping[str, str], out: pathlib.Path, notes: list[str], xia_p: Sequence[float] = (0.5,)
) -> list[str]:
    """Xia et al. across conditions: each run's token classes over the checkpoints inside the validation-perplexity
    range all runs share, from p of that range (in log perplexity) on, with x = validation perplexity; their shares
    per condition for each p, and the class curves at the p nearest 0.5."""
    steps = {r: so.checkpoints[r]["step"].to_numpy(np.float64) for r in so.surprisal}
    ppl = {r: so.perplexity(r) for r in so.surprisal}
    head = [f"### Trajectory classes at matched validation perplexity (Xia et al. 2023), `{so.name}`", ""]
    window = _matched_window(ppl, steps)
    if window is None:
        notes.append(f"{so.name}: the runs share no range of validation perplexity: no matched Xia classes")
        return head + ["_Not computed: the runs share no range of validation perplexity._", ""]
    hi, lo = window
    main_p = min(xia_p, key=lambda p: abs(p - 0.5))
    shares, curves_rows = [], []
    for p in xia_p:
        top = hi ** (1 - p) * lo**p
        for r in so.surprisal:
            share, class_curves = _matched_run(so, r, cond[r], (top, lo), p, p == main_p, notes)
            shares += [share] if share else []
            curves_rows += class_curves
    if not shares:
        return head + ["_Not computed: see notes._", ""]
    per_run = pd.DataFrame(shares)
    per_run.to_csv(out / f"{so.name}_xia_matched_per_run.csv", index=False)
    order = list(dict.fromkeys(cond[r] for r in so.surprisal))
    table = _share_table(per_run, order)
    f = plots.class_curves(
        out / f"{so.name}_xia_matched.png",
        pd.concat(curves_rows) if curves_rows else None,
        hi ** (1 - main_p) * lo**main_p,
        lo,
        order,
    )
    return head + [
        f"The validation perplexity (2 ** mean surprisal of the {len(so.tokens):,} held-out tokens) every "
        f"one of the {per_run['run'].nunique()} runs passes through is [{lo:.4g}, {hi:.4g}]. For each "
        "window start p, each run's checkpoints from the level hi^(1-p) x lo^p down to lo are its window, "
        "and each token's class comes from the regression of its perplexity ratio on -ln(validation "
        "perplexity) over it: the same tokens over the same stretch of learning, however many steps each "
        "run needed. Shares per condition: the mean over its runs, +- their standard deviation when "
        "there are several (all of it in the CSV beside the report):",
        "",
        md_table(table),
        f"![classes against validation perplexity]({f.name})",
        "",
        f"Figure (p = {main_p:g}): the perplexity of each class's tokens (2 ** their mean surprisal) "
        "against validation perplexity, one line per run, colour by condition (n runs in the legend).",
        "",
    ]

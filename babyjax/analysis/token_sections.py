"""The report's token learning-curve sections (Chang, Tu & Bergen 2023; Xia et al. 2023) of one token score output:
the measures with their censoring and cross-run partners, example curves, and trajectory classes. The measures
table they build is what the frequency and word sections (frequency_sections.py, word_sections.py) join to."""

from __future__ import annotations

import itertools
import pathlib
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from babyjax.analysis import curves, plots, xia
from babyjax.analysis.sections import md_table, model_cost
from babyjax.score.store import ScoreOutput

SUMMARY = ["final_surprisal", "within_run_var", "aoa_gam", "aoa_sigmoid", "forgettability", "cross_run_var"]

GZIP = {"method": "gzip", "mtime": 0}  # no timestamp in the gzip header: the same report gives the same bytes


def learned_only(measures: pd.DataFrame, unlearned: pd.Series) -> pd.DataFrame:
    """The measures with the AoAs of never-learned tokens set to NaN (Chang et al.'s unlearned mask)."""
    out = measures.copy()
    for m in [c for c in out.columns if c.startswith("aoa")]:
        out.loc[unlearned.to_numpy() >= 0.5, m] = np.nan
    return out


def measures_section(
    so: ScoreOutput, out: pathlib.Path, steps: dict[str, np.ndarray], notes: list[str], progress: bool
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Chang et al. measures: (per-run long table, per-token table averaged over runs, Markdown lines)."""
    tag = so.name
    res = curves.compute_curve_measures(so.surprisal, steps, so.vocab_size, progress=progress)
    notes += [f"{tag}: {n}" for n in res.notes]
    long = pd.concat(
        [
            pd.DataFrame(
                {
                    "run": r,
                    "token_index": so.tokens["index"] if "index" in so.tokens else np.arange(len(so.tokens)),
                    **m,
                }
            )
            for r, m in res.measures.items()
        ]
    )
    long.to_csv(out / f"{tag}_measures_per_run.csv.gz", index=False, compression=GZIP)
    table = pd.DataFrame(
        {
            m: np.nanmean(np.stack([res.measures[r][m] for r in res.measures]), 0)
            if any(np.isfinite(res.measures[r][m]).any() for r in res.measures)
            else np.nan
            for m in curves.MEASURES
        },
        index=so.tokens.index,
    )
    table["cross_run_var"] = res.cross_run_var
    summary = table[SUMMARY].describe().T[["count", "mean", "std", "25%", "50%", "75%"]].reset_index(names="measure")
    md = (
        [
            "### Measures (Chang, Tu & Bergen 2023; mean over runs per token)",
            "",
            "Units: final surprisal in bits; `within_run_var` is the standard deviation (bits) of surprisal over the "
            f"last {curves.LAST_N} checkpoints; AoA in log10 steps; forgettability in bits (the sum of the GAM curve's "
            "increases); `cross_run_var` in bits squared (mean squared difference of two runs' GAM curves, averaged "
            "over run pairs). Definitions and the released code each matches: docs/science.md.",
            "",
            md_table(summary),
        ]
        + _censoring(long, steps, table)
        + _partners(so)
    )
    return long, table, md


def _partners(so: ScoreOutput, max_tokens: int = 20_000) -> list[str]:
    """Markdown: Chang et al.'s cross-run partner similarity for each pair of runs (curves.partner_ranks), on the
    checkpoints both runs scored (the first `max_tokens` tokens: the distance matrix grows with their square)."""
    runs, rows = list(so.surprisal), []
    for r1, r2 in itertools.combinations(runs, 2):
        s1, s2 = so.checkpoints[r1]["step"].to_numpy(), so.checkpoints[r2]["step"].to_numpy()
        common = np.intersect1d(s1, s2)
        n = min(max_tokens, so.surprisal[r1].shape[1])
        a = np.asarray(so.surprisal[r1][np.searchsorted(s1, common), :n])
        b = np.asarray(so.surprisal[r2][np.searchsorted(s2, common), :n])
        keep = np.isfinite(a).any(1) & np.isfinite(b).any(1)  # checkpoints scored in both
        ranks = curves.partner_ranks(a[keep], b[keep])
        ranks = ranks[ranks >= 0]
        if len(ranks):
            rows.append(
                {
                    "runs": f"{r1} vs {r2}",
                    "tokens": len(ranks),
                    "median rank": float(np.median(ranks)),
                    "partner nearest": f"{np.mean(ranks == 0):.1%}",
                    "chance median": (len(ranks) - 1) / 2,
                }
            )
    if not rows:
        return []
    return [
        "**Cross-run partner similarity** (Chang et al.'s run_crossrun_similarity.py, raw curves): for each "
        "token, how many tokens' curves in the other run are closer to its curve than its own curve there "
        "(0: its partner is the nearest).",
        "",
        md_table(pd.DataFrame(rows)),
        "",
    ]


def _censoring(long: pd.DataFrame, steps: dict[str, np.ndarray], table: pd.DataFrame) -> list[str]:
    """Markdown: tokens never learned (Chang et al.'s unlearned mask) and AoAs censored at either end of training."""
    lines = []
    for r, grp in long.groupby("run", sort=False):
        pos = steps[r][steps[r] > 0]
        if not len(pos) or not np.isfinite(grp["aoa_gam"]).any():
            continue
        lo, hi = np.log10(pos.min()), np.log10(pos.max())
        learned = grp["unlearned"].to_numpy() == 0
        for m in ("aoa_gam", "aoa_sigmoid"):
            a = grp[m].to_numpy()[learned]
            a = a[np.isfinite(a)]
            if len(a):
                lines.append(
                    f"- run `{r}`, `{m}`: {np.mean(a >= hi - 1e-9):.1%} of learned tokens censored at the "
                    f"last checkpoint (never crossed their threshold), {np.mean(a <= lo + 1e-9):.1%} at the "
                    "first"
                )
    n_unlearned = int(np.nansum(table["unlearned"] >= 0.5))
    share = n_unlearned / max(len(table), 1)
    head = (
        f"**Never learned**: {n_unlearned} of {len(table)} tokens ({share:.1%}) have a smoothed minimum above "
        f"the {curves.UNLEARNED_PERCENTILE:g}th percentile of all tokens' minima in most runs (Chang et al.'s "
        "`get_unlearned_mask`); their AoA is ill-defined and is left out of every AoA statistic below. "
        "**Censored AoAs** (reported, not dropped):"
    )
    return ["", head, ""] + lines + [""]


def example_curves_section(
    so: ScoreOutput, out: pathlib.Path, table: pd.DataFrame, steps: dict[str, np.ndarray], run0: str
) -> list[str]:
    """Four learned tokens at AoA quantiles (never-learned ones have no meaningful AoA): raw curve of the first run,
    GAM fit, threshold and AoA."""
    aoa = learned_only(table[["aoa_gam"]], table["unlearned"])["aoa_gam"].to_numpy()
    order = np.argsort(np.nan_to_num(aoa, nan=np.inf))
    finite = order[np.isfinite(aoa[order])]
    pick = (
        finite[np.linspace(0, len(finite) - 1, min(4, len(finite))).astype(int)]
        if len(finite)
        else np.arange(min(4, len(so.tokens)))
    )
    s0 = np.asarray(so.surprisal[run0][:, pick], np.float64)
    f = plots.example_curves(
        out / f"{so.name}_example_curves.png",
        steps[run0],
        s0,
        [f"{so.tokens['token'].iloc[i]!r} (#{i})" for i in pick],
        so.vocab_size,
    )
    return [
        "### Example learning curves",
        "",
        f"![example curves]({f.name})",
        "",
        f"Run `{run0}`: raw surprisal "
        "(grey), GAM fit, threshold halfway between chance and the curve minimum, and GAM AoA (red).",
        "",
    ]


def _x_axis(
    ck: pd.DataFrame,
    axis: str,
    run_dir: pathlib.Path | None,
    vocab_size: int,
    ppl: Callable[[], np.ndarray],
    rows: np.ndarray,
    notes: list[str],
) -> np.ndarray:
    """x of the Xia regressions at each checkpoint: step, tokens or words seen, training FLOPs =
    `model.flops_per_token(model, data.seq_len)` x tokens seen (the run's config.json under --runs-dir), or the
    validation perplexity of the scored held-out tokens (`ppl()`: ScoreOutput.perplexity of the run; at its `rows`)."""
    if axis == "perplexity":
        return ppl()[rows]
    if axis != "flops":
        return ck["step" if axis == "step" else f"{axis}_seen"].to_numpy(np.float64)
    cost = model_cost(run_dir, vocab_size) if run_dir else None
    if cost is None:
        notes.append(
            "x axis FLOPs: the run's model is unknown (no readable config.json under --runs-dir): using "
            "6 x tokens (same Xia slopes and p-values, as ln(c x) only shifts the intercept)"
        )
        per_token = 6.0
    else:
        per_token, num_params = cost
        notes.append(
            f"x axis FLOPs: run {run_dir.name}: {per_token:.4g} training FLOPs per token "
            f"(babyjax.model.transformer.flops_per_token; {num_params:,} parameters) x tokens seen"
        )
    return per_token * ck["tokens_seen"].to_numpy(np.float64)


def xia_section(
    so: ScoreOutput,
    out: pathlib.Path,
    long: pd.DataFrame,
    runs_dir: pathlib.Path | None,
    xia_p: Sequence[float],
    x_axis: str,
    notes: list[str],
) -> list[str]:
    """Xia et al. trajectory classes per run and window start p (CSV per run; shares table and figure)."""
    tag, share_rows = so.name, {}
    for r, s in so.surprisal.items():
        ck = so.checkpoints[r]
        rows = np.flatnonzero(np.isfinite(np.asarray(s[:, : min(4096, s.shape[1])])).any(1))
        cols = {"token_index": long[long["run"] == r]["token_index"].to_numpy()}
        try:
            xv = _x_axis(
                ck.iloc[rows],
                x_axis,
                runs_dir / r if runs_dir else None,
                so.vocab_size,
                lambda r=r: so.perplexity(r),
                rows,
                notes,
            )
            for p in xia_p:
                parts = [
                    xia.trajectory_classes(
                        np.asarray(s[:, c0 : c0 + 65536])[rows], ck["step"].to_numpy()[rows], xv, p=p
                    )
                    for c0 in range(0, s.shape[1], 65536)
                ]  # 1M tokens fit
                cls = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
                share_rows[(r, p)] = xia.class_shares(cls["class"])
                cols.update({f"{k}_p{p:g}": v for k, v in cls.items()})
        except ValueError as err:
            notes.append(f"{tag}: run {r}: Xia classes skipped: {err}")
        pd.DataFrame(cols).to_csv(out / f"{tag}_xia_{r}.csv.gz", index=False, compression=GZIP)
    md = [
        f"### Trajectory classes (Xia et al. 2023), x = {x_axis}, window from p of training",
        "",
        "Shares of tokens whose perplexity ratio to the window's first checkpoint rises (upward) or falls "
        "(downward) significantly with ln x (OLS slope, p < 0.05), stagnates, or none of these; for each window "
        f"start p ({', '.join(f'{p:g}' for p in xia_p)}; the window starts at the checkpoint nearest p x the last "
        "step, as in Xia et al.'s code).",
        "",
    ]
    if not share_rows:
        return md + ["_Not computed: see notes._", ""]
    shares = pd.DataFrame(share_rows).T.rename_axis(["run", "p"])
    main_p = min(xia_p, key=lambda p: abs(p - 0.5))
    f = plots.xia_shares(out / f"{tag}_xia_shares.png", shares.xs(main_p, level="p"))
    return md + [f"![Xia classes at p = {main_p:g}]({f.name})", "", md_table(shares.reset_index())]

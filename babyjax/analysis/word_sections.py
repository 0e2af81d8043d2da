"""The report's word section of one token score output: Chang & Bergen (2022) word AoA of the first run against
children's AoA, and the regressions of each LM AoA variant on the run's training data and the words' properties."""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd

from babyjax.analysis import effects, plots, predictors, words
from babyjax.analysis.sections import md_table
from babyjax.errors import MissingError
from babyjax.score.store import ScoreOutput


def _word_regressions(
    wdf: pd.DataFrame, runs_dir: pathlib.Path | None, run0: str, notes: list[str], meta: dict
) -> tuple[pd.DataFrame, list[str]]:
    """Chang & Bergen's regressions of each LM AoA variant on the run's training-data frequency and MLU, word length,
    concreteness and lexical class: (words table with the predictors, Markdown lines)."""
    try:
        if runs_dir is None:
            raise MissingError("pass --runs-dir so the run's training data can be read")
        predictors.require_own_run(meta, run0)
        split = predictors.training_split(runs_dir / run0)
    except (OSError, ValueError) as err:
        notes.append(f"word AoA regressions skipped: {err}")
        return wdf, []
    wdf = wdf.merge(words.word_stats(split, dict(zip(wdf["word"], wdf["token_id"]))), on="word", how="left")
    tables, fits = [], []
    for aoa in words.AOA_VARIANTS:
        table, fit = words.aoa_regressions(wdf, aoa)
        if len(table):
            tables.append(table.assign(lrt_p=table["lrt_p"].map(effects.format_p)))
            fits.append(
                f"`{aoa}`: n = {fit['n']}, adjusted R^2 {fit['adj_r2_log_freq']:.3f} with log frequency "
                f"alone, {fit['adj_r2_all']:.3f} with all"
            )
    if not tables:
        return wdf, ["_Word AoA regressions: too few words with every predictor._", ""]
    return wdf, [
        "Regressions of LM AoA on log frequency and MLU in the run's training data, word length, "
        "concreteness and lexical class (Chang & Bergen 2022's run_regressions: OLS, likelihood-ratio test "
        "of dropping each predictor, sign when significant); " + "; ".join(fits) + ".",
        "",
        md_table(pd.concat(tables, ignore_index=True)),
    ]


def word_aoa_section(
    so: ScoreOutput,
    out: pathlib.Path,
    steps: dict[str, np.ndarray],
    run0: str,
    aoa_words: pathlib.Path,
    runs_dir: pathlib.Path | None,
    notes: list[str],
) -> list[str]:
    """Chang & Bergen (2022) word AoA of the first run against children's AoA; Markdown lines."""
    tag = so.name
    child = words.load_child_aoa(aoa_words)
    wdf, corr = words.word_aoa(so.surprisal[run0], steps[run0], so.tokens, child, so.vocab_size)
    wdf, reg_lines = _word_regressions(wdf, runs_dir, run0, notes, so.meta)
    wdf.to_csv(out / f"{tag}_word_aoa.csv", index=False)
    md = [
        f"{len(wdf)} CDI words occur as whole-word tokens (\u2581word, or \u0120word in byte-level BPE; case kept) "
        f"at least {words.MIN_OCCURRENCES} times with {words.MIN_CONTEXT}+ tokens of context before them (one per "
        f"sequence, up to {words.MAX_OCCURRENCES} sequences; Chang & Bergen 2022, word_evaluation.py); model AoA vs "
        f"child AoA: n = {corr['n_words']}, Pearson r = {corr['pearson_r']:.3f} (p = {corr['pearson_p']:.3g}), "
        f"Spearman rho = {corr['spearman_rho']:.3f}.",
        "",
    ]
    pos = steps[run0][steps[run0] > 0]
    if len(pos) and wdf["model_aoa"].notna().any():
        a = wdf["model_aoa"].dropna().to_numpy()
        md += [
            f"Censored word AoAs (reported, not dropped): {np.mean(a >= np.log10(pos.max()) - 1e-9):.1%} of the "
            f"{len(a)} words never cross their threshold (AoA at the last checkpoint), "
            f"{np.mean(a <= np.log10(pos.min()) + 1e-9):.1%} sit at the first.",
            "",
        ]
    if corr["n_words"]:
        f = plots.word_aoa(out / f"{tag}_word_aoa.png", wdf)
        md += [f"![word AoA]({f.name})", ""]
    return md + reg_lines

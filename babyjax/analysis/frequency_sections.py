"""The report's frequency sections of one token score output: n-gram, context and contextual-diversity predictors
from the run's own training stream (never prepared here), part of speech from the token sample, joined to the
measures table (token_sections.py); their type-level effects, occurrence-level correlations and Chang et al.'s
regressions."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from babyjax.analysis import effects, plots, predictors, regressions
from babyjax.analysis import pos as pos_tags
from babyjax.analysis.sections import md_table
from babyjax.analysis.token_sections import SUMMARY, learned_only
from babyjax.checkpoints.run import RunDir
from babyjax.data.tokenizer import EOS_ID
from babyjax.errors import MissingError
from babyjax.score.store import ScoreOutput

if TYPE_CHECKING:
    from babyjax.data.pipeline import TokenizedSplit


def token_sample_rows(so: ScoreOutput) -> np.ndarray | None:
    """[N, L] token rows of a tokens-in-context output's sample file (meta.json eval_set; babyjax.data.evalsets):
    tokens.csv lists only the scored targets, not their neighbours. None when the output is not a sample, or the
    file is gone or does not hold the targets of tokens.csv."""
    path = pathlib.Path(str(so.meta.get("eval_set", "")))
    if so.meta.get("kind") != "tokens" or so.tokens is None or not len(so.tokens) or not path.is_file():
        return None
    try:
        with np.load(path) as z:
            rows_NxL = np.asarray(z["tokens"], np.int64)
    except (OSError, ValueError, KeyError):
        return None
    seq, pos = so.tokens["seq"].to_numpy(np.int64), so.tokens["position"].to_numpy(np.int64)
    if (
        rows_NxL.ndim != 2
        or seq.max() >= rows_NxL.shape[0]
        or pos.max() >= rows_NxL.shape[1]
        or (rows_NxL[seq, pos] != so.tokens["token_id"].to_numpy(np.int64)).any()
    ):
        return None
    return rows_NxL


def _sample_contexts(so: ScoreOutput, rows_NxL: np.ndarray, order: int) -> np.ndarray:
    """[N, order] n-gram contexts of a tokens-in-context output from its sample rows: an EOS document separator, and
    what is before it or before the row, is PAD (the start of a sequence, as in the n-gram counts)."""
    seq, pos = so.tokens["seq"].to_numpy(np.int64), so.tokens["position"].to_numpy(np.int64)

    def previous(k: int) -> np.ndarray:
        prev = rows_NxL[seq, np.maximum(pos - k, 0)]
        return np.where((pos - k >= 0) & (prev != EOS_ID), prev, predictors.PAD)

    return predictors.ngram_contexts(so.tokens["token_id"].to_numpy(np.int64), previous, order)


def predictors_section(
    so: ScoreOutput,
    out: pathlib.Path,
    table: pd.DataFrame,
    long: pd.DataFrame,
    runs_dir: pathlib.Path | None,
    sample_rows: np.ndarray | None,
    run0: str,
    notes: list[str],
) -> tuple[pd.DataFrame, list[str]]:
    """n-gram predictors from the first run's training stream (never prepares the dataset) joined to the measures
    table, Spearman / OLS tables and figure: (table, Markdown lines); a note instead when the stream cannot be read."""
    tag = so.name
    try:
        if runs_dir is None:
            raise MissingError("pass --runs-dir so the run's training data can be read")
        predictors.require_own_run(so.meta, run0)
        split = predictors.training_split(runs_dir / run0)
        counts = predictors.NgramCounts.from_split(split)
    except (OSError, ValueError) as err:
        notes.append(f"{tag}: n-gram predictors skipped: {err}")
        return table, ["_Not computed: see notes._", ""]
    pred = _token_predictors(so, split, counts, runs_dir / run0, sample_rows, notes)
    table = pd.concat([table, pred], axis=1)
    rank, ols = predictors.relate(learned_only(table[SUMMARY], table["unlearned"]), pred)
    rank.to_csv(out / f"{tag}_spearman.csv", index=False)  # occurrence level
    ols.to_csv(out / f"{tag}_ols.csv", index=False)  # before p-values become text
    f = plots.measures_vs_frequency(out / f"{tag}_measures_vs_frequency.png", table, SUMMARY)
    rank = rank.drop(columns="holds").assign(p_value=rank["p_value"].map(effects.format_p))
    ols = ols.assign(p_value=ols["p_value"].map(effects.format_p))
    return table, [
        f"Unigram and 5-gram log2 probabilities from run `{run0}`'s training data ({counts.n_tokens:,} "
        "tokens; Chang et al.'s counts: unigrams and bigrams whole, 3- to 5-grams seen twice or more, "
        "backoff to shorter n-grams); 5-gram residualised on unigram; predictors clipped at 5 SD.",
        "",
        f"![measures vs frequency]({f.name})",
        "",
    ] + _frequency_effects(so, out, long, table) + [
        "Occurrence-level Spearman correlations (each occurrence counted as independent, which it is "
        "not: the type-level table above is the one to report):",
        "",
        md_table(rank),
        "OLS, measure ~ standardised predictors (statsmodels, occurrences):",
        "",
        md_table(ols),
    ] + _regressions(out, tag, table)


def _token_predictors(
    so: ScoreOutput,
    split: TokenizedSplit,
    counts: predictors.NgramCounts,
    run_dir: pathlib.Path,
    sample_rows: np.ndarray | None,
    notes: list[str],
) -> pd.DataFrame:
    """Each scored token's predictors: n-gram log-probabilities and contextual diversity from the training stream
    `split`; with the token sample's rows, the context log-probability and part of speech too."""
    tag = so.name
    if sample_rows is not None:  # a tokens-in-context sample: the contexts are in the sample file
        contexts = _sample_contexts(so, sample_rows, counts.order)
    else:
        contexts, n_trunc = predictors.token_contexts(so.tokens, counts.order)
        if n_trunc:
            notes.append(
                f"{tag}: {n_trunc} tokens lack some preceding tokens in tokens.csv (and the token sample "
                f"{so.meta.get('eval_set')!r} was not found): their 5-gram context is truncated"
            )
    pred = predictors.token_predictors(so.tokens, counts, contexts)
    pred["contextual_diversity"] = predictors.contextual_diversity(split, so.vocab_size)[so.tokens["token_id"]]
    if sample_rows is not None:
        seq, pos = so.tokens["seq"].to_numpy(np.int64), so.tokens["position"].to_numpy(np.int64)
        pred["context_logprob"] = predictors.context_logprob(sample_rows, seq, pos, counts)
        tags, bilu = pos_tags.tag_rows(sample_rows, _pieces(run_dir), range(predictors.N_SPECIAL))
        pred["pos"], pred["pos_bilu"] = tags[seq, pos], bilu[seq, pos]
    else:
        notes.append(f"{tag}: context log-probability needs the token sample's rows: not computed")
    for col in ("contextual_diversity", "context_logprob"):
        if col in pred:
            pred[col] = predictors.clip_sd(pred[col])
    return pred


def _regressions(out: pathlib.Path, tag: str, table: pd.DataFrame) -> list[str]:
    """Chang et al.'s sequential likelihood-ratio regressions and VIFs (babyjax.analysis.regressions); Markdown."""
    learned = pd.concat(
        [
            learned_only(table[SUMMARY], table["unlearned"]),
            table[[c for c in (*regressions.ORDER, *regressions.CATEGORICAL) if c in table]],
        ],
        axis=1,
    )
    lrt = pd.concat(
        [regressions.sequential_lrts(learned, m) for m in SUMMARY if learned[m].notna().sum() > 10], ignore_index=True
    )
    vif = regressions.vifs(learned)
    lrt.to_csv(out / f"{tag}_regressions.csv", index=False)
    shown = (
        lrt.assign(
            lrt_p=lrt["lrt_p"].map(effects.format_p), gain=lrt["gain"].map(lambda g: "" if pd.isna(g) else f"{g:+.3g}")
        )
        if "lrt_p" in lrt
        else lrt
    )
    return [
        "**Regressions** (Chang et al.'s `run_lrts`): each measure on the predictors added in this order, adjusted "
        "R^2, its gain, and the likelihood-ratio test of each addition; the last step adds all pairwise "
        "interactions of the continuous ones. Part of speech (`pos`, with the token's place in its word, "
        "`pos_bilu`) comes from TextBlob's pattern tagger, not spaCy's as theirs (docs/science.md).",
        "",
        md_table(shown),
        "Variance inflation factors of the predictors:",
        "",
        md_table(vif),
    ]


def _pieces(run_dir: pathlib.Path) -> list[str]:
    """The run's SentencePiece pieces by id."""
    tok = RunDir.open(run_dir, what="each run folder of --runs-dir").tokenizer()
    return [tok.id_to_piece(i) for i in range(tok.vocab_size)]


def _frequency_effects(so: ScoreOutput, out: pathlib.Path, long: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    """Markdown: the type-level effect of frequency (unigram log2 p) on each measure, pooled and per run, with
    two-way (types x sequences) bootstrap intervals (babyjax.analysis.effects)."""
    by_run = {
        r: learned_only(
            g.reset_index(drop=True)[[m for m in SUMMARY if m in g]], g["unlearned"].reset_index(drop=True)
        ).set_axis(table.index)
        for r, g in long.groupby("run", sort=False)
    }
    eff = effects.effects_table(
        by_run,
        learned_only(table[SUMMARY], table["unlearned"]),
        table["unigram"],
        so.tokens["token_id"].to_numpy(),
        so.tokens["seq"].to_numpy(),
        predictors.EXPECTED_SIGNS,
    )
    eff.to_csv(out / f"{so.name}_effects_frequency.csv", index=False)
    shown = pd.DataFrame(
        {
            "measure": eff["measure"],
            "expected": eff["expected"],
            "rho (types)": eff["rho"],
            "95% interval": [f"[{a:.2f}, {b:.2f}]" for a, b in zip(eff["ci_low"], eff["ci_high"])],
            "p (types)": eff["p_value"].map(effects.format_p),
            "types": eff["n_types"],
            "sequences": eff["n_sequences"],
            "verdict": eff["verdict"],
            "per run": eff["per_run"],
        }
    )
    return [
        f"**Effect of frequency** (Spearman rho between each token type's mean measure and its unigram log2 "
        f"probability; higher = more frequent). Intervals: {effects.N_BOOT} bootstrap resamples of token types "
        "and sequences together (not of occurrences); AoA of never-learned tokens left out. Expected signs: "
        "the directions Chang, Tu & Bergen (2023) report.",
        "",
        md_table(shown, "{:.3f}"),
    ]

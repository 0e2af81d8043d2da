"""One study (one or more score outputs of the same runs, and optionally their run directories) -> one Markdown
report with PNG figures and CSV tables (python -m babyjax.analyze)."""

from __future__ import annotations

import itertools
import pathlib
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from babyjax.analysis import crossrun, curves, effects, plots, predictors, regressions, words, xia
from babyjax.analysis import pos as pos_tags
from babyjax.analysis.sections import (
    babylm2025_section,
    equal_perplexity_section,
    generations_section,
    loss_section,
    md_table,
    model_cost,
    pairs_section,
    references_section,
    study_section,
)
from babyjax.checkpoints.run import RunDir
from babyjax.data.tokenizer import EOS_ID
from babyjax.errors import InputError, MissingError
from babyjax.score.store import ScoreOutput, load_score_output

SUMMARY = ["final_surprisal", "within_run_var", "aoa_gam", "aoa_sigmoid", "forgettability", "cross_run_var"]

GZIP = {"method": "gzip", "mtime": 0}  # no timestamp in the gzip header: the same report gives the same bytes


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


def _sample_rows(so: ScoreOutput) -> np.ndarray | None:
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


def _measures(
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


def _example_curves(
    so: ScoreOutput, out: pathlib.Path, table: pd.DataFrame, steps: dict[str, np.ndarray], run0: str
) -> list[str]:
    """Four learned tokens at AoA quantiles (never-learned ones have no meaningful AoA): raw curve of the first run,
    GAM fit, threshold and AoA."""
    aoa = _learned_only(table[["aoa_gam"]], table["unlearned"])["aoa_gam"].to_numpy()
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


def _xia_classes(
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


def _predictors(
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
        split = predictors.training_split(runs_dir / run0)
        counts = predictors.NgramCounts.from_split(split)
    except (OSError, ValueError) as err:
        notes.append(f"{tag}: n-gram predictors skipped: {err}")
        return table, ["_Not computed: see notes._", ""]
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
        tags, bilu = pos_tags.tag_rows(sample_rows, _pieces(runs_dir / run0), range(predictors.N_SPECIAL))
        pred["pos"], pred["pos_bilu"] = tags[seq, pos], bilu[seq, pos]
    else:
        notes.append(f"{tag}: context log-probability needs the token sample's rows: not computed")
    for col in ("contextual_diversity", "context_logprob"):
        if col in pred:
            pred[col] = predictors.clip_sd(pred[col])
    table = pd.concat([table, pred], axis=1)
    rank, ols = predictors.relate(_learned_only(table[SUMMARY], table["unlearned"]), pred)
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


def _regressions(out: pathlib.Path, tag: str, table: pd.DataFrame) -> list[str]:
    """Chang et al.'s sequential likelihood-ratio regressions and VIFs (babyjax.analysis.regressions); Markdown."""
    learned = pd.concat(
        [
            _learned_only(table[SUMMARY], table["unlearned"]),
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


def _learned_only(measures: pd.DataFrame, unlearned: pd.Series) -> pd.DataFrame:
    """The measures with the AoAs of never-learned tokens set to NaN (Chang et al.'s unlearned mask)."""
    out = measures.copy()
    for m in [c for c in out.columns if c.startswith("aoa")]:
        out.loc[unlearned.to_numpy() >= 0.5, m] = np.nan
    return out


def _frequency_effects(so: ScoreOutput, out: pathlib.Path, long: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    """Markdown: the type-level effect of frequency (unigram log2 p) on each measure, pooled and per run, with
    two-way (types x sequences) bootstrap intervals (babyjax.analysis.effects)."""
    by_run = {
        r: _learned_only(
            g.reset_index(drop=True)[[m for m in SUMMARY if m in g]], g["unlearned"].reset_index(drop=True)
        ).set_axis(table.index)
        for r, g in long.groupby("run", sort=False)
    }
    eff = effects.effects_table(
        by_run,
        _learned_only(table[SUMMARY], table["unlearned"]),
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


def _word_regressions(
    wdf: pd.DataFrame, runs_dir: pathlib.Path | None, run0: str, notes: list[str]
) -> tuple[pd.DataFrame, list[str]]:
    """Chang & Bergen's regressions of each LM AoA variant on the run's training-data frequency and MLU, word length,
    concreteness and lexical class: (words table with the predictors, Markdown lines)."""
    try:
        if runs_dir is None:
            raise MissingError("pass --runs-dir so the run's training data can be read")
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


def _word_aoa(
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
    wdf, reg_lines = _word_regressions(wdf, runs_dir, run0, notes)
    wdf.to_csv(out / f"{tag}_word_aoa.csv", index=False)
    md = [
        f"{len(wdf)} CDI words occur as whole-word tokens (\u2581word, case kept) at least "
        f"{words.MIN_OCCURRENCES} times with {words.MIN_CONTEXT}+ tokens of context before them (one per sequence, "
        f"up to {words.MAX_OCCURRENCES} sequences; Chang & Bergen 2022, word_evaluation.py); model AoA vs child "
        f"AoA: n = {corr['n_words']}, Pearson r = {corr['pearson_r']:.3f} (p = {corr['pearson_p']:.3g}), "
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


def _token_study(
    so: ScoreOutput,
    out: pathlib.Path,
    runs_dir: pathlib.Path | None,
    xia_p: Sequence[float],
    x_axis: str,
    aoa_words: pathlib.Path | None,
    notes: list[str],
    progress: bool,
    per_run: dict[str, pd.DataFrame],
) -> list[str]:
    """Measures, classes, predictors and words for one token score output; returns Markdown lines. The per-run
    measures table goes into `per_run` under the output's name (the cross-run spread reads it there)."""
    tag = so.name
    md = [
        f"## Token learning curves: `{tag}`",
        "",
        f"Eval set `{so.meta.get('eval_set', '?')}`, {len(so.tokens)} "
        f"tokens in context, runs {', '.join(so.surprisal)}, vocab {so.vocab_size} (chance "
        f"{curves.chance_surprisal(so.vocab_size):.2f} bits), unit {so.meta.get('unit', 'bits')}.",
        "",
    ]
    steps = {r: ck["step"].to_numpy() for r, ck in so.checkpoints.items()}
    run0 = next(iter(so.surprisal))
    long, table, lines = _measures(so, out, steps, notes, progress)
    per_run[so.name] = long
    md += lines + _example_curves(so, out, table, steps, run0)
    md += _xia_classes(so, out, long, runs_dir, xia_p, x_axis, notes)
    sample_rows = _sample_rows(so)
    table, lines = _predictors(so, out, table, long, runs_dir, sample_rows, run0, notes)
    md += ["### Measures vs. frequency and n-gram predictors", ""] + lines
    table.to_csv(out / f"{tag}_token_table.csv.gz", compression=GZIP)
    md += ["### Word acquisition (Chang & Bergen 2022)", ""]
    if aoa_words is None or "token" not in so.tokens:
        return md + ["_Not computed: no child AoA word list (--aoa-words)._", ""]
    try:
        return md + _word_aoa(so, out, steps, run0, aoa_words, runs_dir, notes)
    except (FileNotFoundError, ValueError) as err:
        notes.append(f"{tag}: word AoA skipped: {err}")
        return md + ["_Not computed: see notes._", ""]


def write_report(
    score_dirs: Sequence[str | pathlib.Path],
    out: str | pathlib.Path,
    runs_dir: str | None = None,
    xia_p: float | Sequence[float] = xia.P_SWEEP,
    x_axis: str = "step",
    aoa_words: str | None = None,
    progress: bool = True,
    study: str | None = None,
) -> pathlib.Path:
    """Analyse the score outputs of one study into `out` (report.md, PNGs, CSVs); `study`: a study's runs.json
    (the runs' conditions). Returns the report path."""
    if x_axis not in xia.X_AXES:
        raise InputError(f"x axis must be one of {xia.X_AXES}; got {x_axis!r}")
    xia_p = [float(xia_p)] if np.isscalar(xia_p) else [float(p) for p in xia_p]
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file: give a folder for the report")
    if (out / "meta.json").exists() or (out / "config.json").exists():
        raise InputError(f"--out {out} is a score output or a run folder: give the report its own folder")
    out.mkdir(parents=True, exist_ok=True)
    rd = pathlib.Path(runs_dir) if runs_dir else None
    if rd is not None and not rd.is_dir():
        raise MissingError(f"--runs-dir {rd} is not a directory")
    outputs = [load_score_output(d) for d in score_dirs]
    notes: list[str] = []
    run_names = sorted({r for so in outputs for r in so.meta.get("runs", [])})
    md = [
        "# babyjax learning-curve report",
        "",
        f"Score outputs: {', '.join(f'`{so.path}`' for so in outputs)}. Runs: {', '.join(run_names)}.",
        "",
    ]
    aoa_path = pathlib.Path(aoa_words) if aoa_words else None
    md += study_section(outputs, rd, run_names, notes)
    per_run: dict[str, pd.DataFrame] = {}  # output name -> Chang et al.'s measures per run and token
    for so in tqdm(outputs, desc="score outputs", disable=not progress):
        if so.meta.get("kind") in ("tokens", "text") and so.tokens is not None and so.surprisal:
            md += _token_study(so, out, rd, xia_p, x_axis, aoa_path, notes, progress, per_run)
    md += pairs_section(outputs, out) + babylm2025_section(outputs, out)
    md += equal_perplexity_section(outputs, out, notes)
    md += crossrun.cross_run_sections(outputs, out, rd, run_names, study, notes, xia_p, per_run)
    md += loss_section(rd, run_names, out, notes)
    md += generations_section(outputs, rd, run_names) + references_section()
    md += ["## Notes", ""] + ([f"- {n}" for n in dict.fromkeys(notes)] or ["- none"]) + [""]
    report = out / "report.md"
    report.write_text("\n".join(md))
    return report

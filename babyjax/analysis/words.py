"""Word acquisition of Chang & Bergen (2022): word curves, sigmoid AoA and its correlation with children's AoA, over
whole-word tokens only (docs/science.md, "Word acquisition"); and `word_surprisal`, the surprisal of any scored
text's words (minicons `word_score`)."""

from __future__ import annotations

import pathlib
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from babyjax.analysis import curves, sigmoid
from babyjax.errors import InputError, MissingError

if TYPE_CHECKING:
    from babyjax.data.pipeline import TokenizedSplit

WORD_MARK = "\u2581"
WORD_MARKS = (WORD_MARK, "\u0120")  # a word's first piece: SentencePiece's '▁', byte-level BPE's 'Ġ' (GPT-2, Pythia)
MAX_OCCURRENCES = 512  # Chang & Bergen's --max_samples
MIN_OCCURRENCES = 8  # ... --min_samples: words seen fewer times get no curve
AOA_VARIANTS = ("model_aoa", "model_aoa_max_surprisal", "model_aoa_midpoint")
MIN_CONTEXT = 7  # ... --min_seq_len 8 (unidirectional): the word is at index 7 or later of its sequence


def load_child_aoa(path: str | pathlib.Path) -> pd.DataFrame:
    """word -> child AoA (months), lexical category and CHILDES frequency, from the CDI word list (single words,
    lower case; duplicated spellings averaged)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise MissingError(f"child AoA list not found at {path}: pass the CDI word_list.csv")
    df = pd.read_csv(path)
    missing = {"word_clean", "aoa"} - set(df.columns)
    if missing:
        raise InputError(f"{path} lacks columns {sorted(missing)}: expected the BabyLM 2023 AoA word_list.csv")
    df = df[~df["word_clean"].str.contains(" ")].assign(word=lambda d: d["word_clean"].str.lower())
    agg = {
        "child_aoa": ("aoa", "mean"),
        "lexical_category": ("lexical_category", "first"),
        "childes_frequency": ("frequency", "first"),
    }
    if "concreteness" in df:
        agg["concreteness"] = ("concreteness", "mean")
    return df.groupby("word", as_index=False).agg(**agg)


def word_occurrences(tokens: pd.DataFrame, words: set[str], seed: int = 0) -> pd.DataFrame:
    """Rows of tokens.csv that Chang & Bergen's `get_sample_sentences` (word_evaluation.py) would evaluate for the
    words in `words` (column `word` added): the exact piece "▁" + word ("Ġ" + word in byte-level BPE; case kept, the
    next piece not looked at) with at least MIN_CONTEXT tokens before it in its sequence; one occurrence per sequence
    (a seeded random one), from the first MAX_OCCURRENCES such sequences of each word."""
    piece = tokens["token"].astype(str)
    word = piece.str[1:]
    keep = piece.str.startswith(WORD_MARKS) & word.isin(words) & (tokens["position"].to_numpy() >= MIN_CONTEXT)
    occ = tokens[keep].assign(word=word[keep])
    occ = occ.assign(_r=np.random.default_rng(seed).random(len(occ))).sort_values(["word", "seq", "_r"])
    occ = occ.groupby(["word", "seq"], sort=False).head(1)
    return occ.groupby("word", sort=False).head(MAX_OCCURRENCES).drop(columns="_r").sort_index()


def word_curves(surprisal_TxN: np.ndarray, occurrences: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Per-word curves [T, W]: mean surprisal over each word's occurrences, for words with at least MIN_OCCURRENCES
    (Chang & Bergen's --min_samples)."""
    names, cols = [], []
    for word, grp in occurrences.groupby("word", sort=True):
        if len(grp) < MIN_OCCURRENCES:
            continue
        names.append(word)
        with warnings.catch_warnings():  # a checkpoint where no occurrence is scored stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            cols.append(np.nanmean(np.asarray(surprisal_TxN[:, grp.index.to_numpy()], np.float64), axis=1))
    return names, (np.stack(cols, 1) if cols else np.zeros((np.shape(surprisal_TxN)[0], 0)))


def word_aoa(
    surprisal_TxN: np.ndarray, steps_T: np.ndarray, tokens: pd.DataFrame, child: pd.DataFrame, vocab_size: int
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Model AoA (log10 step, sigmoid) per CDI word with whole-word occurrences, joined with child AoA; and the Pearson
    / Spearman correlation between them. Occurrences as in `word_occurrences`. Checkpoints unscored for every
    word (all NaN) are dropped first; a word with NaN at some scored checkpoint is fitted over its own finite
    checkpoints (needs MIN_SIGMOID_POINTS after step 0), the others over all of them."""
    occ = word_occurrences(tokens, set(child["word"]))
    names, curves_TxW = word_curves(surprisal_TxN, occ)
    steps_T = np.asarray(steps_T)
    finite_TxW = np.isfinite(curves_TxW)
    scored_T = finite_TxW.any(1) if curves_TxW.shape[1] else np.ones(len(steps_T), bool)
    curves_TxW, finite_TxW, steps_T = curves_TxW[scored_T], finite_TxW[scored_T], steps_T[scored_T]
    df = pd.DataFrame(
        {
            "word": names,
            "n_occurrences": [int((occ["word"] == w).sum()) for w in names],
            "token_id": [
                int(occ.loc[occ["word"] == w, "token_id"].iloc[0]) if "token_id" in occ else -1 for w in names
            ],
            "final_surprisal": np.nan,
            **dict.fromkeys(AOA_VARIANTS, np.nan),
        }
    )
    if len(names):
        with warnings.catch_warnings():  # a word unscored at all of the last checkpoints: NaN, silently
            warnings.simplefilter("ignore", RuntimeWarning)
            df["final_surprisal"] = np.nanmean(curves_TxW[-min(curves.LAST_N, len(curves_TxW)) :], 0)
        _fit_words(curves_TxW, finite_TxW, steps_T, curves.chance_surprisal(vocab_size), df)
    df = df.merge(child, on="word", how="left")
    ok = df["model_aoa"].notna() & df["child_aoa"].notna()
    corr = {
        "n_words": int(ok.sum()),
        "pearson_r": np.nan,
        "pearson_p": np.nan,
        "spearman_rho": np.nan,
        "spearman_p": np.nan,
    }
    if ok.sum() >= 3 and df.loc[ok, "model_aoa"].nunique() > 1:
        model_aoa, child_aoa = df.loc[ok, "model_aoa"], df.loc[ok, "child_aoa"]
        corr["pearson_r"], corr["pearson_p"] = map(float, stats.pearsonr(model_aoa, child_aoa))
        corr["spearman_rho"], corr["spearman_p"] = map(float, stats.spearmanr(model_aoa, child_aoa))
    return df, corr


def _fit_words(
    curves_TxW: np.ndarray, finite_TxW: np.ndarray, steps_T: np.ndarray, chance: float, df: pd.DataFrame
) -> None:
    """Fill df's AoA variants, fitting each group of words that share finite checkpoints together (a group needs
    MIN_SIGMOID_POINTS after step 0): `model_aoa` halfway from chance to the curve's minimum (Chang & Bergen's
    default), `model_aoa_max_surprisal` halfway from the curve's maximum instead of chance, `model_aoa_midpoint` the
    sigmoid's own midpoint, clipped to the steps (their get_lm_aoa's max_surprisal and midpoint types)."""
    use_TxW = finite_TxW & (steps_T > 0)[:, None]
    patterns, which_W = np.unique(use_TxW.T, axis=0, return_inverse=True)
    for k, rows_T in enumerate(patterns):
        cols = np.flatnonzero(np.ravel(which_W) == k)
        if rows_T.sum() < curves.MIN_SIGMOID_POINTS:
            continue
        x = np.log10(steps_T[rows_T].astype(np.float64))
        y = curves_TxW[np.ix_(rows_T, cols)]
        aoa, _, params = sigmoid.sigmoid_aoa(x, y, chance)
        neg = np.stack([-params[:, 0], -params[:, 1], params[:, 2], params[:, 3]], 1)  # the fit, increasing
        df.loc[cols, "model_aoa"] = aoa
        df.loc[cols, "model_aoa_max_surprisal"] = [
            sigmoid.crossing(neg[i : i + 1], -y[:, i].max(), -y[:, i : i + 1].min(0), x.min(), x.max())[0]
            for i in range(len(cols))
        ]
        df.loc[cols, "model_aoa_midpoint"] = np.clip(params[:, 2], x.min(), x.max())


def word_stats(split: TokenizedSplit, token_ids: Mapping[str, int]) -> pd.DataFrame:
    """Chang & Bergen's LmLogFreq and LmMLU per word from the training stream: `log_freq`, the natural log of its
    whole-word token's count, and `mlu`, the mean length in tokens of the training documents (lines) that hold it;
    with `n_chars`, the word's length in characters (their NChars)."""
    tokens = np.asarray(split.tokens, np.int64)
    lengths = np.diff(split.doc_starts) - 1  # tokens of each document, its EOS left out
    doc_of = np.repeat(np.arange(len(lengths)), np.diff(split.doc_starts))
    order = np.argsort(tokens, kind="stable")
    sorted_ids = tokens[order]
    rows = []
    for word, tid in token_ids.items():
        where = order[np.searchsorted(sorted_ids, tid, "left") : np.searchsorted(sorted_ids, tid, "right")]
        docs = np.unique(doc_of[where])
        rows.append(
            {
                "word": word,
                "log_freq": np.log(len(where)) if len(where) else np.nan,
                "mlu": float(lengths[docs].mean()) if len(docs) else np.nan,
                "n_chars": len(word),
            }
        )
    return pd.DataFrame(rows, columns=["word", "log_freq", "mlu", "n_chars"])


def aoa_regressions(df: pd.DataFrame, aoa: str = "model_aoa") -> tuple[pd.DataFrame, dict[str, float]]:
    """Chang & Bergen's run_regressions (tacl_analyses.rmd) for one AoA column: AoA ~ log_freq + mlu + n_chars +
    concreteness + lexical class (OLS); for each predictor the likelihood-ratio test of dropping it (their lrtest)
    and, when significant, the coefficient's sign. Returns (table, {"n", "adj_r2_log_freq", "adj_r2_all"})."""
    import statsmodels.formula.api as smf

    preds = {
        "log_freq": "log_freq",
        "mlu": "mlu",
        "n_chars": "n_chars",
        "concreteness": "concreteness",
        "lexical_class": "C(lexical_category)",
    }
    data = df.dropna(subset=[aoa, "log_freq", "mlu", "n_chars", "concreteness", "lexical_category"])
    if len(data) < len(preds) + 5 or data["lexical_category"].nunique() < 2:
        return pd.DataFrame(), {"n": len(data)}
    full = smf.ols(f"{aoa} ~ {' + '.join(preds.values())}", data).fit()
    rows = []
    for name, term in preds.items():
        reduced = smf.ols(f"{aoa} ~ {' + '.join(t for t in preds.values() if t != term)}", data).fit()
        p = float(stats.chi2.sf(2 * (full.llf - reduced.llf), full.df_model - reduced.df_model))
        coef = full.params.get(term, np.nan)
        sign = "ns" if p >= 0.05 else ("levels" if name == "lexical_class" else "+" if coef > 0 else "-")
        rows.append({"aoa": aoa, "predictor": name, "coef": coef, "lrt_p": p, "sign": sign})
    fit_freq = smf.ols(f"{aoa} ~ log_freq", data).fit()
    return pd.DataFrame(rows), {
        "n": len(data),
        "adj_r2_log_freq": fit_freq.rsquared_adj,
        "adj_r2_all": full.rsquared_adj,
    }


def word_surprisal(surprisal: np.ndarray, tokens: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Word surprisal (docs/science.md, "Word surprisal") of surprisal [..., T] (e.g. a run's [checkpoints, tokens]
    matrix) over tokens.csv. Returns (words, [..., W]): words has seq, word (index within the sequence), first_index
    (its first row of tokens.csv), num_pieces (Chang & Bergen 2022 keep single-piece words) and text."""
    seq, pos = tokens["seq"].to_numpy(np.int64), tokens["position"].to_numpy(np.int64)
    pieces = tokens["token"].astype(str).to_numpy()
    if len(seq) == 0:
        return pd.DataFrame(columns=["seq", "word", "first_index", "num_pieces", "text"]), np.zeros(
            np.shape(surprisal)[:-1] + (0,), np.float64
        )
    new_seq = np.r_[True, seq[1:] != seq[:-1]]
    starts = new_seq | np.char.startswith(pieces.astype(str), WORD_MARK) | np.r_[True, pos[1:] != pos[:-1] + 1]
    first = np.flatnonzero(starts)
    counts = np.diff(np.r_[first, len(seq)])
    texts = ["".join(pieces[a : a + n]).replace(WORD_MARK, " ").strip() for a, n in zip(first, counts)]
    words = pd.DataFrame({"seq": seq[first], "first_index": first, "num_pieces": counts, "text": texts})
    words.insert(1, "word", words.groupby("seq").cumcount())
    return words, np.add.reduceat(np.asarray(surprisal, np.float64), first, axis=-1)

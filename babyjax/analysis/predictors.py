"""Predictors of the learning-curve measures after Chang, Tu & Bergen (2023) (docs/science.md, "Predictors"): n-gram
log2 probabilities from the run's own training tokens as their `CurveAnnotator.get_ngram_surprisals` counts them
(unigrams and bigrams whole, orders 3+ without n-grams seen once; backoff to shorter orders; a token unseen as a
unigram gets the smallest unigram probability among the tokens looked up), predictors clipped to 5 standard
deviations, rank correlations and OLS. Sequences start with n-1 PADs (-1); n-grams are counted by 64-bit polynomial
hashes (collision chance about n^2 / 2^65: negligible below 1e8 types)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from babyjax.data.tokenizer import EOS_ID, MASK_ID
from babyjax.errors import InputError, MissingError

if TYPE_CHECKING:
    from babyjax.data.pipeline import TokenizedSplit

_MULT = np.uint64(0x9E3779B97F4A7C15)
PAD = -1
PRUNE_FROM_ORDER = 3  # Chang et al.'s annotate_curves.py: prune_minimum=None for n = 1, 2; 2 for n = 3, 4, 5
CLIP_SD = 5.0  # Chang et al.'s get_features_dataframe(clip_predictors=5.0)
EXPECTED_SIGNS = {  # Chang et al. (2023): frequent / predictable tokens are learned better on every measure
    "final_surprisal": -1,
    "within_run_var": -1,
    "aoa_gam": -1,
    "aoa_sigmoid": -1,
    "forgettability": -1,
    "cross_run_var": -1,
}


def _hash(cols: Sequence[np.ndarray]) -> np.ndarray:
    h = np.zeros(len(cols[0]), np.uint64)
    with np.errstate(over="ignore"):
        for c in cols:
            h = h * _MULT + (c.astype(np.int64) + 2).astype(np.uint64)
    return h


@dataclasses.dataclass
class NgramCounts:
    """n-gram tables for orders 1..order: per order, sorted hashes of n-grams and their log2 probability (orders
    PRUNE_FROM_ORDER and up without the n-grams seen fewer than min_count times; probabilities over the kept ones)."""

    order: int
    keys: list[np.ndarray]
    logprob: list[np.ndarray]
    min_unigram_logprob: float
    n_tokens: int

    @classmethod
    def from_sequences(cls, sequences: Iterable[Sequence[int]], order: int = 5, min_count: int = 2) -> NgramCounts:
        """Counts over sequences (documents), each preceded by order-1 PADs (the start of a sequence)."""
        pad = np.full(order - 1, PAD, np.int64)
        parts = [part for seq in sequences if len(seq) for part in (pad, np.asarray(seq, np.int64))]
        return cls.from_padded_stream(np.concatenate(parts) if parts else np.zeros(0, np.int64), order, min_count)

    @classmethod
    def from_split(cls, split: TokenizedSplit, order: int = 5, min_count: int = 2) -> NgramCounts:
        """Counts over a training token stream `EOS d1 EOS d2 ...` (babyjax.data.pipeline): each document separator
        EOS becomes order-1 PADs, so n-grams never cross documents, exactly as `from_sequences` of the documents."""
        tokens_T = np.asarray(split.tokens, np.int64)
        doc_starts = np.asarray(split.doc_starts[:-1], np.int64)
        sep = np.zeros(len(tokens_T), bool)
        sep[doc_starts] = True
        docs_so_far_T = np.cumsum(sep)  # the EOS slot of each document grows into order-1 PAD slots
        stream = np.full(len(tokens_T) + len(doc_starts) * (order - 2), PAD, np.int64)
        stream[(np.arange(len(tokens_T)) + (order - 2) * docs_so_far_T)[~sep]] = tokens_T[~sep]
        return cls.from_padded_stream(stream, order, min_count)

    @classmethod
    def from_padded_stream(cls, stream: np.ndarray, order: int = 5, min_count: int = 2) -> NgramCounts:
        """Counts over one stream where every real token is preceded by order-1 tokens or PADs."""
        if not (stream != PAD).any():
            raise InputError("no training tokens to count n-grams from")
        real = np.flatnonzero(stream != PAD)  # positions of real tokens (targets)
        keys, logprob = [], []
        for n in range(1, order + 1):
            cols = [stream[real - (n - 1 - k)] for k in range(n)]
            uniq, counts = np.unique(_hash(cols), return_counts=True)
            keep = counts >= (min_count if n >= PRUNE_FROM_ORDER else 1)
            ctx_of = np.unique(_hash(cols[:-1]) if n > 1 else np.zeros(len(real), np.uint64), return_inverse=True)[1]
            # context totals over kept n-grams: sum kept counts per context
            gram_idx = np.searchsorted(uniq, _hash(cols))
            kept_tok = keep[gram_idx]
            ctx_tot = np.bincount(ctx_of[kept_tok], minlength=ctx_of.max() + 1)
            first_ctx = np.zeros(len(uniq), np.int64)
            first_ctx[gram_idx] = ctx_of
            with np.errstate(divide="ignore"):
                lp = np.log2(counts / np.maximum(ctx_tot[first_ctx], 1))
            keys.append(uniq[keep]), logprob.append(lp[keep])
        return cls(order, keys, logprob, float(logprob[0].min()), len(real))

    def lookup(self, ids: np.ndarray, n: int) -> np.ndarray:
        """log2 p of the last column given the others ([N, n] ids, PAD for missing context); NaN if pruned."""
        h = _hash([ids[:, k] for k in range(n)])
        table = self.keys[n - 1]
        i = np.clip(np.searchsorted(table, h), 0, max(len(table) - 1, 0))
        hit = table[i] == h if len(table) else np.zeros(len(h), bool)
        return np.where(hit, self.logprob[n - 1][i] if len(table) else np.nan, np.nan)

    def logprob_with_backoff(self, context_ids_NxM: np.ndarray) -> np.ndarray:
        """log2 p(target | up to order-1 preceding tokens), backing off to shorter orders; last column is the target.
        A target unseen even as a unigram gets the smallest unigram log2 p among the targets looked up (Chang et al.'s
        `get_ngram_surprisals_with_backoff`: the largest unigram surprisal of the evaluation set)."""
        out = np.full(len(context_ids_NxM), np.nan)
        for n in range(min(self.order, context_ids_NxM.shape[1]), 0, -1):
            todo = np.isnan(out)
            if not todo.any():
                break
            out[todo] = self.lookup(context_ids_NxM[todo][:, -n:], n)
        seen = self.lookup(context_ids_NxM[:, -1:], 1)
        fill = np.nanmin(seen) if np.isfinite(seen).any() else self.min_unigram_logprob
        return np.where(np.isnan(out), fill, out)


N_SPECIAL = MASK_ID + 1  # PAD, UNK, BOS, EOS, MASK: never counted as co-occurring tokens


def contextual_diversity(
    split: TokenizedSplit, vocab_size: int, window: int = 30, most_frequent: int = 10_000
) -> np.ndarray:
    """[vocab_size] Chang et al.'s `get_contextual_diversities` + `adjust_contextual_diversities`: the number of
    distinct tokens among the `most_frequent` ids (SentencePiece ids are roughly in frequency order, as theirs) seen in
    the `window` tokens before any occurrence of a token in the training stream (documents never crossed; special
    tokens not counted), then the residual of a GAM of that count on log10 unigram frequency (25 splines, lambda
    grid search: their pygam call, through babyjax's identical smoother). EOS, like their CLS, gets the minimum."""
    from babyjax.analysis.curves import GamSmoother

    tokens = np.asarray(split.tokens, np.int64)
    doc_T = np.searchsorted(split.doc_starts, np.arange(len(tokens)), side="right") - 1
    seen = np.zeros((vocab_size, most_frequent), bool)
    for k in range(1, window + 1):
        tgt, ctx = tokens[k:], tokens[:-k]
        ok = (doc_T[k:] == doc_T[:-k]) & (ctx >= N_SPECIAL) & (ctx < most_frequent) & (tgt >= N_SPECIAL)
        seen[tgt[ok], ctx[ok]] = True
    raw = seen.sum(1).astype(np.float64)
    counts = np.bincount(tokens[tokens >= N_SPECIAL], minlength=vocab_size).astype(np.float64)
    keep = counts > 0
    logf = np.log10(np.where(keep, counts, counts[keep].min()) / counts.sum())
    sm = GamSmoother.build(logf[keep])
    coef, _, _ = sm.fit(raw[keep][:, None])
    adjusted = np.full(vocab_size, np.nan)
    adjusted[keep] = raw[keep] - sm.predict(coef)[:, 0]
    return np.where(np.isnan(adjusted), np.nanmin(adjusted), adjusted)


def context_logprob(rows_NxL: np.ndarray, seq_N: np.ndarray, pos_N: np.ndarray, counts: NgramCounts) -> np.ndarray:
    """[N] Chang et al.'s `get_context_ngram_logppls(ngram_n=1)`, negated: the mean unigram log2 p of the tokens before
    each target in its row (EOS separators left out), NaN without context."""
    uni = counts.logprob_with_backoff(rows_NxL.reshape(-1, 1)).reshape(rows_NxL.shape)
    uni = np.where(rows_NxL == EOS_ID, 0.0, uni)
    cum = np.concatenate([np.zeros((len(rows_NxL), 1)), np.cumsum(uni, 1)], 1)
    n = np.concatenate([np.zeros((len(rows_NxL), 1)), np.cumsum(rows_NxL != EOS_ID, 1)], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return cum[seq_N, pos_N] / n[seq_N, pos_N]


def ngram_contexts(target_N: np.ndarray, previous: Callable[[int], np.ndarray], order: int) -> np.ndarray:
    """[N, order] ids: the order-1 tokens before each target (`previous(k)`: the ids k tokens back, PAD where unknown
    or before the sequence), then the target; once one is PAD, so is every earlier one."""
    ctx = np.full((len(target_N), order), PAD, np.int64)
    ctx[:, -1] = target_N
    for k in range(1, order):
        ctx[:, -1 - k] = np.where(ctx[:, -k] == PAD, PAD, previous(k))
    return ctx


def token_contexts(tokens: pd.DataFrame, order: int = 5) -> tuple[np.ndarray, int]:
    """[N, order] n-gram contexts (`ngram_contexts`) from tokens.csv rows (seq, position, token_id). Preceding tokens
    missing from the table (a sampled tokens-in-context set) are PAD too; returns the number of tokens whose context
    was truncated that way."""
    seq, pos = tokens["seq"].to_numpy(), tokens["position"].to_numpy()
    key = dict(zip(zip(seq, pos), tokens["token_id"].to_numpy()))
    ctx = ngram_contexts(
        tokens["token_id"].to_numpy(),
        lambda k: np.array([key.get((s, p - k), PAD) for s, p in zip(seq, pos)], np.int64),
        order,
    )
    truncated = (ctx[:, :-1] == PAD) & (pos[:, None] - np.arange(order - 1, 0, -1) >= 0)
    return ctx, int(truncated.any(1).sum())


def token_predictors(tokens: pd.DataFrame, counts: NgramCounts, contexts: np.ndarray | None = None) -> pd.DataFrame:
    """unigram, 5-gram (log2 prob), 5-gram residualised on unigram (OLS), and log2 context length per token; the
    predictors (unigram, ngram_resid, log_context_length) clipped to mean +- CLIP_SD standard deviations, as Chang et
    al. clip theirs. contexts: [N, order] ids as from `token_contexts` (the default), e.g. a token sample's rows."""
    import statsmodels.api as sm

    ctx = token_contexts(tokens, counts.order)[0] if contexts is None else contexts
    uni = counts.logprob_with_backoff(ctx[:, -1:])
    ngram = counts.logprob_with_backoff(ctx)
    resid = (
        sm.OLS(ngram, sm.add_constant(uni, has_constant="add")).fit().resid if np.ptp(uni) > 0 else ngram - ngram.mean()
    )
    ctx_len = (
        tokens["context_length"].to_numpy(np.float64)
        if "context_length" in tokens
        else tokens["position"].to_numpy(np.float64) + 1
    )
    out = pd.DataFrame(
        {
            "unigram": uni,
            f"{counts.order}gram": ngram,
            "ngram_resid": np.asarray(resid),
            "log_context_length": np.log2(np.maximum(ctx_len, 1.0)),
        },
        index=tokens.index,
    )
    for col in ("unigram", "ngram_resid", "log_context_length"):
        out[col] = clip_sd(out[col])
    return out


def clip_sd(values: pd.Series) -> pd.Series:
    """Values clipped to their mean +- CLIP_SD population standard deviations (Chang et al.'s clip_predictors)."""
    mu, sd = values.mean(), values.std(ddof=0)
    return values.clip(mu - CLIP_SD * sd, mu + CLIP_SD * sd)


def relate(
    measures: pd.DataFrame,
    predictors: pd.DataFrame,
    predictor_cols: Sequence[str] = ("unigram", "ngram_resid", "log_context_length"),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Spearman table, OLS table): each measure vs each predictor, and measure ~ all predictors (statsmodels OLS,
    standardised predictors). Columns `expected` and `holds` compare the sign with Chang et al.'s findings."""
    import statsmodels.api as sm
    from scipy import stats

    rank_rows, ols_rows = [], []
    for m in measures.columns:
        y = measures[m].to_numpy(np.float64)
        for pcol in predictor_cols:
            x = predictors[pcol].to_numpy(np.float64)
            ok = np.isfinite(y) & np.isfinite(x)
            rho, pv = (
                (np.nan, np.nan)
                if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0
                else stats.spearmanr(x[ok], y[ok])
            )
            exp = EXPECTED_SIGNS.get(m) if pcol in ("unigram", "ngram_resid") else None
            holds = "" if exp is None or not np.isfinite(rho) else ("yes" if np.sign(rho) == exp else "no")
            rank_rows.append(
                {
                    "measure": m,
                    "predictor": pcol,
                    "spearman_rho": rho,
                    "p_value": pv,
                    "n": int(ok.sum()),
                    "expected": {-1: "-", 1: "+"}.get(exp, ""),
                    "holds": holds,
                }
            )
        xs = predictors[list(predictor_cols)].to_numpy(np.float64)
        ok = np.isfinite(y) & np.isfinite(xs).all(1)
        if ok.sum() <= len(predictor_cols) + 1:
            continue
        sd = xs[ok].std(0)
        z = (xs[ok] - xs[ok].mean(0)) / np.where(sd > 0, sd, 1)
        fit = sm.OLS(y[ok], sm.add_constant(z, has_constant="add")).fit()
        for i, pcol in enumerate(predictor_cols):
            ols_rows.append(
                {
                    "measure": m,
                    "predictor": pcol,
                    "coef_per_sd": fit.params[i + 1],
                    "t": fit.tvalues[i + 1],
                    "p_value": fit.pvalues[i + 1],
                    "r2": fit.rsquared,
                    "n": int(ok.sum()),
                }
            )
    return pd.DataFrame(rank_rows), pd.DataFrame(ols_rows)


def require_own_run(meta: dict, run: str) -> None:
    """MissingError when `run` of a score output (its meta.json) is an imported series: its training data is not
    known here, so the predictors that need it are left out."""
    source = str(meta.get("run_workdirs", {}).get(run, ""))
    if source.startswith("hf:"):
        raise MissingError(
            f"run {run} is an imported series ({source}): its training data is not known here, so the predictors "
            "that need it (n-gram, frequency, contextual diversity) are left out"
        )


def training_split(run_dir: str | os.PathLike) -> TokenizedSplit:
    """Exactly the token stream the run trained on: `babyjax.data.pipeline.load_split_tokens` of the train split,
    for the run's config.json data settings and its tokenizer.model (cached beside the prepared dataset). Never
    downloads or prepares the dataset: a DataError says when it is not prepared on this machine."""
    from babyjax.checkpoints.run import RunDir
    from babyjax.data.pipeline import load_split_tokens

    run = RunDir.open(run_dir, what="each run folder of --runs-dir")
    cfg, tok = run.config(), run.tokenizer()
    missing = [k for k in ("track", "max_train_lines", "dir", "tfds_dir") if "data" not in cfg or k not in cfg.data]
    if missing:
        raise InputError(
            f"{run.config_path} lacks data.{', data.'.join(missing)}: it must be a babyjax run's config.json"
        )
    return load_split_tokens(cfg.data, tok, "train", prepare=False)

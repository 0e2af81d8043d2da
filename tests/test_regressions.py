"""Chang et al.'s regressions (run_lrts, VIFs) and the contextual-diversity and context predictors, against
independent computations: statsmodels' formula API and brute-force counts."""

import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import statsmodels.formula.api as smf

from babyjax.analysis import predictors, regressions


def test_sequential_lrts_equal_their_run_lrts_written_with_formulas():
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({p: rng.normal(size=n) for p in regressions.ORDER})
    df["y"] = (
        -0.8 * df["unigram"]
        + 0.3 * df["contextual_diversity"]
        + 0.2 * df["unigram"] * df["ngram_resid"]
        + rng.normal(size=n)
    )
    got = regressions.sequential_lrts(df, "y")
    prev, preds = None, []
    for p in regressions.ORDER:  # run_regressions.py's run_lrts, as they wrote it
        preds.append(p)
        fit = smf.ols(f"y ~ {' + '.join(preds)} + 1", data=df).fit()
        row = got[got["added"] == p].iloc[0]
        assert row["adj_r2"] == pytest.approx(fit.rsquared_adj, rel=1e-10)
        if prev is not None:
            pv = scipy.stats.chi2.sf(-2 * (prev.llf - fit.llf), fit.df_model - prev.df_model)
            assert row["lrt_p"] == pytest.approx(pv, rel=1e-8, abs=1e-300)
        prev = fit
    inter = " + ".join(f"{a}*{b}" for a, b in itertools.combinations(regressions.ORDER, 2))
    fit = smf.ols(f"y ~ {' + '.join(preds)} + {inter} + 1", data=df).fit()
    assert got.iloc[-1]["adj_r2"] == pytest.approx(fit.rsquared_adj, rel=1e-10) and got.iloc[-1]["lrt_p"] < 0.05
    vif = regressions.vifs(df).set_index("predictor")["vif"]
    assert (vif > 0.99).all() and (vif < 1.2).all()  # independent predictors
    df["collinear"] = df["unigram"] + 0.05 * rng.normal(size=n)
    assert regressions.vifs(df, ["unigram", "collinear"])["vif"].min() > 50


def test_contextual_diversity_counts_distinct_preceding_tokens():
    from babyjax.data.pipeline import TokenizedSplit

    rng = np.random.default_rng(1)
    docs = [list(rng.integers(5, 40, rng.integers(3, 30))) for _ in range(60)]
    tokens = np.concatenate([[3, *d] for d in docs]).astype(np.int32)
    starts = np.concatenate([[0], np.cumsum([len(d) + 1 for d in docs])])
    split = TokenizedSplit(tokens=tokens, doc_starts=starts, words_cum=np.zeros(len(starts), np.int64))
    seen = {t: set() for t in range(40)}
    for d in docs:  # their update_co_occurrences, per document, ids below most_frequent only
        for i, t in enumerate(d):
            seen[t].update(c for c in d[max(0, i - 4) : i] if c < 30)
    raw = np.array([len(seen[t]) for t in range(40)], float)
    got = predictors.contextual_diversity(split, 40, window=4, most_frequent=30)
    present = np.bincount(np.concatenate(docs), minlength=40) > 0
    # adjusted = raw minus a smooth function of frequency: tokens of equal frequency keep their raw difference
    freq = np.bincount(np.concatenate(docs), minlength=40)
    for a, b in itertools.combinations(np.flatnonzero(present), 2):
        if freq[a] == freq[b]:
            assert got[a] - got[b] == pytest.approx(raw[a] - raw[b], abs=1e-6)
    assert np.isfinite(got).all() and got[~present].max() <= got[present].min() + 1e-9


def test_context_logprob_is_the_mean_unigram_logprob_of_the_context():
    counts = predictors.NgramCounts.from_sequences([[5, 6, 7, 8, 9, 5, 5]] * 3, order=5)
    rows = np.array([[5, 6, 3, 7, 8, 9], [9, 9, 9, 5, 6, 7]])
    seq, pos = np.array([0, 0, 1, 1]), np.array([1, 4, 1, 5])
    got = predictors.context_logprob(rows, seq, pos, counts)
    lp = lambda t: counts.logprob_with_backoff(np.array([[t]]))[0]
    want = [lp(5), np.mean([lp(5), lp(6), lp(7)]), lp(9), np.mean([lp(9)] * 3 + [lp(5), lp(6)])]  # EOS left out
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_part_of_speech_enters_as_one_categorical_step():
    rng = np.random.default_rng(3)
    n = 300
    df = pd.DataFrame({p: rng.normal(size=n) for p in regressions.ORDER})
    df["pos"] = rng.choice(["NN", "VB", "DT", "JJ"], n)
    df["pos_bilu"] = rng.choice(["U", "B", "L"], n)
    df["y"] = df["unigram"] + 0.5 * (df["pos"] == "NN") + rng.normal(size=n)
    got = regressions.sequential_lrts(df, "y").set_index("added")
    base = smf.ols(f"y ~ {' + '.join(regressions.ORDER)} + 1", data=df).fit()
    with_pos = smf.ols(f"y ~ {' + '.join(regressions.ORDER)} + C(pos) + C(pos_bilu) + 1", data=df).fit()
    assert got.loc["pos+pos_bilu", "adj_r2"] == pytest.approx(with_pos.rsquared_adj, rel=1e-10)
    assert got.loc["pos+pos_bilu", "lrt_p"] == pytest.approx(
        scipy.stats.chi2.sf(-2 * (base.llf - with_pos.llf), with_pos.df_model - base.df_model), rel=1e-8
    )


def test_tokens_get_their_words_part_of_speech_and_place():
    from babyjax.analysis import pos

    pieces = [
        "<pad>",
        "<unk>",
        "<s>",
        "</s>",
        "<mask>",
        "\u2581the",
        "\u2581little",
        "\u2581do",
        "g",
        "\u2581ran",
        ".",
        "\u2581play",
        "ing",
        "ful",
        "ly",
    ]
    rows = np.array([[5, 6, 7, 8, 9, 10, 3, 5, 11, 12, 13, 14]])
    tags, bilu = pos.tag_rows(rows, pieces, range(5))
    assert list(tags[0, :6]) == ["DT", "JJ", "NN", "NN", "VBD", "."] and tags[0, 6] == "[SPECIAL]"
    assert list(bilu[0]) == ["U", "U", "B", "L", "U", "U", "U", "U", "B", "I", "I", "L"]
    assert len(set(tags[0, 8:])) == 1  # one word ("playingfully"): one tag for its four pieces

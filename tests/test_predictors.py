"""n-gram predictors (Chang et al. backoff), token contexts, and the measure-predictor tables."""

import numpy as np
import pandas as pd
import pytest

from babyjax.analysis import predictors


def chang_ngram_logprobs(seqs, queries, order=5):
    """Chang et al.'s CurveAnnotator.get_ngram_surprisals + _with_backoff, written as plain dict counting: sequences
    start with order-1 placeholders, n-grams of orders 3+ seen once are pruned, p = count / context total over what
    is kept, backoff to shorter orders, unseen unigrams get the largest unigram surprisal among the queries."""
    from collections import Counter, defaultdict

    tables = {}
    for n in range(1, order + 1):
        grams = defaultdict(Counter)
        for seq in seqs:
            cur = [-1] * (n - 1)
            for t in seq:
                grams[tuple(cur[len(cur) - n + 1 :] if n > 1 else ())][t] += 1
                cur.append(t)
        if n >= 3:
            grams = {c: Counter({t: k for t, k in cnt.items() if k >= 2}) for c, cnt in grams.items()}
        tables[n] = {c: {t: k / sum(cnt.values()) for t, k in cnt.items()} for c, cnt in grams.items() if cnt}
    by_order = {
        n: np.array([np.log2(tables[n].get(tuple(q[len(q) - n : -1]), {}).get(q[-1], np.nan)) for q in queries])
        for n in range(1, order + 1)
    }
    by_order[1] = np.where(np.isnan(by_order[1]), np.nanmin(by_order[1]), by_order[1])
    out = by_order[order].copy()
    for n in range(order - 1, 0, -1):
        out = np.where(np.isnan(out), by_order[n], out)
    return out


def test_ngram_logprobs_equal_a_brute_force_count_of_changs_rule():
    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(5, 12, rng.integers(1, 15))) for _ in range(300)] + [[40, 41]]  # 40, 41: seen once
    c = predictors.NgramCounts.from_sequences(seqs, order=5, min_count=2)
    queries = []
    for _ in range(500):  # contexts from the corpus (mostly seen) and random ones (backing off), some unseen targets
        seq = seqs[rng.integers(len(seqs))]
        i = int(rng.integers(len(seq)))
        q = [-1] * 4 + list(seq[: i + 1])
        if rng.random() < 0.3:
            q[-1] = int(rng.integers(5, 14))  # 12, 13 never occur
        queries.append(q[-5:])
    queries.append([-1, -1, -1, -1, 40])  # a unigram seen once: kept, so is (PAD, 40), the 3-gram is pruned
    q = np.array(queries)
    np.testing.assert_allclose(c.logprob_with_backoff(q), chang_ngram_logprobs(seqs, queries), rtol=0, atol=1e-12)
    total = sum(map(len, seqs))
    assert c.logprob_with_backoff(q[-1:, -1:])[0] == pytest.approx(np.log2(1 / total))
    assert np.isnan(c.lookup(np.array([[-1, -1, 40]]), 3)[0])  # a 3-gram seen once: pruned
    assert c.lookup(np.array([[-1, 40]]), 2)[0] == pytest.approx(np.log2(1 / len(seqs)))  # bigrams whole
    with pytest.raises(ValueError, match="no training tokens"):
        predictors.NgramCounts.from_sequences([[]])


def test_predictors_are_clipped_at_five_standard_deviations():
    tokens = pd.DataFrame({"seq": np.arange(200), "position": 0, "token_id": 5, "context_length": 1})
    tokens.loc[0, "context_length"] = 10**12  # one huge context: log2 = 40 bits, far beyond 5 SD
    c = predictors.NgramCounts.from_sequences([[5, 6]] * 10, order=5)
    pred = predictors.token_predictors(tokens, c)
    raw = np.log2(tokens["context_length"].to_numpy(float))
    assert pred["log_context_length"].iloc[0] == pytest.approx(raw.mean() + 5 * raw.std())
    np.testing.assert_allclose(pred["log_context_length"].iloc[1:], 0.0)


def test_token_contexts_and_predictors():
    tokens = pd.DataFrame(
        {
            "seq": [0, 0, 0, 0, 1, 1],
            "position": [0, 1, 2, 3, 0, 2],
            "token_id": [5, 6, 7, 8, 5, 7],
            "context_length": [1, 2, 3, 4, 1, 3],
        }
    )
    ctx, truncated = predictors.token_contexts(tokens, order=5)
    np.testing.assert_array_equal(ctx[3], [-1, 5, 6, 7, 8])
    np.testing.assert_array_equal(ctx[5], [-1, -1, -1, -1, 7])  # position 1 of seq 1 not in the table
    assert truncated == 1
    c = predictors.NgramCounts.from_sequences([[5, 6, 7, 8, 9]] * 3 + [[7, 5]] * 2, order=5)
    pred = predictors.token_predictors(tokens, c)
    assert list(pred.columns) == ["unigram", "5gram", "ngram_resid", "log_context_length"]
    assert pred["5gram"].iloc[3] == pytest.approx(0.0) and abs(pred["ngram_resid"].mean()) < 1e-9
    np.testing.assert_allclose(pred["log_context_length"], np.log2([1, 2, 3, 4, 1, 3]))


def test_relate_recovers_directions():
    rng = np.random.default_rng(0)
    n = 400
    pred = pd.DataFrame(
        {
            "unigram": rng.normal(-10, 2, n),
            "ngram_resid": rng.normal(0, 1, n),
            "log_context_length": np.log2(rng.integers(1, 128, n)),
        }
    )
    meas = pd.DataFrame(
        {
            "final_surprisal": -0.8 * pred["unigram"] - 0.5 * pred["ngram_resid"] + rng.normal(0, 1, n),
            "aoa_gam": 5 - 0.1 * pred["unigram"] + rng.normal(0, 0.5, n),
        }
    )
    rank, ols = predictors.relate(meas, pred)
    r = rank.set_index(["measure", "predictor"])
    assert r.loc[("final_surprisal", "unigram"), "spearman_rho"] < -0.5
    assert r.loc[("final_surprisal", "unigram"), "holds"] == "yes"
    o = ols.set_index(["measure", "predictor"])
    assert (
        o.loc[("final_surprisal", "ngram_resid"), "coef_per_sd"] < 0 and o.loc[("aoa_gam", "unigram"), "p_value"] < 1e-3
    )


@pytest.mark.parametrize("order", [1, 2, 5])
def test_counts_from_training_stream_equal_counts_of_its_documents(order):
    from babyjax.data.pipeline import TokenizedSplit

    docs = [[5, 6, 7, 8, 9], [5, 6, 7], [], [7, 5, 6, 7, 8, 9, 9], [5, 6, 7, 10]]
    tokens = np.concatenate([[3, *d] for d in docs]).astype(np.uint16)  # EOS d1 EOS d2 ... (babyjax.data.pipeline)
    starts = np.concatenate([[0], np.cumsum([len(d) + 1 for d in docs])])
    split = TokenizedSplit(tokens=tokens, doc_starts=starts, words_cum=np.zeros(len(starts), np.int64))
    a = predictors.NgramCounts.from_split(split, order=order)
    b = predictors.NgramCounts.from_sequences(docs, order=order)
    assert a.n_tokens == b.n_tokens == sum(map(len, docs))  # EOS separators are not counted as tokens
    for ka, kb, la, lb in zip(a.keys, b.keys, a.logprob, b.logprob):
        np.testing.assert_array_equal(ka, kb)
        np.testing.assert_array_equal(la, lb)

"""Chang, Tu & Bergen's regressions (lm-learning-curves, analysis/run_regressions.py: `run_lrts` and the VIFs of
`main`): each measure regressed on the predictors added one at a time, with adjusted R^2, its gain, and a
likelihood-ratio test of each addition; then all pairwise interactions of the continuous predictors; and the variance
inflation factors of the predictors. Fitted on the token table averaged over runs, as their
`get_average_features_dataframe`."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

ORDER = ("unigram", "ngram_resid", "log_context_length", "context_logprob", "contextual_diversity")
CATEGORICAL = ("pos", "pos_bilu")


def _ols(y: np.ndarray, cols: Sequence[np.ndarray]):
    import statsmodels.api as sm

    x = np.column_stack(cols) if cols else np.zeros((len(y), 0))
    return sm.OLS(y, sm.add_constant(x, has_constant="add")).fit()


def sequential_lrts(
    table: pd.DataFrame, measure: str, predictors: Sequence[str] = ORDER, categorical: Sequence[str] = CATEGORICAL
) -> pd.DataFrame:
    """One row per step of `run_lrts`: the predictor added, adjusted R^2, its gain over the previous model, and the
    likelihood-ratio test p-value (chi^2 of -2 delta log-likelihood on the added degrees of freedom); the
    categorical predictors (part of speech and the token's place in its word) enter together as one step, as theirs
    do, as treatment dummies; the last row adds every pairwise interaction of the continuous predictors. Rows with a
    NaN anywhere are left out throughout."""
    preds = [p for p in predictors if p in table]
    cats = [c for c in categorical if c in table]
    data = table[[measure, *preds, *cats]].replace([np.inf, -np.inf], np.nan).dropna()
    y = data[measure].to_numpy(np.float64)
    steps = [(p, [data[p].to_numpy(np.float64)]) for p in preds]
    if cats:
        dummies = pd.get_dummies(data[cats].astype(str), drop_first=True, dtype=np.float64)
        steps.append(("+".join(cats), [dummies[c].to_numpy() for c in dummies.columns]))
    steps.append(
        (
            "interactions",
            [data[a].to_numpy(np.float64) * data[b].to_numpy(np.float64) for a, b in itertools.combinations(preds, 2)],
        )
    )
    rows, prev, cols = [], None, []
    for name, new in steps:
        cols = cols + new
        fit = _ols(y, cols)
        row = {"measure": measure, "added": name, "adj_r2": fit.rsquared_adj, "n": len(y)}
        if prev is not None:
            lr = -2.0 * (prev.llf - fit.llf)
            row.update(
                gain=fit.rsquared_adj - prev.rsquared_adj, lrt_p=float(stats.chi2.sf(lr, fit.df_model - prev.df_model))
            )
        rows.append(row)
        prev = fit
    return pd.DataFrame(rows)


def vifs(table: pd.DataFrame, predictors: Sequence[str] = ORDER) -> pd.DataFrame:
    """Variance inflation factor of each predictor (statsmodels `variance_inflation_factor` with a constant column,
    as Chang et al. compute them)."""
    import statsmodels.api as sm
    from statsmodels.stats.outliers_influence import variance_inflation_factor

    preds = [p for p in predictors if p in table]
    x = sm.add_constant(
        table[preds].replace([np.inf, -np.inf], np.nan).dropna().to_numpy(np.float64), has_constant="add"
    )
    return pd.DataFrame({"predictor": preds, "vif": [variance_inflation_factor(x, i + 1) for i in range(len(preds))]})

"""Minimal-pair accuracy (BLiMP, BLiMP supplement, Zorro) from per-token surprisal, the rows of a pairs output's
pairs.csv, computed by the job after each checkpoint (docs/science.md, "Minimal pairs": ties are counted separately,
never as correct)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def pair_table(surprisal_T: np.ndarray, token_seq_T: np.ndarray, sequences: pd.DataFrame) -> pd.DataFrame:
    """Per paradigm: n, correct (good sentence has the lower summed surprisal), ties, accuracy = correct / n.
    surprisal_T: one checkpoint's surprisal of every scored token; token_seq_T: the sequence of each token; sequences:
    sequences.csv of a pairs output (sequence 2i is pair i's good sentence, 2i + 1 its bad one)."""
    total = np.bincount(token_seq_T, weights=surprisal_T.astype(np.float64), minlength=len(sequences))
    good, bad = total[0::2], total[1::2]
    meta = sequences.iloc[0::2][["suite", "paradigm", "field"]].reset_index(drop=True)
    df = meta.assign(n=1, correct=(good < bad).astype(np.int64), ties=(good == bad).astype(np.int64))
    out = df.groupby(["suite", "paradigm", "field"], sort=True, as_index=False)[["n", "correct", "ties"]].sum()
    out["accuracy"] = out["correct"] / out["n"]
    return out

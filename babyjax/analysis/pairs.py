"""Minimal-pair accuracy per paradigm: computed by the scoring job (babyjax/score/pairs.py) into a pairs output's
pairs.csv; named here too for the analysis that reads it."""

from babyjax.score.pairs import pair_table

__all__ = ["pair_table"]

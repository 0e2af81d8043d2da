"""Learning-curve analysis of babyjax score outputs (python -m babyjax.analyze).

Modules: curves (Chang et al. 2023 token measures, vectorised GAM), xia (Xia et al. 2023 trajectory classes),
predictors (n-gram predictors, correlations, OLS), words (Chang & Bergen 2022 word AoA; word surprisal), pairs
(minimal-pair accuracy), plots, report. Score outputs are read through babyjax.score.store (`load_score_output`);
the definitions are in docs/science.md.

This package imports nothing from babyjax.score at the top (the scorer uses `pairs` to fill pairs.csv).
"""

"""Learning-curve analysis of babyjax score outputs (python -m babyjax.analyze).

Modules: curves (Chang et al. 2023 token measures, vectorised GAM), xia (Xia et al. 2023 trajectory classes),
predictors (n-gram predictors, correlations, OLS), words (Chang & Bergen 2022 word AoA), plots, report.
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import numpy as np
import pandas as pd

from babyjax.errors import InputError, MissingError


@dataclasses.dataclass
class ScoreOutput:
    """One babyjax.score output folder (layout in docs/architecture.md, "Score output")."""

    path: pathlib.Path
    meta: dict
    tokens: pd.DataFrame | None  # one row per scored token (index, seq, position, token_id, token, context_length)
    surprisal: dict[str, np.ndarray]  # run -> [n_checkpoints, n_tokens] bits (memory-mapped)
    checkpoints: dict[str, pd.DataFrame]  # run -> step, tokens_seen, words_seen, wall_time, params_hash, status
    pairs: pd.DataFrame | None  # minimal-pair accuracies, if any

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def name(self) -> str:
        return self.path.name


META_KEYS = ("kind", "vocab_size", "runs")
TOKEN_COLUMNS = ("seq", "position", "token_id", "token")
CHECKPOINT_COLUMNS = ("step", "tokens_seen", "words_seen")
PAIRS_COLUMNS = ("run", "step", "suite", "field", "n", "correct", "ties")


def _require(where: pathlib.Path, have, needed: tuple[str, ...]) -> None:
    """One-line ValueError naming what a score output file lacks."""
    missing = [k for k in needed if k not in have]
    if missing:
        raise InputError(f"{where} lacks {', '.join(missing)}: it is not a complete babyjax.score output "
                         "(re-run python -m babyjax.score)")


def load_score_output(path: str | pathlib.Path) -> ScoreOutput:
    """Read a score output; surprisal matrices are memory-mapped. Natural-log outputs are converted to bits."""
    path = pathlib.Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise MissingError(f"{meta_path} not found: {path} is not a babyjax score output "
                                "(run python -m babyjax.score first)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{meta_path} is not valid JSON ({err}): re-run python -m babyjax.score") from None
    _require(meta_path, meta, META_KEYS)
    tokens = pd.read_csv(path / "tokens.csv", keep_default_na=False, na_values=[""]) \
        if (path / "tokens.csv").is_file() else None
    if tokens is not None:
        _require(path / "tokens.csv", tokens.columns, TOKEN_COLUMNS)
    if tokens is not None and "token" in tokens:
        tokens["token"] = tokens["token"].astype(str)
    surprisal, checkpoints = {}, {}
    base = meta.get("log_base", 2)
    for run in meta.get("runs", []):
        run_dir = path / "runs" / str(run)
        s_path, c_path = run_dir / "surprisal.npy", run_dir / "checkpoints.csv"
        if not s_path.is_file() or not c_path.is_file():
            if meta.get("kind") == "pairs":
                continue
            raise MissingError(f"run {run}: {s_path} or {c_path} missing: the score output is incomplete")
        s = np.load(s_path, mmap_mode="r")
        ck = pd.read_csv(c_path)
        _require(c_path, ck.columns, CHECKPOINT_COLUMNS)
        if s.ndim != 2 or s.shape[0] != len(ck):
            raise InputError(f"run {run}: surprisal.npy has shape {s.shape} but checkpoints.csv has {len(ck)} rows")
        if tokens is not None and s.shape[1] != len(tokens):
            raise InputError(f"run {run}: surprisal.npy has {s.shape[1]} tokens but tokens.csv has {len(tokens)}")
        if base not in (2, "2"):
            bits_per_unit = 1 / math.log(2) if base in ("e", math.e) else math.log2(float(base))
            s = np.asarray(s, np.float32) * np.float32(bits_per_unit)
        surprisal[str(run)], checkpoints[str(run)] = s, ck
    pairs = pd.read_csv(path / "pairs.csv") if (path / "pairs.csv").is_file() else None
    if pairs is not None:
        _require(path / "pairs.csv", pairs.columns, PAIRS_COLUMNS)
    return ScoreOutput(path, meta, tokens, surprisal, checkpoints, pairs)

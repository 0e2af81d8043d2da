"""babyjax.score: per-token surprisal at every checkpoint of a run's series (`python -m babyjax.score`).

packing (windows, packed rows) -> scorer (the jitted scorer) -> store (the score format); config (every option of a
job), runs (the runs and their checkpoints), job (`score_job`); the command line is babyjax/commands/score.py.
Modules: docs/architecture.md ("score/"); conventions: docs/science.md ("Scoring conventions").

The names below are loaded on first use (PEP 562), so importing one module, e.g. `babyjax.score.scorer`, does not
pull in the job's evaluation sets and their data libraries (TFDS, Grain): the GPU benchmark runs without them."""

import importlib

_WHERE = {
    "babyjax.data.evalsets": ["EvalSet", "files_hash", "load_pair_set", "load_text", "load_tokens"],
    "babyjax.score.config": ["KINDS", "SCORINGS", "RunSpec", "ScoreConfig", "parse_count", "parse_steps"],
    "babyjax.score.job": ["Summary", "score_job"],
    "babyjax.score.pairs": ["pair_table"],
    "babyjax.score.runs": ["scoring_method", "select_checkpoints"],
    "babyjax.score.scorer": ["Scorer", "head_chunks", "score_sequences"],
    "babyjax.score.store": [
        "CHECKPOINT_COLUMNS",
        "PAIR_COLUMNS",
        "STATUSES",
        "TOKEN_COLUMNS",
        "RunTable",
        "ScoreFolder",
        "ScoreOutput",
        "load_score_output",
        "load_scores",
    ],
    "babyjax.score.packing": [
        "POLICIES",
        "Packed",
        "Window",
        "eval_windows",
        "layout_hash",
        "pack",
        "token_table",
        "windows",
    ],
}
_MODULE = {name: module for module, names in _WHERE.items() for name in names}

__all__ = sorted(_MODULE)


def __getattr__(name: str):
    if name not in _MODULE:
        raise AttributeError(f"module 'babyjax.score' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

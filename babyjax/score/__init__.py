"""babyjax.score: per-token surprisal at every checkpoint of a run's series (`python -m babyjax.score`).

packing (windows, packed rows) -> scorer (the jitted scorer) -> store (the score format); job: the command. Modules:
docs/architecture.md ("score/"); conventions: docs/science.md ("Scoring conventions")."""
from babyjax.analysis.pairs import pair_table
from babyjax.analysis.words import word_surprisal
from babyjax.data.evalsets import EvalSet, files_hash, load_text, load_tokens
from babyjax.data.evalsets import load_pair_set as load_pairs
from babyjax.score.job import KINDS, RunSpec, Summary, main, parse_count, score_job, select_checkpoints
from babyjax.score.scorer import Scorer, head_chunks, score_sequences  # noqa: F401 (head_chunks: babyjax.xent)
from babyjax.score.store import (CHECKPOINT_COLUMNS, PAIR_COLUMNS, STATUSES, TOKEN_COLUMNS, RunTable, ScoreFolder,
                                 ScoreOutput, load_score_output, load_scores)
from babyjax.score.packing import POLICIES, Packed, Window, eval_windows, layout_hash, pack, token_table, windows

__all__ = ["CHECKPOINT_COLUMNS", "EvalSet", "KINDS", "PAIR_COLUMNS", "POLICIES", "Packed", "RunSpec", "RunTable",
           "STATUSES", "ScoreFolder", "ScoreOutput", "Scorer", "Summary", "TOKEN_COLUMNS", "Window", "eval_windows",
           "files_hash", "head_chunks", "layout_hash", "load_pairs", "load_score_output", "load_scores", "load_text",
           "load_tokens", "main", "pack", "pair_table", "parse_count", "score_job", "score_sequences",
           "select_checkpoints", "token_table", "windows", "word_surprisal"]

"""The score output format (docs/architecture.md, "Score output"): its one writer (`ScoreFolder`, `RunTable`) and
its one reader (`load_score_output`, or `load_scores` for one run). Every file is written atomically; a row of a
matrix is flushed before its checkpoint is marked `done`."""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from babyjax import paths
from babyjax.errors import InputError, MissingError

# imported series (babyjax/imported/revisions.py): flagged by the integrity check, or unreadable
SUSPECT = ("duplicate", "partial_duplicate", "equals_final")
UNREADABLE = ("lfs_pointer", "needs_torch", "no_weights")
STATUSES = ("pending", "done", "hash_mismatch", "corrupt", *SUSPECT, "missing", *UNREADABLE)
TOKEN_COLUMNS = ("index", "seq", "position", "token_id", "token", "context_length")
CHECKPOINT_COLUMNS = ("step", "tokens_seen", "words_seen", "wall_time", "params_hash", "status")
PAIR_COLUMNS = ("run", "step", "words_seen", "suite", "paradigm", "field", "n", "correct", "ties", "accuracy")
# What a score output must hold to be read (outputs of older versions, or written by other tools, may hold less).
META_KEYS = ("kind", "vocab_size", "runs")
REQUIRED_TOKEN_COLUMNS = ("seq", "position", "token_id", "token")
REQUIRED_CHECKPOINT_COLUMNS = ("step", "tokens_seen", "words_seen")
REQUIRED_PAIR_COLUMNS = ("run", "step", "suite", "field", "n", "correct", "ties")
# meta.json keys that identify what is scored: a folder is only continued by a job that scores the same thing.
IDENTITY = (
    "kind",
    "eval_hash",
    "layout_hash",
    "first_token_policy",
    "tokenizer_hash",
    "log_base",
    "seq_len",
    "stride",
    "scoring",
)
IDENTITY_DEFAULTS = {"scoring": "causal"}  # outputs written before masked scoring existed


def _write_csv(path: pathlib.Path, df: pd.DataFrame) -> None:
    paths.write_atomic(path, lambda tmp: df.to_csv(tmp, index=False), fsync=True)


def read_checkpoints(path: pathlib.Path, *, exact: bool = True) -> pd.DataFrame:
    """A checkpoints.csv (params_hash and status as strings; empty numbers are NaN). exact: refuse other columns
    (the job continues only its own tables); else only the columns the analysis needs are required."""
    df = pd.read_csv(
        path,
        dtype={"params_hash": str, "status": str},
        keep_default_na=False,
        na_values={c: [""] for c in ("tokens_seen", "words_seen", "wall_time")},
    )
    if not exact:
        _require(path, df.columns, REQUIRED_CHECKPOINT_COLUMNS)
    elif tuple(df.columns) != CHECKPOINT_COLUMNS:
        raise InputError(f"{path} is not a babyjax checkpoints table (columns {list(df.columns)}); use a new --out")
    return df


class RunTable:
    """`runs/<run>/surprisal.npy` and `checkpoints.csv` of one run (process 0 only), rows sorted by step. New
    checkpoints (a series that grew, or other --steps) are merged in without losing a scored row: the grown matrix
    and table are written beside the old ones, then the matrix is renamed in and then the table; a job killed
    between the two renames is finished by the next one (`checkpoints.csv.pending`)."""

    def __init__(self, directory: pathlib.Path, num_tokens: int):
        self.dir, self.num_tokens = directory, num_tokens
        self.matrix_path, self.table_path = directory / "surprisal.npy", directory / "checkpoints.csv"
        self.pending_path = directory / "checkpoints.csv.pending"
        directory.mkdir(parents=True, exist_ok=True)
        self._recover()
        if self.table_path.exists():
            self.rows = read_checkpoints(self.table_path)
            self.matrix = open_matrix(self.matrix_path, mode="r+")
            if self.matrix.shape != (len(self.rows), num_tokens) or self.matrix.dtype != np.float32:
                raise InputError(
                    f"{self.matrix_path} has shape {self.matrix.shape}, but {self.table_path} lists "
                    f"{len(self.rows)} checkpoints of {num_tokens} tokens: the folder was changed by "
                    "hand; use a new --out"
                )
        else:
            self.rows = pd.DataFrame(
                {
                    c: pd.Series(dtype=t)
                    for c, t in zip(CHECKPOINT_COLUMNS, ("int64", "float64", "float64", "float64", "str", "str"))
                }
            )
            self.matrix = None

    def _recover(self) -> None:
        if not self.pending_path.exists():
            return
        pending = read_checkpoints(self.pending_path)
        if self.matrix_path.exists() and np.load(self.matrix_path, mmap_mode="r").shape[0] == len(pending):
            os.replace(self.pending_path, self.table_path)  # the matrix was renamed in: finish the commit
        else:
            self.pending_path.unlink()

    def add(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Make sure every index entry has a row (new rows: NaN, status 'pending')."""
        have = set(self.rows["step"].astype(int).tolist())
        new = [e for e in entries if int(e["step"]) not in have]
        if not new and self.matrix is not None:
            return
        floats = ("tokens_seen", "words_seen", "wall_time")
        added = pd.DataFrame(
            [
                {
                    "step": int(e["step"]),
                    **{k: float(e.get(k, np.nan)) for k in floats},
                    "params_hash": str(e.get("params_hash", "")),
                    "status": "pending",
                }
                for e in new
            ],
            columns=list(CHECKPOINT_COLUMNS),
        )
        rows = pd.concat([self.rows, added], ignore_index=True) if len(self.rows) else added
        rows = rows.sort_values("step", kind="stable").reset_index(drop=True)
        old_at = {int(s): i for i, s in enumerate(self.rows["step"])}
        tmp = self.dir / ".surprisal.npy.grow"
        grown = _new_matrix(tmp, (len(rows), self.num_tokens))
        for i, s in enumerate(rows["step"]):
            grown[i] = self.matrix[old_at[int(s)]] if int(s) in old_at else np.nan
        grown.flush()
        del grown
        _write_csv(self.pending_path, rows)
        os.replace(tmp, self.matrix_path)
        os.replace(self.pending_path, self.table_path)
        self.rows = rows
        self.matrix = np.lib.format.open_memmap(self.matrix_path, mode="r+")

    def row_of(self, step: int) -> int:
        return int(np.flatnonzero(self.rows["step"].to_numpy() == step)[0])

    def status(self, step: int) -> str:
        return str(self.rows.at[self.row_of(step), "status"])

    def write(self, step: int, surprisal_T: np.ndarray) -> None:
        """Write and flush the row, then mark it done (a kill in between only means it is scored again)."""
        self.matrix[self.row_of(step)] = surprisal_T
        self.matrix.flush()
        self.mark(step, "done")

    def mark(self, step: int, status: str) -> None:
        self.rows.at[self.row_of(step), "status"] = status
        _write_csv(self.table_path, self.rows)

    def done_rows(self) -> Iterable[tuple[int, float, np.ndarray]]:
        """(step, words_seen, surprisal row) of every checkpoint scored so far."""
        for i, r in self.rows.iterrows():
            if r["status"] == "done":
                yield int(r["step"]), float(r["words_seen"]), np.asarray(self.matrix[i])


def _refuse_foreign_folder(out: pathlib.Path) -> None:
    """--out is new, empty, a score output, or one a job left before its meta.json: never a file or another folder
    (a run, a report), whose files would be mixed with the scores."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file: give a folder for the scores")
    if not out.is_dir() or (out / "meta.json").exists():
        return
    foreign = sorted(
        p.name
        for p in out.iterdir()
        if p.name not in ("tokens.csv", "sequences.csv", "runs") and not p.name.startswith(".")
    )
    if foreign:
        raise InputError(
            f"--out {out} holds other files ({', '.join(foreign[:3])}) and no score output: give a new or empty folder"
        )


class ScoreFolder:
    """The output folder of a job (process 0 writes; other processes only compute). An existing folder is continued
    only when it scores the same thing (`IDENTITY`) and names the same run folders; the runs of both jobs are merged
    in meta.json. pairs.csv is rewritten whole from the rows handed in (`set_pairs`: per run and step, the
    per-paradigm rows of a minimal-pair output)."""

    def __init__(self, out: pathlib.Path, meta: dict, tokens: pd.DataFrame, sequences: pd.DataFrame, primary: bool):
        self.out, self.meta, self.primary, self.num_tokens = out, meta, primary, len(tokens)
        self.tables: dict[str, RunTable] = {}
        self.pairs: dict[tuple[str, int], pd.DataFrame] = {}
        if not primary:
            return
        meta_path = out / "meta.json"
        _refuse_foreign_folder(out)
        if meta_path.exists():
            stored = json.loads(meta_path.read_text())
            for key in IDENTITY:
                if stored.get(key, IDENTITY_DEFAULTS.get(key)) != meta.get(key):
                    raise InputError(
                        f"{out} holds scores of another evaluation ({key}: stored {stored.get(key)!r}, "
                        f"now {meta.get(key)!r}); use a new --out"
                    )
            for run, wd in meta["run_workdirs"].items():
                if stored["run_workdirs"].get(run, wd) != wd:
                    raise InputError(
                        f"{out} holds run {run!r} from {stored['run_workdirs'][run]}, not {wd}: "
                        "give this run another name"
                    )
                was = stored.get("contexts", {}).get(
                    run, "window"
                )  # an output whose meta.json records no contexts: one window per row
                if run in stored["run_workdirs"] and was != meta["contexts"][run]:
                    raise InputError(
                        f"{out} holds run {run!r} scored in {was} contexts; it is now scored in "
                        f"{meta['contexts'][run]} contexts (as it was trained): use a new --out"
                    )
            merged = {**stored["run_workdirs"], **meta["run_workdirs"]}
            self.meta = {
                **meta,
                "runs": sorted(merged),
                "run_workdirs": merged,
                "created": stored.get("created"),
                "contexts": {**stored.get("contexts", {}), **meta["contexts"]},
            }
        else:
            out.mkdir(parents=True, exist_ok=True)
            _write_csv(out / "tokens.csv", tokens)
            _write_csv(out / "sequences.csv", sequences)
        paths.write_atomic(meta_path, json.dumps(self.meta, indent=1), fsync=True)

    def table(self, run: str) -> RunTable:
        if run not in self.tables:
            self.tables[run] = RunTable(self.out / "runs" / run, self.num_tokens)
        return self.tables[run]

    def set_pairs(self, run: str, step: int, rows: pd.DataFrame, *, write: bool = True) -> pd.DataFrame:
        """Keep the per-paradigm rows (suite, paradigm, field, n, correct, ties, accuracy) of `run` at `step`, with
        run, step and words seen added; write pairs.csv unless `write` is False. Returns the rows as stored."""
        table = self.table(run)
        words_seen = float(table.rows.at[table.row_of(step), "words_seen"])
        self.pairs[(run, step)] = df = rows.assign(run=run, step=step, words_seen=words_seen)[list(PAIR_COLUMNS)]
        if write:
            _write_csv(
                self.out / "pairs.csv", pd.concat([self.pairs[k] for k in sorted(self.pairs)], ignore_index=True)
            )
        return df


def validation_perplexity(surprisal_TxC: np.ndarray) -> np.ndarray:
    """Validation perplexity (Xia et al. 2023) of the scored held-out tokens at each checkpoint: 2 ** (mean
    surprisal in bits) [T]; NaN where a checkpoint has no finite score."""
    total, count = np.zeros(np.shape(surprisal_TxC)[0]), np.zeros(np.shape(surprisal_TxC)[0])
    for c0 in range(0, np.shape(surprisal_TxC)[1], 65536):  # a memory-mapped 1M-token matrix, in chunks
        s = np.asarray(surprisal_TxC[:, c0 : c0 + 65536], np.float64)
        ok = np.isfinite(s)
        total += np.where(ok, s, 0).sum(1)
        count += ok.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.exp2(total / count), np.nan)


def _new_matrix(path: pathlib.Path, shape: tuple[int, int]) -> np.ndarray:
    """A new float32 .npy matrix, memory-mapped, its disk space allocated first: a full disk is then an OSError here
    (the file removed) instead of a SIGBUS, a crash, at the first write into a page the disk has no room for."""
    matrix = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
    if not hasattr(os, "posix_fallocate"):  # macOS
        return matrix
    try:
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system that cannot allocate ahead
                raise
        finally:
            os.close(fd)
    except BaseException:
        del matrix
        path.unlink(missing_ok=True)
        raise
    return matrix


def open_matrix(path: pathlib.Path, mode: str = "r") -> np.ndarray:
    """A surprisal matrix, memory-mapped; a file shorter than its header says is refused in one line (numpy would
    grow it with zeros in r+ mode: scores that look real)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(f)
            need = f.tell() + math.prod(shape) * dtype.itemsize
    except (OSError, ValueError) as err:
        raise InputError(
            f"{path} is not a readable .npy matrix ({err}): the score output was damaged; score into a new --out"
        ) from None
    if path.stat().st_size < need:
        raise InputError(
            f"{path} is truncated ({path.stat().st_size:,} of {need:,} bytes): the score output was "
            "damaged; score into a new --out"
        )
    return np.lib.format.open_memmap(path, mode=mode)


@dataclasses.dataclass
class ScoreOutput:
    """One score output folder, as read by `load_score_output` (tokens.csv read with keep_default_na=False, so
    pieces such as "NA" stay strings)."""

    path: pathlib.Path
    meta: dict
    tokens: pd.DataFrame | None  # one row per scored token (index, seq, position, token_id, token, context_length)
    surprisal: dict[str, np.ndarray]  # run -> [n_checkpoints, n_tokens] bits (memory-mapped)
    checkpoints: dict[str, pd.DataFrame]  # run -> step, tokens_seen, words_seen, wall_time, params_hash, status
    pairs: pd.DataFrame | None  # minimal-pair accuracies, if any
    _perplexity: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, init=False, repr=False)

    def perplexity(self, run: str) -> np.ndarray:
        """`validation_perplexity` of one run's surprisal [checkpoints], read once per loaded output (the report's
        sections and its x axis share it)."""
        if run not in self._perplexity:
            self._perplexity[run] = validation_perplexity(self.surprisal[run])
        return self._perplexity[run]

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def name(self) -> str:
        return self.path.name


def _require(where: pathlib.Path, have: Iterable[str], needed: tuple[str, ...]) -> None:
    """One-line InputError naming what a score output file lacks."""
    missing = [k for k in needed if k not in set(have)]
    if missing:
        raise InputError(
            f"{where} lacks {', '.join(missing)}: it is not a complete babyjax.score output "
            "(re-run python -m babyjax.score)"
        )


def _read_meta(path: pathlib.Path) -> dict:
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise MissingError(
            f"{meta_path} not found: {path} is not a babyjax score output (run python -m babyjax.score first)"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{meta_path} is not valid JSON ({err}): re-run python -m babyjax.score") from None
    _require(meta_path, meta, META_KEYS)
    return meta


def _read_tokens(path: pathlib.Path) -> pd.DataFrame | None:
    if not (path / "tokens.csv").is_file():
        return None
    tokens = pd.read_csv(path / "tokens.csv", keep_default_na=False, na_values=[""])
    _require(path / "tokens.csv", tokens.columns, REQUIRED_TOKEN_COLUMNS)
    tokens["token"] = tokens["token"].astype(str)
    return tokens


def _read_run(
    path: pathlib.Path, meta: dict, run: str, num_tokens: int | None
) -> tuple[np.ndarray, pd.DataFrame] | None:
    """(surprisal in bits, checkpoints table) of one run; None for a pairs output without the run's matrix."""
    run_dir = path / "runs" / run
    s_path, c_path = run_dir / "surprisal.npy", run_dir / "checkpoints.csv"
    if not s_path.is_file() or not c_path.is_file():
        if meta.get("kind") == "pairs":
            return None
        raise MissingError(f"run {run}: {s_path} or {c_path} missing: the score output is incomplete")
    s = open_matrix(s_path)
    ck = read_checkpoints(c_path, exact=False)
    if s.ndim != 2 or s.shape[0] != len(ck):
        raise InputError(f"run {run}: surprisal.npy has shape {s.shape} but checkpoints.csv has {len(ck)} rows")
    if num_tokens is not None and s.shape[1] != num_tokens:
        raise InputError(f"run {run}: surprisal.npy has {s.shape[1]} tokens but tokens.csv has {num_tokens}")
    base = meta.get("log_base", 2)
    if base not in (2, "2"):  # natural-log (or other) outputs are converted to bits
        bits_per_unit = 1 / math.log(2) if base in ("e", math.e) else math.log2(float(base))
        s = np.asarray(s, np.float32) * np.float32(bits_per_unit)
    return s, ck


def load_score_output(path: str | os.PathLike) -> ScoreOutput:
    """Read a score output; surprisal matrices are memory-mapped. Natural-log outputs are converted to bits."""
    path = pathlib.Path(path)
    meta = _read_meta(path)
    tokens = _read_tokens(path)
    surprisal, checkpoints = {}, {}
    for run in meta.get("runs", []):
        found = _read_run(path, meta, str(run), None if tokens is None else len(tokens))
        if found is not None:
            surprisal[str(run)], checkpoints[str(run)] = found
    pairs = pd.read_csv(path / "pairs.csv") if (path / "pairs.csv").is_file() else None
    if pairs is not None:
        _require(path / "pairs.csv", pairs.columns, REQUIRED_PAIR_COLUMNS)
    return ScoreOutput(path, meta, tokens, surprisal, checkpoints, pairs)


def load_scores(out: str | os.PathLike, run: str) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """(surprisal [checkpoints, tokens] memory-mapped, checkpoints table, tokens table) of `run` in a score folder."""
    so = load_score_output(out)
    if run not in so.surprisal:
        raise MissingError(f"no scores for run {run!r} in {out}")
    return so.surprisal[run], so.checkpoints[run], so.tokens

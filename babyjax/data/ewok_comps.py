"""EWoK and COMPS, two BabyLM 2025 zero-shot tasks, as the official pipeline reads them (github.com/babylm/
evaluation-pipeline-2025, `sentence_zero_shot/read_files.py`: decode_ewok without --full_sentence_scores, as
`eval_zero_shot.sh` runs it, and decode_comps), and the task files of a folder or of a zip. EWoK fast is the organisers'
password-protected `ewok_fast.zip`, read as it is: its text stays in memory and is never written out unzipped (EWoK's
terms ask that it not be redistributed in plain text), so `redacted` leaves it out of the score output's CSV files.
EWoK full is the folder `ewok_filtered/` of the user's download (the pipeline's `ewok/dl_and_filter.py`); COMPS the
folder `comps/` of its four files."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import zipfile
import zlib
from typing import Any

import numpy as np
import pandas as pd

from babyjax.errors import InputError

PASSWORD_ENV = "BABYLM_EWOK_PASSWORD"
_PASSWORD_WHERE = "the password is in the pipeline's README, github.com/babylm/evaluation-pipeline-2025"
EWOK_NEEDS = ("Domain", "ContextType", "ContextDiff", "TargetDiff", "Context1", "Target1", "Target2")
COMPS_NEEDS = ("prefix_acceptable", "prefix_unacceptable", "property_phrase")
# decode_ewok's metadata besides the UID, in its order: (the pipeline's key, the data's field)
EWOK_META = (("context_type", "ContextType"), ("context_contrast", "ContextDiff"), ("target_contrast", "TargetDiff"))
# decode_comps: the UID of each of the release's files
COMPS_SUBSETS = {
    "comps_base": "base",
    "comps_wugs": "wugs",
    "comps_wugs_dist-before": "wugs_dist_before",
    "comps_wugs_dist-in-between": "wugs_dist_in_between",
}
PRIVATE_TASKS = ("ewok",)  # tasks whose text the score output's CSV files leave out
WHOLE_SENTENCE_TASKS = ("comps",)  # predictions.json holds the chosen sentence, not its completion (rank_and_evaluate)


@dataclasses.dataclass(frozen=True)
class TaskFile:
    """One .jsonl file of a task: its stem (the pipeline's file name without the suffix), where it is (for messages)
    and its text."""

    stem: str
    where: str
    text: str


def is_zip(source: str | os.PathLike) -> bool:
    return pathlib.Path(source).suffix == ".zip"


def task_files(source: str | os.PathLike, password: str = "") -> list[TaskFile]:
    """The .jsonl files of a task folder, or the .jsonl members of a zip (the organisers' ewok_fast.zip holds
    evaluation_data/fast_eval/ewok_fast/<domain>.jsonl), in name order."""
    path = pathlib.Path(source)
    if is_zip(path):
        return _zip_files(path, password)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else []
    return [TaskFile(f.stem, str(f), f.read_text(encoding="utf-8")) for f in files]


def source_files(source: str | os.PathLike) -> list[pathlib.Path]:
    """The files whose bytes identify a task's data (the evaluation set's hash): the zip itself, or the folder's
    .jsonl files."""
    path = pathlib.Path(source)
    return [path] if is_zip(path) else sorted(path.glob("*.jsonl"))


def password_of(given: str) -> str:
    """The zip's password: the one given (--ewok_password), else the environment's BABYLM_EWOK_PASSWORD."""
    return given or os.environ.get(PASSWORD_ENV, "")


def _zip_files(path: pathlib.Path, password: str) -> list[TaskFile]:
    """The .jsonl members of a zip, decrypted in memory with the password where they are encrypted (ZipCrypto)."""
    if not path.is_file():
        raise InputError(f"{path} not found: pass the task's zip as released (EWoK fast: ewok_fast.zip)")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"cannot read {path} as a zip file ({e}): pass the task's zip as released") from None
    with archive:
        members = sorted(
            (m for m in archive.infolist() if m.filename.endswith(".jsonl") and "__MACOSX" not in m.filename),
            key=lambda m: pathlib.PurePosixPath(m.filename).name,
        )
        secret = password_of(password)
        if any(m.flag_bits & 0x1 for m in members) and not secret:
            raise InputError(
                f"{path} is password-protected: pass --ewok_password=... or set {PASSWORD_ENV} ({_PASSWORD_WHERE})"
            )
        try:
            return [
                TaskFile(
                    pathlib.PurePosixPath(m.filename).stem,
                    f"{path}:{m.filename}",
                    archive.read(m, pwd=secret.encode() or None).decode("utf-8"),
                )
                for m in members
            ]
        except (RuntimeError, zlib.error, zipfile.BadZipFile, UnicodeDecodeError):
            raise InputError(
                f"the password does not open {path}: pass the right one with --ewok_password or {PASSWORD_ENV} "
                f"({_PASSWORD_WHERE})"
            ) from None


def decode_ewok(row: dict[str, Any]) -> dict[str, Any]:
    """decode_ewok (no full-sentence scores): `Context1 Target1` against `Context1 Target2`, each scored from the
    space before its target (the completion ' ' + target); the UID is the domain, then the context type, context
    contrast and target contrast."""
    context = row["Context1"]
    return {
        "uid": str(row["Domain"]),
        "texts": (f"{context} {row['Target1']}", f"{context} {row['Target2']}"),
        "starts": (len(context), len(context)),
        "meta": tuple((key, str(row[field])) for key, field in EWOK_META),
    }


def decode_comps(stem: str, where: str, row: dict[str, Any]) -> dict[str, Any]:
    """decode_comps: `prefix_acceptable property_phrase` against `prefix_unacceptable property_phrase`, each scored
    from its property phrase; the UID names the file (base, wugs, wugs_dist_before, wugs_dist_in_between)."""
    if stem not in COMPS_SUBSETS:
        raise InputError(
            f"{where}: a COMPS folder holds {', '.join(f'{s}.jsonl' for s in COMPS_SUBSETS)} (the pipeline names "
            "its results by them): move other files out"
        )
    good, bad, phrase = row["prefix_acceptable"], row["prefix_unacceptable"], row["property_phrase"]
    return {
        "uid": COMPS_SUBSETS[stem],
        "texts": (f"{good} {phrase}", f"{bad} {phrase}"),
        "starts": (len(good) + 1, len(bad) + 1),
    }


def redacted(tokens: pd.DataFrame, sequences: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(tokens.csv, sequences.csv) as the score output stores them: the pieces and text of the PRIVATE_TASKS'
    sequences left empty (their token ids stay), since EWoK's terms ask that its text not be redistributed in plain
    form; the job scores and writes its results from the evaluation set in memory."""
    hide = sequences["task"].isin(PRIVATE_TASKS).to_numpy() if "task" in sequences else np.zeros(0, bool)
    if not hide.any():
        return tokens, sequences
    sequences = sequences.copy()
    sequences.loc[hide, "text"] = ""
    tokens = tokens.copy()
    tokens.loc[np.isin(tokens["seq"].to_numpy(), sequences["seq"].to_numpy()[hide]), "token"] = ""
    return tokens, sequences

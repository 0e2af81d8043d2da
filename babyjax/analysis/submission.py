"""A BabyLM 2025 submission file from a results tree, written as the organisers' `collate_preds.py` writes it
(github.com/babylm/evaluation-pipeline-2025; its rules: analysis/submission_rules.py; the commands: docs/
submission.md): `<results>/<model>/all_full_preds_and_fast_scores_<backend>.json`, holding the full predictions of
one revision (BLiMP, the supplement, EWoK, entity tracking, the wug tasks, COMPS, reading, AoA at every required
revision, the seven fine-tuning tasks) and, with `fast`, the fast metrics of every required revision.

Before anything is written the tree is checked as the organisers check it (every revision and file there, every
subtask with its number of predictions, the AoA rows of every revision), and every missing or incomplete piece is
named in one line. The results may be spread over several trees (babyjax's fast and full score outputs, the
fine-tuning's): each file is taken from the first tree that holds it.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import json
import os
import pathlib
import zipfile
from collections.abc import Sequence
from typing import Any

import pandas as pd

from babyjax.analysis import submission_rules as rules
from babyjax.data import ewok_comps
from babyjax.errors import InputError, MissingError, UserError
from babyjax.paths import write_atomic
from babyjax.score.babylm2025 import _r2_gain

EWOK_ZIP = "ewok_fast.zip"
_EYE_TRACKING = ("RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound")
_BASE = ["Subtlex_log10", "length", "context_length"]
_SPILLOVER = _BASE + ["prev_length", "prev_pred"]
_SHOWN = 3  # names shown in a line before "and N more"


@dataclasses.dataclass(frozen=True)
class Request:
    """One submission file: the model's folder name in the results trees, the backend and track it is for, the
    trees (searched in order; the file is written into the first), the revision of the full results, and for the
    fast metrics the fast evaluation data with EWoK's zip password (None: from BABYLM_EWOK_PASSWORD)."""

    model: str
    backend: str
    results_dirs: tuple[pathlib.Path, ...]
    track: str = "strict"
    revision: str = "main"
    fast: bool = False
    fast_eval_dir: pathlib.Path | None = None
    ewok_password: str | None = None

    def __post_init__(self) -> None:
        if self.track not in rules.TRACKS:
            raise InputError(
                f"--track={self.track}: babyjax collates the text tracks ({', '.join(rules.TRACKS)}); collate a "
                "multimodal submission with the pipeline's own collate_preds.py"
            )
        if self.backend not in rules.BACKENDS:
            raise InputError(f"--backend={self.backend}: babyjax scores the {', '.join(rules.BACKENDS)} backends")
        if not self.results_dirs:
            raise InputError("no results tree: give --results_dir")
        if self.fast and self.fast_eval_dir is None:
            raise InputError("--fast needs --fast_eval_dir: the organisers' fast sets (blimp_fast/, ...)")

    @property
    def output(self) -> pathlib.Path:
        """Where the submission file goes."""
        return self.results_dirs[0] / self.model / f"all_full_preds_and_fast_scores_{self.backend}.json"


def model_name(model_path_or_name: str) -> str:
    """The model's folder in a results tree, as the pipeline names it: the stem of --model_path_or_name."""
    return pathlib.Path(model_path_or_name).stem


def results_tree(folder: str | os.PathLike, model: str) -> pathlib.Path:
    """A results tree: the folder itself, or the `results/` of a babyjax score output that holds the model."""
    folder = pathlib.Path(folder)
    inner = folder / "results"
    return inner if not (folder / model).is_dir() and (inner / model).is_dir() else folder


def _few(names: Sequence[str]) -> str:
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


class _Trees:
    """The model's files in the results trees, each read once."""

    def __init__(self, request: Request):
        self.request = request
        self._loaded: dict[pathlib.Path, Any] = {}

    def has(self, revision: str, rel: str = "") -> bool:
        return any((d / self.request.model / revision / rel).exists() for d in self.request.results_dirs)

    def find(self, revision: str, rel: str) -> pathlib.Path | None:
        paths = (d / self.request.model / revision / rel for d in self.request.results_dirs)
        return next((p for p in paths if p.is_file()), None)

    def load(self, revision: str, rel: str) -> Any:
        """The parsed JSON of the first tree's file (read once)."""
        path = self.find(revision, rel)
        if path is None:
            raise MissingError(f"{self.request.model}/{revision}/{rel} is missing")
        if path not in self._loaded:
            self._loaded[path] = json.loads(path.read_text(encoding="utf-8"))
        return self._loaded[path]

    def rel(self, part: rules.Part) -> str:
        """A part's path under a revision."""
        return f"finetune/{part.path}" if part.finetune else f"zero_shot/{self.request.backend}/{part.path}"


def _size_issues(preds: Any, part: rules.Part) -> list[str]:
    """What keeps a predictions file from the organisers' sizes: subtasks missing or unknown (their check fails on an
    unknown one), the wrong number of predictions, predictions without the fields the fast metrics read."""
    if not isinstance(preds, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("predictions"), list) for v in preds.values()
    ):
        return ['not the pipeline\'s predictions format ({"<subtask>": {"predictions": [...]}, ...})']
    got = {k.lower(): v["predictions"] for k, v in preds.items()}
    issues = []
    if missing := [k for k in part.sizes if k not in got]:
        issues.append(f"no predictions for {len(missing)} subtasks ({_few(missing)})")
    if unknown := [k for k in preds if k.lower() not in part.sizes]:
        issues.append(f"subtasks the organisers do not score ({_few(unknown)})")
    if wrong := [f"{k} {len(got[k])} of {n}" for k, n in part.sizes.items() if k in got and len(got[k]) != n]:
        issues.append(f"wrong number of predictions for {len(wrong)} subtasks ({_few(wrong)})")
    for field in part.fields:
        if any(not isinstance(p, dict) or field not in p for ps in got.values() for p in ps):
            issues.append(f"predictions without {field!r}")
    return issues


def _part_line(trees: _Trees, revision: str, part: rules.Part) -> str | None:
    """One line for a predictions file that is missing, unreadable or incomplete; None when it is complete."""
    rel = trees.rel(part)
    where = f"{trees.request.model}/{revision}/{rel}"
    try:
        issues = _size_issues(trees.load(revision, rel), part)
    except MissingError:
        return f"{where}: missing ({part.label})"
    except (OSError, ValueError) as e:
        return f"{where}: unreadable ({part.label}): {(str(e).splitlines() or [type(e).__name__])[0]}"
    return f"{where}: {part.label}: {'; '.join(issues)}" if issues else None


def _revision_lines(trees: _Trees, revision: str, parts: Sequence[rules.Part], what: str) -> list[str]:
    """The lines of one revision's zero-shot parts: one for a revision or backend folder missing whole."""
    r = trees.request
    if not trees.has(revision):
        return [f"{r.model}/{revision}: missing: no results for this revision ({what})"]
    if not trees.has(revision, f"zero_shot/{r.backend}"):
        found = [b for b in rules.BACKENDS if trees.has(revision, f"zero_shot/{b}")]
        other = f"; found {', '.join(found)}: is --backend right?" if found else ""
        return [f"{r.model}/{revision}/zero_shot/{r.backend}: missing ({what}{other})"]
    return [line for part in parts if (line := _part_line(trees, revision, part))]


def _finetune_lines(trees: _Trees) -> list[str]:
    r = trees.request
    if not trees.has(r.revision):
        return []  # said by the revision's line
    if not trees.has(r.revision, "finetune"):
        tasks = ", ".join(rules.GLUE)
        return [f"{r.model}/{r.revision}/finetune: missing (the fine-tuning predictions of {tasks})"]
    return [line for part in rules.FINETUNE if (line := _part_line(trees, r.revision, part))]


def _aoa_line(trees: _Trees) -> str | None:
    """One line for an AoA file that is missing or lacks the organisers' rows: every required revision, 8005 each,
    no other revision."""
    r = trees.request
    if not trees.has(r.revision, f"zero_shot/{r.backend}"):
        return None  # said by the revision's line
    rel = f"zero_shot/{r.backend}/{rules.AOA_PATH}"
    where, label = f"{r.model}/{r.revision}/{rel}", "AoA, every checkpoint of the series"
    try:
        rows = trees.load(r.revision, rel)["results"]
        counts = collections.Counter(row["step"] for row in rows)
    except MissingError:
        return f"{where}: missing ({label})"
    except (OSError, ValueError, TypeError, KeyError) as e:
        return f"{where}: unreadable ({label}): not the pipeline's surprisal.json ({type(e).__name__} {e})"
    needed, issues = rules.required_revisions(r.track), []
    if missing := [n for n in needed if n not in counts]:
        issues.append(f"no rows for {len(missing)} revisions ({_few(missing)})")
    if extra := [str(n) for n in counts if n not in needed]:
        issues.append(f"rows for revisions the {r.track} track does not take ({_few(extra)})")
    if wrong := [f"{n} {counts[n]}" for n in needed if n in counts and counts[n] != rules.AOA_ROWS]:
        issues.append(f"{rules.AOA_ROWS} rows per revision expected ({_few(wrong)})")
    return f"{where}: AoA: {'; '.join(issues)}" if issues else None


def _tree_problems(trees: _Trees) -> list[str]:
    """Every missing or incomplete piece of the results, one line each."""
    r = trees.request
    lines = _revision_lines(trees, r.revision, rules.FULL, "score it on the full sets")
    lines += _finetune_lines(trees)
    lines += [line] if (line := _aoa_line(trees)) else []
    if r.fast:
        for revision in rules.required_revisions(r.track):
            lines += _revision_lines(trees, revision, rules.FAST, "score its checkpoint on the fast sets")
    return list(dict.fromkeys(lines))  # a full revision that is also a fast one is said once


class FastData:
    """The organisers' fast evaluation data in one folder (the pipeline's --fast_eval_dir), each file read once;
    EWoK's from an `ewok_fast/` folder or, as the organisers release it, from `ewok_fast.zip`, read in memory with
    its password (never unzipped to disk: EWoK's terms ask that its text not be redistributed in plain text)."""

    _PER_SUBTASK = {"blimp": rules.BLIMP, "blimp_supplement": rules.SUPPLEMENT, "ewok": rules.EWOK}

    def __init__(self, root: pathlib.Path, password: str | None = None):
        self.root = pathlib.Path(root)
        self.password = password or ""  # else BABYLM_EWOK_PASSWORD (data/ewok_comps.py)
        self._zip: dict[str, str] | None = None
        self._lines: dict[str, list[str]] = {}
        self._rows: dict[str, list[Any]] = {}

    def lines(self, rel: str) -> list[str]:
        """The lines of root/rel as readlines() gives them (ewok_fast/<x>.jsonl: from the zip without the folder)."""
        if rel not in self._lines:
            path = pathlib.PurePosixPath(rel)
            if (self.root / rel).is_file():
                with (self.root / rel).open(encoding="utf-8") as f:
                    self._lines[rel] = f.readlines()
            elif path.parent.name == "ewok_fast" and not (self.root / "ewok_fast").is_dir():
                self._lines[rel] = self._zipped(path.name)
            else:
                raise MissingError(f"{self.root / rel} is missing from --fast_eval_dir")
        return self._lines[rel]

    def rows(self, rel: str, n: int | None = None) -> list[Any]:
        """The first n lines of root/rel (None: all) parsed as JSON, each parsed once; as many as there are."""
        lines, done = self.lines(rel), self._rows.setdefault(rel, [])
        done += [json.loads(line) for line in lines[len(done) : n]]
        return done if n is None else done[:n]

    def table(self, rel: str) -> pd.DataFrame:
        """A CSV as collate_preds.py reads it (the item column as text)."""
        if not (self.root / rel).is_file():
            raise MissingError(f"{self.root / rel} is missing from --fast_eval_dir")
        return pd.read_csv(self.root / rel, dtype={"item": str})

    def _zipped(self, name: str) -> list[str]:
        """The lines of ewok_fast/<name> in the zip (every member decrypted once, in memory)."""
        if self._zip is None:
            files = ewok_comps.task_files(self.root / EWOK_ZIP, self.password)
            self._zip = {f"{f.stem}.jsonl": f.text for f in files}
        if name not in self._zip:
            raise MissingError(f"{self.root / EWOK_ZIP} holds no ewok_fast/{name}")
        return io.StringIO(self._zip[name], newline=None).readlines()

    def _stems(self, folder: str) -> set[str] | None:
        """The subtasks (file stems, lower case) of a per-subtask folder; None when it is not there."""
        if (self.root / folder).is_dir():
            return {p.stem.lower() for p in (self.root / folder).glob("*.jsonl")}
        if folder == "ewok_fast" and (self.root / EWOK_ZIP).is_file():
            try:
                with zipfile.ZipFile(self.root / EWOK_ZIP) as z:
                    names = [pathlib.PurePosixPath(m) for m in z.namelist()]
            except (zipfile.BadZipFile, OSError) as e:
                raise InputError(
                    f"cannot read {self.root / EWOK_ZIP} as a zip file ({e}): use the zip as released"
                ) from e
            return {m.stem.lower() for m in names if m.parent.name == "ewok_fast" and m.suffix == ".jsonl"}
        return None

    def problems(self) -> list[str]:
        """One line for each data file the fast metrics need that is not there, and for EWoK's password."""
        if not self.root.is_dir():
            return [f"--fast_eval_dir {self.root}: no such folder (the organisers' fast sets: blimp_fast/, ...)"]
        lines = []
        for key, rel in rules.FAST_DATA.items():
            try:
                lines += [line] if (line := self._data_line(key, rel)) else []
            except UserError as e:
                lines.append(str(e))
        return lines

    def _data_line(self, key: str, rel: str) -> str | None:
        """One line for a fast data file or folder missing or incomplete (EWoK's zip: or its password wrong)."""
        expected = self._PER_SUBTASK.get(key)
        if expected is None:
            return None if (self.root / rel).is_file() else f"{self.root / rel}: missing (fast data of {key})"
        if (stems := self._stems(rel)) is None:
            zipped = f" or {EWOK_ZIP}" if key == "ewok" else ""
            return f"{self.root / rel}/{zipped}: missing (fast data of {key})"
        if missing := [k for k in expected if k not in stems]:
            return f"{self.root / rel}/: no data for {len(missing)} subtasks ({_few(missing)})"
        if key == "ewok" and not (self.root / rel).is_dir():
            self.lines(f"{rel}/{next(iter(expected))}.jsonl")  # the zip opens with the password
        return None


def _strip(x: Any) -> Any:
    return x.strip() if isinstance(x, str) else x


def _share(pairs: list[tuple[Any, Any]], where: str) -> float:
    """correct / total over (prediction, target) pairs, as collate_preds.py counts them."""
    if not pairs:
        raise InputError(f"{where}: no data to score the predictions against")
    return sum(_strip(pred) == _strip(target) for pred, target in pairs) / len(pairs)


def _accuracies(preds: dict, data: FastData, folder: str, field: str) -> dict[str, float]:
    """Per subtask: the share of predictions equal (stripped) to the field of the data file's row beside them."""
    out = {}
    for subtask, res in preds.items():
        rel = str((pathlib.PurePosixPath(folder) / subtask).with_suffix(".jsonl"))
        rows = data.rows(rel, len(res["predictions"]))
        out[subtask] = _share([(p["pred"], row[field]) for p, row in zip(res["predictions"], rows)], rel)
    return out


def _entity_tracking(preds: dict, data: list[dict]) -> dict[str, float]:
    """Per subtask: the share of predictions equal to the first option of the regular.jsonl rows with its number of
    operations, in order."""
    rows: dict[str, list[dict]] = collections.defaultdict(list)
    for row in data:
        rows[f"regular_{row['numops']}_ops"].append(row)
    return {
        k: _share([(p["pred"], row["options"][0]) for p, row in zip(res["predictions"], rows[k])], k)
        for k, res in preds.items()
    }


def _wug(preds: dict, data: FastData, rel: str) -> dict[str, float]:
    """Per subtask: Spearman's rho of the predictions' prob with the data's human ratio."""
    from scipy import stats

    out = {}
    for subtask, res in preds.items():
        pairs = list(zip(res["predictions"], data.rows(rel, len(res["predictions"]))))
        out[subtask] = float(stats.spearmanr([p["prob"] for p, _ in pairs], [row["ratio"] for _, row in pairs])[0])
    return out


def _reading(preds: dict, table: pd.DataFrame) -> dict[str, float]:
    """spr and rt as fractions (not percent): the R² gains of the self-paced reading time, and of the four
    eye-tracking measures averaged."""
    df = table.copy()
    df["pred"] = [p["pred"] for p in preds["reading"]["predictions"]]
    df["prev_pred"] = [p["prev_pred"] for p in preds["reading"]["predictions"]]
    gains = [_r2_gain(df, dv, _BASE, scale=1.0) for dv in _EYE_TRACKING]
    return {"spr": _r2_gain(df, "self_paced_reading_time", _SPILLOVER, scale=1.0), "rt": sum(gains) / len(gains)}


def _metric(part: rules.Part, preds: dict, data: FastData) -> dict[str, float]:
    """A fast part's metrics at one revision."""
    rel = rules.FAST_DATA[part.key]
    if part.key == "entity_tracking":
        return _entity_tracking(preds, data.rows(rel))
    if part.key in ("wug_adj", "wug_past"):
        return _wug(preds, data, rel)
    if part.key == "reading":
        return _reading(preds, data.table(rel))
    return _accuracies(preds, data, rel, "Target1" if part.key == "ewok" else "sentence_good")


def _fast_metrics(trees: _Trees, data: FastData) -> tuple[dict[str, list[dict[str, float]]], list[str]]:
    """({part: [its metrics at each required revision]}, one line for each that cannot be computed)."""
    out: dict[str, list[dict[str, float]]] = {part.key: [] for part in rules.FAST}
    lines = []
    for revision in rules.required_revisions(trees.request.track):
        for part in rules.FAST:
            try:
                out[part.key].append(_metric(part, trees.load(revision, trees.rel(part)), data))
            except (UserError, KeyError, ValueError) as e:
                why = f"{type(e).__name__} {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
                lines.append(f"{trees.request.model}/{revision} {part.label}: no fast metric: {why}")
    return out, list(dict.fromkeys(lines))


def _full(trees: _Trees) -> dict[str, Any]:
    """The full predictions of the request's revision, in the organisers' order, the fine-tuning tasks merged."""
    r = trees.request
    out = {part.key: trees.load(r.revision, trees.rel(part)) for part in rules.FULL}
    out["aoa"] = trees.load(r.revision, f"zero_shot/{r.backend}/{rules.AOA_PATH}")
    out["glue"] = {}
    for part in rules.FINETUNE:
        out["glue"] |= trees.load(r.revision, trees.rel(part))
    return out


def collate(request: Request) -> tuple[dict[str, Any] | None, list[str]]:
    """(the submission's contents, None while anything is missing; one line for each missing or incomplete piece)."""
    trees = _Trees(request)
    data = FastData(request.fast_eval_dir, request.ewok_password) if request.fast else None
    lines = _tree_problems(trees) + (data.problems() if data else [])
    if lines:
        return None, lines
    out = _full(trees)
    if data is not None:
        out["fast_eval_results"], lines = _fast_metrics(trees, data)
    return (None, lines) if lines else (out, [])


def write(request: Request, contents: dict[str, Any]) -> pathlib.Path:
    """The submission file, as the organisers' json.dump writes it; returns its path."""
    write_atomic(request.output, json.dumps(contents))
    return request.output

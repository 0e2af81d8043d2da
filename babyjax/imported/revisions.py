"""A series of Hugging Face revisions (checkpoints of one training run) found on disk, ordered by step, and the
integrity of the series: duplicated, partly duplicated, missing and unreadable revisions.

`find(PATH)` reads three layouts: (a) one model folder (config.json and weights) is one revision; (b) a folder of
revision folders (step_1000/, chck_1M/, step143000/, maybe main/); (c) a local git repository, bare or not, with one
branch per revision, its local branches and remote-tracking ones (`origin/step1000`, as a clone of the Hub has them),
read without a checkout (weights.GitSource).

A revision's step comes from its babyjax_export.json (the true step, tokens and words seen, params_hash); else from
a table (CSV `revision,step,tokens_seen,words_seen`, the last two optional; PATH/revisions.csv when none is given),
which overrides names; else from its name: `step<N>` (Pythia) and `step_<N>` (babyjax) are step N, `chck_<N>M`
(BabyLM 2025) has seen N million words and, with nothing else known, its step is that word count (monotone and
unique, not an optimizer step). `main` (or `master`) is the final model: dropped as an alias of the revision with the
same commit, tree or step, kept as a revision when its step is known, else kept apart as `Series.final`, used only to
find revisions that hold the final weights.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import re
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from babyjax import paths
from babyjax.checkpoints.schedules import pythia_steps, whole_words, words_mark_name, words_marks
from babyjax.errors import CheckpointError, InputError, MissingError
from babyjax.imported import weights

EXPORT_INFO = "babyjax_export.json"
TABLE = "revisions.csv"
FINAL_NAMES = ("main", "master")
REGULAR_GAPS = 0.2  # the largest share of a regular run's gaps that may be wider than its spacing (revisions missing)
_STEP_NAME = re.compile(r"step_?(\d+)")
_PYTHIA_NAME = re.compile(r"step(\d+)")
_WORDS_NAME = re.compile(r"chck_(\d+)M")
_MARKERS = (
    "config.json",
    EXPORT_INFO,
    weights.SAFETENSORS,
    weights.SAFETENSORS_INDEX,
    weights.BIN,
    weights.BIN_INDEX,
)


@dataclasses.dataclass
class Revision:
    """One checkpoint of a series: its name (branch or folder), step (None only for a `Series.final` whose step is
    unknown), what it has seen where known, its babyjax_export.json (`info`, {} if none), its files, its commit (git
    revisions) and the names dropped as its aliases (`main`)."""

    name: str
    step: int | None
    files: weights.Source
    tokens_seen: float | None = None
    words_seen: float | None = None
    params_hash: str | None = None
    info: dict = dataclasses.field(default_factory=dict)
    commit: str | None = None
    aliases: tuple[str, ...] = ()

    def entry(self) -> dict:
        """revision, step, tokens_seen, words_seen, params_hash: the keys whose values are known, none as None."""
        keys = ("step", "tokens_seen", "words_seen", "params_hash")
        return {"revision": self.name, **{k: getattr(self, k) for k in keys if getattr(self, k) is not None}}

    def read_bytes(self, name: str) -> bytes | None:
        """A file of the revision (config.json, tokenizer.json, ...), None if it has none."""
        return self.files.read_bytes(name)

    def read_json(self, name: str) -> Any:
        """A JSON file of the revision, None if it has none."""
        data = self.read_bytes(name)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as e:
            raise CheckpointError(f"{self.files.where}: {name} is not valid JSON ({e}): download it again") from None

    def copy_files(self, dest: str | os.PathLike) -> pathlib.Path:
        """Write every file of the revision except its weights (config, tokenizer files, ...) into `dest`."""
        dest = pathlib.Path(dest)
        for name in self.files.names():
            data = None if weights.is_weight_file(name) else self.read_bytes(name)
            if data is not None:
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                (dest / name).write_bytes(data)
        return dest


class Series(list):
    """The revisions of a series ordered by step (a list), with `final`: the final model (`main`) when it is none of
    them and its step is unknown, else None."""

    def __init__(self, revisions: Sequence[Revision], final: Revision | None = None, where: str = ""):
        super().__init__(sorted(revisions, key=lambda r: r.step))
        self.final, self.where = final, where


# -- finding the revisions ---------------------------------------------------------------------------------------------
def find(path: str | os.PathLike, table: str | os.PathLike | None = None) -> Series:
    """The revisions under `path` (a model folder, a folder of revision folders or a git repository), ordered by
    step; `table`: a revision table (default PATH/revisions.csv when present). A single model folder whose step
    nothing gives is one revision at step 0."""
    path = pathlib.Path(path)
    if not path.exists():
        raise MissingError(f"{path} not found: give a model folder, a folder of revision folders or a git repository")
    if not path.is_dir():
        raise InputError(f"{path} is a file: give the model folder holding it, or a folder of revision folders")
    if table is None and (path / TABLE).is_file():
        table = path / TABLE
    rows = read_table(table) if table is not None else None
    gitdir = git_dir(path)
    found = [e for e in _git_revisions(gitdir) if _holds_revision(e[1])] if gitdir else []
    if not found and _holds_revision(weights.FolderSource(path)):
        name, source = path.resolve().name, weights.FolderSource(path)
        found = [(name, source, None, None)]
        if rows is None and not _known(source) and not _from_name(name):  # one model: one revision, at step 0
            rows = {name: {"step": 0}}
    elif not found:
        folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        found = [(p.name, weights.FolderSource(p), None, None) for p in folders]
        found = [e for e in found if _holds_revision(e[1])]
    return _series(found, rows, table, str(path))


def _holds_revision(source: weights.Source) -> bool:
    """Whether the files hold a model revision: a config.json, babyjax_export.json or weights at the top."""
    if isinstance(source, weights.FolderSource):  # without listing every file below
        return any((source.folder / name).is_file() for name in _MARKERS)
    return any(name in source.names() for name in _MARKERS)


def git_dir(path: pathlib.Path) -> pathlib.Path | None:
    """The git directory of the repository whose root (or bare directory) is `path`, None if it is not one."""
    if (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir():
        return path.resolve()
    if not (path / ".git").exists():
        return None
    done = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--absolute-git-dir"],
        capture_output=True,
        text=True,
        env=weights.clean_env(),
    )
    return pathlib.Path(done.stdout.strip()) if done.returncode == 0 else None


def _git_revisions(gitdir: pathlib.Path) -> list[tuple[str, weights.Source, str, str]]:
    """(name, files, commit, tree) for every local branch and remote-tracking branch (remote/HEAD skipped; a local
    branch wins over a remote one of the same name)."""
    out = weights.git(gitdir, "for-each-ref", "--format=%(refname) %(objectname) %(tree)", "refs/heads", "refs/remotes")
    found: dict[str, tuple[str, str, bool]] = {}
    for line in out.decode().splitlines():
        ref, commit, *tree = line.split()
        if not tree:  # not a commit
            continue
        local = ref.startswith("refs/heads/")
        name = ref.removeprefix("refs/heads/") if local else ref.removeprefix("refs/remotes/").partition("/")[2]
        if name and name != "HEAD" and (local or name not in found):
            found[name] = (commit, tree[0], local)
    return [(n, weights.GitSource(gitdir, c, n), c, t) for n, (c, t, _) in sorted(found.items())]


def read_table(table: str | os.PathLike) -> dict[str, dict[str, int]]:
    """revision -> {step, tokens_seen?, words_seen?} from a CSV with header `revision,step,tokens_seen,words_seen`
    (the last two optional, blank cells unknown)."""
    try:
        text = pathlib.Path(table).read_text()
    except OSError as e:
        raise MissingError(f"revision table {table} cannot be read ({e.strerror}): give an existing CSV file") from None
    reader = csv.DictReader(io.StringIO(text))
    if not {"revision", "step"} <= set(reader.fieldnames or ()):
        raise InputError(f"revision table {table} needs the header revision,step[,tokens_seen,words_seen]")
    rows = {}
    for line, row in enumerate(reader, start=2):
        try:
            counts = {k: _whole(row[k]) for k in ("step", "tokens_seen", "words_seen") if (row.get(k) or "").strip()}
        except (ValueError, OverflowError):
            raise InputError(f"line {line} of {table} holds a count that is not a number: fix it") from None
        if "step" not in counts:
            raise InputError(f"line {line} of {table} has no step: give every revision its step")
        rows[row["revision"].strip()] = counts
    return rows


def _whole(text: str | float) -> int:
    return whole_words(float(text))


def _known(source: weights.Source) -> dict[str, Any]:
    """What the revision's babyjax_export.json says: step, tokens_seen, words_seen, params_hash, info."""
    data = source.read_bytes(EXPORT_INFO)
    if data is None:
        return {}
    try:
        info = json.loads(data)
        step = int(info["step"])
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"{source.where}: {EXPORT_INFO} has no step: export the revision again") from None
    known: dict[str, Any] = {"step": step, "info": info}
    for key in ("tokens_seen", "words_seen"):  # as the run's series index records them (words may be fractional)
        if isinstance(info.get(key), (int, float)):
            known[key] = info[key]
    if isinstance(info.get("params_hash"), str):
        known["params_hash"] = info["params_hash"]
    return known


def _from_name(name: str) -> dict[str, int]:
    """step (and words_seen) read from a revision's name; {} when the name says neither."""
    if m := _STEP_NAME.fullmatch(name):
        return {"step": int(m.group(1))}
    if m := _WORDS_NAME.fullmatch(name):
        return {"step": int(m.group(1)) * 10**6, "words_seen": int(m.group(1)) * 10**6}
    return {}


def _counts(name: str, source: weights.Source, rows: dict | None, table: Any) -> dict[str, Any]:
    """The step and counts of one revision: its export info, else the table's row, else its name; {} for a final
    revision whose step is unknown."""
    known = _known(source)
    if known:
        return known
    if rows is not None and name in rows:  # the table's counts, the words a chck_<N>M name says where it has none
        return {**{k: v for k, v in _from_name(name).items() if k != "step"}, **rows[name]}
    if name in FINAL_NAMES:
        return {}
    if rows is not None:
        raise InputError(f"revision {name} is not in the table {table}: add a row {name},<step>")
    found = _from_name(name)
    if not found:
        raise InputError(
            f"the step of revision {name} cannot be read from its name: give a table {TABLE} with the header "
            "revision,step,tokens_seen,words_seen"
        )
    return found


def _series(found: list, rows: dict | None, table: Any, where: str) -> Series:
    """The Series of (name, files, commit, tree) entries: steps read, `main` merged with its alias or kept apart."""
    revisions, finals = [], []
    for name, source, commit, tree in found:
        counts = _counts(name, source, rows, table)
        rev = Revision(name, counts.pop("step", None), source, commit=commit, **counts)
        (finals if name in FINAL_NAMES else revisions).append((rev, tree))
    final = None
    for rev, tree in finals:
        same = next((r for r, t in revisions if (tree and t == tree) or r.step == rev.step), None)
        if same is not None:
            same.aliases += (rev.name,)
        elif rev.step is not None:
            revisions.append((rev, tree))
        else:
            final = rev
    if final is not None and not revisions:
        raise InputError(f"the step of {final.name} in {where} is unknown: give a table {TABLE} with its step")
    steps: dict[int, str] = {}
    for rev, _ in revisions:
        if rev.step in steps:
            raise InputError(f"revisions {steps[rev.step]} and {rev.name} both hold step {rev.step}: give a table")
        steps[rev.step] = rev.name
    return Series([r for r, _ in revisions], final, where)


# -- digests -----------------------------------------------------------------------------------------------------------
def scan(
    revisions: Sequence[Revision], cache: str | os.PathLike | None = None
) -> tuple[dict[str, dict[str, str]], dict[str, weights.Unreadable]]:
    """(revision -> tensor digests, revision -> Unreadable) for the series and its `final`; `cache`: a JSON file of
    digests keyed by the weight files' identities (size and mtime, or git blob id), read and updated."""
    stored = _read_cache(cache)
    digests, unreadable, keys = {}, {}, {}
    final = getattr(revisions, "final", None)
    for rev in [*revisions, *([final] if final is not None else [])]:
        try:
            key = keys[rev.name] = _cache_key(rev.files)
            digests[rev.name] = stored.get(key) or weights.digests(rev.files)
        except weights.Unreadable as e:
            unreadable[rev.name] = e
    if cache is not None:
        fresh = {keys[name]: d for name, d in digests.items()}
        if fresh != {k: stored[k] for k in fresh if k in stored}:
            paths.write_atomic(cache, json.dumps({"digests": {**stored, **fresh}}))
    return digests, unreadable


def _cache_key(source: weights.Source) -> str:
    ids = "\n".join(source.identity(name) for name in weights.weight_files(source))
    return hashlib.sha256(f"{source.where}\n{ids}".encode()).hexdigest()


def _read_cache(cache: str | os.PathLike | None) -> dict[str, dict[str, str]]:
    if cache is None or not os.path.isfile(cache):
        return {}
    try:
        return dict(json.loads(pathlib.Path(cache).read_text())["digests"])
    except (ValueError, KeyError, TypeError):
        return {}  # a damaged cache is rebuilt


# -- integrity ---------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem of a series: the revision (for `missing`, the name the absent revision would have), its status
    and a one-line message; `step`: the revision's (or the missing) step where known."""

    revision: str
    status: str
    message: str
    step: int | None = None


def check(
    revisions: Sequence[Revision],
    digests: Mapping[str, Mapping[str, str]],
    unreadable: Mapping[str, weights.Unreadable | tuple[str, str]],
) -> list[Finding]:
    """The problems of a series, given each readable revision's tensor digests (weights.digests) and each unreadable
    one's error (or (status, message)): unreadable revisions (lfs_pointer, corrupt, needs_torch, no_weights),
    `equals_final` (a revision before the last holding the final weights), `duplicate` (all tensors equal to an
    earlier revision's), `partial_duplicate` (some tensors equal to another revision's although a revision between
    them holds others: a partial copy) and `missing` (a step absent from a regular schedule). A regular series with
    nothing wrong gives none. The final weights are those of `revisions.final` (a Series', digested here when
    `digests` lacks it; unreadable, it is skipped), else of the last revision."""
    order, final = list(revisions), getattr(revisions, "final", None)
    steps = {r.name: r.step for r in order}
    found = []
    for name, error in unreadable.items():
        status, message = (error.status, str(error)) if isinstance(error, weights.Unreadable) else error
        found.append(Finding(name, status, message, steps.get(name)))
    if final is not None and final.name not in digests and final.name not in unreadable:
        try:
            digests = {**digests, final.name: weights.digests(final.files)}
        except weights.Unreadable:
            final = None
    copies = _copies(order, final, digests)
    found += copies
    flagged = {f.revision for f in copies}
    found += _partials([r for r in order if r.name not in flagged], final, digests)
    found += _missing(order)
    return sorted(found, key=lambda f: (f.step is None, f.step or 0, f.revision))


def _copies(order: list[Revision], final: Revision | None, digests: Mapping) -> list[Finding]:
    """equals_final and duplicate findings."""
    whole = {name: weights.revision_digest(d) for name, d in digests.items()}
    last = order[-1].name if order else None
    final_name = final.name if final is not None else last
    final_whole = whole.get(final_name)
    found, first = [], {}
    for rev in order:
        if rev.name not in whole:
            continue
        digest = whole[rev.name]
        if digest == final_whole:
            if rev.name != last:  # the last revision holds the final weights, as it should
                message = f"{rev.name} holds the final weights ({final_name})"
                found.append(Finding(rev.name, "equals_final", message, rev.step))
        elif digest in first:
            message = f"{rev.name} holds the same weights as {first[digest]}"
            found.append(Finding(rev.name, "duplicate", message, rev.step))
        first.setdefault(digest, rev.name)
    return found


def _partials(order: list[Revision], final: Revision | None, digests: Mapping) -> list[Finding]:
    """partial_duplicate findings: a tensor equal in two revisions while a revision between them holds another
    value of it cannot come from one training run. The copy is the later revision, unless the later is the final."""
    seq = [r for r in order if r.name in digests]
    if final is not None and final.name in digests and (not seq or digests[final.name] != digests[seq[-1].name]):
        seq.append(final)
    finals = {seq[-1].name, order[-1].name} if seq and order else set()
    shared: dict[tuple[str, str], list[str]] = {}
    for tensor in sorted({t for r in seq for t in digests[r.name]}):
        held = [(i, digests[r.name][tensor]) for i, r in enumerate(seq) if tensor in digests[r.name]]
        for i, j in _returns(held):
            copy, other = (seq[i], seq[j]) if seq[j].name in finals else (seq[j], seq[i])
            shared.setdefault((copy.name, other.name), []).append(tensor)
    found, done = [], set()
    for (copy, other), tensors in sorted(shared.items(), key=lambda kv: -len(kv[1])):
        if copy in done:
            continue
        done.add(copy)
        total = len(digests[copy])
        message = (
            f"{copy} shares {len(tensors)} of {total} tensors with {other} but not with the revisions between them "
            f"(e.g. {tensors[0]}): a partial copy"
        )
        step = next(r.step for r in seq if r.name == copy)
        found.append(Finding(copy, "partial_duplicate", message, step))
    return found


def _returns(held: list[tuple[int, str]]) -> list[tuple[int, int]]:
    """Pairs of positions holding the same value of a tensor with another value held between them, from the
    (position, value) pairs of the revisions holding the tensor."""
    pairs, last_at = [], {}
    for k, (i, value) in enumerate(held):
        if value in last_at and last_at[value] < k - 1:  # a position between holds another value
            pairs.append((held[last_at[value]][0], i))
        last_at[value] = k
    return pairs


def _missing(order: list[Revision]) -> list[Finding]:
    """Steps absent from a regular schedule (at least three revisions besides `main`): BabyLM words marks up to the
    last for chck_<N>M names (the missing mark's step given when the steps are the words seen), Pythia's schedule for
    step<N> names, and gaps inside runs of constant spacing."""
    named = [r for r in order if r.name not in FINAL_NAMES]
    if len(named) < 3:
        return []
    if all(_WORDS_NAME.fullmatch(r.name) for r in named):
        marks = {int(_WORDS_NAME.fullmatch(r.name).group(1)) * 10**6: r.step for r in named}
        last, by_words = words_mark_name(max(marks)), all(m == step for m, step in marks.items())
        return [
            Finding(name, "missing", f"{name} is missing: the marks run up to {last}", m if by_words else None)
            for m in words_marks(max(marks))
            if m not in marks and (name := words_mark_name(m))
        ]
    steps = sorted(r.step for r in named)
    missing = _gaps(steps)
    if all(_PYTHIA_NAME.fullmatch(r.name) for r in named):
        grid = pythia_steps(steps[-1])
        if set(steps) <= set(grid) and len(steps) >= 0.9 * len(grid) and len(grid) >= 10:
            why = f"Pythia's schedule (0, 1, 2, 4, ..., 512, then every 1000 to {steps[-1]})"
            missing.update(dict.fromkeys((s for s in grid if s not in steps), why))
    found = []
    for step, why in sorted(missing.items()):
        name = _name_like(min(named, key=lambda r: abs(r.step - step)), step)
        found.append(Finding(name, "missing", f"{name} is missing from {why}", step))
    return found


def _gaps(steps: list[int]) -> dict[int, str]:
    """step -> why, for the steps absent inside runs of constant spacing: a run starts and ends with spacing d (seen
    at least twice), every gap inside it is a multiple of d, and at most REGULAR_GAPS of its gaps are not d (a
    log-spaced schedule such as Chang et al.'s, rounded to whole steps, mixes gaps of d and 2d: no run of it is
    regular)."""
    diffs = [b - a for a, b in zip(steps, steps[1:])]
    missing: dict[int, str] = {}
    for d in sorted({x for x in diffs if x > 0 and diffs.count(x) >= 2}):
        i = 0
        while i < len(diffs):
            if diffs[i] != d:
                i += 1
                continue
            j = end = i
            while j + 1 < len(diffs) and diffs[j + 1] % d == 0:
                j += 1
                end = j if diffs[j] == d else end
            why = f"the series' run every {d} steps from {steps[i]} to {steps[end + 1]}"
            if sum(x != d for x in diffs[i : end + 1]) <= REGULAR_GAPS * (end + 1 - i):  # else not regular (Chang's)
                for k in range(i, end + 1):
                    missing.update(dict.fromkeys(range(steps[k] + d, steps[k + 1], d), why))
            i = end + 1
    return missing


def _name_like(rev: Revision, step: int) -> str:
    """The name a revision at `step` would have, spelled like `rev`'s (step1000 -> step2000, step_10 -> step_20)."""
    m = re.fullmatch(r"(\D*?)(\d+)(\D*)", rev.name)
    if m and int(m.group(2)) == rev.step:
        return f"{m.group(1)}{step}{m.group(3)}"
    return f"step {step}"


def audit(path: str | os.PathLike, table: str | os.PathLike | None = None, cache: Any = None) -> list[Finding]:
    """The problems of the series under `path` (find, scan, check)."""
    series = find(path, table)
    digests, unreadable = scan(series, cache)
    return check(series, digests, unreadable)

"""A run directory: the one place that knows what a training run leaves behind, and how to read it back.

    <run>/config.json                 the full config (written at the first start, checked at every restart)
    <run>/plan.json                   the steps (derived from data.num_epochs when train.num_steps is 0) and planned
                                      words seen, written at every start
    <run>/tokenizer.model             the SentencePiece model (a run is self-contained)
    <run>/checkpoints/series/<step>/  Orbax: parameters at every step of the series schedule (all kept)
    <run>/checkpoints/series.json     index: [{step, tokens_seen, words_seen, wall_time, params_hash}, ...]
    <run>/checkpoints/resume/<step>/  Orbax: full train state + data-iterator state (the latest few)
    <run>/metrics.jsonl, tensorboard/ training metrics
    <run>/generations.json            text generated at a few checkpoints (python -m babyjax.generate)

Every stage opens runs through `RunDir` (local or gs://... through etils.epath). The series index is a cache of the
committed checkpoints' meta items, rebuilt (read-only here) from them when series.json is missing or damaged.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from babyjax import paths
from babyjax.data.tokenizer import MODEL_FILE, Tokenizer
from babyjax.errors import CheckpointError, InputError, MissingError, TrainingError
from babyjax.model import objectives
from babyjax.model.transformer import ModelConfig

log = logging.getLogger("babyjax")


# Config sections that define the run: a restarted run must use the same values (logging and bookkeeping may differ).
RUN_DEFINING = (
    "seed",
    "data",
    "tokenizer",
    "model",
    "objective",
    "optim",
    "train.batch_size",
    "train.num_steps",
    "ckpt.schedule",
)
# Where the data lives is not what the run is: a moved release folder is fine (its prepared data is found by the
# source's fingerprint, babyjax/data/babylm.py).
LOCATIONS = ("data.dir", "data.tfds_dir")


class RunDir:
    """The directory of one training run (local or cloud storage); see the module docstring for its layout."""

    def __init__(self, path: paths.PathLike):
        self.path = paths.absolute(path)
        self.name = self.path.name
        self.config_path = self.path / "config.json"
        self.tokenizer_path = self.path / MODEL_FILE
        self.metrics_path = self.path / "metrics.jsonl"
        self.tensorboard_dir = self.path / "tensorboard"
        self.generations_path = self.path / "generations.json"
        self.series_dir = self.path / "checkpoints" / "series"
        self.resume_dir = self.path / "checkpoints" / "resume"
        self.index_path = self.path / "checkpoints" / "series.json"
        self.plan_path = self.path / "plan.json"

    @classmethod
    def open(cls, path: paths.PathLike, what: str = "--workdir") -> RunDir:
        """An existing run directory; a one-line MissingError when `path` holds no config.json."""
        run = cls(path)
        if not run.config_path.is_file():
            raise MissingError(f"{run.config_path} not found: {what} must be a babyjax run directory")
        return run

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- reading ------------------------------------------------------------------------------------------------------
    def config(self) -> ml_collections.ConfigDict:
        """The run's config.json as a ConfigDict, as today's code reads it (`migrated`; the file stays as it is)."""
        if not self.config_path.is_file():
            raise MissingError(f"{self.config_path} not found: {self.path} is not a babyjax run directory")
        try:
            stored = json.loads(self.config_path.read_text())
        except json.JSONDecodeError as e:
            raise InputError(
                f"{self.config_path} is not valid JSON ({e.msg}): it must be a babyjax run's config.json"
            ) from None
        if not isinstance(stored, dict):
            raise InputError(f"{self.config_path} is not a JSON object: it must be a babyjax run's config.json")
        return ml_collections.ConfigDict(migrated(stored))

    def tokenizer(self) -> Tokenizer:
        """The run's SentencePiece tokenizer."""
        if not self.tokenizer_path.is_file():
            raise MissingError(
                f"{self.tokenizer_path} not found: {self.path} is not a (complete) babyjax run directory"
            )
        return Tokenizer(self.tokenizer_path)

    def model_config(self, vocab_size: int | None = None) -> ModelConfig:
        """The model of the run (vocabulary size from its tokenizer unless given)."""
        vocab = self.tokenizer().vocab_size if vocab_size is None else vocab_size
        return ModelConfig.from_config(self.config().model, vocab)

    def write_plan(self, plan: dict) -> None:
        paths.write_atomic(self.plan_path, json.dumps(plan, indent=2))

    def num_steps(self) -> int:
        """The steps the run trains: its config's train.num_steps, or the ones its start derived (plan.json); 0 when
        they were to be derived and no start has yet."""
        steps = int(self.config().train.num_steps)
        if steps or not self.plan_path.is_file():
            return steps
        return int(json.loads(self.plan_path.read_text())["num_steps"])

    def series_index(self) -> list[dict]:
        """The series as meta dicts sorted by step (CheckpointError when the run has no series checkpoint)."""
        return load_series_index(self.path)

    # -- the same-run check -------------------------------------------------------------------------------------------
    def pin_config(self, config: ml_collections.ConfigDict, *, primary: bool = True) -> None:
        """Write config.json on the first start; on a restart, refuse a config that defines another run.

        A start that failed before its first checkpoint (say, a wrong data folder) does not pin the config: its
        config.json is replaced. `primary`: whether this process writes (process 0 of a multi-process job).
        """
        current = json.loads(config.to_json_best_effort())
        if not self.config_path.exists() or not (self.path / "checkpoints").exists():
            if primary:
                paths.write_atomic(self.config_path, json.dumps(current, indent=2, sort_keys=True))
            return
        stored = json.loads(self.config_path.read_text())
        for d in (stored, current):
            for key in LOCATIONS:
                section, name = key.split(".")
                d.get(section, {}).pop(name, None)
        stored, current = migrated(stored), migrated(current)
        for key in RUN_DEFINING:
            a, b = _lookup(stored, key), _lookup(current, key)
            if a != b:
                raise TrainingError(
                    f"{self.path} holds a run with another config ({first_difference(a, b, key)}); "
                    "use a new --workdir, or the run's own config"
                )


def migrated(config: dict) -> dict:
    """An older run's config as today's code reads it: the keys added to the objective, model and optim sections since
    it was written get their defaults (the package's: objectives.DEFAULT, ModelConfig.defaults; optim.name 'adamw'),
    so a run made before them reads as, and continues as, the run it was (runs made before objectives existed are
    causal). Other sections are kept as they are (data.words_per_epoch, 0, aside): every config.json has had their
    keys from the start."""
    out = {**config, "objective": objectives.config_of(config)}
    if isinstance(config.get("data"), dict):
        out["data"] = {"words_per_epoch": 0, **config["data"]}
    if isinstance(config.get("model"), dict):
        out["model"] = {**ModelConfig.defaults(), **config["model"]}
    if isinstance(config.get("optim"), dict):  # runs made before optim.name trained with AdamW
        out["optim"] = {"name": "adamw", **config["optim"]}
    return out


def _lookup(d: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


_MISSING = object()


def first_difference(
    stored: Any, current: Any, prefix: str = "", ignore: tuple[str, ...] = (), what: str = "run"
) -> str:
    """The first key where two nested dicts differ (keys in `ignore` skipped): 'optim.lr: stored 0.001, now 0.003',
    or 'runs.seed2: only in this config' / '... only in the stored run' (`what`) when one side lacks the key."""
    if isinstance(stored, dict) and isinstance(current, dict):
        for k in sorted(set(stored) | set(current)):
            a, b = stored.get(k, _MISSING), current.get(k, _MISSING)
            if k not in ignore and a != b:
                return first_difference(a, b, f"{prefix}.{k}" if prefix else k, ignore, what)
    if stored is _MISSING or current is _MISSING:
        return f"{prefix}: only in {'this config' if stored is _MISSING else 'the stored ' + what}"
    short = lambda v: "{...}" if isinstance(v, dict) else repr(v)[:60]
    return f"{prefix}: stored {short(stored)}, now {short(current)}"


# -- The series index -------------------------------------------------------------------------------------------------


def read_index_file(path: epath.Path) -> list[dict]:
    """The entries of a series.json file (CheckpointError when it is damaged)."""
    try:
        entries = json.loads(path.read_text())
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "step" in e for e in entries):
            raise InputError("not a list of {step, ...} objects")
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"series index {path} is damaged ({e}); it is rebuilt from the checkpoints when the "
            "run restarts, or delete it and call load_series_index again"
        ) from e
    return entries


def read_meta(step_dir: epath.Path) -> dict:
    """The 'meta' item of one Orbax checkpoint."""
    checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler(meta=ocp.JsonCheckpointHandler()))
    try:
        return dict(checkpointer.restore(step_dir, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])
    except Exception as e:
        raise CheckpointError(f"checkpoint {step_dir} is corrupt or incomplete: cannot read its meta ({e})") from e
    finally:
        checkpointer.close()


def is_committed(step_dir: epath.Path) -> bool:
    """Whether Orbax finished writing the step (its commit_success.txt is written last, locally and on gs://)."""
    return (step_dir / "commit_success.txt").exists()


def committed_steps(directory: epath.Path) -> list[int]:
    """Steps whose checkpoint orbax has finalized (temporary directories of interrupted saves are excluded)."""
    return sorted(ocp.utils.checkpoint_steps(directory)) if directory.exists() else []


def index_from_disk(run: RunDir, known: list[dict]) -> list[dict]:
    """The index of the committed series steps: entries of `known` kept, missing ones read from the checkpoints."""
    by_step = {int(e["step"]): e for e in known}
    return [by_step.get(step) or read_meta(run.series_dir / str(step)) for step in committed_steps(run.series_dir)]


def load_series_index(workdir: paths.PathLike) -> list[dict]:
    """The series of a run as a list of meta dicts sorted by step (rebuilt read-only from the checkpoints if the
    index file is missing or damaged)."""
    run = RunDir(workdir)
    if run.index_path.exists():
        try:
            return sorted(read_index_file(run.index_path), key=lambda e: e["step"])
        except CheckpointError as e:
            log.warning("%s; reading the checkpoints' meta instead", e)
    entries = index_from_disk(run, [])
    if not entries:
        raise CheckpointError(
            f"no series checkpoints in {run.path} (expected {run.series_dir}/<step>/); is this a babyjax run directory?"
        )
    return entries

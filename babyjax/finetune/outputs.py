"""What a fine-tuning job writes (layout: babyjax/finetune/job.py): one JSON per unit, the pipeline's results.txt and
predictions.json for the tree that babyjax.submit collates, and finetune.csv."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from babyjax import paths
from babyjax.finetune.tasks import TASKS
from babyjax.finetune.train import Outcome

CSV = "finetune.csv"
METRICS = ("accuracy", "f1", "mcc")


@dataclasses.dataclass
class UnitResult:
    """One unit (run, checkpoint, task, seed): every epoch's losses and metrics, the best epoch, its predictions on
    the validation file and the metrics the pipeline reports for it."""

    run: str
    step: int
    words_seen: float
    task: str
    seed: int
    epochs: list[dict[str, float]]
    best_epoch: int
    metrics: dict[str, float]
    predictions: list[int]
    chance: dict[str, float] = dataclasses.field(default_factory=dict)  # majority_metrics: the majority class's

    @classmethod
    def of(
        cls,
        run: str,
        step: int,
        entry: dict,
        task: str,
        seed: int,
        outcome: Outcome,
        names: Sequence[str],
        chance: dict[str, float],
    ) -> UnitResult:
        best = outcome.epochs[outcome.best_epoch - 1]
        return cls(
            run,
            step,
            float(entry.get("words_seen", -1)),
            task,
            seed,
            outcome.epochs,
            outcome.best_epoch,
            {k: best[k] for k in names},
            [int(p) for p in np.argmax(outcome.logits, axis=-1)],
            dict(chance),
        )


def results_text(metrics: dict[str, float]) -> str:
    """results.txt as the pipeline's run.py writes it: `name: value` lines, no final newline."""
    return "\n".join(f"{k}: {v}" for k, v in metrics.items())


def predictions_json(task: str, predictions: Sequence[int]) -> str:
    """predictions.json as run.py writes it: {task: {"predictions": [{"id": "<task>_<i>", "pred": p}, ...]}}."""
    return json.dumps(
        {task: {"predictions": [{"id": f"{task}_{i}", "pred": int(p)} for i, p in enumerate(predictions)]}}
    )


def write_tree(model_dir: pathlib.Path, revisions: Sequence[str], task: str, result: UnitResult) -> None:
    """results.txt and predictions.json of `result` under <model_dir>/<revision>/finetune/<task>/ for each name."""
    for revision in revisions:
        folder = model_dir / revision / "finetune" / task
        paths.write_atomic(folder / "predictions.json", predictions_json(task, result.predictions))
        paths.write_atomic(folder / "results.txt", results_text(result.metrics))


def unit_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The CSV rows of one unit's JSON: one per epoch, with `chance`, the majority class's value of the task's
    validation metric (empty for units written before it was recorded)."""
    keys = ("run", "step", "words_seen", "task", "seed")
    chance = result.get("chance", {}).get(TASKS[result["task"]].metric_for_valid, np.nan)
    return [
        {**{k: result[k] for k in keys}, **epoch, "best": epoch["epoch"] == result["best_epoch"], "chance": chance}
        for epoch in result["epochs"]
    ]


def write_table(out: pathlib.Path) -> pd.DataFrame:
    """finetune.csv from every unit under <out>/units, sorted by run, step, task, seed and epoch."""
    rows = [r for f in sorted((out / "units").rglob("seed_*.json")) for r in unit_rows(json.loads(f.read_text()))]
    columns = [
        "run",
        "step",
        "words_seen",
        "task",
        "seed",
        "epoch",
        "train_loss",
        "valid_loss",
        "accuracy",
        "f1",
        "mcc",
    ]
    table = pd.DataFrame(rows, columns=[*columns, "best", "chance"])
    table = table.sort_values(["run", "step", "task", "seed", "epoch"], kind="stable").reset_index(drop=True)
    paths.write_atomic(out / CSV, table.to_csv(index=False))
    return table

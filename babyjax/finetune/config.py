"""Every option of `python -m babyjax.finetune`, once: a FinetuneConfig field is a flag of the same name with its
default and help (babyjax/commands/finetune.py). The defaults are the BabyLM 2025 pipeline's recipe
(eval_finetuning.sh); a task's batch size and epochs come from babyjax.finetune.tasks unless given."""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import ml_collections

from babyjax.errors import InputError
from babyjax.finetune.model import POOLS
from babyjax.finetune.tasks import RECIPE_TASKS, TASKS
from babyjax.finetune.train import Recipe
from babyjax.score.config import RunSpec, option, option_items, parse_count, parse_steps

DEFAULT_DATA = "evaluation_data/full_eval/glue_filtered"  # where the pipeline's eval_finetuning.sh reads them


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """A fine-tuning job: which runs at which checkpoints, on which tasks, with which seeds, into which folder."""

    run: tuple[RunSpec, ...] = option(
        (), "name=workdir of a run to fine-tune (repeat for several runs/seeds)", repeat=True
    )
    out: str | None = option(None, "output folder (created, or continued when it holds this job's recipe)")
    data_dir: str = option(DEFAULT_DATA, "the folder of <task>.train.jsonl and <task>.valid.jsonl")
    tasks: tuple[str, ...] = option(RECIPE_TASKS, "tasks (comma-separated): " + ", ".join(sorted(TASKS)))
    steps: tuple[int, ...] = option((), "fine-tune these series steps (comma-separated)")
    words: tuple[int, ...] = option((), "the first checkpoint reaching each words-seen mark, e.g. 1M,10M,100M")
    marks: bool = option(False, "every checkpoint that is the first to reach a BabyLM chck_<N>M words mark")
    every: int = option(0, "every k-th checkpoint of the series, and its last (0: only those chosen otherwise)")
    seeds: tuple[int, ...] = option((42,), "fine-tuning seeds (comma-separated); the first's results are the tree's")
    pool: str = option(
        "auto", "the token classified: auto (decoders the last, encoders the first), first, last", choices=POOLS
    )
    seq_len: int = option(512, "rows truncated to this many tokens (the pipeline's --sequence_length)")
    learning_rate: float = option(Recipe.learning_rate, "peak learning rate")
    batch_size: int = option(0, "rows per step (0: the task's recipe: 16 for BoolQ and MultiRC, else 32)")
    num_epochs: int = option(0, "epochs (0: the task's recipe: 30 for WSC, else 10)")
    valid_batch_size: int = option(Recipe.valid_batch_size, "rows per evaluation batch")
    weight_decay: float = option(Recipe.weight_decay, "AdamW's decoupled weight decay, on every parameter")
    warmup_proportion: float = option(Recipe.warmup_proportion, "share of the steps warming up from 0")
    min_factor: float = option(Recipe.min_factor, "the cosine ends at this share of the peak")
    classifier_dropout: float = option(Recipe.classifier_dropout, "dropout of the classifier head")
    limit: int = option(0, "quick runs: the first N training rows of each task")
    mesh_data: int = option(-1, "mesh: data-parallel axis size (-1: the remaining devices)")
    mesh_fsdp: int = option(1, "mesh: fsdp axis size")
    mesh_tensor: int = option(1, "mesh: tensor axis size")
    cpu_devices: int = option(2, "on CPU: split the cores into this many devices (as babyjax.score)")

    def __post_init__(self) -> None:
        put = functools.partial(object.__setattr__, self)
        put("run", tuple(RunSpec.parse(r) if isinstance(r, str) else r for r in option_items(self.run)))
        put("out", None if self.out is None else os.fspath(self.out))
        put("data_dir", os.fspath(self.data_dir))
        put("tasks", tuple(str(t) for t in option_items(self.tasks)))
        put("steps", tuple(parse_steps(option_items(self.steps))))
        put("words", tuple(parse_count(w) if isinstance(w, str) else int(w) for w in option_items(self.words)))
        put("seeds", tuple(_seed(s) for s in option_items(self.seeds)))

    @property
    def mesh(self) -> ml_collections.ConfigDict:
        return ml_collections.ConfigDict({"data": self.mesh_data, "fsdp": self.mesh_fsdp, "tensor": self.mesh_tensor})

    def check(self) -> None:
        """Refuse a job that cannot start, before anything is read."""
        if not self.out:
            raise InputError("--out is required: the folder the fine-tuning results go to")
        if not self.run:
            raise InputError("no run to fine-tune: pass --run name=workdir (once per run)")
        if len({r.name for r in self.run}) != len(self.run):
            raise InputError("two runs have the same name: use --run name=workdir with distinct names")
        if self.pool not in POOLS:
            raise InputError(f"unknown --pool={self.pool!r}: use one of {', '.join(POOLS)}")
        if unknown := [t for t in self.tasks if t not in TASKS]:
            raise InputError(f"unknown task {unknown[0]!r}: the recipe knows {', '.join(sorted(TASKS))}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise InputError("--seeds must name at least one fine-tuning seed, each once")
        if self.seq_len < 2 or self.every < 0 or self.limit < 0:
            raise InputError("--seq_len must be at least 2, and --every and --limit not negative")

    def recipe(self, task: str) -> Recipe:
        """The recipe of `task` with this job's overrides."""
        t = TASKS[task]
        return Recipe(
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            warmup_proportion=self.warmup_proportion,
            min_factor=self.min_factor,
            classifier_dropout=self.classifier_dropout,
            valid_batch_size=self.valid_batch_size,
            batch_size=self.batch_size or t.batch_size,
            num_epochs=self.num_epochs or t.epochs,
        )


def _seed(value: Any) -> int:
    try:
        return int(value)
    except ValueError:
        raise InputError(f"--seeds takes whole numbers, e.g. --seeds=42,43; got {value!r}") from None

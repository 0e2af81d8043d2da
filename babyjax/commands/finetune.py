"""Fine-tune runs' checkpoints on the BabyLM 2025 (Super)GLUE tasks by the official pipeline's recipe (babyjax/finetune;
docs/finetune.md). A job is resumable: run it again to do what is not done yet. Every option, its default and its
help are written once, in babyjax/finetune/config.py (FinetuneConfig: one flag per field).

    G=../shared/data/babylm_eval_2025/glue_filtered
    python -m babyjax.finetune --run tiny=runs/tiny --data_dir $G --tasks rte,wsc --marks --out finetune/tiny
    python -m babyjax.finetune --run s0=runs/s0 --run s1=runs/s1 --data_dir $G --every 10 --seeds 42,43 --out ft
"""

from __future__ import annotations

import jax
from absl import flags

from babyjax.commands import cli, multiprocess
from babyjax.commands.score import config_from_flags, define_flags, split_cpu
from babyjax.finetune.config import FinetuneConfig
from babyjax.finetune.job import finetune_job


def define(fv: flags.FlagValues) -> None:
    define_flags(fv, FinetuneConfig)
    multiprocess.define_flags(fv)


def run(fv: flags.FlagValues, args: list[str]) -> None:
    del args
    config = config_from_flags(fv, FinetuneConfig)
    split_cpu(config.cpu_devices, fv)
    multiprocess.initialize(fv)
    summary = finetune_job(config)
    if jax.process_index() == 0:
        print(
            f"fine-tuned {len(summary.done)} units (run, checkpoint, task, seed) in {summary.seconds:.1f}s; "
            f"{summary.already_done} checkpoints were done before -> {config.out}"
        )


main = cli.Command(
    usage="python -m babyjax.finetune --run NAME=WORKDIR [--run ...] --data_dir GLUE_DIR --out DIR [--tasks ...]",
    doc=__doc__,
    define=define,
    main=run,
)

"""Per-token surprisal at every checkpoint of a run's series, in bits: -log2 p(token | context) (definitions:
docs/science.md; output: docs/architecture.md). A job is resumable: run it again to score what is not done yet. Every
option, its default and its help are written once, in babyjax/score/config.py (ScoreConfig: one flag per field).

    python -m babyjax.score --run seed0=runs/s0 --run seed1=runs/s1 --kind pairs --eval data/blimp --out scores/blimp
    python -m babyjax.score --run runs/s0 --kind text --eval data/held_out.txt --words 1M,2M,10M --out scores/text
    python -m babyjax.score --run runs/s0 --kind tokens --eval runs/s0/token_sample.npz --out scores/tokens
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import jax
from absl import flags

from babyjax import distributed
from babyjax.commands import cli, multiprocess
from babyjax.score.config import ScoreConfig
from babyjax.score.job import score_job

log = logging.getLogger("babyjax")


def define_flags(fv: flags.FlagValues, config_class: type = ScoreConfig) -> None:
    """One flag per field of `config_class` (ScoreConfig, FinetuneConfig), named as the field, with its default
    and help."""
    for field in dataclasses.fields(config_class):
        name, default, help_text = field.name, field.default, field.metadata["help"]
        if field.metadata["choices"]:
            flags.DEFINE_enum(name, default, list(field.metadata["choices"]), help_text, flag_values=fv)
        elif field.metadata["repeat"]:
            flags.DEFINE_multi_string(name, list(default), help_text, flag_values=fv)
        elif isinstance(default, tuple):
            flags.DEFINE_list(name, [str(d) for d in default], help_text, flag_values=fv)
        elif isinstance(default, bool):
            flags.DEFINE_bool(name, default, help_text, flag_values=fv)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, help_text, flag_values=fv)
        elif isinstance(default, float):
            flags.DEFINE_float(name, default, help_text, flag_values=fv)
        else:
            flags.DEFINE_string(name, default, help_text, flag_values=fv)


def config_from_flags(fv: flags.FlagValues, config_class: type = ScoreConfig) -> Any:
    """The `config_class` of the parsed flags (a bad --run, --steps or --words is one line)."""
    return config_class(**{f.name: fv[f.name].value for f in dataclasses.fields(config_class)})


def define(fv: flags.FlagValues) -> None:
    define_flags(fv)
    multiprocess.define_flags(fv)


def split_cpu(devices: int, fv: flags.FlagValues) -> None:
    """Ask for `devices` CPU devices before JAX starts its backends (no effect on accelerators' devices); left alone
    when XLA_FLAGS or jax_num_cpu_devices already sets a count, or in a multi-process job."""
    if (
        devices < 1
        or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
        or jax.config.jax_num_cpu_devices != -1
        or fv.coordinator_address
        or distributed.cluster_detected()
    ):
        return
    try:
        jax.config.update("jax_num_cpu_devices", devices)
    except RuntimeError:  # the backends already started (called in a process that used JAX before): keep them
        log.debug("babyjax.score: JAX already started; --cpu_devices=%d not applied", devices)


def run(fv: flags.FlagValues, args: list[str]) -> None:
    """Run the job of the flags; process 0 prints what was done."""
    del args
    config = config_from_flags(fv)
    split_cpu(config.cpu_devices, fv)
    multiprocess.initialize(fv)
    summary = score_job(config)
    if jax.process_index() == 0:
        print(
            f"scored {len(summary.scored)} checkpoints ({summary.num_tokens} tokens each) in {summary.seconds:.1f}s; "
            f"{summary.already_done} were done before; {len(summary.skipped)} skipped -> {config.out}"
        )
        for run_name, step, status, why in summary.skipped:
            print(f"skipped: run {run_name} step {step}: {status}: {why}")


main = cli.Command(
    usage="python -m babyjax.score --run NAME=WORKDIR [--run ...] --kind KIND --eval PATH [--eval ...] --out DIR",
    doc=__doc__,
    define=define,
    main=run,
)

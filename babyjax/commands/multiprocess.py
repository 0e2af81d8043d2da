"""The multi-process flags of the commands that start JAX (train, score), and jax.distributed started from them
(babyjax/distributed.py)."""

from __future__ import annotations

from absl import flags

from babyjax import distributed


def define_flags(flag_values: flags.FlagValues) -> None:
    """The multi-process flags of the commands that start JAX (train, score), on `flag_values`."""
    flags.DEFINE_enum(
        "distributed",
        "auto",
        ["auto", "on", "off"],
        "Initialise jax.distributed: auto = when a coordinator is given or a TPU pod / SLURM job with "
        "several tasks is detected.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "coordinator_address", None, "host:port of process 0 (explicit multi-process runs).", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "num_processes", None, "Number of processes (explicit multi-process runs).", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "process_id",
        None,
        "This process's id, 0..num_processes-1 (explicit multi-process runs).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "distributed_timeout",
        120,
        "Seconds to wait for every process to reach the coordinator before giving up.",
        flag_values=flag_values,
    )


def initialize(f: flags.FlagValues) -> bool:
    """Start jax.distributed as the flags say (see babyjax.distributed.initialize)."""
    return distributed.initialize(
        f.coordinator_address, f.num_processes, f.process_id, f.distributed, f.distributed_timeout
    )

"""babyjax.study: many runs as one unit of work (`python -m babyjax.study`): spec (the study config -> its runs),
runner (the stages and the study folder), launchers (local, SLURM job arrays, TPU slices)."""

from babyjax.study.spec import axis, base_study, over

__all__ = ["axis", "base_study", "over"]

"""Per-token surprisal at every checkpoint of a run's series: python -m babyjax.score --run NAME=WORKDIR ...

    python -m babyjax.score --run seed0=runs/s0 --run seed1=runs/s1 --kind pairs --eval data/blimp --out scores/blimp
    python -m babyjax.score --run runs/s0 --kind text --eval data/held_out.txt --words 1M,2M,10M --out scores/text
    python -m babyjax.score --run runs/s0 --kind tokens --eval runs/s0/token_sample.npz --out scores/tokens

Surprisal is -log2 p(token | context), in bits (definitions: docs/science.md; output: docs/architecture.md). A job
is resumable: run it again to score what is not done yet."""

from absl import flags

from babyjax.commands import cli
from babyjax.score import job

if __name__ == "__main__":
    job.define_flags()
    flags.adopt_module_key_flags(job)  # --help lists the job's flags, as when they were defined in this module
    cli.run_absl(job.main)

"""Train a babyjax language model: its config file (and overrides), its run directory, distributed JAX, one library
call (babyjax.train.loop.train).

  python launch/train.py --config configs/tiny.py --workdir runs/tiny
  python launch/train.py --config configs/strict_small.py --workdir runs/ss --config.optim.lr=3e-4

Running the same command again continues the run from its latest resume checkpoint. A bad flag, config override or
input prints one line (`error: ...`) and exits with status 2 (babyjax/commands/cli.py).
"""

from __future__ import annotations

from absl import flags

from babyjax.commands import cli, multiprocess


def define(fv: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "workdir", None, "Run directory (local path or a cloud-storage path Orbax supports).", flag_values=fv
    )
    flags.mark_flag_as_required("workdir", flag_values=fv)
    multiprocess.define_flags(fv)


def run(fv: flags.FlagValues, args: list[str]) -> None:
    del args
    multiprocess.initialize(fv)
    from babyjax.train import loop

    loop.train(fv.config, fv.workdir)


main = cli.Command(
    usage="python launch/train.py --config FILE --workdir DIR [--config.KEY=VALUE ...]",
    doc=__doc__,
    define=define,
    main=run,
    config=cli.ConfigFile("Path to an ml_collections config file (configs/*.py).", "configs/tiny.py"),
)

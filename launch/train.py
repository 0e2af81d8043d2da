"""Train a babyjax language model: flags, distributed JAX, one library call.

  python launch/train.py --config configs/tiny.py --workdir runs/tiny
  python launch/train.py --config configs/strict_small.py --workdir runs/ss --config.optim.lr=3e-4

Running the same command again continues the run from its latest resume checkpoint. A bad flag, config override or
input prints one line (`error: ...`) and exits with status 2 (babyjax/commands/cli.py).
"""

import os
import sys

from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout, not installed

from babyjax import distributed
from babyjax.commands import cli

config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file (configs/*.py).")
flags.DEFINE_string("workdir", None, "Run directory (local path or a cloud-storage path Orbax supports).")
distributed.define_flags()
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    distributed.initialize_from_flags()
    from babyjax.train import loop as train

    train.train(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    cli.run_absl(main)

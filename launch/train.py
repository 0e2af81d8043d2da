"""Train a babyjax language model (the command: babyjax/commands/train.py).

python launch/train.py --config configs/tiny.py --workdir runs/tiny
python launch/train.py --config configs/strict_small.py --workdir runs/ss --config.optim.lr=3e-4
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout, not installed

from babyjax.commands import train

if __name__ == "__main__":
    train.main()

"""Chang, Tu & Bergen (2023) at BabyLM strict-small scale: five seeds of configs/strict_small.py (50M Llama style, 10M
words) with Chang et al.'s exponential checkpoint series, every checkpoint scored on 1M tokens in context (100,000
held-out sequences x 10 targets), on all of BLiMP and Zorro, with text generated and the whole report.

Command:   python -m babyjax.study --config configs/studies/chang_strict_small.py --workdir /shared/studies/chang_ss \
             --launcher slurm --parallel 5 -- --partition=gpu --gpus-per-node=1 --time=12:00:00
           (or --launcher local, one run after the other on one machine). Data: BABYJAX_DATA_DIR names the BabyLM
           release folder (or add "data.dir=/path" to s.overrides).
Hardware:  one GPU per run (A100/H100 class); scoring and analysis run where the study command runs (a GPU node:
           submit the study command itself as a job, or run it there after the array finishes).
Time:      estimated: each run under 1 hour on an H100 (configs/strict_small.py), scoring 1M tokens x ~200 checkpoints
           x 5 runs a few hours on one GPU; not measured.
"""

from babyjax.study import base_study, over
from configs.studies import shared_data


def get_config():
    s = base_study()
    s.base = "configs/strict_small.py"
    s.axes = (over("seed", [0, 1, 2, 3, 4]),)
    s.tokens.num_sequences = 100_000  # x 10 targets = 1M tokens in context (Chang et al.)
    s.tokens.num_positions = 10
    s.tokens.seq_len = 128
    s.pairs = {"blimp": shared_data("blimp"), "zorro": shared_data("zorro")}
    s.generate.heldout_prompts = 20
    s.analysis.aoa_words = shared_data("aoa", "word_list.csv")
    return s

"""Chang, Tu & Bergen (2023) in miniature: three seeds of the tiny model (configs/tiny.py) on the packaged BabyLM
sample, every checkpoint scored on one shared tokens-in-context sample and on BLiMP and Zorro subsets, text generated,
and one report with the cross-run spread of every measure.

Command:   python -m babyjax.study --config configs/studies/chang_tiny.py --workdir studies/chang_tiny
Data:      the packaged sample (or BABYJAX_DATA_DIR); BLiMP, Zorro and children's AoA from ../shared/data (or
           BABYJAX_SHARED_DATA).
Hardware:  a 2-core CPU.
Time:      12 to 16 min wall on 2 idle cores with the dataset prepared, depending on the machine; largest process
           about 1 GB RSS (docs/benchmarks.md).
Runs:      seed0, seed1, seed2 (one condition); 600 steps each, 115 checkpoints.
"""

from babyjax.study import base_study, over
from configs.studies import shared_data


def get_config():
    s = base_study()
    s.base = "configs/tiny.py"
    s.axes = (over("seed", [0, 1, 2]),)
    s.tokens.num_sequences = 333  # x 15 targets: Chang et al.'s sample at 1/200 of its size
    s.tokens.num_positions = 15
    s.tokens.seq_len = 128
    s.pairs = {"blimp": shared_data("blimp"), "zorro": shared_data("zorro")}
    s.pairs_limit = 20  # pairs per paradigm, at every checkpoint of every run
    s.generate.heldout_prompts = 5
    s.analysis.aoa_words = shared_data("aoa", "word_list.csv")
    return s

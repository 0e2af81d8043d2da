"""Xia et al. (2023) in miniature: three sizes of the tiny model (d_model 64, 128, 256; 2 layers) on the packaged
BabyLM sample, one seed each, scored on one shared tokens-in-context sample and a Zorro subset; the report compares
the sizes at equal validation perplexity and gives each size's upward / downward / stagnated tokens over the
perplexity range all sizes pass through, with perplexity on the x axis.

Command:   python -m babyjax.study --config configs/studies/scale_tiny.py --workdir studies/scale_tiny
Hardware:  a 2-core CPU.
Time:      about 12.5 min wall on 2 idle cores with the data already prepared, largest process 1.25 GB RSS
           (docs/benchmarks.md).
Runs:      d64_seed0, d128_seed0, d256_seed0.
"""

from babyjax.study import axis, base_study, over
from configs.studies import shared_data


def _size(d: int) -> tuple[str, ...]:
    return (f"model.d_model={d}", f"model.mlp_dim={4 * d}", f"model.num_heads={max(2, d // 32)}")


def get_config():
    s = base_study()
    s.base = "configs/tiny.py"
    s.axes = (axis("size", d64=_size(64), d128=_size(128), d256=_size(256)), over("seed", [0]))
    s.tokens.num_sequences = 333
    s.tokens.num_positions = 15
    s.pairs = {"zorro": shared_data("zorro")}
    s.pairs_limit = 20
    s.analysis.xia_p = "0.3,0.5"
    s.analysis.x_axis = "perplexity"
    return s

"""Xia et al. (2023) at BabyLM strict-small scale: four sizes of the Llama-style strict-small model (4 to 16 layers,
d_model 256 to 768), two seeds each, on one shared tokens-in-context sample and BLiMP; the report compares the sizes
at equal validation perplexity (trajectory classes over the shared perplexity range, perplexity on the x axis).

Command:   python -m babyjax.study --config configs/studies/scale_strict_small.py --workdir /shared/studies/scale_ss \
             --launcher slurm --parallel 8 -- --partition=gpu --gpus-per-node=1 --time=12:00:00
Hardware:  one GPU per run (A100/H100 class); or TPU slices (--launcher tpu -- --zone=... --accelerator-type=v4-8).
Time:      estimated: the largest size about 2 hours per run on an H100; not measured.
Runs:      {xs, s, m, l} x {seed0, seed1}.
"""

from babyjax.study import axis, base_study, over
from configs.studies import shared_data


def _size(layers: int, d: int, heads: int) -> tuple[str, ...]:
    return (f"model.num_layers={layers}", f"model.d_model={d}", f"model.num_heads={heads}", f"model.mlp_dim={2 * d}")


def get_config():
    s = base_study()
    s.base = "configs/strict_small.py"
    s.axes = (
        axis("size", xs=_size(4, 256, 4), s=_size(8, 384, 6), m=_size(16, 512, 8), l=_size(16, 768, 12)),
        over("seed", [0, 1]),
    )
    s.tokens.num_sequences = 100_000
    s.tokens.num_positions = 10
    s.pairs = {"blimp": shared_data("blimp")}
    s.analysis.x_axis = "perplexity"
    return s

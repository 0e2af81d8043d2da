"""Tiny GPT-BERT (an LTG-BERT-style network on the hybrid objective) on the packaged BabyLM sample: the CPU smoke run
of the hybrid path, scored both ways (mntp and causal).

Command:   python launch/train.py --config configs/gpt_bert_tiny.py --workdir runs/gpt_bert_tiny
Model:     as configs/ltg_bert_tiny.py; objective hybrid: a quarter of each batch's rows causal (causal attention,
           every next token), the rest masked next-token prediction (spans, 22.5%, 80/10/10).
Data:      the public-domain sample shipped in the package (as configs/tiny.py), packed rows of 128 tokens.
Hardware:  a 2-core CPU (the project's CI machine).
Time:      about 2.5 min wall on 2 idle cores (600 steps, 115 series checkpoints), peak RSS 1.33 GB
           (docs/benchmarks.md).
Expected:  the loss mixes both objectives: train 4.87, dev 4.79 nats.
"""

from configs import ltg_bert_tiny


def get_config():
    c = ltg_bert_tiny.get_config()
    c.objective.kind = "hybrid"
    c.objective.causal_share = 0.25  # GPT-BERT's masked-focus default is 1/16; a quarter shows both in a tiny run
    c.objective.mask_rate = 0.225  # GPT-BERT decays the rate from 0.30 to 0.15: its mean, held constant
    return c

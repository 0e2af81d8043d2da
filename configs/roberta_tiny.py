"""Tiny RoBERTa-style masked LM on the packaged BabyLM sample: the CPU smoke run of the encoder path (dense series).

Command:   python launch/train.py --config configs/roberta_tiny.py --workdir runs/roberta_tiny
Model:     RoBERTa style (learned positions, post-LayerNorm, erf GELU, BERT's MLM head tied to the embeddings),
           2 layers, d_model 128, 4 heads, MLP 512, vocab 4096; masked LM, 15% of tokens, 80/10/10, dynamic masks.
Data:      the public-domain sample shipped in the package (as configs/tiny.py), packed rows of 128 tokens.
Hardware:  a 2-core CPU (the project's CI machine).
Time:      about 2 min wall on 2 idle cores (600 steps, 115 series checkpoints), peak RSS 1.13 GB
           (docs/benchmarks.md).
Expected:  masked-token loss from ~8.3 nats (uniform over 4096) to train 6.22, dev 6.14.
"""

from configs import tiny


def get_config():
    c = tiny.get_config()
    c.model.style = "roberta"
    c.objective.kind = "mlm"
    c.objective.mask_rate = 0.15
    c.optim.lr = 2e-3
    return c

"""The "bench" reference model of docs/benchmarks.md, for side-by-side throughput against the peers.

GPT-2 style, 4 layers, d_model 256, 4 heads, MLP 1024, vocab 16,384, context 128, tied embeddings, no dropout,
batch 32, float32: about 7.4M parameters.
Command:   python benchmarks/bench_train.py      (uses this config; training it is possible but not its purpose)
Hardware:  any; its figures on a 2-core CPU are in docs/benchmarks.md.
Time:      a benchmark run takes a few minutes (compile + warm-up + timed steps, both frameworks).
"""

from configs import tiny


def get_config():
    c = tiny.get_config()
    c.tokenizer.vocab_size = 16384
    c.model.num_layers = 4
    c.model.d_model = 256
    c.model.num_heads = 4
    c.model.mlp_dim = 1024
    c.model.dropout = 0.0
    c.model.tie_embeddings = True
    c.train.batch_size = 32
    return c

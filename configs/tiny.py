"""Tiny GPT-2-style model on the packaged BabyLM sample: the laptop-CPU smoke run with a dense 100+ checkpoint series.

Command:   python launch/train.py --config configs/tiny.py --workdir runs/tiny
Data:      the public-domain sample shipped in the package (babyjax/data/sample: Children's Book Test and Children's
           Stories, 655k words, official 2023 layout; unpacked once by babylm.sample_release()) unless data.dir /
           BABYJAX_DATA_DIR names a BabyLM release folder. Needs no network and nothing beside the checkout.
Hardware:  a 2-core CPU (the project's CI machine).
Time:      1.5 to 2.5 min wall on 2 idle cores in a fresh clone with nothing beside it, depending on the machine
           (unpack + prepare + tokenizer ~10 s, compile ~10 s, 600 steps with 115 series checkpoints;
           docs/benchmarks.md).
Expected:  final train loss about 4.37 nats, dev loss about 4.31 (vocab 4096; 1.2M tokens seen), peak RSS about 1 GB.
"""

import os

from babyjax.data import babylm
from configs import base


def get_config():
    c = base.get_config()
    c.data.dir = os.environ.get("BABYJAX_DATA_DIR") or str(babylm.sample_release())
    c.data.track = "strict_small"
    c.data.seq_len = 128
    c.tokenizer.vocab_size = 4096
    c.tokenizer.model_type = "unigram"
    c.model.style = "gpt2"
    c.model.num_layers = 2
    c.model.d_model = 128
    c.model.num_heads = 4
    c.model.mlp_dim = 512
    c.model.max_len = 128
    c.model.dropout = 0.0
    c.optim.lr = 3e-3
    c.optim.warmup_steps = 50
    c.optim.weight_decay = 0.01
    c.train.batch_size = 16
    c.train.num_steps = 600
    c.train.log_every = 20
    c.train.eval_every = 200
    c.train.eval_batches = 10
    # Chang et al. exponential schedule scaled to 600 steps: dense early, 100+ saves in all.
    c.ckpt.schedule = "chang"
    c.ckpt.chang_s0 = 1.0
    c.ckpt.chang_s1 = 25.0
    c.ckpt.chang_t1 = 1000.0
    c.ckpt.resume_every = 100
    return c

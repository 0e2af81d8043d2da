"""BabyLM strict-small (10M words): RoBERTa-base as in the organisers' 2023 encoder baseline, with BabyLM's context.

Command:   python launch/train.py --config configs/roberta_strict_small.py --workdir runs/roberta_strict_small
           (data: an official BabyLM release folder via --config.data.dir=... or BABYJAX_DATA_DIR; else downloaded)
Model:     RoBERTa style (learned positions, post-LayerNorm, erf GELU, tied MLM head), 12 layers, d_model 768, 12 heads,
           MLP 3072 (the shape of roberta-base, 98M parameters with a 16k vocabulary), context 128.
Objective: masked LM, 15% of tokens, 80/10/10, dynamic masks (RoBERTa); AdamW b2 0.98, lr 6e-4, 0.01 weight decay.
Data:      10 epochs of the release, each counted as its nominal 10M words as the rules count them: 100M words
           seen, the strict-small cap (checked before the first step). The steps are derived from the prepared
           corpus (train.num_steps=0: about 4,000 of 256 x 128 tokens at an estimated 13M tokens per epoch; the run's
           plan.json and log line give them); the last step is chck_100M.
Hardware:  one GPU (A100/H100 class), bfloat16 compute.
Time:      not measured; estimated from FLOPs (6 x 98M x 125M tokens = 7.3e16): about 7 minutes on one H100 at 25%
           of its bf16 peak.
Expected:  not measured; the BabyLM 2023 organisers' RoBERTa-base reached BLiMP ~70% on strict-small.
"""

from configs import base


def get_config():
    c = base.get_config()
    c.data.track = "strict_small"
    c.data.seq_len = 128
    c.tokenizer.vocab_size = 16384
    c.model.style = "roberta"
    c.model.num_layers = 12
    c.model.d_model = 768
    c.model.num_heads = 12
    c.model.mlp_dim = 3072
    c.model.max_len = 128
    c.model.dropout = 0.1
    c.model.dtype = "bfloat16"
    c.objective.kind = "mlm"
    c.objective.mask_rate = 0.15
    c.optim.lr = 6e-4
    c.optim.b2 = 0.98
    c.optim.eps = 1e-6
    c.optim.weight_decay = 0.01
    c.optim.warmup_steps = 500
    c.train.batch_size = 256
    # 10 epochs of the release's nominal 10M words (the rules' count, whatever a word count of its files gives): the
    # steps are derived from the prepared corpus, and the last one reaches chck_100M
    c.data.num_epochs = 10
    c.data.words_per_epoch = 10_000_000
    c.train.num_steps = 0
    c.train.eval_every = 500
    # BabyLM 2025/2026 strict-small: at most 100M words seen (configs/base.py data.track), and the fast evaluation's
    # chck_<N>M marks (1M..10M by 1M, 20M..100M by 10M) saved beside Chang et al.'s dense series.
    c.ckpt.schedule = "chang_words"
    c.ckpt.chang_s0 = 1.0
    c.ckpt.chang_s1 = 100.0
    c.ckpt.chang_t1 = 3800.0
    c.ckpt.words_marks_max = 100_000_000
    return c

"""BabyLM strict (100M words): GPT-2 small (12 layers, 768 wide, context 128) as in Chang, Tu & Bergen (2023).

Command:   python launch/train.py --config configs/strict.py --workdir gs://BUCKET/runs/strict
           (TPU: launch/tpu/run.sh)
Model:     GPT-2 style, 12 layers, d_model 768, 12 heads, MLP 3072, vocab 32k unigram SentencePiece,
           context 128 (~110M params).
Data:      10 epochs of the release, each counted as its nominal 100M words as the rules count them: 1B words seen,
           the strict cap (checked before the first step); the steps derived from the prepared corpus (about 40,000
           of 256 x 128 tokens at an estimated 130M tokens per epoch); BabyLM 2025 marks, the last step chck_1000M.
Hardware:  a TPU v4-8 / v5e-8 slice or 8 GPUs (data parallel; FSDP with --config.mesh.fsdp=N), bfloat16 compute.
Time:      not measured; estimated 6-10 hours on a v4-8.
Expected:  not measured; Chang et al.'s GPT-2 small runs on ~100M words ended near 3.3 nats (an estimate from the
           paper's setting).
"""

from configs import base


def get_config():
    c = base.get_config()
    c.data.track = "strict"
    c.data.seq_len = 128
    c.tokenizer.vocab_size = 32768
    c.model.style = "gpt2"
    c.model.num_layers = 12
    c.model.d_model = 768
    c.model.num_heads = 12
    c.model.mlp_dim = 3072
    c.model.max_len = 128
    c.model.dropout = 0.1
    c.model.dtype = "bfloat16"
    c.optim.lr = 6e-4
    c.optim.warmup_steps = 1000
    c.train.batch_size = 256
    # 10 epochs of the release's nominal 100M words: the steps derived from the prepared corpus (train.num_steps=0)
    c.data.num_epochs = 10
    c.data.words_per_epoch = 100_000_000
    c.train.num_steps = 0
    c.train.eval_every = 1000
    # Learning curves need Chang et al.'s dense series (their schedule scaled from 1M to 38,000 steps: 220 steps and
    # the last, 221 saves, the last 10 over the last 22% of training); the BabyLM 2025 words marks it reaches (chck_1M
    # ... chck_900M; chck_1000M only at a full 1B words) are added to it.
    c.ckpt.schedule = "chang_words"
    c.ckpt.chang_s0 = 4.0
    c.ckpt.chang_s1 = 950.0
    c.ckpt.chang_t1 = 38_000.0
    c.ckpt.words_marks_max = 1_000_000_000
    c.ckpt.resume_every = 1000
    return c

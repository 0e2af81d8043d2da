"""BabyLM strict-small (10M words): a Llama-style model in the BabyLlama shape, Chang et al. series
plus the BabyLM chck_<N>M marks.

Command:   python launch/train.py --config configs/strict_small.py --workdir runs/strict_small
           (data: an official BabyLM release folder via --config.data.dir=... or BABYJAX_DATA_DIR; else downloaded)
Model:     Llama style (RoPE, RMSNorm, SwiGLU), 16 layers, d_model 512, 8 heads, MLP 1024, vocab 16k
           unigram SentencePiece; context 128 (BabyLlama: Timiryasov & Tastet 2023). 50.3M parameters with the
           input and output embeddings tied (base.py); BabyLlama's 58M count them apart (model.tie_embeddings=False).
Data:      10 epochs of the release, each counted as its nominal 10M words as the rules count them: 100M words
           seen, the strict-small cap (checked before the first step). The steps are derived from the prepared
           corpus (train.num_steps=0: about 4,000 of 256 x 128 tokens at an estimated 13M tokens per epoch; the run's
           plan.json and log line give them); the last step is chck_100M.
Hardware:  one GPU (A100/H100 class), bfloat16 compute.
Time:      not measured; estimated under 30 minutes on one H100.
Expected:  not measured; BabyLM 2023 strict-small decoders reach a dev loss of roughly 3.0-3.5 nats with a 16k
           vocabulary (an estimate from the literature).
"""

from configs import base


def get_config():
    c = base.get_config()
    c.data.track = "strict_small"
    c.data.seq_len = 128
    c.tokenizer.vocab_size = 16384
    c.model.style = "llama"
    c.model.num_layers = 16
    c.model.d_model = 512
    c.model.num_heads = 8
    c.model.mlp_dim = 1024
    c.model.max_len = 128
    c.model.dropout = 0.0
    c.model.dtype = "bfloat16"
    c.optim.lr = 7e-4
    c.optim.warmup_steps = 300
    c.optim.schedule = "cosine"
    c.train.batch_size = 256
    # 10 epochs of the release's nominal 10M words (the rules' count, whatever a word count of its files gives): the
    # steps are derived from the prepared corpus, and the last one reaches chck_100M
    c.data.num_epochs = 10
    c.data.words_per_epoch = 10_000_000
    c.train.num_steps = 0
    c.train.log_every = 50
    c.train.eval_every = 500
    # BabyLM 2025/2026 strict-small: at most 100M words seen (configs/base.py data.track), and the fast evaluation's
    # chck_<N>M marks (1M..10M by 1M, 20M..100M by 10M) saved beside Chang et al.'s dense series.
    # Chang et al. exponential series, scaled to ~3,800 steps: 177 steps and the last.
    c.ckpt.schedule = "chang_words"
    c.ckpt.chang_s0 = 1.0
    c.ckpt.chang_s1 = 100.0
    c.ckpt.chang_t1 = 3800.0
    c.ckpt.words_marks_max = 100_000_000
    c.ckpt.resume_every = 500
    return c

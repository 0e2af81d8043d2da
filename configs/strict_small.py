"""BabyLM strict-small (10M words): a Llama-style model in the BabyLlama shape, Chang et al. series.

Command:   python launch/train.py --config configs/strict_small.py --workdir runs/strict_small
           (data: an official BabyLM release folder via --config.data.dir=... or BABYJAX_DATA_DIR; else downloaded)
Model:     Llama style (RoPE, RMSNorm, SwiGLU), 16 layers, d_model 512, 8 heads, MLP 1024, vocab 16k
           unigram SentencePiece; context 128 (BabyLlama: Timiryasov & Tastet 2023). 50.3M parameters with the
           input and output embeddings tied (base.py); BabyLlama's 58M count them apart (model.tie_embeddings=False).
Data:      ~13M tokens per epoch; 20 epochs = 8,000 steps of 256 x 128 tokens (~200M words seen).
Hardware:  one GPU (A100/H100 class), bfloat16 compute.
Time:      not measured; estimated under 1 hour on one H100.
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
    c.train.num_steps = 8000
    c.train.log_every = 50
    c.train.eval_every = 500
    # Chang et al. exponential series, scaled to 8k steps: 187 steps and the last, 188 checkpoints.
    c.ckpt.schedule = "chang"
    c.ckpt.chang_s0 = 2.0
    c.ckpt.chang_s1 = 200.0
    c.ckpt.chang_t1 = 8000.0
    c.ckpt.resume_every = 500
    return c

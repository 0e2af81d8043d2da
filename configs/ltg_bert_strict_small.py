"""BabyLM strict-small (10M words): LTG-BERT small (Samuel et al. 2023, the 2023 strict-small winner's shape).

Command:   python launch/train.py --config configs/ltg_bert_strict_small.py --workdir runs/ltg_bert_strict_small
           (data: an official BabyLM release folder via --config.data.dir=... or BABYJAX_DATA_DIR; else downloaded)
Model:     LTG-BERT style: 12 layers, d_model 384, 6 heads, GEGLU 1024, 32 relative-position buckets, layer norm eps
           1e-7, vocab 16,384 (ltgoslo/ltg-bert babylm/configs/small.json), context 128; 28M parameters.
Objective: masked LM on spans of whole words (15%, mean 3 words), 80/10/10. LTG-BERT trains with LAMB (lr 1e-2) and
           lengthens sequences to 512 for the last 10% of steps; babyjax uses AdamW and one length.
Data:      10 epochs of the release, each counted as its nominal 10M words as the rules count them: 100M words
           seen, the strict-small cap (checked before the first step). The steps are derived from the prepared
           corpus (train.num_steps=0: about 4,000 of 256 x 128 tokens at an estimated 13M tokens per epoch; the run's
           plan.json and log line give them); the last step is chck_100M.
Hardware:  one GPU (A100/H100 class), bfloat16 compute.
Time:      not measured; estimated from FLOPs (2.1e16): about 3 minutes on one H100 at 25% of its bf16 peak.
Expected:  not measured; LTG-BERT reported BLiMP ~85% on strict-small (with its own tokenizer and schedule).
"""

from configs import base


def get_config():
    c = base.get_config()
    c.data.track = "strict_small"
    c.data.seq_len = 128
    c.tokenizer.vocab_size = 16384
    c.model.style = "ltg_bert"
    c.model.num_layers = 12
    c.model.d_model = 384
    c.model.num_heads = 6
    c.model.mlp_dim = 1024
    c.model.max_len = 128
    c.model.norm_eps = 1e-7
    c.model.position_buckets = 32
    c.model.dropout = 0.1
    c.model.dtype = "bfloat16"
    c.objective.kind = "mlm"
    c.objective.mask_rate = 0.15
    c.objective.masking = "span"
    c.optim.lr = 2e-3
    c.optim.b2 = 0.98
    c.optim.eps = 1e-6
    c.optim.grad_clip = 2.0
    c.optim.warmup_steps = 130  # 1.6% of the steps, as LTG-BERT
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

"""BabyLM strict-small (10M words): GPT-BERT (Charpentier & Samuel 2024; the 2024 winner and a 2025 baseline), an
LTG-BERT-shaped network trained on masked next-token prediction and causal LM through one set of weights.

Command:   python launch/train.py --config configs/gpt_bert_strict_small.py --workdir runs/gpt_bert_strict_small
           (data: an official BabyLM release folder via --config.data.dir=... or BABYJAX_DATA_DIR; else downloaded)
Model:     LTG-BERT style, GPT-BERT small's shape: 12 layers, d_model 384, 6 heads, GEGLU 1280, 32 buckets, eps 1e-7,
           vocab 16,384, context 128; 31M parameters. (GPT-BERT's attention gate and depth-weighted averages are not
           built.)
Objective: hybrid, masked-focus: 1/16 of each batch's rows causal, the rest mntp on spans; GPT-BERT decays the mask
           rate from 0.30 to 0.15, babyjax holds its mean, 0.225. Score with --scoring mntp (default) or causal.
Data:      configs/ltg_bert_strict_small.py's: 10 epochs of the release's nominal 10M words, 100M words seen (the
           cap), steps derived from the prepared corpus (about 4,000 of 256 x 128 tokens).
           Checkpoints: configs/ltg_bert_strict_small.py's (Chang et al.'s series and the chck_<N>M marks).
Hardware:  one GPU (A100/H100 class), bfloat16 compute.
Time:      not measured; estimated from FLOPs (2.3e16): about 3 minutes on one H100 at 25% of its bf16 peak.
Expected:  not measured; the BabyLM 2025 GPT-BERT baselines report BLiMP ~70-80% on strict-small.
"""

from configs import ltg_bert_strict_small


def get_config():
    c = ltg_bert_strict_small.get_config()
    c.model.mlp_dim = 1280
    c.objective.kind = "hybrid"
    c.objective.causal_share = 1 / 16
    c.objective.mask_rate = 0.225
    return c

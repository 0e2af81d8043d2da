"""Every configuration key of babyjax, with its default. Other configs start from this one and override.

Not meant to be trained as is (it is sized like `strict_small`); use one of:
  python launch/train.py --config configs/tiny.py --workdir runs/tiny             # CPU, ~2 min, sample data
  python launch/train.py --config configs/strict_small.py --workdir runs/ss       # 1 GPU, BabyLM 10M words
  python launch/train.py --config configs/strict.py --workdir runs/strict         # TPU slice / GPUs, 100M words
Any key can be overridden on the command line: --config.optim.lr=1e-3. The model and objective keys take their
defaults from the package (babyjax/model/transformer.py ModelConfig, babyjax/model/objectives.py Objective), written
there once; print them all with: python -c "from configs import base; print(base.get_config())".
"""

import ml_collections

from babyjax.model import objectives
from babyjax.model.transformer import ModelConfig


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # model init, dropout and data order all derive from this seed
    _data_tokenizer(c)
    _model_mesh(c)
    _optim_train_ckpt(c)
    return c


def _data_tokenizer(c: ml_collections.ConfigDict) -> None:
    # ---- data (babyjax/data) ----
    c.data = ml_collections.ConfigDict()
    # Folder holding an official BabyLM release (2023 or 2024+ layout). '' means: the environment variable
    # BABYJAX_DATA_DIR, else download the official release (where the network allows).
    c.data.dir = ""
    # The BabyLM track: its training set (the TFDS builder config) and its cap on words seen, checked before the
    # first step (babyjax/data/tracks.py): strict_small (10M words, at most 100M seen) | strict (100M, 1B seen)
    c.data.track = "strict_small"
    # Root of the prepared ArrayRecord files, one folder per source (babylm-<fingerprint>/); '' = BABYJAX_TFDS_DIR,
    # else TFDS's default (~/tensorflow_datasets).
    c.data.tfds_dir = ""
    c.data.seq_len = 128  # tokens per training row
    c.data.packing = "pack"  # pack: documents packed with segment ids | chunk: concatenate and cut (Chang et al., HF)
    c.data.shuffle = True
    c.data.shuffle_seed = -1  # -1 = use c.seed
    c.data.num_epochs = -1  # -1 = repeat forever (training length is set by train.num_steps)
    # Words an epoch of the training split counts as, for words seen (marks, the track's cap): 0 = the words its files
    # hold; the BabyLM rules count each epoch as the release's nominal 10M (strict-small) or 100M (strict)
    c.data.words_per_epoch = 0
    c.data.worker_count = 0  # grain worker processes (0 = in process)
    c.data.dev_split = "dev"  # split used for dev loss
    c.data.max_train_lines = -1  # -1 = all; cap for quick experiments and tests

    # ---- tokenizer (SentencePiece, trained on the train split, saved in the run directory) ----
    c.tokenizer = ml_collections.ConfigDict()
    c.tokenizer.model_type = "unigram"  # unigram | bpe
    c.tokenizer.vocab_size = 16384
    c.tokenizer.path = ""  # '' = train one into <workdir>/tokenizer.model (or reuse it if present)
    c.tokenizer.input_sentence_size = 2_000_000  # lines sampled for training the tokenizer (deterministic)


def _model_mesh(c: ml_collections.ConfigDict) -> None:
    # ---- model (babyjax/model/transformer.py; the defaults are ModelConfig's) ----
    model = ModelConfig.defaults()
    c.model = ml_collections.ConfigDict()
    # gpt2 (learned positions, LayerNorm, GELU) | llama (RoPE, RMSNorm, SwiGLU) | opt (as gpt2, with ReLU) | gpt_neox
    # (RoPE, LayerNorm, erf GELU, parallel residuals) | roberta (encoder: learned positions, post-LayerNorm, erf GELU,
    # BERT's MLM head) | ltg_bert (encoder: relative positions, extra norms, GEGLU; LTG-BERT, and GPT-BERT with
    # objective.kind = hybrid)
    c.model.style = model["style"]
    c.model.num_layers = model["num_layers"]
    c.model.d_model = model["d_model"]  # width of the residual stream
    c.model.num_heads = model["num_heads"]
    c.model.num_kv_heads = model["num_kv_heads"]  # -1 = num_heads (llama style may use fewer: grouped-query attention)
    c.model.mlp_dim = model["mlp_dim"]  # hidden width of each block's MLP
    c.model.max_len = model["max_len"]  # learned position table size (gpt2, roberta) / RoPE has no table
    c.model.tie_embeddings = model["tie_embeddings"]  # the output projection is the input embedding
    c.model.dropout = model["dropout"]
    c.model.dtype = model["dtype"]  # compute dtype: float32 | bfloat16 (parameters are always float32)
    c.model.rope_theta = model["rope_theta"]  # llama: RoPE base
    c.model.norm_eps = model["norm_eps"]
    c.model.remat = model["remat"]  # rematerialise each block (saves activation memory)
    c.model.position_buckets = model["position_buckets"]  # ltg_bert: 2 * position_buckets - 1 log-spaced buckets
    # each of these overrides one feature of the style ('' = the style's own; model/transformer.py ModelConfig)
    c.model.activation = model["activation"]  # gelu (tanh) | gelu_exact (erf) | relu: the MLP of gpt2-like styles
    c.model.rotary_fraction = model["rotary_fraction"]  # RoPE on this share of each head's dims (Pythia: 0.25)
    c.model.residual = model["residual"]  # sequential | parallel (x + attn(norm(x)) + mlp(norm(x)): GPT-NeoX)
    c.model.block_norm = model["block_norm"]  # pre | post (norm(x + f(x)): RoBERTa, OPT-350m)
    c.model.bias = model["bias"]  # all | none | mlp (biases on the MLP only: GPT-NeoX's attention_bias=False)

    # ---- objective (babyjax/model/objectives.py; the defaults are objectives.DEFAULT): what the rows teach ----
    objective = objectives.DEFAULT
    c.objective = ml_collections.ConfigDict()
    # causal | mlm (masked LM) | mntp (masked next token) | hybrid (GPT-BERT: causal + mntp)
    c.objective.kind = objective["kind"]
    # share of ordinary tokens chosen (mlm, mntp, hybrid); BabyLM entries use 0.15-0.4
    c.objective.mask_rate = objective["mask_rate"]
    c.objective.replace = objective["replace"]  # chosen tokens -> <mask> / a random token / kept (BERT's 80/10/10)
    c.objective.masking = objective["masking"]  # token | whole_word | span (SpanBERT-style spans of whole words)
    c.objective.span_mean = objective["span_mean"]  # span: mean span length in words (geometric)
    c.objective.span_max = objective["span_max"]  # span: longest span in words
    # hybrid: share of each batch's rows trained causally (the rest mntp)
    c.objective.causal_share = objective["causal_share"]

    # ---- mesh and sharding (babyjax/model/sharding.py) ----
    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1  # -1 = all devices not used by the other axes
    c.mesh.fsdp = 1
    c.mesh.tensor = 1


def _optim_train_ckpt(c: ml_collections.ConfigDict) -> None:
    # ---- optimizer (babyjax/train/optim.py) ----
    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adamw"  # adamw | lamb (LTG-BERT's and GPT-BERT's: the trust ratio on decayed parameters only)
    c.optim.lr = 6e-4
    c.optim.schedule = "cosine"  # cosine | linear | constant | wsd (warmup-stable-decay)
    c.optim.warmup_steps = 1000
    c.optim.end_lr_ratio = 0.1  # final lr = lr * end_lr_ratio (cosine, linear, wsd)
    c.optim.wsd_decay_fraction = 0.2  # wsd: fraction of training spent decaying
    c.optim.b1 = 0.9
    c.optim.b2 = 0.95
    c.optim.eps = 1e-8
    c.optim.weight_decay = 0.1  # applied to matrices only (not biases, norms, or embeddings' positions)
    c.optim.grad_clip = 1.0  # global-norm clipping; <= 0 disables
    c.optim.grad_accum_steps = 1

    # ---- training loop (babyjax/train/loop.py) ----
    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 32  # global batch, in rows of data.seq_len tokens
    c.train.num_steps = 20_000  # 0 = the steps that read data.num_epochs epochs of the prepared split (plan.json)
    c.train.log_every = 50
    c.train.eval_every = 1000
    c.train.eval_batches = 20
    c.train.progress_bar = True
    # Train past the track's cap on words seen (data.track), a deliberate departure from its rules; not part of
    # what defines a run, so a run begun over the cap can be continued with it
    c.train.allow_over_cap = False

    # ---- checkpoints (babyjax/checkpoints/series.py, babyjax/checkpoints/schedules.py) ----
    c.ckpt = ml_collections.ConfigDict()
    # Series schedule: chang | pythia | crfm | words | chang_words (both) | list | none. Parameters only, all kept.
    c.ckpt.schedule = "chang"
    c.ckpt.steps = ()  # schedule == 'list': explicit steps (step 0 is always added)
    c.ckpt.chang_s0 = 100.0  # Chang et al. exponential: steps between saves at the start
    c.ckpt.chang_s1 = 25_000.0  # ... steps between saves at t1
    c.ckpt.chang_t1 = 1_000_000.0  # ... (scale s0, s1, t1 to the run length)
    c.ckpt.words_marks_max = 1_000_000_000  # schedule == 'words': BabyLM 2025 marks up to this many words
    c.ckpt.resume_every = 500  # steps between resume checkpoints (full state + data iterator), async
    c.ckpt.resume_keep = 3  # resume checkpoints kept (latest N)

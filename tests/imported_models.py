"""Tiny Hugging Face models of each imported family, as `save_pretrained` writes them, with a byte-level BPE
tokenizer trained here on BabyLM sample text by the `tokenizers` library (no download). Used by the import tests and
benchmarks/bench_imported.py."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np

FAMILIES = ("gpt2", "opt", "opt350", "gpt_neox", "llama", "roberta")
# per family: the special tokens (in id order), the bos/eos/pad/mask names, and the template around a text
SPECIALS = {
    "gpt2": (["<|endoftext|>"], {"bos": "<|endoftext|>", "eos": "<|endoftext|>", "unk": "<|endoftext|>"}, None),
    "gpt_neox": (["<|endoftext|>", "<|padding|>"], {"bos": "<|endoftext|>", "eos": "<|endoftext|>"}, None),
    "opt": (
        ["<s>", "<pad>", "</s>", "<unk>"],
        {"bos": "</s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>"},
        "</s> $A",
    ),
    "llama": (["<unk>", "<s>", "</s>"], {"bos": "<s>", "eos": "</s>", "unk": "<unk>"}, "<s> $A"),
    "roberta": (
        ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        {"bos": "<s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>", "mask": "<mask>", "cls": "<s>", "sep": "</s>"},
        "<s> $A </s>",
    ),
}
SPECIALS["opt350"] = SPECIALS["opt"]


def sample_lines(babylm_sample: pathlib.Path, n: int = 4000) -> list[str]:
    """The first `n` non-empty lines of the BabyLM sample's training files."""
    lines: list[str] = []
    for f in sorted((babylm_sample / "babylm_10M").glob("*.train")):
        lines += [ln.strip() for ln in f.read_text().splitlines() if ln.strip()][: n // 4]
    return lines


def tokenizer(family: str, texts: Sequence[str], vocab_size: int = 400):
    """A PreTrainedTokenizerFast of the family's special tokens and template, trained on `texts`."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials, names, template = SPECIALS[family]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tk.train_from_iterator(texts, trainer)
    if template:
        pieces = [p for p in template.split() if p != "$A"]
        tk.post_processor = processors.TemplateProcessing(
            single=template, special_tokens=[(p, tk.token_to_id(p)) for p in dict.fromkeys(pieces)]
        )
    kwargs = {f"{k}_token": v for k, v in names.items()}
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, **kwargs)


def config(family: str, vocab_size: int, max_len: int = 64, **overrides):
    """A tiny config of the family (d 32, 2 layers, 4 heads); NeoX gets 8 padding rows beyond the tokenizer (as
    Pythia's 50304 rows for 50277 tokens)."""
    import transformers as T

    common = {
        "vocab_size": vocab_size,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": max_len,
    }
    made = {
        "gpt2": lambda: T.GPT2Config(vocab_size=vocab_size, n_positions=max_len, n_embd=32, n_layer=2, n_head=4),
        "opt": lambda: T.OPTConfig(hidden_size=32, ffn_dim=64, **common),
        "opt350": lambda: T.OPTConfig(
            hidden_size=32, ffn_dim=64, do_layer_norm_before=False, word_embed_proj_dim=24, **common
        ),
        "gpt_neox": lambda: T.GPTNeoXConfig(
            hidden_size=32, intermediate_size=64, rotary_pct=0.25, **{**common, "vocab_size": vocab_size + 8}
        ),
        "llama": lambda: T.LlamaConfig(
            hidden_size=32, intermediate_size=64, num_key_value_heads=2, tie_word_embeddings=False, **common
        ),
        "roberta": lambda: T.RobertaConfig(
            hidden_size=32, intermediate_size=64, pad_token_id=1, **{**common, "max_position_embeddings": max_len + 2}
        ),
    }[family]()
    for k, v in overrides.items():
        setattr(made, k, v)
    return made


def randomize(model, seed: int, std: float = 0.3) -> None:
    """Every parameter drawn anew (norms and biases too, so that a wrong map cannot hide behind ones and zeros; vectors
    around 1, matrices around 0)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std + (1.0 if p.ndim == 1 else 0.0))


def model_class(family: str):
    import transformers as T

    return {
        "gpt2": T.GPT2LMHeadModel,
        "opt": T.OPTForCausalLM,
        "opt350": T.OPTForCausalLM,
        "gpt_neox": T.GPTNeoXForCausalLM,
        "llama": T.LlamaForCausalLM,
        "roberta": T.RobertaForMaskedLM,
    }[family]


def build(family: str, folder: pathlib.Path, tok, seed: int = 0, max_len: int = 64, **overrides) -> pathlib.Path:
    """A random model of `family` with tokenizer `tok`, saved (safetensors) with it into `folder`."""
    import torch

    torch.manual_seed(seed)
    ids = {f"{k}_token_id": getattr(tok, f"{k}_token_id") for k in ("bos", "eos", "pad")}
    model = model_class(family)(config(family, len(tok), max_len, **ids, **overrides)).eval()
    randomize(model, seed)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def perturbed(folder: pathlib.Path, out: pathlib.Path, seed: int, scale: float = 0.05) -> pathlib.Path:
    """A copy of the model in `folder` with every weight moved by noise of `scale` (the next revision of a series)."""
    import transformers as T

    model = T.AutoModelForCausalLM.from_pretrained(folder) if "roberta" not in folder.name else None
    model = model or T.AutoModelForMaskedLM.from_pretrained(folder)
    rng = np.random.default_rng(seed)
    import torch

    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.from_numpy(rng.normal(0, scale, p.shape).astype(np.float32)))
    model.save_pretrained(out)
    T.AutoTokenizer.from_pretrained(folder).save_pretrained(out)
    return out

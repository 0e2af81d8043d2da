"""The run's SentencePiece model as a Hugging Face fast tokenizer with the same ids, saved so that transformers 4.x
and 5.x both load it. babyjax documents start after EOS (`</s>`, id 3), so `</s>` is both `bos_token` and
`eos_token` (as GPT-2's `<|endoftext|>`): minicons' `bos_token=True` and lm-evaluation-harness's empty-context prefix
then score a sentence after one EOS, babyjax.score's `eot_context` policy; masked LMs get it prepended as their CLS
token."""

from __future__ import annotations

import json
import os
import pathlib
import types
from typing import Any

from babyjax.data.tokenizer import EOS, EOS_ID, MASK, PAD, UNK
from babyjax.interop.hf_config import require_peers

MODEL_INPUTS = ("input_ids", "attention_mask")  # what a causal LM takes (GPT-2's own tokenizer says the same)


def hf_tokenizer(tokenizer_path: str | os.PathLike, max_len: int, masked: bool = False) -> Any:
    """The run's SentencePiece model as a `PreTrainedTokenizerFast` with the same ids. Causal LMs: no special tokens
    added. Masked LMs (`masked`): `</s>` prepended as the CLS token, as babyjax trains and scores them (a document
    starts after EOS): minicons and the BabyLM 2025 pipeline's mlm/mntp backends skip it and read the first word's
    prediction from it under mntp."""
    _, transformers = require_peers()
    from tokenizers import decoders, normalizers, pre_tokenizers, processors
    from transformers.convert_slow_tokenizer import SpmConverter

    class _Converter(SpmConverter):
        handle_byte_fallback = True

    tk = _Converter(types.SimpleNamespace(vocab_file=str(tokenizer_path))).converted()
    # babyjax trains SentencePiece with identity normalisation, kept whitespace and the default dummy prefix.
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    tk.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tk.post_processor = (
        processors.TemplateProcessing(single=f"{EOS} $A", pair=f"{EOS} $A $B", special_tokens=[(EOS, EOS_ID)])
        if masked
        else None
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        mask_token=MASK,
        cls_token=EOS if masked else None,
        model_max_length=max_len,
        padding_side="right",
        clean_up_tokenization_spaces=False,
        model_input_names=list(MODEL_INPUTS),
    )


def portable_tokenizer_class(path: pathlib.Path) -> None:
    """Name the tokenizer class that transformers 4.x (the BabyLM 2025 pipeline pins 4.51.3) and 5.x both load:
    transformers 5 writes "TokenizersBackend", which 4.x does not know ("Unrecognized processing class"); and the
    inputs it returns: without `model_input_names`, 4.x's PreTrainedTokenizerFast also returns token_type_ids,
    which GPT-2 adds as embeddings of token 0 when a caller passes `model(**inputs)` (the pipeline's reading task)."""
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["model_input_names"] = list(MODEL_INPUTS)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False))

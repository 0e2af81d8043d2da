"""Every export family loads as the BabyLM 2025 pipeline's fine-tuning loads it (`AutoModel.from_pretrained(path,
trust_remote_code=True)`), with no weight newly initialised that its classifier reads, and feeds that classifier
(written here from the rules of the pipeline's finetune/classifier_model.py): its input is the base model's
`last_hidden_state` (the classifier reads `.logits` first, so the output must have none), equal to the hidden states
the exported LM class computes and turns into the logits that tests/test_export.py and tests/test_masked.py check
against babyjax."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from torch import nn

from babyjax.interop import export, hf_config
from tests.test_score import make_run, train_tiny_tokenizer

FAMILIES = [  # (style, objective, model keywords, the AutoModel class)
    ("gpt2", "causal", {}, "GPT2Model"),
    ("gpt2", "causal", {"tie_embeddings": False}, "GPT2Model"),
    ("llama", "causal", {"num_kv_heads": 2}, "LlamaModel"),
    ("roberta", "mlm", {}, "RobertaModel"),
    ("ltg_bert", "mlm", {}, "LtgBertModel"),
    ("ltg_bert", "hybrid", {}, "LtgBertModel"),  # GPT-BERT
]
# RobertaModel builds a pooler (dense + tanh on position 0) that babyjax does not train and the classifier never reads
UNREAD = {"pooler.dense.weight", "pooler.dense.bias"}
TEXTS = ["where is the big red ball", "no", "look at that doggy over there now"]
PAIRS = [("is it here", "yes it is"), ("where did it go", "the dog took it away from the garden"), ("a", "b")]


@pytest.fixture(scope="module")
def tok(tmp_path_factory, babylm_sample):
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok"), babylm_sample)


def pipeline_classifier(hidden: int, labels: int, eps: float = 1e-5, dropout: float = 0.1) -> nn.Module:
    """The pipeline's ClassifierHead: layer norm without parameters, dense, GELU, layer norm, dropout, dense."""
    return nn.Sequential(
        nn.LayerNorm(hidden, eps, elementwise_affine=False),
        nn.Linear(hidden, hidden),
        nn.GELU(),
        nn.LayerNorm(hidden, eps, elementwise_affine=False),
        nn.Dropout(dropout),
        nn.Linear(hidden, labels),
    )


def lm_head(lm: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The exported LM class's logits computed from its last hidden states."""
    if type(lm).__name__.startswith("LtgBert"):
        eps = lm.config.layer_norm_eps
        norm = lambda x: nn.functional.layer_norm(x, x.shape[-1:], eps=eps)
        return lm.lm_head(norm(nn.functional.gelu(lm.head_dense(norm(h)))))
    return lm.lm_head(h)


def _export(tmp_path, tok, style: str, objective: str, kw: dict):
    cfg = make_run(tmp_path / "run", tok, style=style, steps=(0, 10), objective=objective, **kw)
    return cfg, export.export_checkpoint(tmp_path / "run", 10, tmp_path / "hf")


@pytest.mark.parametrize("style,objective,kw,base_class", FAMILIES, ids=lambda x: x if isinstance(x, str) else "")
def test_every_export_family_loads_with_automodel_and_feeds_the_pipeline_classifier(
    tmp_path, tok, style, objective, kw, base_class
):
    cfg, out = _export(tmp_path, tok, style, objective, kw)
    base, info = transformers.AutoModel.from_pretrained(out, trust_remote_code=True, output_loading_info=True)
    assert type(base).__name__ == base_class
    assert set(info["missing_keys"]) <= (UNREAD if style == "roberta" else set())  # nothing else newly initialised
    assert all(k.startswith(("lm_head.", "head_dense.")) for k in info["unexpected_keys"])  # the LM head, unused
    assert transformers.AutoConfig.from_pretrained(out, trust_remote_code=True).hidden_size == cfg.d_model
    lm_class = transformers.AutoModelForMaskedLM if cfg.encoder else transformers.AutoModelForCausalLM
    lm = lm_class.from_pretrained(out, trust_remote_code=True).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(out, padding_side="right")
    for texts in (TEXTS, PAIRS):  # the pipeline's collate_function without --causal
        enc = hf_tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=512)
        ids, mask = enc.input_ids, enc.attention_mask
        assert not bool(mask.all())  # padded rows are in the batch
        base.eval()
        with torch.no_grad():
            output = base(input_ids=ids, attention_mask=mask)
            want = lm(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        assert not hasattr(output, "logits")  # the pipeline would read logits before last_hidden_state
        h = output.last_hidden_state
        assert h.shape == (*ids.shape, cfg.d_model)
        torch.testing.assert_close(h, want.hidden_states[-1], atol=1e-5, rtol=0)
        torch.testing.assert_close(lm_head(lm, h), want.logits, atol=1e-5, rtol=0)
        torch.manual_seed(0)
        head = pipeline_classifier(cfg.d_model, 3)
        base.train()
        logits = head(base(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0])  # position 0, the default
        assert logits.shape == (len(texts), 3) and bool(torch.isfinite(logits).all())
        nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
        grad = base.get_input_embeddings().weight.grad
        assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0
        base.zero_grad()


@pytest.mark.parametrize("objective", ["mlm", "hybrid"])
def test_ltg_bert_automodel_attends_both_ways_or_as_the_pipeline_causal_mask_says(tmp_path, tok, objective):
    """A [B, T] mask: both ways, as the masked class; the [B, T, T] lower-triangular mask the pipeline builds with
    --causal: the causal class's hidden states at every real token."""
    _, out = _export(tmp_path, tok, "ltg_bert", objective, {})
    assert json.loads((out / "config.json").read_text())["auto_map"] == hf_config.AUTO_MAP
    base = transformers.AutoModel.from_pretrained(out, trust_remote_code=True).eval()
    causal = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    enc = transformers.AutoTokenizer.from_pretrained(out)(TEXTS, return_tensors="pt", padding=True)
    ids, mask = enc.input_ids, enc.attention_mask
    square = mask.unsqueeze(1).repeat(1, mask.size(-1), 1).tril(diagonal=0)  # the pipeline's collate_function
    with torch.no_grad():
        got = base(input_ids=ids, attention_mask=square).last_hidden_state
        want = causal(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        both_ways = base(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=0)
    assert float((both_ways[real] - want[real]).abs().max()) > 1e-3


def test_a_resumed_series_export_replaces_folders_with_older_modelling_code(tmp_path, tok):
    make_run(tmp_path / "run", tok, style="ltg_bert", steps=(0, 10), objective="mlm")
    folders = export.export_series(tmp_path / "run", tmp_path / "hf", names="steps")
    old = folders["step_0"] / hf_config.REMOTE_CODE
    old.write_text(old.read_text().replace("class LtgBertModel(", "class Renamed("))  # as a release without it
    stamp = (folders["step_10"] / "model.safetensors").stat().st_mtime_ns
    export.export_series(tmp_path / "run", tmp_path / "hf", names="steps")
    assert "class LtgBertModel(" in old.read_text()
    assert (folders["step_10"] / "model.safetensors").stat().st_mtime_ns == stamp  # a current folder is kept
    transformers.AutoModel.from_pretrained(folders["step_0"], trust_remote_code=True)

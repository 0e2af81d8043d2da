"""babyjax parameters as a Hugging Face transformers model: each class's tensor names and layouts (`hf_state_dict`,
numpy) and the PyTorch model holding them (`hf_model`). Which class and its config: hf_config.py."""

from __future__ import annotations

from typing import Any

import numpy as np

from babyjax.interop.hf_config import GPT2, LLAMA, LTG, ROBERTA, hf_class_name, hf_config, require_peers
from babyjax.model.transformer import ModelConfig


def numpy_params(tree: Any) -> Any:
    """Orbax's raw restore ({'value': array} leaves, string keys) as nested dicts of float32 numpy arrays."""
    if isinstance(tree, dict) and set(tree) != {"value"}:
        return {str(k): numpy_params(v) for k, v in tree.items()}
    return np.asarray(tree["value"] if isinstance(tree, dict) else tree, np.float32)


def _gpt2_state_dict(params: dict, cfg: ModelConfig) -> dict[str, np.ndarray]:
    d, h, k = cfg.d_model, cfg.num_heads, cfg.head_dim
    out = {"transformer.wte.weight": params["embed"], "transformer.wpe.weight": params["pos_embed"]}
    for i in range(cfg.num_layers):
        b, pre = params["blocks"][str(i)], f"transformer.h.{i}."
        a, m = b["attn"], b["mlp"]
        out[pre + "ln_1.weight"], out[pre + "ln_1.bias"] = b["norm_attn"]["scale"], b["norm_attn"]["bias"]
        # HF Conv1D weights are [in, out]; c_attn's output columns are q | k | v, each head-major.
        out[pre + "attn.c_attn.weight"] = np.concatenate([a[w].reshape(d, h * k) for w in ("wq", "wk", "wv")], axis=1)
        out[pre + "attn.c_attn.bias"] = np.concatenate([a[w].reshape(h * k) for w in ("bq", "bk", "bv")])
        out[pre + "attn.c_proj.weight"], out[pre + "attn.c_proj.bias"] = a["wo"].reshape(h * k, d), a["bo"]
        out[pre + "ln_2.weight"], out[pre + "ln_2.bias"] = b["norm_mlp"]["scale"], b["norm_mlp"]["bias"]
        out[pre + "mlp.c_fc.weight"], out[pre + "mlp.c_fc.bias"] = m["w_in"], m["b_in"]
        out[pre + "mlp.c_proj.weight"], out[pre + "mlp.c_proj.bias"] = m["w_out"], m["b_out"]
    out["transformer.ln_f.weight"] = params["norm_out"]["scale"]
    out["transformer.ln_f.bias"] = params["norm_out"]["bias"]
    return out


def _llama_state_dict(params: dict, cfg: ModelConfig) -> dict[str, np.ndarray]:
    d, h, k = cfg.d_model, cfg.num_heads, cfg.head_dim
    out = {"model.embed_tokens.weight": params["embed"]}
    for i in range(cfg.num_layers):
        b, pre = params["blocks"][str(i)], f"model.layers.{i}."
        a, m = b["attn"], b["mlp"]
        # torch Linear weights are [out, in]; babyjax's rope() uses HF's rotate-half layout, so no permutation.
        out[pre + "input_layernorm.weight"] = b["norm_attn"]["scale"]
        for w, proj in (("wq", "q"), ("wk", "k"), ("wv", "v")):  # [d, heads, head_dim] -> [heads * head_dim, d]
            out[pre + f"self_attn.{proj}_proj.weight"] = a[w].reshape(d, -1).T
        out[pre + "self_attn.o_proj.weight"] = a["wo"].reshape(h * k, d).T
        out[pre + "post_attention_layernorm.weight"] = b["norm_mlp"]["scale"]
        for w, proj in (("w_gate", "gate"), ("w_in", "up"), ("w_out", "down")):
            out[pre + f"mlp.{proj}_proj.weight"] = m[w].T
    out["model.norm.weight"] = params["norm_out"]["scale"]
    return out


def _roberta_state_dict(params: dict, cfg: ModelConfig) -> dict[str, np.ndarray]:
    d = cfg.d_model
    linear = lambda w, b: (w.reshape(d, -1).T, b.reshape(-1))  # [d, heads, head_dim] -> torch [out, in]
    # RoBERTa numbers positions from padding_idx + 1 = 1 (pad id 0): babyjax's position p is HF's row p + 1
    positions = np.concatenate([np.zeros((1, d), np.float32), params["pos_embed"]])
    out = {
        "roberta.embeddings.word_embeddings.weight": params["embed"],
        "roberta.embeddings.position_embeddings.weight": positions,
        "roberta.embeddings.token_type_embeddings.weight": np.zeros((1, d), np.float32),
        "roberta.embeddings.LayerNorm.weight": params["norm_out"]["scale"],
        "roberta.embeddings.LayerNorm.bias": params["norm_out"]["bias"],
    }
    for i in range(cfg.num_layers):
        b, pre = params["blocks"][str(i)], f"roberta.encoder.layer.{i}."
        a, m = b["attn"], b["mlp"]
        for w, name in (("q", "query"), ("k", "key"), ("v", "value")):
            out[pre + f"attention.self.{name}.weight"], out[pre + f"attention.self.{name}.bias"] = linear(
                a["w" + w], a["b" + w]
            )
        out[pre + "attention.output.dense.weight"] = a["wo"].reshape(-1, d).T
        out[pre + "attention.output.dense.bias"] = a["bo"]
        out[pre + "attention.output.LayerNorm.weight"] = b["norm_attn"]["scale"]
        out[pre + "attention.output.LayerNorm.bias"] = b["norm_attn"]["bias"]
        out[pre + "intermediate.dense.weight"], out[pre + "intermediate.dense.bias"] = m["w_in"].T, m["b_in"]
        out[pre + "output.dense.weight"], out[pre + "output.dense.bias"] = m["w_out"].T, m["b_out"]
        out[pre + "output.LayerNorm.weight"] = b["norm_mlp"]["scale"]
        out[pre + "output.LayerNorm.bias"] = b["norm_mlp"]["bias"]
    head = params["mlm"]
    out.update(
        {
            "lm_head.dense.weight": head["kernel"].T,
            "lm_head.dense.bias": head["bias"],
            "lm_head.layer_norm.weight": head["norm"]["scale"],
            "lm_head.layer_norm.bias": head["norm"]["bias"],
            "lm_head.bias": head["out_bias"],
            "lm_head.decoder.bias": head["out_bias"],
        }
    )
    if not cfg.tie_embeddings:
        out["lm_head.decoder.weight"] = params.pop("head").T
    return out


def _ltg_state_dict(params: dict, cfg: ModelConfig) -> dict[str, np.ndarray]:
    d, rel = cfg.d_model, params["relative"]
    out = {
        "word_embedding.weight": params["embed"],
        "relative_embedding": rel["table"],
        "relative_norm.weight": rel["norm"]["scale"],
        "relative_norm.bias": rel["norm"]["bias"],
    }
    for i in range(cfg.num_layers):
        b, pre = params["blocks"][str(i)], f"layers.{i}."
        a, m = b["attn"], b["mlp"]
        out[pre + "attention.in_proj_qk.weight"] = a["w_qk"].reshape(d, -1).T  # rows: q then k, head-major
        out[pre + "attention.in_proj_qk.bias"] = a["b_qk"].reshape(-1)
        out[pre + "attention.in_proj_v.weight"], out[pre + "attention.in_proj_v.bias"] = (
            a["w_v"].reshape(d, -1).T,
            a["b_v"].reshape(-1),
        )
        out[pre + "attention.out_proj.weight"] = a["w_o"].reshape(-1, d).T
        out[pre + "attention.out_proj.bias"] = a["b_o"]
        out[pre + "attention.post_norm.weight"] = a["norm_out"]["scale"]
        out[pre + "attention.post_norm.bias"] = a["norm_out"]["bias"]
        out[pre + "mlp.w_in.weight"] = m["w_in"].reshape(d, -1).T  # rows: value then gate
        out[pre + "mlp.w_out.weight"] = m["w_out"].T
    head = params["mlm"]
    out.update(
        {
            "head_dense.weight": head["kernel"].T,
            "head_dense.bias": head["bias"],
            "lm_head.weight": params["embed"] if cfg.tie_embeddings else params.pop("head").T,
            "lm_head.bias": head["out_bias"],
        }
    )
    return out


_STATE_DICTS = {GPT2: _gpt2_state_dict, LLAMA: _llama_state_dict, ROBERTA: _roberta_state_dict, LTG: _ltg_state_dict}


def hf_state_dict(params: dict, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """babyjax parameters (nested dicts: embed, blocks/<i>/attn/wq, ...) -> HF tensor names and layouts (numpy)."""
    params = dict(params)
    out = _STATE_DICTS[hf_class_name(cfg)](params, cfg)
    if not cfg.tie_embeddings and "head" in params:
        out["lm_head.weight"] = params["head"].T
    return {name: np.ascontiguousarray(x, np.float32) for name, x in out.items()}


def hf_model(params: dict, cfg: ModelConfig) -> Any:
    """A transformers PyTorch model (eval mode, float32) holding babyjax parameters."""
    torch, transformers = require_peers()
    if hf_class_name(cfg) == LTG:
        from babyjax.interop import hf_ltg_bert as module
    else:
        module = transformers
    cls = getattr(module, hf_class_name(cfg))
    model = cls(hf_config(cfg))
    state = {name: torch.tensor(x) for name, x in hf_state_dict(params, cfg).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Buffers (e.g. RoPE inverse frequencies, GPT-2's causal mask) and the tied head are not parameters we export.
    tied = ("lm_head.weight", "lm_head.decoder.weight")
    missing = [
        m
        for m in missing
        if not (m in tied and cfg.tie_embeddings)
        and "inv_freq" not in m
        and not m.endswith(".attn.bias")
        and not m.endswith(".attn.masked_bias")
    ]
    if missing or unexpected:
        raise RuntimeError(f"export does not match {cls.__name__}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if cfg.tie_embeddings and module is transformers:
        model.tie_weights()
    return model.eval()

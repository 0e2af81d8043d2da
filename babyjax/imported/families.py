"""Hugging Face checkpoints of GPT-2, OPT, GPT-NeoX (Pythia), Llama and RoBERTa, and babyjax's own exports
(babyjax/interop/export.py), as babyjax's Transformer: `model_config` reads a config.json into a ModelConfig and the
objective the model was trained with, `params` maps the checkpoint's tensors to babyjax's parameter paths (float32
numpy), `fill` puts them into a model's parameter tree. The maps invert babyjax/interop/hf_params.py for babyjax's
styles (a re-imported export has its source's params_hash) and add OPT's and GPT-NeoX's. numpy only: no torch.

Every option babyjax cannot compute is refused in one line naming it (InputError), and so is every tensor the map
does not read and every one it lacks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from babyjax.errors import InputError
from babyjax.model.transformer import MLP_PRESETS, ModelConfig

LTG_TYPE = "babyjax_ltg_bert"  # babyjax/interop/hf_ltg_bert.py's LtgBertConfig.model_type
SUPPORTED = ("gpt2", "opt", "gpt_neox", "llama", "roberta", LTG_TYPE)
OPT_POSITION_OFFSET = 2  # OPT's learned positions start at row 2 (OPTLearnedPositionalEmbedding.offset)
# Hugging Face activation names -> babyjax's plain MLPs (gelu_new, gelu_pytorch_tanh and gelu_fast are all tanh GELU)
ACTIVATIONS = {
    "gelu_new": "gelu",
    "gelu_pytorch_tanh": "gelu",
    "gelu_fast": "gelu",
    "gelu": "gelu_exact",
    "relu": "relu",
}
# per family: the prefixes stripped from tensor names (in turn) and the buffers dropped (patterns on stripped names)
PREFIXES = {
    "gpt2": ("transformer.",),
    "opt": ("model.", "decoder."),
    "gpt_neox": ("gpt_neox.",),
    "llama": ("model.",),
    "roberta": ("roberta.",),
    LTG_TYPE: (),
}
BUFFERS = {
    "gpt2": (r"h\.\d+\.attn\.(bias|masked_bias)",),
    "gpt_neox": (r"layers\.\d+\.attention\.(bias|masked_bias)", r"(layers\.\d+\.attention\.)?rotary_emb\.inv_freq"),
    "llama": (r"(layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq",),
    "roberta": (r"embeddings\.position_ids", r"pooler\..*"),
}


def _family(hf: Mapping[str, Any]) -> str:
    kind = hf.get("model_type")
    if kind not in SUPPORTED:
        raise InputError(f"config.json model_type={kind!r} is not supported: use one of {SUPPORTED}")
    return str(kind)


def _need(hf: Mapping[str, Any], key: str) -> Any:
    if hf.get(key) is None:
        raise InputError(f"config.json of model_type={hf.get('model_type')!r} lacks {key}")
    return hf[key]


def _only(hf: Mapping[str, Any], key: str, default: Any, allowed: tuple) -> Any:
    """hf[key] (default when absent), InputError unless it is one of `allowed`."""
    value = hf.get(key, default)
    if value not in allowed:
        raise InputError(f"config.json {key}={value!r} is not supported (model_type={hf.get('model_type')!r})")
    return value


def _activation(hf: Mapping[str, Any], key: str, default: str, style: str) -> str:
    """ModelConfig.activation for the config's activation name: '' when it is the style's own."""
    name = hf.get(key) or default
    if name not in ACTIVATIONS:
        raise InputError(f"config.json {key}={name!r} is not supported: babyjax has {tuple(ACTIVATIONS)}")
    kind = ACTIVATIONS[name]
    return "" if kind == MLP_PRESETS[style] else kind


def _rope(hf: Mapping[str, Any], theta_key: str, factor_key: str, default_factor: float) -> tuple[float, float]:
    """(theta, partial rotary factor) from transformers 5's rope_parameters or 4.x's top-level keys; InputError for
    any RoPE kind but the default (scaled, llama3, yarn, ...)."""
    rope = dict(hf.get("rope_scaling") or hf.get("rope_parameters") or {})
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind != "default":
        raise InputError(f"config.json rope_type={kind!r} is not supported: babyjax has the default RoPE only")
    theta = rope.get("rope_theta", hf.get(theta_key) or 10000.0)
    return float(theta), float(rope.get("partial_rotary_factor", hf.get(factor_key, default_factor)))


def _context(max_len: int | None, hf: Mapping[str, Any], default: int) -> int:
    """max_len of a model without a position table: the caller's (tokenizer_config.json's model_max_length), at most
    the config's max_position_embeddings."""
    table = int(hf.get("max_position_embeddings") or default)
    return min(int(max_len), table) if max_len else table


# the config.json keys of (num_layers, d_model, num_heads, mlp_dim), per family ('*': the rest)
SIZE_KEYS = {
    "gpt2": ("n_layer", "n_embd", "n_head", "n_inner"),
    "opt": ("num_hidden_layers", "hidden_size", "num_attention_heads", "ffn_dim"),
    "*": ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size"),
}


def _sizes(hf: Mapping[str, Any], family: str) -> dict[str, int]:
    layers, width, heads, mlp = SIZE_KEYS.get(family, SIZE_KEYS["*"])
    d = int(_need(hf, width))
    mlp_dim = (hf.get(mlp) or 4 * d) if family == "gpt2" else _need(hf, mlp)  # GPT-2's n_inner None: 4 n_embd
    return {
        "num_layers": int(_need(hf, layers)),
        "d_model": d,
        "num_heads": int(_need(hf, heads)),
        "mlp_dim": int(mlp_dim),
    }


def _gpt2_config(hf: Mapping[str, Any], max_len: int | None) -> dict[str, Any]:
    _only(hf, "scale_attn_by_inverse_layer_idx", False, (False,))
    _only(hf, "scale_attn_weights", True, (True,))
    _only(hf, "add_cross_attention", False, (False,))
    return {
        "max_len": int(_need(hf, "n_positions")),
        "norm_eps": float(hf.get("layer_norm_epsilon", 1e-5)),
        "activation": _activation(hf, "activation_function", "gelu_new", "gpt2"),
        "tie_embeddings": bool(hf.get("tie_word_embeddings", True)),
    }


def _opt_config(hf: Mapping[str, Any], max_len: int | None) -> dict[str, Any]:
    _only(hf, "layer_norm_elementwise_affine", True, (True,))
    if _only(hf, "do_layer_norm_before", True, (True, False)):
        _only(hf, "_remove_final_layer_norm", False, (False,))
    d = hf["hidden_size"]
    projected = (hf.get("word_embed_proj_dim") or d) != d  # project_in/out: folded into an untied embedding
    return {
        "max_len": int(_need(hf, "max_position_embeddings")),
        "norm_eps": 1e-5,  # torch's LayerNorm default: OPT's config has no eps
        "activation": _activation(hf, "activation_function", "relu", "opt"),
        "block_norm": "" if hf.get("do_layer_norm_before", True) else "post",
        "bias": "" if hf.get("enable_bias", True) else "none",
        "tie_embeddings": bool(hf.get("tie_word_embeddings", True)) and not projected,
    }


def _neox_config(hf: Mapping[str, Any], max_len: int | None) -> dict[str, Any]:
    theta, fraction = _rope(hf, "rotary_emb_base", "rotary_pct", 0.25)  # transformers' defaults: 10000, 0.25
    return {
        "max_len": _context(max_len, hf, 2048),
        "norm_eps": float(hf.get("layer_norm_eps", 1e-5)),
        "rope_theta": theta,
        "rotary_fraction": fraction,
        "activation": _activation(hf, "hidden_act", "gelu", "gpt_neox"),
        "residual": "" if hf.get("use_parallel_residual", True) else "sequential",
        "bias": "" if hf.get("attention_bias", True) else "mlp",
        "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
    }


def _llama_config(hf: Mapping[str, Any], max_len: int | None) -> dict[str, Any]:
    _only(hf, "hidden_act", "silu", ("silu",))
    _only(hf, "attention_bias", False, (False,))
    _only(hf, "mlp_bias", False, (False,))
    theta, fraction = _rope(hf, "rope_theta", "partial_rotary_factor", 1.0)
    if fraction != 1.0:
        raise InputError(f"config.json partial_rotary_factor={fraction} is not supported (model_type='llama')")
    d, h = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("head_dim") not in (None, d // h):
        raise InputError(f"config.json head_dim={hf['head_dim']} is not supported: babyjax's is hidden_size / heads")
    return {
        "num_kv_heads": int(hf.get("num_key_value_heads") or h),
        "max_len": _context(max_len, hf, 2048),
        "norm_eps": float(hf.get("rms_norm_eps", 1e-6)),
        "rope_theta": theta,
        "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
    }


def _roberta_config(hf: Mapping[str, Any], max_len: int | None) -> dict[str, Any]:
    _only(hf, "position_embedding_type", "absolute", ("absolute",))
    _only(hf, "is_decoder", False, (False,))
    _only(hf, "add_cross_attention", False, (False,))
    first = int(hf.get("pad_token_id", 1)) + 1  # RoBERTa's positions start after the padding id
    return {
        "max_len": int(_need(hf, "max_position_embeddings")) - first,
        "norm_eps": float(hf.get("layer_norm_eps", 1e-12)),
        "activation": _activation(hf, "hidden_act", "gelu", "roberta"),
        "tie_embeddings": bool(hf.get("tie_word_embeddings", True)),
    }


def _ltg_config(hf: Mapping[str, Any], max_len: int | None) -> dict[str, Any]:
    return {
        "max_len": _context(max_len, hf, 512),
        "norm_eps": float(hf.get("layer_norm_eps", 1e-5)),
        "position_buckets": int(_need(hf, "position_bucket_size")),
        "tie_embeddings": bool(hf.get("tie_word_embeddings", True)),
    }


_CONFIGS: dict[str, Callable[[Mapping[str, Any], int | None], dict[str, Any]]] = {
    "gpt2": _gpt2_config,
    "opt": _opt_config,
    "gpt_neox": _neox_config,
    "llama": _llama_config,
    "roberta": _roberta_config,
    LTG_TYPE: _ltg_config,
}
STYLES = {LTG_TYPE: "ltg_bert"}  # ModelConfig.style per family: the model_type but for these


def model_config(hf: Mapping[str, Any], max_len: int | None = None) -> tuple[ModelConfig, str]:
    """(the ModelConfig, the objective kind it was trained with) from a Hugging Face config.json dict: 'causal' for
    decoders, 'mlm' for RoBERTa and babyjax's LTG-BERT exports (babyjax_export.json may say otherwise: the caller's
    call). vocab_size is the config's (the embedding's rows, which may exceed the tokenizer's), dropout 0. max_len:
    tokenizer_config.json's model_max_length, the context of models without a position table (RoPE, relative
    positions; at most max_position_embeddings); learned positions keep their table's rows."""
    family = _family(hf)
    sizes = _sizes(hf, family)
    fields = {"style": STYLES.get(family, family), **sizes, **_CONFIGS[family](hf, max_len)}
    cfg = ModelConfig(vocab_size=int(_need(hf, "vocab_size")), dropout=0.0, **fields)
    return cfg, "mlm" if cfg.encoder else "causal"


class _Tensors:
    """A checkpoint's tensors by name without the family's prefix, its buffers dropped; `take` removes each as the
    map reads it, `done` refuses what is left."""

    def __init__(self, tensors: Mapping[str, Any], family: str):
        self.family, self.left = family, {}
        buffers = [re.compile(b) for b in BUFFERS.get(family, ())]
        for name, x in tensors.items():
            short = name
            for prefix in PREFIXES[family]:
                short = short.removeprefix(prefix)
            short = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", short)  # old BERT-style names, as transformers
            short = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", short)  # renames them on loading
            if any(b.fullmatch(short) for b in buffers):
                continue
            if short in self.left:
                raise InputError(f"{family} checkpoint holds {short!r} twice (with and without a prefix)")
            self.left[short] = x

    def pop(self, name: str) -> np.ndarray | None:
        """The tensor `name` as float32, or None when the checkpoint has none."""
        return None if name not in self.left else np.asarray(self.left.pop(name), np.float32)

    def take(self, name: str) -> np.ndarray:
        x = self.pop(name)
        if x is None:
            raise InputError(f"{self.family} checkpoint lacks tensor {name!r} (its prefix dropped): not config.json's")
        return x

    def drop_copy(self, name: str, kept: np.ndarray, what: str) -> None:
        """Drop the tensor `name` if the checkpoint has it, after checking that it equals `kept` (what: its name)."""
        x = self.pop(name)
        if x is not None and (x.shape != kept.shape or not np.array_equal(x, kept)):
            raise InputError(f"{self.family} checkpoint's tensor {name!r} should be a copy of {what} but differs")

    def done(self) -> None:
        if self.left:
            names = sorted(self.left)
            raise InputError(
                f"{self.family} checkpoint has {len(names)} tensor(s) this import does not read, e.g. {names[:3]}: "
                "options or modules babyjax does not support"
            )


def _head(t: _Tensors, names: tuple[str, ...], embed: np.ndarray, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """{'head': [D, V]} from the first of `names` the checkpoint has when untied; {} when tied."""
    name = next((n for n in names if n in t.left), names[0])
    if cfg.tie_embeddings:
        t.drop_copy(name, embed, "the embedding (config.json ties them)")
        return {}
    return {"head": t.take(name).T}


def _norms(t: _Tensors, names: Mapping[str, str], bias: bool = True) -> dict[str, np.ndarray]:
    """{path/scale, path/bias (if `bias`)} for each norm {tensor name (no .weight): babyjax path}."""
    out = {f"{path}/scale": t.take(f"{name}.weight") for name, path in names.items()}
    return {**out, **({f"{path}/bias": t.take(f"{name}.bias") for name, path in names.items()} if bias else {})}


def _linear_attention(t: _Tensors, pre: str, names: tuple[str, ...], cfg: ModelConfig) -> dict[str, np.ndarray]:
    """attn/* from torch Linear q, k, v, out projections (weights [out, in]), biases if cfg.attn_biases."""
    d, k, out = cfg.d_model, cfg.head_dim, {}
    for w, name in zip("qkv", names[:3]):
        out[f"attn/w{w}"] = t.take(f"{pre}{name}.weight").T.reshape(d, -1, k)
        if cfg.attn_biases:
            out[f"attn/b{w}"] = t.take(f"{pre}{name}.bias").reshape(-1, k)
    out["attn/wo"] = t.take(f"{pre}{names[3]}.weight").T.reshape(-1, k, d)
    if cfg.attn_biases:
        out["attn/bo"] = t.take(f"{pre}{names[3]}.bias")
    return out


def _linear_mlp(t: _Tensors, pre: str, w_in: str, w_out: str, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """mlp/* from torch Linear input and output projections, biases if cfg.mlp_biases."""
    out = {"mlp/w_in": t.take(f"{pre}{w_in}.weight").T, "mlp/w_out": t.take(f"{pre}{w_out}.weight").T}
    if cfg.mlp_biases:
        out["mlp/b_in"], out["mlp/b_out"] = t.take(f"{pre}{w_in}.bias"), t.take(f"{pre}{w_out}.bias")
    return out


def _blocks(cfg: ModelConfig, block: Callable[[int], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {f"blocks/{i}/{path}": x for i in range(cfg.num_layers) for path, x in block(i).items()}


def _gpt2_params(t: _Tensors, hf: Mapping[str, Any], cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Conv1D weights are [in, out]; c_attn's output columns are q | k | v, each head-major."""
    d, h, k = cfg.d_model, cfg.num_heads, cfg.head_dim

    def block(i: int) -> dict[str, np.ndarray]:
        pre = f"h.{i}."
        w, b = t.take(pre + "attn.c_attn.weight"), t.take(pre + "attn.c_attn.bias")
        out = {f"attn/w{n}": w[:, j * d : (j + 1) * d].reshape(d, h, k) for j, n in enumerate("qkv")}
        out.update({f"attn/b{n}": b[j * d : (j + 1) * d].reshape(h, k) for j, n in enumerate("qkv")})
        out["attn/wo"] = t.take(pre + "attn.c_proj.weight").reshape(h, k, d)
        out["attn/bo"], out["mlp/b_in"] = t.take(pre + "attn.c_proj.bias"), t.take(pre + "mlp.c_fc.bias")
        out["mlp/w_in"], out["mlp/w_out"] = t.take(pre + "mlp.c_fc.weight"), t.take(pre + "mlp.c_proj.weight")
        out["mlp/b_out"] = t.take(pre + "mlp.c_proj.bias")
        return {**out, **_norms(t, {pre + "ln_1": "norm_attn", pre + "ln_2": "norm_mlp"})}

    out = {"embed": t.take("wte.weight"), "pos_embed": t.take("wpe.weight"), **_blocks(cfg, block)}
    return {**out, **_norms(t, {"ln_f": "norm_out"}), **_head(t, ("lm_head.weight",), out["embed"], cfg)}


def _opt_params(t: _Tensors, hf: Mapping[str, Any], cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Positions from row 2; project_in/out (word_embed_proj_dim != hidden_size) folded into the embedding and an
    untied head: logits = x project_out^T E^T."""
    words = t.take("embed_tokens.weight")  # [V, word_embed_proj_dim]
    proj_in, proj_out = t.pop("project_in.weight"), t.pop("project_out.weight")
    if hf.get("tie_word_embeddings", True):
        t.drop_copy("lm_head.weight", words, "the embedding (config.json ties them)")
        out_words = words
    else:
        out_words = t.take("lm_head.weight")
    f64 = lambda a, b: (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)  # one rounding per entry
    out = {"embed": words if proj_in is None else f64(words, proj_in.T)}
    if not cfg.tie_embeddings:
        out["head"] = out_words.T if proj_out is None else f64(proj_out.T, out_words.T)
    out["pos_embed"] = t.take("embed_positions.weight")[OPT_POSITION_OFFSET:]

    def block(i: int) -> dict[str, np.ndarray]:
        pre = f"layers.{i}."
        out = _linear_attention(t, pre + "self_attn.", ("q_proj", "k_proj", "v_proj", "out_proj"), cfg)
        out.update(_linear_mlp(t, pre, "fc1", "fc2", cfg))
        return {**out, **_norms(t, {pre + "self_attn_layer_norm": "norm_attn", pre + "final_layer_norm": "norm_mlp"})}

    out.update(_blocks(cfg, block))
    return {**out, **_norms(t, {"final_layer_norm": "norm_out"} if cfg.final_norm else {})}


def _neox_params(t: _Tensors, hf: Mapping[str, Any], cfg: ModelConfig) -> dict[str, np.ndarray]:
    """The fused query_key_value is interleaved per head: rows [head, q|k|v, head_dim]."""
    d, h, k = cfg.d_model, cfg.num_heads, cfg.head_dim

    def block(i: int) -> dict[str, np.ndarray]:
        pre = f"layers.{i}."
        w = t.take(pre + "attention.query_key_value.weight").reshape(h, 3, k, d)
        out = {f"attn/w{n}": w[:, s].transpose(2, 0, 1) for s, n in enumerate("qkv")}
        out["attn/wo"] = t.take(pre + "attention.dense.weight").T.reshape(h, k, d)
        if cfg.attn_biases:
            b = t.take(pre + "attention.query_key_value.bias").reshape(h, 3, k)
            out.update({f"attn/b{n}": b[:, s] for s, n in enumerate("qkv")})
            out["attn/bo"] = t.take(pre + "attention.dense.bias")
        out.update(_linear_mlp(t, pre + "mlp.", "dense_h_to_4h", "dense_4h_to_h", cfg))
        return {
            **out,
            **_norms(t, {pre + "input_layernorm": "norm_attn", pre + "post_attention_layernorm": "norm_mlp"}),
        }

    out = {"embed": t.take("embed_in.weight"), **_blocks(cfg, block), **_norms(t, {"final_layer_norm": "norm_out"})}
    return {**out, **_head(t, ("embed_out.weight", "lm_head.weight"), out["embed"], cfg)}


def _llama_params(t: _Tensors, hf: Mapping[str, Any], cfg: ModelConfig) -> dict[str, np.ndarray]:
    def block(i: int) -> dict[str, np.ndarray]:
        pre = f"layers.{i}."
        out = _linear_attention(t, pre + "self_attn.", ("q_proj", "k_proj", "v_proj", "o_proj"), cfg)
        for w, n in (("w_gate", "gate"), ("w_in", "up"), ("w_out", "down")):
            out[f"mlp/{w}"] = t.take(f"{pre}mlp.{n}_proj.weight").T
        norms = {pre + "input_layernorm": "norm_attn", pre + "post_attention_layernorm": "norm_mlp"}
        return {**out, **_norms(t, norms, bias=False)}

    out = {"embed": t.take("embed_tokens.weight"), **_blocks(cfg, block), **_norms(t, {"norm": "norm_out"}, False)}
    return {**out, **_head(t, ("lm_head.weight",), out["embed"], cfg)}


def _roberta_params(t: _Tensors, hf: Mapping[str, Any], cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Positions from row pad_token_id + 1; the token-type row 0 (added to every token before the embeddings' norm)
    folded into the positions when it is not zero (babyjax's exports write zeros: adding them would turn -0.0 into
    0.0 and change params_hash)."""
    e = "embeddings."
    positions = t.take(e + "position_embeddings.weight")[int(hf.get("pad_token_id", 1)) + 1 :]
    types = t.pop(e + "token_type_embeddings.weight")
    if types is not None and np.any(types[0] != 0):
        positions = positions + types[0]
    out = {"embed": t.take(e + "word_embeddings.weight"), "pos_embed": positions}

    def block(i: int) -> dict[str, np.ndarray]:
        pre = f"encoder.layer.{i}."
        out = _linear_attention(t, pre + "attention.", ("self.query", "self.key", "self.value", "output.dense"), cfg)
        out.update(_linear_mlp(t, pre, "intermediate.dense", "output.dense", cfg))
        return {
            **out,
            **_norms(t, {pre + "attention.output.LayerNorm": "norm_attn", pre + "output.LayerNorm": "norm_mlp"}),
        }

    out.update({**_norms(t, {e + "LayerNorm": "norm_out", "lm_head.layer_norm": "mlm/norm"}), **_blocks(cfg, block)})
    out_bias = t.pop("lm_head.bias")  # lm_head.decoder.bias is the same tensor, saved or not
    if out_bias is None:
        out_bias = t.take("lm_head.decoder.bias")
    else:
        t.drop_copy("lm_head.decoder.bias", out_bias, "'lm_head.bias'")
    out.update({"mlm/kernel": t.take("lm_head.dense.weight").T, "mlm/bias": t.take("lm_head.dense.bias")})
    return {**out, "mlm/out_bias": out_bias, **_head(t, ("lm_head.decoder.weight",), out["embed"], cfg)}


def _ltg_params(t: _Tensors, hf: Mapping[str, Any], cfg: ModelConfig) -> dict[str, np.ndarray]:
    """babyjax's LTG-BERT export (babyjax/interop/hf_ltg_bert.py): lm_head.weight is saved even when tied."""
    d, h, k, f = cfg.d_model, cfg.num_heads, cfg.head_dim, cfg.mlp_dim

    def block(i: int) -> dict[str, np.ndarray]:
        a = f"layers.{i}.attention."
        out = {
            "attn/w_qk": t.take(a + "in_proj_qk.weight").T.reshape(d, 2, h, k),  # rows: q then k, head-major
            "attn/b_qk": t.take(a + "in_proj_qk.bias").reshape(2, h, k),
            "attn/w_v": t.take(a + "in_proj_v.weight").T.reshape(d, h, k),
            "attn/b_v": t.take(a + "in_proj_v.bias").reshape(h, k),
            "attn/w_o": t.take(a + "out_proj.weight").T.reshape(h, k, d),
            "attn/b_o": t.take(a + "out_proj.bias"),
            "mlp/w_in": t.take(f"layers.{i}.mlp.w_in.weight").T.reshape(d, 2, f),  # rows: value then gate
            "mlp/w_out": t.take(f"layers.{i}.mlp.w_out.weight").T,
        }
        return {**out, **_norms(t, {a + "post_norm": "attn/norm_out"})}

    out = {"embed": t.take("word_embedding.weight"), "relative/table": t.take("relative_embedding")}
    out.update({**_norms(t, {"relative_norm": "relative/norm"}), **_blocks(cfg, block)})
    out.update({"mlm/kernel": t.take("head_dense.weight").T, "mlm/bias": t.take("head_dense.bias")})
    return {**out, "mlm/out_bias": t.take("lm_head.bias"), **_head(t, ("lm_head.weight",), out["embed"], cfg)}


_PARAMS: dict[str, Callable[[_Tensors, Mapping[str, Any], ModelConfig], dict[str, np.ndarray]]] = {
    "gpt2": _gpt2_params,
    "opt": _opt_params,
    "gpt_neox": _neox_params,
    "llama": _llama_params,
    "roberta": _roberta_params,
    LTG_TYPE: _ltg_params,
}


def params(tensors: Mapping[str, np.ndarray], hf: Mapping[str, Any], cfg: ModelConfig) -> dict[str, np.ndarray]:
    """babyjax's parameters {canonical path ('blocks/0/attn/wq', as babyjax.checkpoints.series prints nnx.State paths):
    float32 array} from a checkpoint's tensors (any float dtype; names with or without the family's prefix) and its
    config.json dict; cfg: `model_config(hf)`'s. InputError when a tensor is missing or left unread."""
    family = _family(hf)
    t = _Tensors(tensors, family)
    out = _PARAMS[family](t, hf, cfg)
    t.done()
    return {path: np.asarray(x, np.float32) for path, x in out.items()}


def _path_name(path: tuple) -> str:
    """'blocks/0/attn/wq' for a tree path (babyjax.checkpoints.series._canonical_path: the final 'value' dropped)."""
    parts = [str(next((getattr(key, a) for a in ("key", "idx", "name") if hasattr(key, a)), key)) for key in path]
    if len(parts) > 1 and parts[-1] == "value":
        parts.pop()
    return "/".join(parts)


def fill(arrays: Mapping[str, np.ndarray], abstract: Any) -> Any:
    """The tree of `abstract` (e.g. nnx.state(nnx.eval_shape(lambda: Transformer(cfg, ...)), nnx.Param)) with each
    leaf replaced by the float32 numpy array at its canonical path; InputError for a missing path, a shape that
    differs, or an array left over."""
    left = dict(arrays)

    def put(path: tuple, leaf: Any) -> np.ndarray:
        name = _path_name(path)
        if name not in left:
            raise InputError(f"the imported parameters lack {name}: the model config does not match the checkpoint")
        x = np.asarray(left.pop(name), np.float32)
        if tuple(x.shape) != tuple(leaf.shape):
            raise InputError(
                f"parameter {name} is {tuple(x.shape)} in the checkpoint, {tuple(leaf.shape)} in the model"
            )
        return x

    tree = jax.tree_util.tree_map_with_path(put, abstract)
    if left:
        raise InputError(f"the model has no parameter for {len(left)} imported array(s), e.g. {sorted(left)[:3]}")
    return tree

"""Which Hugging Face transformers class represents a babyjax model, and its transformers config: `hf_class_name`
follows the model's features (position, norm, mlp, biases; the rest must be the class's), never its style name;
`hf_config` maps ModelConfig's fields onto that class's config. torch and transformers (the `peers` extra) are
imported lazily (`require_peers`)."""

from __future__ import annotations

from typing import Any

from babyjax.errors import InputError, PeersError
from babyjax.model.transformer import ModelConfig

GPT2 = "GPT2LMHeadModel"
LLAMA = "LlamaForCausalLM"
ROBERTA = "RobertaForMaskedLM"
LTG = "LtgBertForMaskedLM"  # babyjax's own modelling code (babyjax/interop/hf_ltg_bert.py), shipped in the folder
REMOTE_CODE = "modeling_ltg_bert.py"
AUTO_MAP = {
    "AutoConfig": "modeling_ltg_bert.LtgBertConfig",
    "AutoModelForMaskedLM": "modeling_ltg_bert.LtgBertForMaskedLM",
    "AutoModelForCausalLM": "modeling_ltg_bert.LtgBertForCausalLM",
    "AutoModel": "modeling_ltg_bert.LtgBertModel",  # what the BabyLM 2025 pipeline's fine-tuning loads
}
# (position, norm, mlp, biases) of the models each Hugging Face class represents
HF_CLASSES = {
    ("learned", "layernorm", "gelu", True): GPT2,
    ("rope", "rmsnorm", "swiglu", False): LLAMA,
    ("learned", "layernorm", "gelu_exact", True): ROBERTA,
    ("relative", "layernorm", "geglu", True): LTG,
}


def require_peers() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as e:
        raise PeersError(
            f"export to Hugging Face needs torch and transformers ({e.name} is missing): pip install 'babyjax[peers]'"
        ) from None
    return torch, transformers


def hf_class_name(cfg: ModelConfig) -> str:
    """The transformers class that represents the model's features (InputError when none does)."""
    features = (cfg.position, cfg.norm, cfg.mlp, cfg.biases)
    name = HF_CLASSES.get(features)
    if name is None:
        known = "; ".join(f"{v} {k}" for k, v in HF_CLASSES.items())
        raise InputError(
            f"no Hugging Face class has position={features[0]}, norm={features[1]}, mlp={features[2]}, "
            f"biases={features[3]}: export supports (position, norm, mlp, biases) = {known}"
        )
    unmatched = _unmatched_features(cfg, name)
    if unmatched:
        raise InputError(f"{name} has no {unmatched}: export supports the styles gpt2, llama, roberta and ltg_bert")
    if name == GPT2 and cfg.attention == "gqa":
        raise InputError(
            f"GPT-2 has no grouped-query attention (num_kv_heads={cfg.num_kv_heads}, "
            f"num_heads={cfg.num_heads}): {GPT2} needs num_kv_heads == num_heads ({LLAMA} keeps "
            "grouped-query attention)"
        )
    return name


def _unmatched_features(cfg: ModelConfig, name: str) -> str:
    """The first feature of the model that the class `name` lacks, beyond its (position, norm, mlp, biases); '' if
    none: how the blocks place their norms, a norm on the embeddings, parallel residuals, partial RoPE, biases on the
    MLP only."""
    norms = {ROBERTA: (True, True), LTG: (False, True)}.get(name, (False, False))  # (post_norm, embed_norm)
    if (cfg.post_norm, cfg.embed_norm) != norms:
        blocks, embed = "post" if cfg.post_norm else "pre", "with" if cfg.embed_norm else "without"
        return f"{blocks}-norm blocks {embed} a norm on the embeddings (model.block_norm={cfg.block_norm!r})"
    if cfg.parallel_residual:
        return "parallel residual blocks (model.residual='parallel')"
    if cfg.position == "rope" and cfg.rotary_dim != cfg.head_dim:
        return f"partial RoPE (model.rotary_fraction={cfg.rotary_fraction})"
    if cfg.attn_biases != cfg.mlp_biases:
        return f"biases on the MLP only (model.bias={cfg.bias!r})"
    return ""


def hf_config(cfg: ModelConfig) -> Any:
    """The transformers config of a babyjax model (GPT2Config, LlamaConfig, RobertaConfig or LtgBertConfig)."""
    _, transformers = require_peers()
    special = {"bos_token_id": 3, "eos_token_id": 3, "pad_token_id": 0, "tie_word_embeddings": cfg.tie_embeddings}
    return _CONFIGS[hf_class_name(cfg)](transformers, cfg, special)


def _ltg_config(transformers: Any, cfg: ModelConfig, special: dict[str, Any]) -> Any:
    from babyjax.interop import hf_ltg_bert

    return hf_ltg_bert.LtgBertConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.mlp_dim,
        position_bucket_size=cfg.position_buckets,
        layer_norm_eps=cfg.norm_eps,
        auto_map=AUTO_MAP,
        architectures=[LTG],
        **special,
    )


def _roberta_config(transformers: Any, cfg: ModelConfig, special: dict[str, Any]) -> Any:
    return transformers.RobertaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.mlp_dim,
        hidden_act="gelu",
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=cfg.max_len + 1,
        type_vocab_size=1,
        layer_norm_eps=cfg.norm_eps,
        **special,
    )


def _gpt2_config(transformers: Any, cfg: ModelConfig, special: dict[str, Any]) -> Any:
    return transformers.GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.max_len,
        n_embd=cfg.d_model,
        n_layer=cfg.num_layers,
        n_head=cfg.num_heads,
        n_inner=cfg.mlp_dim,
        activation_function="gelu_new",
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=0.0,
        layer_norm_epsilon=cfg.norm_eps,
        scale_attn_weights=True,
        **special,
    )


def _llama_config(transformers: Any, cfg: ModelConfig, special: dict[str, Any]) -> Any:
    return transformers.LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.mlp_dim,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
        hidden_act="silu",
        max_position_embeddings=cfg.max_len,
        rms_norm_eps=cfg.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        attention_bias=False,
        mlp_bias=False,
        attention_dropout=0.0,
        **special,
    )


_CONFIGS = {GPT2: _gpt2_config, LLAMA: _llama_config, ROBERTA: _roberta_config, LTG: _ltg_config}

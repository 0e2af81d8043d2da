"""babyjax.imported.families: tiny random Hugging Face models of each family (every weight, norm and bias random),
saved by transformers and converted with model_config/params/fill, give the log-probabilities transformers gives
(1e-4); babyjax's own exports re-import to their params_hash; unsupported options are refused in one line."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from safetensors.numpy import load_file

from babyjax.checkpoints.series import params_hash
from babyjax.errors import InputError
from babyjax.imported import families
from babyjax.interop.hf_config import hf_config
from babyjax.interop.hf_params import hf_state_dict, numpy_params
from babyjax.model.transformer import ModelConfig, Transformer, flops_per_token, matmul_params

V, L, TOL = 50, 12, 1e-4
SIZES = {"vocab_size": V, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 48}
OPT = {**SIZES, "max_position_embeddings": 16, "ffn_dim": 48}
OPT.pop("intermediate_size")
CASES = {
    "gpt2": (transformers.GPT2Config, {"vocab_size": V, "n_positions": 16, "n_embd": 32, "n_layer": 2, "n_head": 4}),
    "opt": (transformers.OPTConfig, OPT),
    "opt350": (  # post-norm blocks, no final norm, project_in/out around a narrower embedding
        transformers.OPTConfig,
        {**OPT, "do_layer_norm_before": False, "word_embed_proj_dim": 16},
    ),
    "neox_parallel": (  # head dim 16, a quarter of it rotated
        transformers.GPTNeoXConfig,
        dict(SIZES, num_attention_heads=2, max_position_embeddings=16, rotary_pct=0.25, rotary_emb_base=500.0),
    ),
    "neox_sequential": (
        transformers.GPTNeoXConfig,
        dict(SIZES, max_position_embeddings=16, use_parallel_residual=False, attention_bias=False, rotary_pct=0.5),
    ),
    "llama_gqa": (
        transformers.LlamaConfig,
        dict(SIZES, num_key_value_heads=2, tie_word_embeddings=False, max_position_embeddings=32, rope_theta=300.0),
    ),
    "roberta": (  # pad id 1: positions from row 2; two token types, row 0 random (folded into the positions)
        transformers.RobertaConfig,
        dict(SIZES, max_position_embeddings=18, pad_token_id=1, type_vocab_size=2, layer_norm_eps=1e-5),
    ),
}
CLASSES = {
    transformers.GPT2Config: transformers.GPT2LMHeadModel,
    transformers.OPTConfig: transformers.OPTForCausalLM,
    transformers.GPTNeoXConfig: transformers.GPTNeoXForCausalLM,
    transformers.LlamaConfig: transformers.LlamaForCausalLM,
    transformers.RobertaConfig: transformers.RobertaForMaskedLM,
}


def _saved_hf_model(name: str, folder) -> tuple[torch.nn.Module, dict, dict]:
    """A random model of the case (all parameters N(0, 0.5)) saved by transformers: (model, config.json, tensors)."""
    config_cls, kwargs = CASES[name]
    torch.manual_seed(0)
    model = CLASSES[config_cls](config_cls(**kwargs)).eval()
    with torch.no_grad():
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.5)
    model.save_pretrained(folder)
    return model, json.loads((folder / "config.json").read_text()), load_file(str(folder / "model.safetensors"))


def _imported(hf: dict, tensors: dict, max_len: int | None = None) -> tuple[Transformer, ModelConfig, str]:
    cfg, objective = families.model_config(hf, max_len)
    abstract = nnx.state(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))), nnx.Param)
    filled = families.fill(families.params(tensors, hf, cfg), abstract)
    model = Transformer(cfg, rngs=nnx.Rngs(1))
    nnx.update(model, jax.tree.map(jnp.asarray, filled))
    return model, cfg, objective


def _random_model(cfg: ModelConfig, seed: int = 0) -> Transformer:
    """A Transformer whose every parameter (biases and norm scales too) is N(0, 0.2)."""
    model = Transformer(cfg, rngs=nnx.Rngs(seed))
    state = nnx.state(model, nnx.Param)
    leaves, tree = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    nnx.update(model, jax.tree.unflatten(tree, [0.2 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]))
    return model


@pytest.mark.parametrize("name", list(CASES))
def test_hf_families_score_as_transformers(name, tmp_path):
    hf_model, hf, tensors = _saved_hf_model(name, tmp_path)
    model, cfg, objective = _imported(hf, tensors)
    assert cfg.vocab_size == V and cfg.dropout == 0.0
    assert objective == ("mlm" if name == "roberta" else "causal")
    rng = np.random.default_rng(1)
    ids = rng.integers(2, V, (2, L))  # no padding id (RoBERTa's positions skip padding)
    with torch.no_grad():
        ref = torch.log_softmax(hf_model(torch.tensor(ids)).logits.float(), -1).numpy()
    got = np.asarray(jax.nn.log_softmax(model(jnp.asarray(ids, jnp.int32)), axis=-1))
    assert np.abs(got - ref).max() <= TOL, (name, np.abs(got - ref).max())


def test_family_features_reach_the_model_config(tmp_path):
    """What the configs above turn into: OPT-350m's post-norm without a final norm and its folded projections,
    NeoX's partial rotary and residual kinds, Llama's grouped-query attention and eps, RoBERTa's position rows."""
    cfgs = {}
    for name in CASES:
        config_cls, kwargs = CASES[name]
        cfgs[name] = families.model_config(config_cls(**kwargs).to_dict())[0]
    assert cfgs["opt"].mlp == "relu" and cfgs["opt"].final_norm and not cfgs["opt"].post_norm
    opt350 = cfgs["opt350"]
    assert opt350.post_norm and not opt350.final_norm and not opt350.embed_norm and not opt350.tie_embeddings
    assert (cfgs["neox_parallel"].rotary_dim, cfgs["neox_parallel"].rope_theta) == (4, 500.0)
    assert cfgs["neox_parallel"].parallel_residual and not cfgs["neox_sequential"].parallel_residual
    assert not cfgs["neox_sequential"].attn_biases and cfgs["neox_sequential"].mlp_biases
    assert cfgs["llama_gqa"].attention == "gqa" and cfgs["llama_gqa"].norm_eps == 1e-6
    assert cfgs["roberta"].max_len == 16 and cfgs["roberta"].encoder
    assert cfgs["gpt2"].mlp_dim == 128  # n_inner None: 4 n_embd


def test_transformers_4_spellings_and_defaults():
    """Pythia's and Llama's 4.x config.json keys (rotary_pct, rotary_emb_base, top-level rope_theta, rope_scaling
    null), transformers' defaults when they are absent, and the context of RoPE models from the tokenizer's
    model_max_length (its 'no limit' sentinel capped by max_position_embeddings)."""
    neox = {"model_type": "gpt_neox", **SIZES, "max_position_embeddings": 64}
    cfg = families.model_config({**neox, "rotary_pct": 0.5, "rotary_emb_base": 123, "rope_scaling": None})[0]
    assert (cfg.rotary_fraction, cfg.rope_theta, cfg.parallel_residual, cfg.biases) == (0.5, 123.0, True, True)
    cfg = families.model_config(neox)[0]
    assert (cfg.rotary_fraction, cfg.rope_theta, cfg.mlp, cfg.tie_embeddings) == (0.25, 10000.0, "gelu_exact", False)
    llama = {"model_type": "llama", **SIZES, "rope_theta": 5e5, "rope_scaling": None, "max_position_embeddings": 64}
    cfg = families.model_config(llama, max_len=int(1e30))[0]
    assert (cfg.rope_theta, cfg.norm_eps, cfg.max_len, cfg.num_kv_heads) == (5e5, 1e-6, 64, 4)
    assert families.model_config(llama, max_len=8)[0].max_len == 8
    gpt2 = {"model_type": "gpt2", "vocab_size": V, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 16}
    assert families.model_config({**gpt2, "activation_function": "gelu"})[0].mlp == "gelu_exact"


def test_parallel_block_at_a_few_columns_is_the_full_computation():
    """Transformer.features' cols through a parallel-residual last block (GPT-NeoX): the hidden states at the
    chosen columns equal the full computation's there."""
    cfg = ModelConfig(vocab_size=V, style="gpt_neox", num_layers=2, d_model=32, num_heads=2, mlp_dim=48, dropout=0.0)
    cfg = dataclasses.replace(cfg, rotary_fraction=0.25)
    model = _random_model(cfg)
    ids = jnp.asarray(np.random.default_rng(2).integers(0, V, (2, L)), jnp.int32)
    cols = jnp.asarray([[0, 5, 11], [3, 4, 7]], jnp.int32)
    full = np.asarray(model.features(ids))
    np.testing.assert_allclose(
        np.asarray(model.features(ids, cols=cols)), np.take_along_axis(full, cols[..., None], 1), atol=1e-5
    )


def test_new_features_cost_no_extra_matmuls():
    """A ReLU MLP is two matmuls like GELU's; parallel residuals and partial rotary add none."""
    dims = {"vocab_size": V, "num_layers": 2, "d_model": 32, "num_heads": 4, "mlp_dim": 48}
    gpt2 = ModelConfig(style="gpt2", **dims)
    for cfg in (ModelConfig(style="opt", **dims), ModelConfig(style="gpt_neox", rotary_fraction=0.5, **dims)):
        assert matmul_params(cfg) == matmul_params(gpt2)
        assert flops_per_token(cfg, L, head_fraction=0.5) == flops_per_token(gpt2, L, head_fraction=0.5)


@pytest.mark.parametrize(
    "style, kw",
    [
        ("gpt2", {}),
        ("llama", {"num_kv_heads": 2, "tie_embeddings": False}),
        ("roberta", {}),
        ("ltg_bert", {}),
        ("ltg_bert", {"tie_embeddings": False}),
    ],
)
def test_babyjax_exports_reimport_to_their_params_hash(style, kw):
    """hf_params' export and families' import are exact inverses: the same ModelConfig and params_hash."""
    cfg = ModelConfig(vocab_size=V, style=style, num_layers=2, d_model=32, num_heads=4, mlp_dim=48, max_len=16, **kw)
    original = nnx.state(_random_model(cfg), nnx.Param)
    tensors = hf_state_dict(numpy_params(nnx.to_pure_dict(original)), cfg)
    hf = hf_config(cfg).to_dict()
    back, objective = families.model_config(hf, max_len=cfg.max_len)
    assert back == dataclasses.replace(cfg, dropout=0.0)
    assert objective == ("mlm" if cfg.encoder else "causal")
    abstract = nnx.state(nnx.eval_shape(lambda: Transformer(back, rngs=nnx.Rngs(0))), nnx.Param)
    assert params_hash(families.fill(families.params(tensors, hf, back), abstract)) == params_hash(original)


def _refusal(call) -> str:
    with pytest.raises(InputError) as e:
        call()
    message = str(e.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "hf, named",
    [
        ({"model_type": "bert"}, "model_type='bert'"),
        ({"model_type": "gpt2", "scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True"),
        ({"model_type": "gpt2", "activation_function": "quick_gelu"}, "activation_function='quick_gelu'"),
        ({"model_type": "opt", "layer_norm_elementwise_affine": False}, "layer_norm_elementwise_affine=False"),
        ({"model_type": "gpt_neox", "rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_type='linear'"),
        ({"model_type": "llama", "rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}}, "rope_type='llama3'"),
        ({"model_type": "llama", "attention_bias": True}, "attention_bias=True"),
        ({"model_type": "llama", "mlp_bias": True}, "mlp_bias=True"),
        ({"model_type": "llama", "head_dim": 16}, "head_dim=16"),
        (
            {"model_type": "roberta", "position_embedding_type": "relative_key"},
            "position_embedding_type='relative_key'",
        ),
    ],
)
def test_unsupported_options_are_refused_in_one_line(hf, named):
    sizes = {**SIZES, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 16, "ffn_dim": 48}
    message = _refusal(lambda: families.model_config({**sizes, "max_position_embeddings": 16, **hf}))
    assert named in message
    if hf["model_type"] == "bert":
        assert all(f in message for f in families.SUPPORTED)


def test_unread_missing_and_misshapen_tensors_are_refused_in_one_line(tmp_path):
    _, hf, tensors = _saved_hf_model("gpt2", tmp_path)
    cfg, _ = families.model_config(hf)
    abstract = nnx.state(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))), nnx.Param)
    missing = {k: v for k, v in tensors.items() if k != "transformer.h.1.mlp.c_fc.bias"}
    assert "'h.1.mlp.c_fc.bias'" in _refusal(lambda: families.params(missing, hf, cfg))
    extra = {**tensors, "transformer.h.0.attn.q_norm.weight": np.ones(8, np.float32)}
    assert "h.0.attn.q_norm.weight" in _refusal(lambda: families.params(extra, hf, cfg))
    # old Hub files: no prefix, and the causal-mask buffers; both read
    old = {k.removeprefix("transformer."): v for k, v in tensors.items()} | {"h.0.attn.bias": np.ones((1, 1, 16, 16))}
    arrays = families.params(old, hf, cfg)
    assert params_hash(families.fill(arrays, abstract)) == params_hash(
        families.fill(families.params(tensors, hf, cfg), abstract)
    )
    untied = {**tensors, "lm_head.weight": tensors["transformer.wte.weight"] + 1.0}
    assert "lm_head.weight" in _refusal(lambda: families.params(untied, hf, cfg))
    assert "pos_embed" in _refusal(lambda: families.fill({**arrays, "pos_embed": arrays["pos_embed"][:8]}, abstract))
    assert "norm_out/bias" in _refusal(
        lambda: families.fill({k: v for k, v in arrays.items() if k != "norm_out/bias"}, abstract)
    )
    assert "blocks/9/attn/wq" in _refusal(
        lambda: families.fill({**arrays, "blocks/9/attn/wq": arrays["embed"]}, abstract)
    )

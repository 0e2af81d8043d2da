"""Export series checkpoints to Hugging Face transformers (PyTorch) folders, with a tokenizer HF loads offline.

    python -m babyjax.export --workdir runs/tiny --step 600 --out hf/tiny-600
    python -m babyjax.export --workdir runs/ss --series --out hf/ss            # chck_1M/, chck_2M/, ... by words seen
    python -m babyjax.export --workdir runs/tiny --series --names steps --out hf/tiny   # step_0/, step_1/, ...
    python -m babyjax.export --workdir runs/ss --git --out hf/ss-repo     # one git repo: branches chck_1M, ..., main

The HF class follows the model's features (`hf_class_name`); the tokenizer gives the run's SentencePiece ids.
babyjax documents start after EOS (`</s>`, id 3), so `</s>` is both `bos_token` and `eos_token` (as GPT-2's
`<|endoftext|>`): minicons' `bos_token=True` and lm-evaluation-harness's empty-context prefix then score a sentence
after one EOS, babyjax.score's `eot_context` policy. torch and transformers (the `peers` extra) are imported lazily.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import subprocess
import tempfile
import types
from collections.abc import Sequence
from typing import Any

import numpy as np

from babyjax import paths
from babyjax.checkpoints import series as checkpoints
from babyjax.checkpoints.run import RunDir
from babyjax.checkpoints.schedules import words_checkpoint_names
from babyjax.data.tokenizer import EOS, EOS_ID, MASK, PAD, UNK
from babyjax.errors import ExistsError, InputError, PeersError
from babyjax.model.transformer import ModelConfig

log = logging.getLogger("babyjax")

EXPORT_INFO = "babyjax_export.json"


def _require_peers() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as e:
        raise PeersError(
            f"export to Hugging Face needs torch and transformers ({e.name} is missing): pip install 'babyjax[peers]'"
        ) from None
    return torch, transformers


def _plain(tree: Any) -> Any:
    """Orbax's raw restore ({'value': array} leaves, string keys) as nested dicts of float32 numpy arrays."""
    if isinstance(tree, dict) and set(tree) != {"value"}:
        return {str(k): _plain(v) for k, v in tree.items()}
    return np.asarray(tree["value"] if isinstance(tree, dict) else tree, np.float32)


GPT2 = "GPT2LMHeadModel"
LLAMA = "LlamaForCausalLM"
ROBERTA = "RobertaForMaskedLM"
LTG = "LtgBertForMaskedLM"  # babyjax's own modelling code (babyjax/interop/hf_ltg_bert.py), shipped in the folder
REMOTE_CODE = "modeling_ltg_bert.py"
AUTO_MAP = {
    "AutoConfig": "modeling_ltg_bert.LtgBertConfig",
    "AutoModelForMaskedLM": "modeling_ltg_bert.LtgBertForMaskedLM",
    "AutoModelForCausalLM": "modeling_ltg_bert.LtgBertForCausalLM",
}
# (position, norm, mlp, biases) of the models each Hugging Face class represents
HF_CLASSES = {
    ("learned", "layernorm", "gelu", True): GPT2,
    ("rope", "rmsnorm", "swiglu", False): LLAMA,
    ("learned", "layernorm", "gelu_exact", True): ROBERTA,
    ("relative", "layernorm", "geglu", True): LTG,
}


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
    if name == GPT2 and cfg.attention == "gqa":
        raise InputError(
            f"GPT-2 has no grouped-query attention (num_kv_heads={cfg.num_kv_heads}, "
            f"num_heads={cfg.num_heads}): {GPT2} needs num_kv_heads == num_heads ({LLAMA} keeps "
            "grouped-query attention)"
        )
    return name


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


def hf_config(cfg: ModelConfig) -> Any:
    """The transformers config of a babyjax model (GPT2Config or LlamaConfig)."""
    _, transformers = _require_peers()
    special = {"bos_token_id": 3, "eos_token_id": 3, "pad_token_id": 0, "tie_word_embeddings": cfg.tie_embeddings}
    if hf_class_name(cfg) == LTG:
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
    if hf_class_name(cfg) == ROBERTA:
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
    if hf_class_name(cfg) == GPT2:
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


def hf_model(params: dict, cfg: ModelConfig) -> Any:
    """A transformers PyTorch model (eval mode, float32) holding babyjax parameters."""
    torch, transformers = _require_peers()
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


MODEL_INPUTS = ("input_ids", "attention_mask")  # what a causal LM takes (GPT-2's own tokenizer says the same)


def hf_tokenizer(tokenizer_path: str | os.PathLike, max_len: int, masked: bool = False) -> Any:
    """The run's SentencePiece model as a `PreTrainedTokenizerFast` with the same ids. Causal LMs: no special tokens
    added. Masked LMs (`masked`): `</s>` prepended as the CLS token, as babyjax trains and scores them (a document
    starts after EOS): minicons and the BabyLM 2025 pipeline's mlm/mntp backends skip it and read the first word's
    prediction from it under mntp."""
    _, transformers = _require_peers()
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


def _portable_tokenizer_class(path: pathlib.Path) -> None:
    """Name the tokenizer class that transformers 4.x (the BabyLM 2025 pipeline pins 4.51.3) and 5.x both load:
    transformers 5 writes "TokenizersBackend", which 4.x does not know ("Unrecognized processing class"); and the
    inputs it returns: without `model_input_names`, 4.x's PreTrainedTokenizerFast also returns token_type_ids,
    which GPT-2 adds as embeddings of token 0 when a caller passes `model(**inputs)` (the pipeline's reading task)."""
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["model_input_names"] = list(MODEL_INPUTS)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False))


def export_checkpoint(
    workdir: str | os.PathLike, step: int, out: str | os.PathLike, *, overwrite: bool = False
) -> pathlib.Path:
    """Write series step `step` of the run in `workdir` as a HF folder `out` (model, config, tokenizer, provenance),
    written beside `out` and renamed into place when complete."""
    torch, _ = _require_peers()
    run, out = RunDir.open(workdir), pathlib.Path(out)
    _refuse_inside_run(out, run.path)
    tok, index = run.tokenizer(), run.series_index()
    cfg = run.model_config(tok.vocab_size)
    entry = next((e for e in index if int(e["step"]) == int(step)), None)
    if entry is None:
        raise InputError(
            f"no checkpoint at step {step} in {run.path} (the series has steps {index[0]['step']}..{index[-1]['step']})"
        )
    if out.exists() and not overwrite:
        raise ExistsError(f"{out} exists: choose another --out or pass --overwrite")
    model = hf_model(_plain(checkpoints.restore_params(run.path, int(step))), cfg)  # hash-verified parameters
    info = {
        "source": str(paths.absolute(run.path, resolve=True)),
        "step": int(step),
        "style": cfg.style,
        "tokens_seen": entry.get("tokens_seen"),
        "words_seen": entry.get("words_seen"),
        "params_hash": entry.get("params_hash"),
        "tokenizer_hash": tok.sha256,
        "first_token": "the tokenizer prepends '</s>' (id 3), as babyjax scores masked LMs"
        if cfg.encoder
        else "score after one EOS token '</s>' (id 3): babyjax.score's eot_context",
    }

    def fill(tmp: pathlib.Path) -> None:
        with torch.no_grad():
            model.save_pretrained(tmp)
        (tmp / "tokenizer.model").write_bytes(tok.path.read_bytes())  # the run may live on cloud storage
        hf_tokenizer(tmp / "tokenizer.model", cfg.max_len, masked=cfg.encoder).save_pretrained(tmp)
        _portable_tokenizer_class(tmp / "tokenizer_config.json")
        (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=1))
        if hf_class_name(cfg) == LTG:  # the modelling code travels with the weights (trust_remote_code=True)
            (tmp / REMOTE_CODE).write_text(pathlib.Path(__file__).with_name("hf_ltg_bert.py").read_text())

    return paths.write_folder(out, fill, overwrite=True)


def _refuse_inside_run(out: pathlib.Path, run_path: Any) -> None:
    """An export folder is replaced whole: never the run's own folder or one that holds it."""
    if paths.is_cloud(run_path):
        return
    src, dst = pathlib.Path(os.fspath(run_path)).resolve(), out.resolve()
    if dst == src or dst in src.parents:
        raise InputError(f"--out {out} is the run's folder or holds it: export to a folder outside {src}")


def _exported_here(target: pathlib.Path, source: str, step: int, overwrite: bool) -> bool:
    """Whether `target` already holds this run's export of `step` (kept); a folder holding anything else is refused
    unless `overwrite`."""
    if not target.exists() or overwrite:
        return False
    try:
        info = json.loads((target / EXPORT_INFO).read_text())
    except (OSError, ValueError):
        info = {}
    if info.get("step") == step and info.get("source") == source:
        return True
    raise ExistsError(
        f"{target} exists and is not this run's export of step {step}: choose another --out or pass "
        "--overwrite to replace it"
    )


def series_names(index: Sequence[dict], names: str = "words") -> dict[str, int]:
    """Folder name -> step: 'words' = BabyLM 2025 chck_<N>M (first step reaching each mark), 'steps' = step_<n>."""
    if names == "steps":
        return {f"step_{int(e['step'])}": int(e["step"]) for e in index}
    if names != "words":
        raise InputError(f"unknown naming {names!r}: use 'words' or 'steps'")
    most = max(float(e.get("words_seen", 0)) for e in index)
    found = words_checkpoint_names(index, most)
    if not found:
        raise InputError(f"no checkpoint has seen 1M words (the last saw {most:,.0f}): use --names steps")
    return found


def export_series(
    workdir: str | os.PathLike, out: str | os.PathLike, *, names: str = "words", overwrite: bool = False
) -> dict[str, pathlib.Path]:
    """Export every checkpoint of the series (or one per words-seen mark) into `out/<name>/`; resumable: folders
    already exported are kept."""
    _require_peers()
    run = RunDir.open(workdir)
    index, done, source = run.series_index(), {}, str(paths.absolute(run.path, resolve=True))
    for name, step in series_names(index, names).items():
        target = pathlib.Path(out) / name
        _refuse_inside_run(target, run.path)
        if _exported_here(target, source, step, overwrite):
            done[name] = target
            continue
        done[name] = export_checkpoint(workdir, step, target, overwrite=True)
        log.info("exported step %d -> %s", step, target)
    return done


GITATTRIBUTES = "".join(f"*.{ext} filter=lfs diff=lfs merge=lfs -text\n" for ext in ("safetensors", "bin", "model"))
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "babyjax",
    "GIT_AUTHOR_EMAIL": "babyjax@localhost",
    "GIT_COMMITTER_NAME": "babyjax",
    "GIT_COMMITTER_EMAIL": "babyjax@localhost",
}


def _clean_env() -> dict[str, str]:
    """The environment without the user's GIT_* variables (a GIT_DIR set in a shell must not redirect the export)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}


def _git(repo: pathlib.Path, *args: str, env: dict | None = None) -> str:
    env = {**_clean_env(), **_GIT_ENV, **(env or {})}
    done = subprocess.run(
        ["git", "--git-dir", str(repo.resolve() / ".git"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=env.get("GIT_WORK_TREE"),
    )
    if done.returncode:
        why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise InputError(f"git {args[0]} in {repo} failed: {why}")
    return done.stdout.strip()


def _branch_step(repo: pathlib.Path, branch: str) -> int | None:
    """The series step a branch of an exported repository holds (its babyjax_export.json), None if it has none."""
    try:
        return int(json.loads(_git(repo, "show", f"{branch}:{EXPORT_INFO}"))["step"])
    except (InputError, ValueError, KeyError):
        return None


def _commit_folder(repo: pathlib.Path, folder: pathlib.Path, message: str) -> str:
    """A new root commit holding exactly the files of `folder` (plumbing: no checkout); returns its id."""
    (folder / ".gitattributes").write_text(GITATTRIBUTES)  # the Hub keeps weights in LFS (when git-lfs is set up)
    env = {"GIT_INDEX_FILE": str(folder.parent.resolve() / "index"), "GIT_WORK_TREE": str(folder.resolve())}
    _git(repo, "add", "-A", ".", env=env)
    return _git(repo, "commit-tree", _git(repo, "write-tree", env=env), "-m", message)


def export_git(workdir: str | os.PathLike, out: str | os.PathLike, *, names: str = "words") -> dict[str, int]:
    """The series as one git repository `out`: a branch per checkpoint (chck_<N>M or step_<n>) and `main` at the
    series' last checkpoint, checked out; what the BabyLM 2025 pipeline's --revision_name reads once the repository
    is pushed to the Hugging Face Hub (git push --all). Resumable: branches already holding their step are kept.
    Returns branch -> step."""
    _require_peers()
    if shutil.which("git") is None:
        raise InputError("git not found: install git to export a series as a repository")
    out, index = pathlib.Path(out).resolve(), RunDir.open(workdir).series_index()
    chosen = {**series_names(index, names), "main": int(index[-1]["step"])}
    if not (out / ".git").is_dir():
        if out.exists() and any(out.iterdir()):
            raise ExistsError(f"{out} exists and is not a git repository: choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", str(out)], check=True, capture_output=True, env=_clean_env())
        _git(out, "symbolic-ref", "HEAD", "refs/heads/main")
    commits = {
        step: _git(out, "rev-parse", branch) for branch, step in chosen.items() if _branch_step(out, branch) == step
    }  # kept from an earlier export
    for branch, step in chosen.items():
        if step not in commits:  # each step exported once, main shares its last checkpoint's commit
            with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
                folder = export_checkpoint(workdir, step, pathlib.Path(tmp) / "hf")
                commits[step] = _commit_folder(out, folder, f"series step {step}")
            log.info("exported step %d -> branch %s of %s", step, branch, out)
        _git(out, "update-ref", f"refs/heads/{branch}", commits[step])
    subprocess.run(
        ["git", "-C", str(out), "checkout", "-q", "-f", "main"], check=True, capture_output=True, env=_clean_env()
    )
    return chosen


def main(argv: Sequence[str]) -> None:
    from absl import flags

    del argv
    f = flags.FLAGS
    if not f.workdir or not f.out:
        raise InputError("--workdir and --out are required")
    _require_peers()
    if f.git:
        done = export_git(f.workdir, f.out, names=f.names)
        print(f"exported {len(done)} branches to the git repository {f.out}: {', '.join(done)}")
    elif f.series:
        done = export_series(f.workdir, f.out, names=f.names, overwrite=f.overwrite)
        print(f"exported {len(done)} checkpoints to {f.out}: {', '.join(done)}")
    else:
        step = f.step if f.step >= 0 else int(RunDir.open(f.workdir).series_index()[-1]["step"])
        print(f"exported step {step} to {export_checkpoint(f.workdir, step, f.out, overwrite=f.overwrite)}")


if __name__ == "__main__":
    from absl import flags as _flags

    from babyjax.commands import cli

    _flags.DEFINE_string("workdir", None, "run directory (config.json, tokenizer.model, checkpoints/)")
    _flags.DEFINE_string("out", None, "output folder (one checkpoint) or parent folder (--series)")
    _flags.DEFINE_integer("step", -1, "series step to export (-1: the last)")
    _flags.DEFINE_bool("series", False, "export the whole series into <out>/<name>/")
    _flags.DEFINE_enum("names", "words", ["words", "steps"], "--series folder names: chck_<N>M or step_<n>")
    _flags.DEFINE_bool("overwrite", False, "replace existing folders")
    _flags.DEFINE_bool(
        "git",
        False,
        "export the series as one git repository, a branch per checkpoint and main at "
        "the last (push it to the Hugging Face Hub for the BabyLM 2025 pipeline's --revision_name)",
    )
    cli.run_absl(main)

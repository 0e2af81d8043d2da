"""Masked and hybrid LMs: bidirectional attention within packed segments, the masking rules' rates, masked
training equal on every mesh, PLL and MNTP scores equal to a float64 numpy reference and invariant to batching and
devices, the RoBERTa export read by transformers and minicons like babyjax, and the errors a user can cause."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from babyjax import score
from babyjax.checkpoints import series as checkpoints
from babyjax.data.tokenizer import EOS_ID, MASK_ID
from babyjax.errors import InputError
from babyjax.model import objectives
from babyjax.model.objectives import Objective
from babyjax.model.transformer import ModelConfig
from babyjax.score import packing
from tests.test_score import make_run, mesh_of, params_at, random_model, tiny_model_cfg, train_tiny_tokenizer
from tests.test_step import assert_params_match, make_batch, optim_cfg
from tests.test_step import mesh_of as step_mesh
from tests.test_step import tiny_cfg as step_cfg

METHODS = ("pll_original", "pll_within_word_l2r", "mntp")


@pytest.fixture(scope="module")
def tok(tmp_path_factory, babylm_sample):
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok"), babylm_sample)


def _rows(tok, babylm_sample, n_rows: int, length: int = 128) -> dict[str, jnp.ndarray]:
    """Packed rows of real child-directed text: documents (lines) after EOS, one segment id per document."""
    lines = (babylm_sample / "babylm_10M" / "aochildes.train").read_text().splitlines()
    stream, seg = [], []
    for d, ids in enumerate(tok.encode_batch(lines[:60_000])):
        stream += [EOS_ID] + ids
        seg += [d + 1] * (len(ids) + 1)
    n = n_rows * length
    assert len(stream) > n + 1
    inputs = np.asarray(stream[:n], np.int32).reshape(n_rows, length)
    return {
        "inputs": jnp.asarray(inputs),
        "targets": jnp.asarray(np.asarray(stream[1 : n + 1], np.int32).reshape(n_rows, length)),
        "segment_ids": jnp.asarray(np.asarray(seg[:n], np.int32).reshape(n_rows, length)),
        "positions": jnp.zeros((n_rows, length), jnp.int32),
        "weights": jnp.ones((n_rows, length), jnp.float32),
    }


# ---------------------------------------------------------------------------------------------------------------------
# The encoder


@pytest.mark.parametrize("style", ["roberta", "ltg_bert"])
def test_encoder_attention_looks_both_ways_within_segments_only(style):
    cfg = tiny_model_cfg(style, num_kv_heads=4)
    model = random_model(cfg)
    x = jnp.asarray(np.random.default_rng(0).integers(5, 97, (2, 16)), jnp.int32)
    seg = jnp.asarray([[1] * 6 + [2] * 10] * 2, jnp.int32)
    pos = jnp.asarray([list(range(6)) + list(range(10))] * 2, jnp.int32)
    logits = model(x, seg, pos)
    changed = model(x.at[:, 4].set((x[:, 4] + 1) % 97), seg, pos)
    assert not np.allclose(changed[:, :4], logits[:, :4])  # earlier tokens of the segment see a later one
    np.testing.assert_allclose(changed[:, 6:], logits[:, 6:], atol=1e-6)  # the next segment does not
    alone = model(x[:, 6:], None, None)  # segment 2 scored alone equals segment 2 packed
    np.testing.assert_allclose(logits[:, 6:], alone, atol=1e-5)
    # per-row attention: row 0 causal (GPT-BERT's causal rows), row 1 both ways
    mixed = model(x, seg, pos, causal=jnp.asarray([True, False]))
    np.testing.assert_allclose(mixed[1], logits[1], atol=1e-6)
    causal_changed = model(x.at[:, 4].set((x[:, 4] + 1) % 97), seg, pos, causal=jnp.asarray([True, False]))
    np.testing.assert_allclose(causal_changed[0, :4], mixed[0, :4], atol=1e-6)
    with pytest.raises(InputError, match="decoder"):
        random_model(tiny_model_cfg("gpt2"))(x, seg, pos, causal=False)


# ---------------------------------------------------------------------------------------------------------------------
# Masking


@pytest.mark.parametrize("masking", ["token", "whole_word", "span"])
def test_masking_rates_within_sampling_error(tok, babylm_sample, masking):
    rows = _rows(tok, babylm_sample, 800)  # 102,400 tokens
    obj = Objective(
        "mlm", tok.vocab_size, mask_rate=0.2, masking=masking, word_starts=tok.word_starts(), compact=False
    )  # the rule itself, without the per-row cap
    out = jax.jit(obj)(rows, jax.random.PRNGKey(0))
    capped = jax.jit(dataclasses.replace(obj, compact=True))(rows, jax.random.PRNGKey(0))
    per_row = np.asarray(capped["weights"] > 0).sum(1)
    assert per_row.max() <= obj.capacity(128) and capped["cols"].shape == (800, obj.capacity(128))
    np.testing.assert_array_equal(
        np.take_along_axis(np.asarray(capped["weights"]), np.asarray(capped["cols"]), 1).sum(1), per_row
    )  # cols hold every chosen column
    inputs = np.asarray(rows["inputs"])
    chosen = np.asarray(out["weights"]) > 0
    ordinary = inputs >= objectives.FIRST_ORDINARY
    assert not chosen[~ordinary].any()  # specials are never chosen
    assert (np.asarray(out["targets"]) == inputs).all()
    rate = chosen[ordinary].mean()
    n_units = ordinary.sum() if masking == "token" else (ordinary & tok.word_starts()[inputs]).sum()
    sigma = math.sqrt(0.2 * 0.8 / n_units) * (1 if masking == "token" else 3)  # words (and spans) share one draw
    assert abs(rate - 0.2) < 4 * sigma + (0.005 if masking == "span" else 0), rate
    if masking != "token":  # every piece of a word shares its word's fate
        starts = tok.word_starts()[inputs] | ~ordinary  # a word also starts a row and after a special token
        starts[:, 0] = True
        starts[:, 1:] |= ~ordinary[:, :-1]
        word = np.cumsum(starts.reshape(-1))
        frac = np.bincount(word[ordinary.reshape(-1)], chosen[ordinary].astype(float))
        size = np.bincount(word[ordinary.reshape(-1)])
        assert set(np.round(frac[size > 0] / size[size > 0], 6)) <= {0.0, 1.0}
    masked_in = np.asarray(out["inputs"])[chosen]
    n = chosen.sum()
    share_mask = (masked_in == MASK_ID).mean()
    share_kept = (masked_in == inputs[chosen]).mean()
    assert abs(share_mask - 0.8) < 4 * math.sqrt(0.16 / n) and abs(share_kept - 0.1) < 4 * math.sqrt(0.09 / n) + 1e-3
    assert (masked_in >= objectives.FIRST_ORDINARY).sum() + (masked_in == MASK_ID).sum() == n
    np.testing.assert_array_equal(np.asarray(out["inputs"])[~chosen], inputs[~chosen])


def test_mntp_reads_the_column_before_and_hybrid_keeps_causal_rows(tok, babylm_sample):
    rows = _rows(tok, babylm_sample, 16)
    key = jax.random.PRNGKey(3)
    mlm = Objective("mlm", tok.vocab_size, mask_rate=0.3)(rows, key)
    mntp = Objective("mntp", tok.vocab_size, mask_rate=0.3)(rows, key)
    chosen = np.asarray(mlm["weights"]) > 0
    np.testing.assert_array_equal(np.asarray(mntp["inputs"]), np.asarray(mlm["inputs"]))  # same draws
    np.testing.assert_array_equal(np.asarray(mntp["weights"])[:, :-1] > 0, chosen[:, 1:])
    assert not (np.asarray(mntp["weights"])[:, -1] > 0).any()
    np.testing.assert_array_equal(np.asarray(mntp["targets"]), np.asarray(rows["targets"]))
    hybrid = Objective("hybrid", tok.vocab_size, mask_rate=0.3, causal_share=0.25)(rows, key)
    causal = np.asarray(hybrid["causal"])
    assert causal.sum() == 4 and causal[:4].all()
    for k in ("inputs", "targets", "weights"):
        np.testing.assert_array_equal(np.asarray(hybrid[k])[:4], np.asarray(rows[k])[:4])
        np.testing.assert_array_equal(np.asarray(hybrid[k])[4:], np.asarray(mntp[k])[4:])
    assert objectives.span_start_rate(0.15, 3.0, 10) < 0.15


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"mask_rate": 0.0}, r"mask_rate=0.0 must be in \(0, 1\)"),
        ({"mask_rate": 1.5}, r"mask_rate=1.5 must be in \(0, 1\)"),
        ({"replace": (0.8, 0.1, 0.2)}, "sum to 1"),
        ({"kind": "bert"}, "objective.kind='bert'"),
        ({"masking": "words"}, "objective.masking='words'"),
    ],
)
def test_bad_objectives_are_one_line_errors(kw, match):
    with pytest.raises(InputError, match=match):
        Objective(**{"kind": "mlm", "vocab_size": 97, **kw})


@pytest.mark.parametrize(
    "kind,scorings,causal_capable,needs_encoder",
    [
        ("causal", ("causal",), True, False),
        ("mlm", ("pll_original", "pll_within_word_l2r"), False, True),
        ("mntp", ("mntp",), False, True),
        ("hybrid", ("mntp", "causal"), True, True),
    ],
)
def test_objective_features_of_every_kind(kind, scorings, causal_capable, needs_encoder):
    """What each objective allows downstream: its scoring methods (the first is 'auto'), whether it scores causally
    and generates text, whether it needs an encoder."""
    f = objectives.features({"objective": {"kind": kind}})
    assert (f.kind, f.scorings, f.default_scoring) == (kind, scorings, scorings[0])
    assert (f.causal_capable, f.needs_encoder) == (causal_capable, needs_encoder)
    assert set(f.scorings) <= {"causal", *packing.MASKED_METHODS} and set(objectives.FEATURES) == set(objectives.KINDS)


def test_objective_of_a_config_in_words_and_its_defaults():
    assert objectives.features({}).kind == "causal" and objectives.describe({}) == "causal LM"  # made before objectives
    described = {
        "masked LM (30% whole_word)": {"kind": "mlm", "mask_rate": 0.3, "masking": "whole_word"},
        "masked next token (15% token)": {"kind": "mntp"},
        "hybrid (25% causal rows, mntp 30% span)": {
            "kind": "hybrid",
            "mask_rate": 0.3,
            "masking": "span",
            "causal_share": 0.25,
        },
    }
    for text, section in described.items():
        assert objectives.describe({"objective": section}) == text
    with pytest.raises(InputError, match="objective.kind='bert': use one of causal, mlm, mntp, hybrid"):
        objectives.features({"objective": {"kind": "bert"}})
    fields = {f.name: f.default for f in dataclasses.fields(Objective)}
    assert {k: fields[k] for k in objectives.SECTION[1:]} == {k: objectives.DEFAULT[k] for k in objectives.SECTION[1:]}
    assert list(objectives.DEFAULT) == list(objectives.SECTION) and objectives.DEFAULT["kind"] == "causal"


def test_decoder_with_a_masked_objective_is_refused(tok):
    cfg = {"objective": {"kind": "mlm"}}
    with pytest.raises(InputError, match="needs an encoder: set model.style to roberta"):
        Objective.from_config(cfg, tok, encoder=False)


# ---------------------------------------------------------------------------------------------------------------------
# Training


def _masked_steps(mesh, objective: Objective, style: str, n: int = 2):
    from babyjax.train.step import init_train_state, make_train_step

    cfg = step_cfg(style=style)
    graphdef, state, shardings, tx, sched = init_train_state(cfg, optim_cfg(), 10, mesh, seed=0)
    step = make_train_step(graphdef, tx, sched, mesh, shardings, objective=objective)
    metrics = []
    for i in range(n):
        state, m = step(state, make_batch(i))
        metrics.append({k: float(v) for k, v in m.items()})
    return metrics, state


@pytest.mark.parametrize(
    "style,objective",
    [
        ("roberta", Objective("mlm", 97, mask_rate=0.3)),
        (
            "ltg_bert",
            Objective(
                "hybrid", 97, mask_rate=0.3, masking="span", word_starts=np.arange(97) % 3 == 0, causal_share=0.25
            ),
        ),
    ],
    ids=["roberta-mlm", "ltg-hybrid-span"],
)
def test_masked_training_on_any_mesh_equals_one_device(style, objective):
    ref_metrics, ref_state = _masked_steps(step_mesh(1, 1, 1), objective, style)
    metrics, state = _masked_steps(step_mesh(2, 2, 2), objective, style)
    assert 0 < ref_metrics[0]["num_tokens"] < 0.5 * 8 * 16 and "accuracy" in ref_metrics[0]
    for got, want in zip(metrics, ref_metrics):
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=2e-5, err_msg=key)
    assert_params_match(state, ref_state)


# ---------------------------------------------------------------------------------------------------------------------
# Scoring: PLL and MNTP


def _np_norm(x, q=None, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    y = (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    return y if q is None else y * q["scale"] + q["bias"]


def _gelu(u, tanh: bool = False):
    if tanh:
        return 0.5 * u * (1 + np.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3)))
    return 0.5 * u * (1 + erf(u / math.sqrt(2)))


def _np_ltg_layers(p: dict, cfg: ModelConfig, x: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """LTG-BERT's blocks as ltgoslo/ltg-bert writes them (relative buckets recomputed here from the formula)."""
    mid = cfg.position_buckets // 2
    rel = pos[:, None] - pos[None, :]
    dist = np.where(np.abs(rel) < mid, mid - 1, np.minimum(np.abs(rel), 511))
    log_pos = np.ceil(np.log(dist / mid) / np.log(511 / mid) * (mid - 1)) + mid
    idx = np.where(dist <= mid, rel, np.sign(rel) * log_pos).astype(int) + cfg.position_buckets - 1
    rel_emb = _np_norm(p["relative"]["table"], p["relative"]["norm"], cfg.norm_eps)
    for i in range(cfg.num_layers):
        a, m = p["blocks"][i]["attn"], p["blocks"][i]["mlp"]
        h = _np_norm(x, eps=cfg.norm_eps)
        q, k = (np.einsum("ld,dhk->lhk", h, a["w_qk"][:, j]) + a["b_qk"][j] for j in (0, 1))
        qp, kp = (np.einsum("rd,dhk->rhk", rel_emb, a["w_qk"][:, j]) + a["b_qk"][j] for j in (0, 1))
        v = np.einsum("ld,dhk->lhk", h, a["w_v"]) + a["b_v"]
        s = np.einsum("lhk,mhk->hlm", q, k)
        s += np.einsum("lhk,lmhk->hlm", q, kp[idx]) + np.einsum("mhk,lmhk->hlm", k, qp[idx])
        s = np.exp(s / math.sqrt(3 * cfg.head_dim) - (s / math.sqrt(3 * cfg.head_dim)).max(-1, keepdims=True))
        o = np.einsum("hlm,mhk->lhk", s / s.sum(-1, keepdims=True), v)
        x = x + _np_norm(np.einsum("lhk,hkd->ld", o, a["w_o"]) + a["b_o"], a["norm_out"], cfg.norm_eps)
        vg = np.einsum("ld,dsf->lsf", _np_norm(x, eps=cfg.norm_eps), m["w_in"])
        x = x + _np_norm(vg[:, 0] * _gelu(vg[:, 1], tanh=True), eps=cfg.norm_eps) @ m["w_out"]
    return x


def np_masked_logprob(params: dict, cfg: ModelConfig, tokens: tuple[int, ...], col: int, target: int) -> float:
    """float64 numpy forward of an encoder on one copy (attention both ways): log p(target) at `col`."""
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    ids, n, k, eps = np.asarray(tokens), len(tokens), cfg.head_dim, cfg.norm_eps
    if cfg.style == "ltg_bert":
        x = _np_ltg_layers(p, cfg, _np_norm(p["embed"][ids], eps=eps), np.arange(n))
        h = _np_norm(_gelu(_np_norm(x[col], eps=eps) @ p["mlm"]["kernel"] + p["mlm"]["bias"]), eps=eps)
    else:
        x = _np_norm(p["embed"][ids] + p["pos_embed"][np.arange(n)], p["norm_out"], eps)
        for i in range(cfg.num_layers):
            blk, a = p["blocks"][i], p["blocks"][i]["attn"]
            q, kk, v = (np.einsum("ld,dhk->lhk", x, a["w" + w]) + a["b" + w] for w in "qkv")
            s = np.einsum("lhk,mhk->hlm", q, kk) / math.sqrt(k)
            s = np.exp(s - s.max(-1, keepdims=True))
            o = np.einsum("hlm,mhk->lhk", s / s.sum(-1, keepdims=True), v)
            x = _np_norm(x + np.einsum("lhk,hkd->ld", o, a["wo"]) + a["bo"], blk["norm_attn"], eps)
            m = blk["mlp"]
            x = _np_norm(x + _gelu(x @ m["w_in"] + m["b_in"]) @ m["w_out"] + m["b_out"], blk["norm_mlp"], eps)
        h = _np_norm(_gelu(x[col] @ p["mlm"]["kernel"] + p["mlm"]["bias"]), p["mlm"]["norm"], eps)
    logits = h @ p["embed"].T + p["mlm"]["out_bias"]
    return float(logits[target] - (logits.max() + np.log(np.exp(logits - logits.max()).sum())))


def _score_copies(workdir, cfg, step: int, copies, seq_len: int, mesh, batch_rows: int) -> np.ndarray:
    scorer = score.Scorer(cfg, mesh, batch_rows=batch_rows, causal=False)
    params = checkpoints.restore_params(workdir, step, scorer.abstract_params)
    packed, batches = scorer.place(score.pack(copies, seq_len))
    return scorer.logprobs(params, packed, batches)


@pytest.mark.parametrize(
    "style,method", [("roberta", m) for m in METHODS] + [("ltg_bert", "pll_original"), ("ltg_bert", "mntp")]
)
def test_masked_scores_equal_float64_reference_on_any_batching(tmp_path, tok, babylm_sample, style, method):
    cfg = make_run(tmp_path / "run", tok, style=style, steps=(0, 10), objective="mlm")
    lines = (babylm_sample / "babylm_dev" / "aochildes.dev").read_text().splitlines()
    ids = [tok.encode(t) for t in lines[:40] if t.strip()][:24] + [tok.encode(" ".join(["the dog"] * 40))]
    assert len(ids[-1]) > 64  # read in windows of 64 tokens around each scored one
    copies = [c for i, s in enumerate(ids) for c in packing.masked_copies(i, s, method, 64, tok.word_starts())]
    assert len(copies) == sum(map(len, ids))  # every token, the first read from </s> under mntp
    got = _score_copies(tmp_path / "run", cfg, 10, copies, 64, mesh_of(1), batch_rows=4)
    again = _score_copies(tmp_path / "run", cfg, 10, copies, 64, mesh_of(8), batch_rows=24)
    np.testing.assert_allclose(again, got, atol=2e-6, rtol=0)
    params = params_at(tmp_path / "run", 10)
    want = [np_masked_logprob(params, cfg, c.tokens, c.col, c.target) for c in copies]
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=0)
    if method == "pll_within_word_l2r":  # the first piece of a word is read with the word's later pieces masked
        words = [c for c in copies if c.tokens.count(MASK_ID) > 1]
        assert words and all(c.tokens[c.col] == MASK_ID for c in words)


# ---------------------------------------------------------------------------------------------------------------------
# Export: transformers and minicons read the masked model as babyjax scores it


def _hf_masked_logprobs(model, copies) -> np.ndarray:
    """log p(target) at each copy's column, the copies right-padded into one batch with an attention mask."""
    import torch

    n = max(c.length for c in copies)
    inputs = torch.zeros((len(copies), n), dtype=torch.long)
    mask = torch.zeros((len(copies), n), dtype=torch.long)
    for i, c in enumerate(copies):
        inputs[i, : c.length], mask[i, : c.length] = torch.tensor(c.tokens), 1
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=inputs, attention_mask=mask).logits.double(), -1).numpy()
    return np.array([logp[i, c.col, c.target] for i, c in enumerate(copies)])


def test_roberta_export_reads_like_babyjax_in_transformers_and_minicons(tmp_path, tok, babylm_sample):
    import transformers
    from minicons import scorer as minicons_scorer

    from babyjax.interop import export

    cfg = make_run(tmp_path / "run", tok, style="roberta", steps=(0, 10), objective="mlm")
    out = export.export_checkpoint(tmp_path / "run", 10, tmp_path / "hf")
    model = transformers.AutoModelForMaskedLM.from_pretrained(out).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == "RobertaForMaskedLM" and hf_tok.mask_token_id == MASK_ID
    lines = (babylm_sample / "babylm_dev" / "aochildes.dev").read_text().splitlines()
    texts = [t for t in lines if 20 < len(t) < 60][:10] + ["The cats weren't sleeping."]
    ids = [tok.encode(t) for t in texts]
    assert [hf_tok(t)["input_ids"] for t in texts] == [[EOS_ID] + s for s in ids]  # </s> first, as babyjax reads
    sums = {}
    for method in ("pll_original", "pll_within_word_l2r"):
        copies = [c for i, s in enumerate(ids) for c in packing.masked_copies(i, s, method, 64, tok.word_starts())]
        got = _score_copies(tmp_path / "run", cfg, 10, copies, 64, mesh_of(1), batch_rows=4)
        np.testing.assert_allclose(_hf_masked_logprobs(model, copies), got, atol=1e-4, rtol=0)
        sums[method] = np.bincount([c.seq for c in copies], got.astype(np.float64))
    scorer = minicons_scorer.MaskedLMScorer(model, "cpu", tokenizer=hf_tok)
    enc = hf_tok(texts, padding="longest", return_attention_mask=True)  # minicons 0.3.39 calls a method 5.x removed
    for method, want in sums.items():
        got = scorer.sequence_score(enc, reduction=lambda x: x.sum(0).item(), PLL_metric=method.removeprefix("pll_"))
        np.testing.assert_allclose(got, want, atol=1e-3, rtol=0)
    assert not np.allclose(sums["pll_original"], sums["pll_within_word_l2r"])


# ---------------------------------------------------------------------------------------------------------------------
# The scoring job follows the run's objective


def test_score_job_follows_the_objective_and_refuses_the_wrong_kind(tmp_path, tok, shared_data):
    import subprocess
    import sys

    import pandas as pd

    from babyjax.score import generate
    from tests.test_score import ROOT

    blimp = [str(shared_data / "blimp" / "anaphor_gender_agreement.jsonl")]
    make_run(tmp_path / "mlm", tok, style="roberta", steps=(0, 10), objective="mlm")
    make_run(tmp_path / "hybrid", tok, style="roberta", steps=(0, 10), objective="hybrid")
    make_run(tmp_path / "causal", tok, style="gpt2", steps=(0, 10))
    mlm = [score.RunSpec("mlm", tmp_path / "mlm")]
    summary = score.score_job(score.ScoreConfig(run=mlm, out=tmp_path / "pll", kind="pairs", eval=blimp, limit=5))
    out = score.load_score_output(tmp_path / "pll")
    assert out.meta["scoring"] == "pll_original" and len(summary.scored) == 2
    tokens = pd.read_csv(tmp_path / "pll" / "tokens.csv")
    assert (tokens.groupby("seq")["position"].min() == 0).all()  # a masked LM scores every token, the first too
    pairs = pd.read_csv(tmp_path / "pll" / "pairs.csv")
    assert set(pairs["step"]) == {0, 10} and (pairs["n"] == 5).all()
    score.score_job(
        score.ScoreConfig(
            run=mlm, out=tmp_path / "l2r", kind="pairs", eval=blimp, limit=5, scoring="pll_within_word_l2r"
        )
    )
    hybrid = [score.RunSpec("hybrid", tmp_path / "hybrid")]
    score.score_job(score.ScoreConfig(run=hybrid, out=tmp_path / "mntp", kind="pairs", eval=blimp, limit=5))
    assert score.load_score_output(tmp_path / "mntp").meta["scoring"] == "mntp"
    score.score_job(
        score.ScoreConfig(
            run=hybrid, out=tmp_path / "causal-of-hybrid", kind="pairs", eval=blimp, limit=5, scoring="causal"
        )
    )
    with pytest.raises(InputError, match="trained with objective 'mlm': --scoring=causal does not apply"):
        score.score_job(score.ScoreConfig(run=mlm, out=tmp_path / "x", kind="pairs", eval=blimp, scoring="causal"))
    with pytest.raises(InputError, match="trained with objective 'causal': --scoring=pll_original does not apply"):
        score.score_job(
            score.ScoreConfig(
                run=[score.RunSpec("causal", tmp_path / "causal")],
                out=tmp_path / "x",
                kind="pairs",
                eval=blimp,
                scoring="pll_original",
            )
        )
    with pytest.raises(InputError, match="holds scores of another evaluation \\(scoring"):
        score.score_job(
            score.ScoreConfig(
                run=mlm, out=tmp_path / "pll", kind="pairs", eval=blimp, limit=5, scoring="pll_within_word_l2r"
            )
        )
    with pytest.raises(InputError, match="different objectives"):
        score.score_job(score.ScoreConfig(run=mlm + hybrid, out=tmp_path / "x", kind="pairs", eval=blimp))
    with pytest.raises(InputError, match="masked LM .* does not generate text"):
        generate.Generator(tmp_path / "mlm")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "babyjax.score",
            f"--run=mlm={tmp_path / 'mlm'}",
            "--kind=pairs",
            f"--eval={blimp[0]}",
            f"--out={tmp_path / 'y'}",
            "--scoring=mntp",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: run mlm was trained")
    assert len([ln for ln in done.stderr.splitlines() if "error" in ln]) == 1


@pytest.mark.parametrize("objective", ["mlm", "hybrid"])
def test_ltg_bert_export_loads_with_remote_code_and_scores_like_babyjax(tmp_path, tok, babylm_sample, objective):
    """mlm: AutoModelForMaskedLM reads each masked copy as babyjax does; hybrid (GPT-BERT): the same folder loads as
    AutoModelForCausalLM too and gives babyjax's causal log-probabilities."""
    import transformers

    from babyjax.interop import export

    cfg = make_run(tmp_path / "run", tok, style="ltg_bert", steps=(0, 10), objective=objective)
    out = export.export_checkpoint(tmp_path / "run", 10, tmp_path / "hf")
    assert (out / "modeling_ltg_bert.py").is_file()
    model = transformers.AutoModelForMaskedLM.from_pretrained(out, trust_remote_code=True).eval()
    assert type(model).__name__ == "LtgBertForMaskedLM"
    lines = (babylm_sample / "babylm_dev" / "aochildes.dev").read_text().splitlines()
    ids = [tok.encode(t) for t in lines if 20 < len(t) < 60][:8]
    method = "pll_original" if objective == "mlm" else "mntp"
    copies = [c for i, s in enumerate(ids) for c in packing.masked_copies(i, s, method, 64, tok.word_starts())]
    got = _score_copies(tmp_path / "run", cfg, 10, copies, 64, mesh_of(1), batch_rows=4)
    np.testing.assert_allclose(_hf_masked_logprobs(model, copies), got, atol=1e-4, rtol=0)
    if objective == "hybrid":
        import torch

        causal = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
        scorer = score.Scorer(cfg, mesh_of(1), batch_rows=4)
        params = checkpoints.restore_params(tmp_path / "run", 10, scorer.abstract_params)
        wins = [w for i, s in enumerate(ids) for w in score.windows(i, s, "eot_context", 64)]
        packed, batches = scorer.place(score.pack(wins, 64))
        want = np.split(scorer.logprobs(params, packed, batches), np.cumsum([len(s) for s in ids])[:-1])
        for s, w in zip(ids, want):
            with torch.no_grad():
                logits = causal(input_ids=torch.tensor([[EOS_ID] + s])).logits.double()
            logp = torch.log_softmax(logits, -1)[0, np.arange(len(s)), s].numpy()
            np.testing.assert_allclose(logp, w, atol=1e-4, rtol=0)


def test_a_tokenizer_without_a_mask_token_is_refused(tmp_path, babylm_sample):
    import io

    import sentencepiece as spm

    from babyjax.data import tokenizer as tokenizer_lib

    lines = (babylm_sample / "babylm_10M" / "aochildes.train").read_text().splitlines()[:2000]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=300,
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        minloglevel=2,
    )
    (tmp_path / "t.model").write_bytes(model.getvalue())
    with pytest.raises(InputError, match="has no <mask> piece at id 4 \\(masked LMs need one\\)"):
        tokenizer_lib.Tokenizer(tmp_path / "t.model")


def test_a_token_sample_longer_than_the_context_is_refused():
    import pandas as pd

    from babyjax.data.evalsets import EvalSet

    ev = EvalSet("tokens", "sample.npz", "h", [list(range(5, 45))], pd.DataFrame({"seq": [0]}), None, [[3, 35]])
    with pytest.raises(InputError, match="targets reach position 35, beyond seq_len=32"):
        packing.eval_copies(ev, "pll_original", 32, np.ones(64, bool))
    assert len(packing.eval_copies(ev, "mntp", 40, np.ones(64, bool))) == 2


def test_a_packed_row_holds_at_most_eight_masked_copies():
    """Rows of many very short copies would widen every row's output projection (K = the fullest row's scored count):
    at most MASKED_COPIES_PER_ROW copies a row, so K stays 8 however short the sentences."""
    starts = np.ones(100, bool)
    copies = [c for i in range(30) for c in packing.masked_copies(i, [7, 8], "pll_original", 64, starts)]
    packed = score.pack(copies, 64)
    per_row = (np.diff(packed.segment_ids, axis=1, prepend=0) > 0).sum(1)
    assert packing.MASKED_COPIES_PER_ROW == 8 and per_row.max() == 8 and len(copies) == 60
    assert packed.num_rows == 8 and packed.compact().cols.shape == (8, 8)
    windows = [packing.Window(i, 1, (3,), (4, 5), (0,)) for i in range(30)]  # causal windows are not capped
    assert score.pack(windows, 64).num_rows == 1


def test_masked_copies_are_read_in_the_narrowest_width_that_holds_them(tmp_path, tok, babylm_sample, monkeypatch):
    """pack_buckets: each copy in the narrowest of the widths 64, 96, ... that holds it (a width with fewer than
    MIN_BUCKET copies joins the next), the same log-probabilities as one width for all, back in window order."""
    cfg = make_run(tmp_path / "run", tok, style="ltg_bert", steps=(0, 10), objective="mlm", max_len=160)
    lines = (babylm_sample / "babylm_dev" / "aochildes.dev").read_text().splitlines()
    stream = tok.encode(" ".join(lines[:200]))
    ids = [stream[i : i + n] for i, n in enumerate((20, 70, 100, 130, 150))]  # copies of 21 to 151 tokens
    copies = [c for i, s in enumerate(ids) for c in packing.masked_copies(i, s, "mntp", 160, tok.word_starts())]
    assert packing.pack_buckets(copies, 160).widths == [packing.row_length(copies, 160)]  # few copies: one width
    monkeypatch.setattr(packing, "MIN_BUCKET", 1)
    buckets = packing.pack_buckets(copies, 160)
    assert buckets.widths == [64, 96, 128, 160]
    for pack, slots in zip(buckets.packs, buckets.slots):
        width = pack.inputs.shape[1]
        lengths = np.array([copies[i].length for i in slots])
        assert lengths.max() <= width and (width == 64 or lengths.min() > width - packing.BUCKET_STEP)
    scorer = score.Scorer(cfg, mesh_of(1), batch_rows=4, causal=False)
    params = checkpoints.restore_params(tmp_path / "run", 10, scorer.abstract_params)
    got = buckets.gather([scorer.logprobs(params, *scorer.place(p)) for p in buckets.packs])
    want = _score_copies(tmp_path / "run", cfg, 10, copies, packing.row_length(copies, 160), mesh_of(1), 4)
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=0)

"""babyjax.interop.export: an exported checkpoint loaded by transformers scores like babyjax (1e-4), for both styles."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
import transformers
from minicons import scorer as minicons_scorer

from babyjax import errors, score
from babyjax.checkpoints import series as checkpoints
from babyjax.data.tokenizer import EOS_ID
from babyjax.interop import export, hf_config
from tests.test_score import ROOT, make_run, mesh_of, tiny_model_cfg, train_tiny_tokenizer


@pytest.fixture(scope="module")
def tok(tmp_path_factory, babylm_sample):
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok"), babylm_sample)


def _sentences(babylm_sample: pathlib.Path, n: int = 12) -> list[str]:
    lines = (babylm_sample / "babylm_dev" / "aochildes.dev").read_text().splitlines()
    return [ln for ln in lines if 20 < len(ln) < 60][:n] + ["  two  spaces, ünïcode ", "x"]


def _babyjax_logprobs(workdir: pathlib.Path, cfg, step: int, ids: list[list[int]]) -> list[np.ndarray]:
    scorer = score.Scorer(cfg, mesh_of(1), batch_rows=4)
    params = checkpoints.restore_params(workdir, step, scorer.abstract_params)
    wins = [w for i, s in enumerate(ids) for w in score.windows(i, s, "eot_context", cfg.max_len)]
    packed, batches = scorer.place(score.pack(wins, cfg.max_len))
    flat = scorer.logprobs(params, packed, batches)
    return np.split(flat, np.cumsum([len(s) for s in ids])[:-1])


def _hf_logprobs(model, ids: list[list[int]]) -> list[np.ndarray]:
    """log p of every token after one EOS, right-padded batch with an attention mask."""
    n = max(len(s) for s in ids) + 1
    inputs = torch.zeros((len(ids), n), dtype=torch.long)
    mask = torch.zeros((len(ids), n), dtype=torch.long)
    for i, s in enumerate(ids):
        inputs[i, : len(s) + 1] = torch.tensor([EOS_ID] + s)
        mask[i, : len(s) + 1] = 1
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=inputs, attention_mask=mask).logits.float(), -1).numpy()
    return [logp[i, np.arange(len(s)), s] for i, s in enumerate(ids)]


@pytest.mark.parametrize(
    "style,kw",
    [
        ("gpt2", {}),
        ("gpt2", {"tie_embeddings": False}),
        ("llama", {"num_kv_heads": 2}),
        ("llama", {"tie_embeddings": False}),
    ],
)
def test_exported_model_scores_like_babyjax(tmp_path, tok, babylm_sample, style, kw):
    workdir = tmp_path / "run"
    cfg = make_run(workdir, tok, style=style, steps=(0, 10), **kw)
    out = export.export_checkpoint(workdir, 10, tmp_path / "hf")
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    # a class transformers 4.x knows too (the BabyLM 2025 pipeline pins 4.51.3; 5.x writes "TokenizersBackend")
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    assert tok_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    # 4.x would otherwise return token_type_ids, which GPT-2 adds as embeddings (the pipeline's reading task)
    assert tok_config["model_input_names"] == ["input_ids", "attention_mask"]
    assert set(hf_tok("a b")) == {"input_ids", "attention_mask"}
    assert type(model).__name__ == ("GPT2LMHeadModel" if style == "gpt2" else "LlamaForCausalLM")
    assert hf_tok.bos_token_id == EOS_ID and hf_tok.eos_token_id == EOS_ID and hf_tok.pad_token_id == 0

    texts = _sentences(babylm_sample)
    ids = [tok.encode(t) for t in texts]
    assert all(len(s) < cfg.max_len for s in ids)
    assert [hf_tok(t)["input_ids"] for t in texts] == ids  # same ids, no special tokens added
    assert hf_tok.decode(ids[0]) == tok.decode(ids[0])

    want = _babyjax_logprobs(workdir, cfg, 10, ids)
    got = _hf_logprobs(model, ids)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-4, rtol=0)
    info = json.loads((out / export.EXPORT_INFO).read_text())
    assert info["step"] == 10 and info["words_seen"] == 500.0
    assert info["params_hash"] == checkpoints.load_series_index(workdir)[1]["params_hash"]


def test_minicons_reads_the_export_like_babyjax(tmp_path, tok, babylm_sample):
    workdir = tmp_path / "run"
    cfg = make_run(workdir, tok, steps=(0,))
    out = export.export_checkpoint(workdir, 0, tmp_path / "hf")
    texts = _sentences(babylm_sample, 6)
    ids = [tok.encode(t) for t in texts]
    lm = minicons_scorer.IncrementalLMScorer(str(out), device="cpu")
    got = lm.token_score(texts, surprisal=True, base_two=True, bos_token=True)
    want = _babyjax_logprobs(workdir, cfg, 0, ids)
    for g, w, s in zip(got, want, ids):
        bits = np.array([x[1] for x in g])  # minicons lists the BOS (</s>) first, with score 0
        np.testing.assert_allclose(bits[1:], -w / np.log(2), atol=2e-4)
        assert len(bits) == len(s) + 1


def test_series_export_named_by_words_seen(tmp_path, tok):
    workdir = tmp_path / "run"
    make_run(workdir, tok, steps=(0, 5, 10, 20, 25), words_per_step=100_000)
    done = export.export_series(workdir, tmp_path / "hf")
    assert sorted(done) == ["chck_1M", "chck_2M"]
    assert json.loads((done["chck_1M"] / export.EXPORT_INFO).read_text())["step"] == 10
    assert json.loads((done["chck_2M"] / export.EXPORT_INFO).read_text())["step"] == 20
    stamp = (done["chck_1M"] / "config.json").stat().st_mtime_ns
    export.export_series(workdir, tmp_path / "hf")  # again: nothing is rewritten
    assert (done["chck_1M"] / "config.json").stat().st_mtime_ns == stamp
    assert export.series_names(checkpoints.load_series_index(workdir), "steps")["step_25"] == 25
    with pytest.raises(FileExistsError, match="exists"):
        export.export_checkpoint(workdir, 10, done["chck_1M"])
    with pytest.raises(ValueError, match="no checkpoint at step 7"):
        export.export_checkpoint(workdir, 7, tmp_path / "x")
    # a folder that is not this run's export of that step is never replaced without --overwrite
    other = tmp_path / "hf2" / "chck_1M"
    other.mkdir(parents=True)
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is not this run's export of step 10"):
        export.export_series(workdir, tmp_path / "hf2")
    assert (other / "notes.txt").read_text() == "mine"
    for out in (workdir, tmp_path):  # the run's own folder, or one holding it: refused even with --overwrite
        with pytest.raises(ValueError, match="is the run's folder or holds it"):
            export.export_checkpoint(workdir, 10, out, overwrite=True)
    assert checkpoints.load_series_index(workdir)[-1]["step"] == 25


def test_export_command_line(tmp_path, tok):
    workdir = tmp_path / "run"
    make_run(workdir, tok, steps=(0, 10), style="llama")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "babyjax.export", f"--workdir={workdir}", f"--out={tmp_path / 'hf'}"]
    ok = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "exported step 10" in ok.stdout and (tmp_path / "hf" / "model.safetensors").exists()
    bad = subprocess.run(
        cmd[:3] + [f"--workdir={tmp_path / 'nowhere'}", f"--out={tmp_path / 'o'}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: ")


def test_hf_class_follows_the_model_features():
    assert hf_config.hf_class_name(tiny_model_cfg("gpt2")) == "GPT2LMHeadModel"
    assert hf_config.hf_class_name(tiny_model_cfg("llama")) == "LlamaForCausalLM"
    with pytest.raises(ValueError, match="grouped-query"):
        hf_config.hf_class_name(tiny_model_cfg("gpt2", num_kv_heads=2))
    neither = types.SimpleNamespace(position="rope", norm="layernorm", mlp="gelu", biases=True, attention="mha")
    with pytest.raises(ValueError, match="no Hugging Face class has position=rope"):
        hf_config.hf_class_name(neither)


def test_series_as_one_git_repository_with_a_branch_per_checkpoint(tmp_path, tok, babylm_sample):
    workdir = tmp_path / "run"
    cfg = make_run(workdir, tok, steps=(0, 10, 20, 30), words_per_step=100_000.0)  # 0, 1M, 2M, 3M words
    repo = tmp_path / "repo"
    branches = export.export_git(workdir, repo)
    assert branches == {"chck_1M": 10, "chck_2M": 20, "chck_3M": 30, "main": 30}
    git = lambda *a: (
        subprocess.run(
            ["git", "-C", str(repo), *a],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert set(git("branch", "--format=%(refname:short)").split()) == set(branches)
    assert git("rev-parse", "main") == git("rev-parse", "chck_3M")  # the last checkpoint exported once
    assert json.loads(git("show", f"chck_2M:{export.EXPORT_INFO}"))["step"] == 20
    assert "safetensors filter=lfs" in git("show", "chck_1M:.gitattributes")
    # a branch as the Hub serves it (git archive), loaded by transformers, scores like babyjax at that step
    folder = tmp_path / "chck_2M"
    folder.mkdir()
    subprocess.run(f"git -C {repo} archive chck_2M | tar -x -C {folder}", shell=True, check=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = [tok.encode(t) for t in _sentences(babylm_sample, 3)]
    for g, w in zip(_hf_logprobs(model, ids), _babyjax_logprobs(workdir, cfg, 20, ids)):
        np.testing.assert_allclose(g, w, atol=1e-4, rtol=0)
    assert json.loads((repo / export.EXPORT_INFO).read_text())["step"] == 30  # main is checked out
    heads = git("for-each-ref", "--format=%(objectname)")
    assert export.export_git(workdir, repo) == branches and git("for-each-ref", "--format=%(objectname)") == heads
    with pytest.raises(errors.ExistsError, match="not a git repository"):
        export.export_git(workdir, tmp_path / "run")


def test_git_export_to_a_relative_folder(tmp_path, tok, monkeypatch):
    workdir = tmp_path / "run"
    make_run(workdir, tok, steps=(0, 10))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))  # a user's git environment does not leak in
    assert export.export_git(workdir, "hf/repo", names="steps") == {"step_0": 0, "step_10": 10, "main": 10}
    assert json.loads((tmp_path / "hf" / "repo" / export.EXPORT_INFO).read_text())["step"] == 10

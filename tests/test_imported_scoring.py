"""Imported Hugging Face series scored by babyjax's scorer equal transformers and minicons: each family's tiny random
model with a tokenizer trained here (tests/imported_models.py), real BabyLM text including lines longer than the
model's context (scored in windows the same way on both sides), BLiMP pairs against minicons."""

import math

import numpy as np
import pytest

from babyjax.score import ScoreConfig, load_scores, score_job
from tests import imported_models as im

pytestmark = pytest.mark.slow
MAX_LEN = 64
TOL_NATS = 1e-4


@pytest.fixture(scope="module")
def lines(babylm_sample):
    return im.sample_lines(babylm_sample)


@pytest.fixture(scope="module")
def models(tmp_path_factory, lines):
    root = tmp_path_factory.mktemp("hf")
    return {f: im.build(f, root / f, im.tokenizer(f, lines), seed=i) for i, f in enumerate(im.FAMILIES)}


@pytest.fixture(scope="module")
def dev_text(babylm_sample, tmp_path_factory):
    """24 lines of the BabyLM dev sample, 6 of them longer than MAX_LEN tokens."""
    text = (babylm_sample / "babylm_dev" / "cbt.dev").read_text().splitlines()
    kept = [t.strip() for t in text if t.strip()]
    longs = [t for t in kept if len(t) > 400][:6]
    shorts = [t for t in kept if 20 < len(t) < 200][:18]
    path = tmp_path_factory.mktemp("eval") / "dev.txt"
    path.write_text("\n".join(longs + shorts) + "\n")
    return path


def _causal_reference(model, ids: list[int], context: int, seq_len: int, stride: int) -> np.ndarray:
    """log p (nats) of every token of `ids` after `context`, in windows as docs/science.md defines them: the first
    window reads up to seq_len tokens, each later one scores `stride` new tokens after the seq_len - stride before."""
    import torch

    full, out, a = [context, *ids], [], 1
    while a < len(full):
        b = min(len(full), seq_len + 1 if a == 1 else a + stride)
        c = max(0, b - 1 - seq_len)
        with torch.no_grad():
            logits = model(torch.tensor([full[c : b - 1]])).logits[0].double()
        logp = torch.log_softmax(logits, -1)
        out += [float(logp[t - 1 - c, full[t]]) for t in range(a, b)]
        a = b
    return np.array(out)


def _masked_reference(model, ids: list[int], specials, seq_len: int) -> np.ndarray:
    """Pseudo-log-likelihood (Salazar et al.) of every token: `<s>` + ids + `</s>`, each token masked alone, read in
    a window of seq_len tokens around it."""
    import torch

    full = np.array([specials.context, *ids, *specials.suffix])
    out = []
    for p in range(len(ids)):
        t = p + 1
        masked = full.copy()
        masked[t] = specials.mask
        a = int(np.clip(t - seq_len // 2, 0, max(0, full.size - seq_len)))
        with torch.no_grad():
            logits = model(torch.tensor([masked[a : a + seq_len].tolist()])).logits[0].double()
        out.append(float(torch.log_softmax(logits[t - a], -1)[full[t]]))
    return np.array(out)


@pytest.mark.parametrize("family", im.FAMILIES)
def test_every_token_equals_transformers_in_windows(family, models, dev_text, tmp_path):
    import transformers as T

    folder = models[family]
    stride = 48 if family == "gpt2" else 0  # overlapping windows once, non-overlapping elsewhere
    out = tmp_path / "scores"
    score_job(ScoreConfig(run=(f"m=hf:{folder}",), kind="text", eval=(str(dev_text),), out=str(out), stride=stride))
    surprisal, checkpoints, tokens = load_scores(out, "m")
    assert list(checkpoints["status"]) == ["done"]
    logp_babyjax = -np.asarray(surprisal[0], np.float64) * math.log(2)
    masked = family == "roberta"
    model = (T.AutoModelForMaskedLM if masked else T.AutoModelForCausalLM).from_pretrained(folder).eval()
    from babyjax.imported.run import ImportedRun

    tok = ImportedRun(folder).tokenizer()
    seq_len = MAX_LEN
    ref = []
    for line in dev_text.read_text().splitlines():
        ids = tok.encode(line)
        if masked:
            ref.append(_masked_reference(model, ids, tok.specials, seq_len))
        else:
            ref.append(_causal_reference(model, ids, tok.specials.context, seq_len, stride or seq_len))
    ref = np.concatenate(ref)
    assert len(ref) == len(tokens) > 24 * 5
    assert max(len(tok.encode(t)) for t in dev_text.read_text().splitlines()) > 2 * MAX_LEN
    np.testing.assert_allclose(logp_babyjax, ref, atol=TOL_NATS, rtol=0)


BLIMP = ("anaphor_number_agreement.jsonl", "regular_plural_subject_verb_agreement_1.jsonl")


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "roberta"])
def test_minimal_pair_verdicts_equal_minicons(family, models, shared_data, tmp_path):
    """Each pair's verdict (good sentence more probable) as minicons gives it on the same model: causal LMs after the
    bos token (`bos_token=True`), RoBERTa by its pseudo-log-likelihood with `<s>` and `</s>` (minicons' default)."""
    import transformers as T
    from minicons import scorer

    from babyjax.data.evalsets import load_pairs

    files = [shared_data / "blimp" / f for f in BLIMP]
    out = tmp_path / "pairs"
    config = ScoreConfig(
        run=(f"m=hf:{models[family]}",), kind="pairs", eval=tuple(map(str, files)), out=str(out), limit=25
    )
    score_job(config)
    surprisal, _, tokens = load_scores(out, "m")
    per_seq = np.bincount(tokens["seq"].to_numpy(), weights=np.asarray(surprisal[0], np.float64))
    babyjax_good = per_seq[0::2] < per_seq[1::2]
    pairs = [p for f in files for p in load_pairs(f)[:25]]
    assert len(pairs) == len(babyjax_good) == 50
    folder = str(models[family])
    model = (T.AutoModelForMaskedLM if family == "roberta" else T.AutoModelForCausalLM).from_pretrained(folder)
    hf_tok = T.AutoTokenizer.from_pretrained(folder)
    if family == "roberta":  # minicons 0.3.39 calls a tokenizer method transformers 5 removed: give it the encoding
        lm = scorer.MaskedLMScorer(model, "cpu", tokenizer=hf_tok)
        enc = lambda s: hf_tok(s, padding="longest", return_attention_mask=True)
        score = lambda s: lm.sequence_score(enc(s), reduction=lambda x: x.sum(0).item(), PLL_metric="original")
    else:
        lm = scorer.IncrementalLMScorer(model, "cpu", tokenizer=hf_tok)
        score = lambda s: lm.sequence_score(s, reduction=lambda x: x.sum(0).item(), bos_token=True)
    good = np.array(score([p.good for p in pairs])) > np.array(score([p.bad for p in pairs]))
    np.testing.assert_array_equal(babyjax_good, good)
    # and the sums themselves agree (bits vs nats), so that equal verdicts are not luck
    minicons_bits = -np.array(score([p.good for p in pairs])) / math.log(2)
    np.testing.assert_allclose(per_seq[0::2], minicons_bits, atol=1e-3)


@pytest.mark.parametrize("family", ["gpt2", "opt"])
def test_babylm2025_predictions_follow_the_pipelines_rules(family, models, shared_data, tmp_path):
    """The BabyLM 2025 minimal-pair tasks on an imported model, as the pipeline's causal backend scores it with its
    own tokenizer: GPT-2's adds no token before a sentence (its first token is not scored), OPT's adds `</s>`."""
    import json

    import transformers as T

    from tests.test_babylm2025 import LIMIT, reference_results

    folders = [shared_data / "babylm_eval_2025" / d for d in ("blimp_filtered", "supplement_filtered")]
    out = tmp_path / "b25"
    config = ScoreConfig(
        run=(f"m=hf:{models[family]}",), kind="babylm2025", eval=tuple(map(str, folders)), out=str(out), limit=LIMIT
    )
    score_job(config)
    model = T.AutoModelForCausalLM.from_pretrained(models[family]).eval()
    hf_tok = T.AutoTokenizer.from_pretrained(models[family])
    assert (hf_tok("a")["input_ids"][0] == hf_tok.bos_token_id) == (family == "opt")
    for folder in folders:
        (got,) = (out / "results" / "m").glob(f"*/zero_shot/causal/*/{folder.name}/predictions.json")
        preds = {p["id"]: p["pred"] for u in json.loads(got.read_text()).values() for p in u["predictions"]}
        assert preds == reference_results(model, hf_tok, folder)[0], folder.name


def test_flagged_revisions_are_marked_and_left_out_unless_asked(models, dev_text, tmp_path):
    """A series (steps 0-900 every 100) with a duplicate (step 300 = step 200), a revision holding the final weights
    (step 500), a Git LFS pointer in place of the weights (step 600) and step 400 absent: each marked in
    checkpoints.csv, none scored; --suspect=score scores the duplicate and the copy of the final weights."""
    import dataclasses
    import shutil

    series = tmp_path / "series"
    previous = models["gpt2"]
    for step in (0, 100, 200, 700, 800, 900):
        previous = im.perturbed(previous, series / f"step_{step}", seed=step)
    shutil.copytree(series / "step_200", series / "step_300")
    shutil.copytree(series / "step_900", series / "step_500")
    shutil.copytree(series / "step_900", series / "step_600")
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{'a' * 64}\nsize 4096\n"
    (series / "step_600" / "model.safetensors").write_text(pointer)
    out = tmp_path / "scores"
    config = ScoreConfig(run=(f"s=hf:{series}",), kind="text", eval=(str(dev_text),), out=str(out), limit=4)
    score_job(config)
    _, checkpoints, _ = load_scores(out, "s")
    status = dict(zip(checkpoints["step"], checkpoints["status"]))
    assert status == {
        0: "done", 100: "done", 200: "done", 300: "duplicate", 400: "missing", 500: "equals_final",
        600: "lfs_pointer", 700: "done", 800: "done", 900: "done",
    }  # fmt: skip
    score_job(dataclasses.replace(config, suspect="score"))
    _, checkpoints, _ = load_scores(out, "s")
    status = dict(zip(checkpoints["step"], checkpoints["status"]))
    assert status[300] == status[500] == "done" and status[400] == "missing" and status[600] == "lfs_pointer"

"""The BabyLM 2025 reading and AoA tasks under the mlm and mntp backends (`--kind babylm2025` scored by
`pll_original` and `mntp`) against a reference written from the official pipeline's code (reading/
evaluation_functions.py get_p2_mlm / get_p2_mntp; AoA_word/evaluation_functions.py compute_surprisal_mlm /
compute_surprisal_mntp), run with transformers on the exported checkpoint of a RoBERTa-style masked run and an
LTG-BERT-style hybrid (GPT-BERT) run."""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest
import torch
import transformers

from babyjax import score
from babyjax.errors import InputError
from babyjax.interop import export
from babyjax.score import masked_words
from tests.test_babylm2025 import reference_reading
from tests.test_score import make_run, train_tiny_tokenizer

READING_ROWS = 60  # csv rows: enough for reading/run.py's regressions with every interaction (53 with spillover)
MAX_LEN = 256  # longer than every AoA context kept below, so the pipeline and babyjax read each one whole


@pytest.fixture(scope="module")
def tok(tmp_path_factory, babylm_sample):
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok"), babylm_sample)


@pytest.fixture(scope="module")
def aoa_folder(tmp_path_factory, shared_data, tok) -> pathlib.Path:
    """The release's aoa folder cut to every sixteenth word and its first three contexts that fit in MAX_LEN tokens
    (the test's time)."""
    src = shared_data / "babylm_eval_2025" / "aoa"
    folder = tmp_path_factory.mktemp("release") / "aoa"
    folder.mkdir()
    contexts = json.loads((src / "cdi_childes.json").read_text())
    fits = lambda w, c: len(tok.encode(c["context"].strip() + " " + w)) < MAX_LEN
    kept = {w: [c for c in cs if fits(w, c)][:3] for k, (w, cs) in enumerate(contexts.items()) if k % 16 == 0}
    (folder / "cdi_childes.json").write_text(json.dumps(kept))
    shutil.copy(src / "cdi_human.csv", folder / "cdi_human.csv")
    return folder


# ---- the pipeline's rules, written from its code (not babyjax's) -------------------------------------------------
def masked_next_probs(model, hf_tok, text: str, backend: str, num_mask_tokens: int = 3) -> torch.Tensor:
    """get_p_mlm / get_p_mntp's distribution: the text and the mask tokens appended as text, read at the first mask
    (mlm) or one position before it (mntp), one further back when the tokenizer appends a special token."""
    inputs = hf_tok(text + hf_tok.mask_token * num_mask_tokens, return_tensors="pt")
    ends_with_mask = bool(inputs.input_ids[0, -1] == hf_tok.mask_token_id)
    pos = -num_mask_tokens if ends_with_mask else -(num_mask_tokens + 1)
    pos -= backend == "mntp"
    with torch.no_grad():
        return torch.softmax(model(**inputs).logits[:, pos, :][0], -1)


def reference_p2_masked(backend: str):
    """get_p2_mlm / get_p2_mntp: the word tokenized alone, its first piece after the sentence; each further piece
    decoded, appended with no space, and its text's first id read after the re-tokenized sentence."""

    def p2(model, hf_tok, sentence: str, word: str) -> float:
        target = hf_tok(word, add_special_tokens=False)["input_ids"]
        out = [masked_next_probs(model, hf_tok, sentence, backend)[target[0]].item()]
        sentence = sentence + hf_tok.decode(target[0])
        for token in target[1:]:
            t = hf_tok.decode(token)
            probs = masked_next_probs(model, hf_tok, sentence, backend)
            out.append(probs[hf_tok(t, add_special_tokens=False)["input_ids"][0]].item())
            sentence = sentence + t
        return float(np.prod(out))

    return p2


def reference_aoa_surprisal(model, hf_tok, context: str, word: str, backend: str) -> float:
    """compute_surprisal (use_bos_only False) by process_mlm_input / process_mntp_input: `context.strip() + " " +
    word.strip()` tokenized with offsets; each token ending after the word's start masked alone and read at its own
    position (mlm) or the one before (mntp; the first token only when the tokenizer prepends CLS or BOS)."""
    context, word = context.strip() + " ", word.strip()
    text = context + word
    out = hf_tok(text, return_offsets_mapping=True)
    start = len(text) - len(word)
    prepend = hf_tok.cls_token_id is not None or hf_tok.bos_token_id is not None
    idx = [i for i, (_, end) in enumerate(out["offset_mapping"]) if end > start and (backend == "mlm" or i or prepend)]
    tokens = torch.tensor(out["input_ids"])
    batch = tokens.repeat(len(idx), 1)
    batch[torch.arange(len(idx)), torch.tensor(idx)] = hf_tok.mask_token_id
    with torch.no_grad():
        logits = model(input_ids=batch, attention_mask=torch.ones_like(batch)).logits
    read = torch.tensor(idx) - int(backend == "mntp")
    logp = torch.log_softmax(logits[torch.arange(len(idx)), read], -1)
    return -float(logp[torch.arange(len(idx)), tokens[idx]].sum())


# ---- the tests ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "style, objective, scoring, backend",
    [("roberta", "mlm", "pll_original", "mlm"), ("ltg_bert", "hybrid", "mntp", "mntp")],
)
def test_reading_and_aoa_match_the_pipelines_masked_backends(
    tmp_path, tok, shared_data, aoa_folder, style, objective, scoring, backend
):
    workdir = tmp_path / "run"
    make_run(workdir, tok, style=style, objective=objective, steps=(0, 10), max_len=MAX_LEN)
    reading = shared_data / "babylm_eval_2025" / "reading"
    out = tmp_path / "scores"
    summary = score.score_job(
        score.ScoreConfig(
            run=[score.RunSpec("tiny", workdir)],
            out=out,
            kind="babylm2025",
            eval=[str(reading), str(aoa_folder)],
            seq_len=MAX_LEN,
            limit=READING_ROWS,
        )
    )
    assert len(summary.scored) == 2 and json.loads((out / "meta.json").read_text())["scoring"] == scoring
    hf = export.export_checkpoint(workdir, 10, tmp_path / "hf")
    model = transformers.AutoModelForMaskedLM.from_pretrained(hf, trust_remote_code=True).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(hf)
    tree = out / "results" / "tiny" / "main" / "zero_shot" / backend  # where collate_preds.py --backend reads

    # reading: every word's surprisal and the previous word's, and both scores
    pred, prev, eye, spr = reference_reading(
        model, hf_tok, reading / "reading_data.csv", READING_ROWS, p2=reference_p2_masked(backend)
    )
    rows = json.loads((tree / "reading" / "predictions.json").read_text())["reading"]["predictions"]
    assert [r["id"] for r in rows] == list(range(READING_ROWS))
    np.testing.assert_allclose([r["pred"] for r in rows], pred, atol=1e-5, rtol=0)
    np.testing.assert_allclose([r["prev_pred"] for r in rows], prev, atol=1e-5, rtol=0)  # NaN where no previous word
    report = (tree / "reading" / "report.txt").read_text().splitlines()
    assert [line.split(": ")[0] for line in report] == ["EYE TRACKING SCORE", "SELF-PACED READING SCORE"]
    assert [float(line.split(": ")[1]) for line in report] == pytest.approx([eye, spr], abs=0.0051)  # 2 decimals

    # AoA: surprisal.json's rows, every checkpoint in order, each context's surprisal at step 10
    got = json.loads((tree / "AoA_word" / "surprisal.json").read_text())["results"]
    contexts = json.loads((aoa_folder / "cdi_childes.json").read_text())
    want = [(w, k, c["context"]) for w, cs in contexts.items() if len(w) > 1 for k, c in enumerate(cs)]
    assert [(r["step"], r["target_word"], r["context_id"], r["context"]) for r in got] == [
        (step, *row) for step in ("step_0", "step_10") for row in want
    ]
    surprisal = [reference_aoa_surprisal(model, hf_tok, c, w, backend) for w, _, c in want]
    np.testing.assert_allclose([r["surprisal"] for r in got[len(want) :]], surprisal, atol=1e-5, rtol=0)


def test_the_masked_reading_query_and_a_scoring_without_a_pipeline_backend(tmp_path, tok, shared_data, aoa_folder):
    query = [17, 18, 19, 20]  # three context tokens, then the id scored
    mlm = masked_words.reading_copy(5, query, "pll_original", 64)
    assert mlm.tokens == (3, 17, 18, 19, 4, 4, 4) and mlm.col == 4 and mlm.target == 20 and mlm.start == 3
    assert masked_words.reading_copy(5, query, "mntp", 64).col == 3  # the context's last token predicts the next
    cut = masked_words.reading_copy(5, query, "mntp", 5)  # a context longer than the window keeps its end
    assert cut.tokens == (18, 19, 4, 4, 4) and cut.col == 1
    workdir = tmp_path / "run"
    make_run(workdir, tok, style="roberta", objective="mlm", steps=(0,))
    with pytest.raises(InputError, match=r"--scoring=pll_within_word_l2r: the BabyLM 2025 aoa and reading tasks"):
        score.score_job(
            score.ScoreConfig(
                run=[score.RunSpec("tiny", workdir)],
                out=tmp_path / "scores",
                kind="babylm2025",
                eval=[str(shared_data / "babylm_eval_2025" / "reading"), str(aoa_folder)],
                scoring="pll_within_word_l2r",
                limit=2,
            )
        )


def test_masked_copies_mask_only_each_completion(tok, shared_data):
    """Entity tracking's options follow a long shared prefix: each candidate is read by one copy per completion token
    (the pipeline's process_mlm_sentences), not one per token of the whole text (which ran out of memory on the fast
    set); BLiMP's candidates are completions whole."""
    from babyjax.data import babylm2025 as data

    release = shared_data / "babylm_eval_2025"
    ev = data.load_suite([str(release / "entity_tracking_fast"), str(release / "blimp_fast")], tok, limit=2)
    starts = ev.sequences["start"].to_numpy()
    for method in ("pll_original", "mntp"):
        copies = masked_words.suite_copies(ev, method, 512, tok.word_starts())
        per_seq = np.bincount([c.seq for c in copies], minlength=len(ev.token_ids))
        assert per_seq.tolist() == [len(ids) - s for ids, s in zip(ev.token_ids, starts)]
        assert all(c.start >= starts[c.seq] for c in copies)
    entity = (ev.sequences["task"] == "entity_tracking").to_numpy()
    assert entity.any() and (starts[entity] > 10).all() and (starts[~entity] == 0).all()

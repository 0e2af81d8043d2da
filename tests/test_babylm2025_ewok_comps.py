"""EWoK and COMPS as tasks of `--kind babylm2025`, against a reference of the official pipeline's rules
(evaluation-pipeline-2025 at bf55c11, sentence_zero_shot: read_files.py decode_ewok and decode_comps, dataset.py
process_causal/mlm/mntp_sentences, compute_results.py, run.py), written from its code and run with transformers on the
exported checkpoint, for the causal, mlm and mntp backends. EWoK fast is the organisers' ewok_fast.zip, read in memory
with the password the pipeline's README publishes; its text is never written out. No COMPS data can be had here: the
COMPS items below are written by hand in exactly the pipeline's format (the four files, with the fields
prefix_acceptable, prefix_unacceptable and property_phrase that decode_comps reads)."""

from __future__ import annotations

import json
import pathlib
import shutil
import zipfile
from collections import Counter

import pandas as pd
import pytest
import torch
import transformers

from babyjax import score
from babyjax.data import babylm2025 as data
from babyjax.data import ewok_comps
from babyjax.errors import InputError
from babyjax.interop import export
from tests.test_babylm2025 import reference_scores
from tests.test_score import make_run, train_tiny_tokenizer

PASSWORD = "BabyLM2025"  # public: the pipeline's README gives it for ewok_fast.zip
LIMIT = 2  # items per UID
COMPS = {  # (prefix_acceptable, prefix_unacceptable, property_phrase), written here in COMPS's format
    "comps_base": [
        ("A dog", "A fish", "can run in the park."),
        ("A bird", "A cow", "can fly."),
        ("A cat", "A tree", "has a tail."),
    ],
    "comps_wugs": [
        ("A wug is a dog. Therefore, a wug", "A wug is a fish. Therefore, a wug", "can run in the park."),
        ("A dax is a bird. Therefore, a dax", "A dax is a cow. Therefore, a dax", "can fly."),
        ("A fep is a cat. Therefore, a fep", "A fep is a tree. Therefore, a fep", "has a tail."),
    ],
    "comps_wugs_dist-before": [
        (
            "A dax is a fish. A wug is a dog. Therefore, a wug",
            "A dax is a dog. A wug is a fish. Therefore, a wug",
            "can run.",
        ),
        (
            "A wug is a cow. A dax is a bird. Therefore, a dax",
            "A wug is a bird. A dax is a cow. Therefore, a dax",
            "can fly.",
        ),
    ],
    "comps_wugs_dist-in-between": [
        (
            "A wug is a dog. A dax is a fish. Therefore, a wug",
            "A wug is a fish. A dax is a dog. Therefore, a wug",
            "can run.",
        ),
        (
            "A dax is a bird. A wug is a cow. Therefore, a dax",
            "A dax is a cow. A wug is a bird. Therefore, a dax",
            "can fly.",
        ),
        (
            "A fep is a cat. A wug is a tree. Therefore, a fep",
            "A fep is a tree. A wug is a cat. Therefore, a fep",
            "has a tail.",
        ),
    ],
}


@pytest.fixture(scope="module")
def tok(tmp_path_factory, babylm_sample):
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok"), babylm_sample)


@pytest.fixture(scope="module")
def comps_dir(tmp_path_factory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("data") / "comps"
    folder.mkdir()
    for stem, rows in COMPS.items():
        lines = [
            json.dumps(dict(zip(("prefix_acceptable", "prefix_unacceptable", "property_phrase"), r))) for r in rows
        ]
        (folder / f"{stem}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def ewok_zip(shared_data) -> pathlib.Path:
    return shared_data / "babylm_eval_2025" / "ewok_fast.zip"


# ---- the pipeline's rules, written from its code (not babyjax's) -------------------------------------------------
def reference_items(ewok_zip: pathlib.Path, comps: pathlib.Path) -> dict[str, list[dict]]:
    """read_files.py's decode_ewok (no --full_sentence_scores, as eval_zero_shot.sh) and decode_comps for the first
    LIMIT items of each UID, files in name order; EWoK read from the zip in memory."""
    out: dict[str, list[dict]] = {"ewok_fast": [], "comps": []}
    with zipfile.ZipFile(ewok_zip) as z:
        members = sorted((n for n in z.namelist() if n.endswith(".jsonl")), key=lambda n: n.rsplit("/", 1)[-1])
        texts = [z.read(n, pwd=PASSWORD.encode()).decode() for n in members]
    for text in texts:
        for line in text.splitlines():
            r = json.loads(line)
            sentences = [" ".join([r["Context1"], r["Target1"]]), " ".join([r["Context1"], r["Target2"]])]
            meta = {"UID": r["Domain"], "context_type": r["ContextType"], "context_contrast": r["ContextDiff"]}
            meta["target_contrast"] = r["TargetDiff"]
            out["ewok_fast"].append(
                {"sentences": sentences, "completions": [" " + r["Target1"], " " + r["Target2"]], "metadata": meta}
            )
    uids = {"comps_base": "base", "comps_wugs": "wugs", "comps_wugs_dist-before": "wugs_dist_before"}
    for f in sorted(comps.glob("*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            sentences = [" ".join([r["prefix_acceptable"], r["property_phrase"]])]
            sentences.append(" ".join([r["prefix_unacceptable"], r["property_phrase"]]))
            uid = uids.get(f.stem, "wugs_dist_in_between")
            out["comps"].append(
                {"sentences": sentences, "completions": [r["property_phrase"]] * 2, "metadata": {"UID": uid}}
            )
    for subset, items in out.items():
        rank = Counter()
        keep = []
        for it in items:
            rank[it["metadata"]["UID"]] += 1
            if rank[it["metadata"]["UID"]] <= LIMIT:
                keep.append(it)
        out[subset] = keep
    return out


def reference_logprob(model, hf_tok, backend: str, sentence: str, completion: str) -> float:
    """A candidate's score: process_causal_sentences + compute_causal_results (causal), or process_mlm_sentences /
    process_mntp_sentences + compute_mlm_results: each token whose offset ends after the completion's start masked
    alone, read at its column (mlm) or the one before (mntp), log-softmax summed."""
    if backend == "causal":
        return reference_scores(model, hf_tok, sentence, completion)
    out = hf_tok(sentence, return_offsets_mapping=True)
    ids, start_char = torch.tensor(out["input_ids"]), len(sentence) - len(completion)
    prepend = hf_tok.cls_token_id is not None or hf_tok.bos_token_id is not None
    phrase = [
        i
        for i, (_, end) in enumerate(out["offset_mapping"])
        if end > start_char and (backend == "mlm" or i != 0 or prepend)
    ]
    rows = torch.arange(len(phrase))
    tokens = ids.repeat(len(phrase), 1)
    tokens[rows, phrase] = hf_tok.mask_token_id
    read = torch.tensor(phrase) - (1 if backend == "mntp" else 0)
    with torch.no_grad():
        logits = model(input_ids=tokens, attention_mask=torch.ones_like(tokens)).logits
    logp = torch.log_softmax(logits[rows, read], -1)
    return float(logp[rows, ids[phrase]].sum())


def reference_results(model, hf_tok, backend: str, subset: str, items: list[dict]) -> tuple[dict, str]:
    """(predictions.json, best_temperature_report.txt) as run.py writes them at temperature 1."""
    preds: dict[str, dict] = {}
    stats: dict[str, tuple[Counter, Counter]] = {}
    for it in items:
        scores = [reference_logprob(model, hf_tok, backend, s, c) for s, c in zip(it["sentences"], it["completions"])]
        chosen = int(torch.max(torch.tensor(scores)[None], dim=1)[1])
        for key, value in it["metadata"].items():
            total, correct = stats.setdefault(key, (Counter(), Counter()))
            total[value] += 1
            correct[value] += chosen == 0
        uid = it["metadata"]["UID"]
        got = preds.setdefault(uid, {"predictions": []})["predictions"]
        pred = it["sentences" if subset == "comps" else "completions"][chosen]  # rank_and_evaluate
        got.append({"id": f"{uid}_{len(got)}", "pred": pred})
    acc = {key: {v: 100.0 * correct[v] / total[v] for v in total} for key, (total, correct) in stats.items()}
    lines = ["TEMPERATURE: 1.00", ""]
    for key, values in acc.items():
        lines += [f"### {key.upper()} ACCURACY"] + [f"{v}: {a:.2f}" for v, a in values.items()] + [""]
    average = sum(acc["UID"].values()) / len(acc["UID"])
    assert 0 < sum(stats["UID"][1].values()) < len(items)  # both candidates chosen: the verdicts tell scores apart
    return preds, "\n".join(lines + ["### AVERAGE ACCURACY", f"{average:.2f}", "", ""])


# ---- the tests ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "style,objective,backend", [("gpt2", "causal", "causal"), ("roberta", "mlm", "mlm"), ("ltg_bert", "hybrid", "mntp")]
)
def test_ewok_and_comps_match_the_pipelines_rules(tmp_path, tok, ewok_zip, comps_dir, style, objective, backend):
    workdir = tmp_path / "run"
    make_run(workdir, tok, style=style, objective=objective, steps=(10,), max_len=256)
    hf = export.export_checkpoint(workdir, 10, tmp_path / "hf")
    auto = transformers.AutoModelForCausalLM if backend == "causal" else transformers.AutoModelForMaskedLM
    model = auto.from_pretrained(hf, trust_remote_code=True).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(hf)
    out = tmp_path / "scores"
    config = score.ScoreConfig(
        run=[score.RunSpec("tiny", workdir)],
        out=out,
        kind="babylm2025",
        eval=[str(ewok_zip), str(comps_dir)],
        seq_len=256,
        limit=LIMIT,
        ewok_password=PASSWORD,
    )
    score.score_job(config)
    root = out / "results" / "tiny" / "main" / "zero_shot" / backend
    table = pd.read_csv(out / "babylm2025.csv")
    reference = reference_items(ewok_zip, comps_dir)
    for subset, items in reference.items():
        got = root / ("ewok" if subset == "ewok_fast" else "comps") / subset
        want_preds, want_report = reference_results(model, hf_tok, backend, subset, items)
        assert json.loads((got / "predictions.json").read_text()) == want_preds, subset  # every prediction
        assert (got / "best_temperature_report.txt").read_text() == want_report, subset  # every report line
        average = table[(table["subset"] == subset) & (table["key"] == "average")]["value"].item()
        assert f"{average:.2f}" == want_report.splitlines()[-2]
    assert set(table[table["task"] == "ewok"]["block"]) == {
        "AVERAGE",
        "UID",
        "CONTEXT_TYPE",
        "CONTEXT_CONTRAST",
        "TARGET_CONTRAST",
    }
    assert set(table[table["task"] == "comps"]["key"]) == {
        "average",
        "base",
        "wugs",
        "wugs_dist_before",
        "wugs_dist_in_between",
    }
    if backend == "causal":  # the output holds neither EWoK's text nor the password
        _assert_no_ewok_text(out, reference["ewok_fast"])


def _assert_no_ewok_text(out: pathlib.Path, items: list[dict]) -> None:
    """No file of the output holds the password or an EWoK context; only predictions.json holds targets (the
    pipeline's format: the chosen completion)."""
    contexts = {it["sentences"][0][: -len(it["completions"][0])] for it in items}
    targets = {c.strip() for it in items for c in it["completions"]}
    tokens = pd.read_csv(out / "tokens.csv", keep_default_na=False)
    seqs = pd.read_csv(out / "sequences.csv", keep_default_na=False)
    ewok = seqs[seqs["task"] == "ewok"]
    assert len(ewok) == 2 * len(items) and (ewok["text"] == "").all()
    assert (tokens[tokens["seq"].isin(ewok["seq"])]["token"] == "").all()
    assert (tokens[~tokens["seq"].isin(ewok["seq"])]["token"] != "").all()  # COMPS' pieces stay
    for f in (p for p in out.rglob("*") if p.is_file() and p.suffix in (".json", ".csv", ".txt")):
        text = f.read_text()
        assert PASSWORD not in text and not any(c in text for c in contexts), f
        if f.name != "predictions.json":
            assert not any(t in text for t in targets), f


def test_the_zip_is_read_as_released_and_its_password_asked_for(tmp_path, tok, ewok_zip, monkeypatch):
    monkeypatch.delenv(ewok_comps.PASSWORD_ENV, raising=False)
    with pytest.raises(InputError, match=r"is password-protected: pass --ewok_password=\.\.\. or set "):
        data.load_items(ewok_zip)
    with pytest.raises(InputError, match="the password does not open .*pipeline's README, github.com/babylm"):
        data.load_items(ewok_zip, password="not it")
    monkeypatch.setenv(ewok_comps.PASSWORD_ENV, PASSWORD)
    items = data.load_items(ewok_zip)
    uids = Counter(it.uid for it in items)  # collate_preds.py's EWOK_FAST_SIZE items of 11 domains, each its file
    assert len(items) == 1100 and len(uids) == 11 and set(uids.values()) == {100}
    assert {it.subset for it in items} == {"ewok_fast"}
    assert sorted(uids) == [f.stem for f in ewok_comps.task_files(ewok_zip)]
    assert all(it.texts[0].endswith(it.texts[0][it.starts[0] :]) and it.texts[0][it.starts[0]] == " " for it in items)
    assert [k for k, _ in items[0].meta] == ["context_type", "context_contrast", "target_contrast"]
    # the evaluation set's hash covers the zip's bytes: a zip changed in any byte is another evaluation
    first = data.load_suite([str(ewok_zip)], tok, limit=1)
    changed = tmp_path / "ewok_fast.zip"
    shutil.copy(ewok_zip, changed)
    with zipfile.ZipFile(changed, "a") as z:
        z.comment = b"changed"
    again = data.load_suite([str(changed)], tok, limit=1)
    assert again.token_ids == first.token_ids and again.eval_hash != first.eval_hash
    assert data.load_suite([str(ewok_zip)], tok, limit=1).eval_hash == first.eval_hash
    (tmp_path / "bad.zip").write_text("not a zip")
    with pytest.raises(InputError, match="unknown BabyLM 2025 task folder"):
        data.load_items(tmp_path / "bad.zip")
    (tmp_path / "ewok_filtered.zip").write_text("not a zip")
    with pytest.raises(InputError, match="cannot read .*ewok_filtered.zip as a zip file"):
        data.load_items(tmp_path / "ewok_filtered.zip")


def test_ewok_full_and_comps_folders_as_the_pipeline_reads_them(tmp_path, comps_dir):
    items = data.load_items(comps_dir)
    assert [it.uid for it in items] == ["base"] * 3 + ["wugs"] * 3 + ["wugs_dist_before"] * 2 + [
        "wugs_dist_in_between"
    ] * 3
    good, bad, phrase = COMPS["comps_base"][0]
    assert items[0].texts == (f"{good} {phrase}", f"{bad} {phrase}") and items[0].starts == (
        len(good) + 1,
        len(bad) + 1,
    )
    stray = tmp_path / "comps"
    shutil.copytree(comps_dir, stray)
    (stray / "comps_extra.jsonl").write_text((comps_dir / "comps_base.jsonl").read_text())
    with pytest.raises(InputError, match="comps_extra.jsonl: a COMPS folder holds comps_base.jsonl, comps_wugs.jsonl"):
        data.load_items(stray)
    full = tmp_path / "ewok_filtered"  # dl_and_filter.py's layout: <Domain>.jsonl, the Hub's fields, written here
    full.mkdir()
    row = {
        "Domain": "social-relations",
        "ContextType": "direct",
        "ContextDiff": "negation",
        "TargetDiff": "concept swap",
    }
    row |= {"Context1": "The boy is a friend.", "Context2": "The boy is not a friend.", "Target1": "He is kind."}
    row |= {"Target2": "He is mean.", "MetaTemplateID": 1, "TemplateID": 2}
    (full / "social-relations.jsonl").write_text(json.dumps(row) + "\n")
    (item,) = data.load_items(full)
    assert item.subset == "ewok_filtered" and item.uid == "social-relations"
    assert item.texts == ("The boy is a friend. He is kind.", "The boy is a friend. He is mean.")
    assert item.starts == (20, 20) and dict(item.meta)["context_contrast"] == "negation"
    (full / "social-relations.jsonl").write_text(json.dumps({k: v for k, v in row.items() if k != "Target2"}) + "\n")
    with pytest.raises(InputError, match="social-relations.jsonl:1 lacks Target2, which the ewok task reads"):
        data.load_items(full)

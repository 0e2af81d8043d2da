"""The BabyLM 2025 zero-shot sentence tasks (`--kind babylm2025`) against a reference implementation of the official
pipeline's causal rules (evaluation-pipeline-2025, sentence_zero_shot: read_files.py, dataset.py, compute_results.py,
run.py) run with transformers on the exported checkpoint, on the release's own files."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest
import torch
import transformers
from scipy import stats

from babyjax import score
from babyjax.data import babylm2025 as data
from babyjax.errors import InputError
from babyjax.interop import export
from tests.test_score import make_run, train_tiny_tokenizer

TASK_DIRS = ["blimp_filtered", "supplement_filtered", "entity_tracking", "wug_adj_nominalization", "wug_past_tense"]
LIMIT = 3  # items per UID


@pytest.fixture(scope="module")
def tok(tmp_path_factory, babylm_sample):
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok"), babylm_sample)


# ---- the pipeline's rules, written from its code (not babyjax's) -------------------------------------------------
def reference_items(folder: pathlib.Path) -> list[dict]:
    """read_files.py's decode_* for the first LIMIT items of each UID, files in name order."""
    items, seen = [], {}
    for f in sorted(folder.glob("*.jsonl")):
        for line in f.read_text().splitlines():
            raw = json.loads(line)
            if "input_prefix" in raw:
                it = {
                    "UID": f"{f.stem}_{raw['numops']}_ops",
                    "sentences": [raw["input_prefix"] + o for o in raw["options"]],
                    "completions": raw["options"],
                }
            elif "sentences" in raw:
                cands = raw["sentences"].split("\t")
                uid = "wug_adj" if folder.name.startswith("wug_adj") else "wug_past"  # decode_wug: UID = the task
                it = {"UID": uid, "sentences": cands, "completions": cands, "ratio": float(raw["ratio"])}
            else:
                pair = [raw["sentence_good"], raw["sentence_bad"]]
                field = raw.get("field", "supplement")
                it = {
                    "UID": raw["UID"] if "field" in raw else f.stem,
                    "sentences": pair,
                    "completions": pair,
                    "field": "syntax/semantics" if field == "syntax_semantics" else field,
                    "linguistics_term": raw.get("linguistics_term", "supplement"),
                }
            seen[it["UID"]] = seen.get(it["UID"], 0) + 1
            if seen[it["UID"]] <= LIMIT:
                items.append(it)
    return items


def reference_scores(model, hf_tok, sentence: str, completion: str, first_offset: bool = True) -> float:
    """process_causal_sentences + compute_causal_results: offsets mask, inputs[:-1], targets[1:], log_softmax sum
    (the AoA task's process_causal_input: the same without adding the first token's offset to the start)."""
    out = hf_tok(sentence, return_offsets_mapping=True)
    start_char = len(sentence) - len(completion) + (out["offset_mapping"][0][0] if first_offset else 0)
    mask = torch.tensor([1.0 if end > start_char else 0.0 for _, end in out["offset_mapping"]])
    ids = torch.tensor(out["input_ids"])[None]
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=ids[:, :-1]).logits, -1)[0]
    return float((lp.gather(-1, ids[0, 1:, None])[:, 0] * mask[1:]).sum())


def reference_results(model, hf_tok, folder: pathlib.Path) -> tuple[dict[str, str], float]:
    """({item id: chosen completion}, the task's average) as run.py computes them."""
    preds, correct, probs, ratios = {}, {}, [], []
    counter: dict[str, int] = {}
    for it in reference_items(folder):
        scores = torch.tensor(
            [reference_scores(model, hf_tok, s, c) for s, c in zip(it["sentences"], it["completions"])]
        )
        chosen = int(torch.max(scores[None], dim=1)[1])
        k = counter[it["UID"]] = counter.get(it["UID"], -1) + 1
        preds[f"{it['UID']}_{k}"] = it["completions"][chosen]
        correct.setdefault(it["UID"], []).append(chosen == 0)
        if "ratio" in it:
            probs.append(float(torch.softmax(scores, 0)[0]))
            ratios.append(it["ratio"])
    if ratios:
        return preds, float(stats.spearmanr(probs, ratios)[0])
    acc = {u: 100.0 * sum(c) / len(c) for u, c in correct.items()}
    if folder.name.startswith("entity_tracking"):
        splits = [
            np.mean([a for u, a in acc.items() if u.startswith(s)]) for s in ("regular", "ambiref", "move_contents")
        ]
        return preds, float(np.mean(splits))
    return preds, float(np.mean(list(acc.values())))


def reference_p2(model, hf_tok, sentence: str, word: str) -> float:
    """reading/evaluation_functions.py get_p2 (causal): the word tokenized alone; further pieces decoded, appended
    with no space, and scored by get_p on the re-tokenized sentence."""

    def last_probs(text):
        with torch.no_grad():
            return torch.softmax(model(**hf_tok(text, return_tensors="pt")).logits[:, -1, :][0], -1)

    target = hf_tok(word, add_special_tokens=False)["input_ids"]
    out = [last_probs(sentence)[target[0]].item()]
    sentence = sentence + hf_tok.decode(target[0])
    for token in target[1:]:
        t = hf_tok.decode(token)
        out.append(last_probs(sentence)[hf_tok(t, add_special_tokens=False)["input_ids"][0]].item())
        sentence = sentence + t
    return float(np.prod(out))


def reference_reading(
    model, hf_tok, csv: pathlib.Path, n: int, p2=reference_p2
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """reading/run.py: surprisal (nats) of each word and of the previous one (`p2`: the backend's get_p2), and the
    two R² gains."""
    import statsmodels.formula.api as smf

    df = pd.read_csv(csv, dtype={"item": str}).head(n)
    df["item"] = df["item"].fillna("None")
    df["pred"] = [-np.log(p2(model, hf_tok, r["item"], r["word"])) for _, r in df.iterrows()]
    df["prev_pred"] = [
        -np.log(p2(model, hf_tok, r["prev_item"], r["prev_word"])) if isinstance(r["prev_item"], str) else np.nan
        for _, r in df.iterrows()
    ]
    base = (
        "Subtlex_log10 + length + context_length + Subtlex_log10:length + Subtlex_log10:context_length"
        " + length:context_length"
    )
    gains = []
    for dv in ["RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound"]:
        b = smf.ols(f"{dv} ~ {base}", df[[dv, "Subtlex_log10", "length", "context_length"]].dropna()).fit().rsquared
        m = (
            smf.ols(f"{dv} ~ {base} + pred", df[["pred", dv, "Subtlex_log10", "length", "context_length"]].dropna())
            .fit()
            .rsquared
        )
        gains.append((m - b) / (1 - b) * 100)
    v = ["Subtlex_log10", "length", "context_length", "prev_length", "prev_pred"]
    spill = " + ".join(v + [f"{a}:{c}" for i, a in enumerate(v) for c in v[i + 1 :]])
    dv = "self_paced_reading_time"
    b = smf.ols(f"{dv} ~ {spill}", df[[dv] + v].dropna()).fit().rsquared
    m = smf.ols(f"{dv} ~ {spill} + pred", df[["pred", dv] + v].dropna()).fit().rsquared
    return df["pred"].to_numpy(), df["prev_pred"].to_numpy(), float(np.mean(gains)), float((m - b) / (1 - b) * 100)


# ---- the tests ---------------------------------------------------------------------------------------------------
def exported_run(tmp_path: pathlib.Path, tok, max_len: int):
    """(workdir, HF model, HF tokenizer): a run whose step 10 is exported and loaded by transformers."""
    workdir = tmp_path / "run"
    make_run(workdir, tok, steps=(0, 10), max_len=max_len)
    hf = export.export_checkpoint(workdir, 10, tmp_path / "hf")
    return (
        workdir,
        transformers.AutoModelForCausalLM.from_pretrained(hf).eval(),
        transformers.AutoTokenizer.from_pretrained(hf),
    )


def test_matches_the_pipelines_rules_on_an_exported_checkpoint(tmp_path, tok, shared_data):
    workdir, model, hf_tok = exported_run(tmp_path, tok, max_len=1024)
    folders = [shared_data / "babylm_eval_2025" / d for d in TASK_DIRS]
    out = tmp_path / "scores"
    score.score_job(
        score.ScoreConfig(
            run=[score.RunSpec("tiny", workdir)],
            out=out,
            kind="babylm2025",
            eval=[str(f) for f in folders],
            steps=[0, 10],
            seq_len=1024,
            limit=LIMIT,
        )
    )
    table = pd.read_csv(out / "babylm2025.csv")
    assert set(table["revision"]) == {"step_0", "main"}  # no words mark reached: step_<n>, and main for the last
    table = table[table["step"] == 10]
    for folder in folders:
        task = "blimp" if folder.name.startswith("supplement") else data.TASKS[data.task_of(folder)][0]
        got = out / "results" / "tiny" / "main" / "zero_shot" / "causal" / task / folder.name
        want_preds, want_avg = reference_results(model, hf_tok, folder)
        preds = {
            p["id"]: p["pred"]
            for uid in json.loads((got / "predictions.json").read_text()).values()
            for p in uid["predictions"]
        }
        assert preds == want_preds, folder.name  # every item's verdict
        avg = table[(table["subset"] == folder.name) & (table["key"] == "average")]["value"].item()
        assert avg == pytest.approx(want_avg, abs=1e-9), folder.name
        report = (got / "best_temperature_report.txt").read_text()
        assert report.startswith("TEMPERATURE: 1.00\n\n###") and report.endswith(f"\n{want_avg:.2f}\n\n")


def test_reads_the_release_as_the_pipeline_does(tok, shared_data):
    root = shared_data / "babylm_eval_2025"
    blimp = data.load_items(root / "blimp_filtered", limit=1)
    assert len(blimp) == 67 and {it.field for it in blimp} == {"syntax", "morphology", "semantics", "syntax/semantics"}
    supp = data.load_items(root / "supplement_filtered", limit=1)
    assert {it.uid for it in supp} == {
        "hypernym",
        "qa_congruence_easy",
        "qa_congruence_tricky",
        "subject_aux_inversion",
        "turn_taking",
    } and {it.field for it in supp} == {"supplement"}
    et = data.load_items(root / "entity_tracking", limit=1)
    assert len(et) == 18 and all(len(it.texts) == 5 for it in et)
    ids, first = data.completion_start(tok, et[0].texts[0], et[0].starts[0])
    assert tok.decode(ids[first:]).strip() == et[0].texts[0][et[0].starts[0] :].strip()  # exactly the option's tokens
    wug = data.load_items(root / "wug_past_tense")
    assert len(wug) == 50 and all(len(it.texts) == 3 and 0 <= it.ratio <= 1 for it in wug)


def test_bad_task_folders_are_one_clear_line(tmp_path, tok):
    with pytest.raises(InputError, match="unknown BabyLM 2025 task folder .*blimp_filtered"):
        data.load_items(tmp_path / "my_tasks")
    bad = tmp_path / "blimp_filtered"
    bad.mkdir()
    (bad / "x.jsonl").write_text('{"sentence_good": "a b", "field": "syntax", "UID": "x"}\n')
    with pytest.raises(InputError, match=r"x.jsonl:1 lacks sentence_bad"):
        data.load_items(bad)
    (bad / "x.jsonl").write_text("")
    with pytest.raises(InputError, match="holds no"):
        data.load_items(tmp_path / "wug_past_tense")


def test_report_section_across_training(tmp_path, tok, shared_data):
    workdir = tmp_path / "run"
    make_run(workdir, tok, steps=(0, 10, 20), max_len=256)
    out = tmp_path / "scores"
    root = shared_data / "babylm_eval_2025"
    score.score_job(
        score.ScoreConfig(
            run=[score.RunSpec("tiny", workdir)],
            out=out,
            kind="babylm2025",
            limit=40,
            eval=[str(root / "supplement_filtered"), str(root / "wug_past_tense"), str(root / "reading")],
        )
    )
    from babyjax.commands import analyze

    assert analyze.main([str(out), "--out", str(tmp_path / "rep"), "--no-progress"]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "## BabyLM 2025 zero-shot tasks" in text and "| tiny | 20 |" in text
    assert "reading: eye_tracking" in text and "reading: self_paced_reading" in text
    assert (tmp_path / "rep" / "babylm2025_tasks.png").stat().st_size > 5000
    tree = out / "results" / "tiny"
    assert sorted(p.name for p in tree.iterdir()) == ["main", "step_0", "step_10"]
    # a second job continues the same output: nothing scored twice, nothing lost
    again = score.score_job(
        score.ScoreConfig(
            run=[score.RunSpec("tiny", workdir)],
            out=out,
            kind="babylm2025",
            limit=40,
            eval=[str(root / "supplement_filtered"), str(root / "wug_past_tense"), str(root / "reading")],
        )
    )
    assert again.already_done == 3 and not again.scored
    assert len(pd.read_csv(out / "babylm2025.csv")["step"].unique()) == 3
    # another run scored into the same folder later: the first run's rows stay in babylm2025.csv
    make_run(tmp_path / "run2", tok, steps=(0, 10), max_len=256, seed=1)
    score.score_job(
        score.ScoreConfig(
            run=[score.RunSpec("other", tmp_path / "run2")],
            out=out,
            kind="babylm2025",
            limit=40,
            eval=[str(root / "supplement_filtered"), str(root / "wug_past_tense"), str(root / "reading")],
        )
    )
    table = pd.read_csv(out / "babylm2025.csv")
    assert table.groupby("run")["step"].nunique().to_dict() == {"other": 2, "tiny": 3}


def test_reading_matches_the_pipelines_rules(tmp_path, tok, shared_data):
    workdir, model, hf_tok = exported_run(tmp_path, tok, max_len=256)
    folder = shared_data / "babylm_eval_2025" / "reading"
    out = tmp_path / "scores"
    n = 250
    score.score_job(
        score.ScoreConfig(
            run=[score.RunSpec("tiny", workdir)],
            out=out,
            kind="babylm2025",
            eval=[str(folder)],
            steps=[10],
            seq_len=256,
            limit=n,
        )
    )
    pred, prev, eye, spr = reference_reading(model, hf_tok, folder / "reading_data.csv", n)
    got = out / "results" / "tiny" / "main" / "zero_shot" / "causal" / "reading"
    rows = json.loads((got / "predictions.json").read_text())["reading"]["predictions"]
    np.testing.assert_allclose([r["pred"] for r in rows], pred, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose([r["prev_pred"] for r in rows], prev, atol=1e-4, rtol=1e-5)  # NaN where no previous word
    report = (got / "report.txt").read_text().splitlines()
    assert [line.split(": ")[0] for line in report] == ["EYE TRACKING SCORE", "SELF-PACED READING SCORE"]
    assert [float(line.split(": ")[1]) for line in report] == pytest.approx([eye, spr], abs=0.0051)  # 2 decimals


def reference_fitness(results: list[dict], children: pd.DataFrame) -> float:
    """utils.py AoAEvaluator.compute_curve_fitness, written from the pipeline's code."""
    from scipy.optimize import curve_fit

    def sig(x, a, b, c, d):
        return a / (1 + np.exp(-b * (x - c))) + d

    def fit(x, y, p0, target, **kw):
        try:
            a, b, c, d = curve_fit(sig, x, y, p0=p0, maxfev=1000, **kw)[0]
        except Exception:
            return None
        return None if b <= 0 or a <= 0 or target <= d or target >= a + d else c - np.log(a / (target - d) - 1) / b

    ages = np.arange(16, 31)
    words: dict[str, tuple[list, list]] = {}
    for r in results:
        words.setdefault(r["target_word"], ([], []))
        words[r["target_word"]][0].append(float(r["word_count"]))
        words[r["target_word"]][1].append(float(r["surprisal"]))
    pairs = []
    for w, (steps, surp) in words.items():
        hit = np.flatnonzero(children["word"].to_numpy() == w)
        if not len(hit) or len(surp) < 3:
            continue
        props = children[[str(a) for a in ages]].to_numpy(float)[hit[0]]
        ok = ~np.isnan(props)
        child = (
            fit(
                ages[ok],
                props[ok],
                [1.0, 0.1, ages[ok].mean(), 0.0],
                0.5,
                bounds=([0, 0, ages[ok][0], -0.5], [2.0, 1.0, ages[ok][-1], 0.5]),
            )
            if ok.sum() >= 3
            else None
        )
        if child is None or not ages[ok][0] <= child <= ages[ok][-1]:
            continue
        s, neg = np.array(steps), -np.array(surp)
        chance = np.log2(300_000)
        thr = chance - 0.5 * (chance - np.min(-neg))
        x = np.log10(s + 1)
        model = fit(x, neg, [neg.max() - neg.min(), 1.0, x.mean(), neg.min()], -thr)
        if model is not None and s[0] <= 10**model - 1 <= s[-1]:
            pairs.append((model, child))
    return float(stats.pearsonr(*zip(*pairs))[0]) if len(pairs) >= 3 else 0.0


def test_aoa_task_matches_the_pipelines_rules(tmp_path, tok, shared_data):
    workdir = tmp_path / "run"
    make_run(workdir, tok, steps=(0, 10, 20, 30), max_len=1024, words_per_step=100_000.0)  # 1M, 2M, 3M words
    folder = shared_data / "babylm_eval_2025" / "aoa"
    out = tmp_path / "scores"
    score.score_job(
        score.ScoreConfig(
            run=[score.RunSpec("tiny", workdir)], out=out, kind="babylm2025", eval=[str(folder)], limit=2, seq_len=1024
        )
    )
    got = json.loads(
        (out / "results" / "tiny" / "main" / "zero_shot" / "causal" / "AoA_word" / "surprisal.json").read_text()
    )
    assert [r["step"] for r in got["results"][:1]] == ["chck_1M"] and got["metadata"]["total_steps"] == 3
    assert {r["step"] for r in got["results"]} == {"chck_1M", "chck_2M", "chck_3M"}  # the marks, not step 0
    contexts = json.loads((folder / "cdi_childes.json").read_text())
    for step, name in [(10, "chck_1M"), (30, "chck_3M")]:  # compute_surprisal_causal with transformers
        hf = export.export_checkpoint(workdir, step, tmp_path / f"hf{step}")
        model = transformers.AutoModelForCausalLM.from_pretrained(hf).eval()
        hf_tok = transformers.AutoTokenizer.from_pretrained(hf)
        mine = [r for r in got["results"] if r["step"] == name]
        want = []
        for word, cs in contexts.items():
            if len(word) <= 1:
                continue
            for c in cs[:2]:
                text = c["context"].strip() + " " + word.strip()
                want.append(-reference_scores(model, hf_tok, text, word.strip(), first_offset=False))
        assert len(mine) == len(want) and [r["word_count"] for r in mine[:1]] == [int(name[5:-1]) * 1_000_000]
        np.testing.assert_allclose([r["surprisal"] for r in mine], want, atol=2e-4, rtol=1e-5)
    children = pd.read_csv(folder / "cdi_human.csv")
    fitness = pd.read_csv(out / "babylm2025.csv").query("task == 'aoa'")["value"].item()
    assert fitness == pytest.approx(reference_fitness(got["results"], children), abs=1e-6)

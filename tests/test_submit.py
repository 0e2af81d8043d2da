"""`python -m babyjax.submit` (babyjax/analysis/submission.py) against a reference of the organisers'
collate_preds.py (evaluation-pipeline-2025), written in this file from its rules, on one strict-small causal
submission: a tree of real babyjax outputs of a tiny run (chck_1M, chck_2M = main; the supplement, wug and reading
fast sets) plus placeholder files of the official sizes for what cannot be produced here (the other revisions, copies
of chck_2M's; BLiMP, EWoK and entity-tracking fast predictions drawn from the official fast data; the full sets, COMPS,
AoA at every revision and the seven fine-tuning tasks, whose predictions.json the pipeline's finetune/run.py shapes as
{task: {"predictions": [{"id": "<task>_<i>", "pred": <label>}, ...]}})."""

from __future__ import annotations

import collections
import json
import pathlib
import shutil
import zipfile

import pandas as pd
import pytest
from scipy import stats

from babyjax import score
from babyjax.analysis import submission
from babyjax.commands import submit
from tests.test_score import make_run, train_tiny_tokenizer

PASSWORD = "BabyLM2025"  # public: the pipeline's README
REVISIONS = [f"chck_{i}M" for i in range(1, 10)] + [f"chck_{i * 10}M" for i in range(1, 11)]  # strict-small
REAL = ["supplement_fast", "wug_adj_nominalization", "wug_past_tense", "reading"]
EWOK_FULL = {  # no EWoK full set here: collate_preds.py's sizes
    "agent-properties": 2210,
    "social-relations": 1548,
    "physical-relations": 818,
    "material-dynamics": 770,
    "physical-interactions": 556,
    "spatial-relations": 490,
    "social-properties": 328,
    "quantitative-properties": 314,
    "social-interactions": 294,
    "material-properties": 170,
    "physical-dynamics": 120,
}
COMPS = {"base": 49340, "wugs": 13896, "wugs_dist_before": 13896, "wugs_dist_in_between": 13896}  # nor COMPS
GLUE = ["boolq", "mnli", "mrpc", "multirc", "qqp", "rte", "wsc"]
ZS = "zero_shot/causal"


def _lines(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _ewok_fast(data: pathlib.Path) -> dict[str, list[dict]]:
    """EWoK fast, read from the organisers' zip in memory."""
    with zipfile.ZipFile(data / "ewok_fast.zip") as z:
        members = [m for m in z.namelist() if m.endswith(".jsonl")]
        return {
            pathlib.PurePosixPath(m).stem: [json.loads(x) for x in z.read(m, pwd=PASSWORD.encode()).splitlines()]
            for m in members
        }


def _preds(rows: dict[str, list], pred=lambda uid, k, row: f"{uid} {k}") -> dict:
    return {
        uid: {"predictions": [{"id": f"{uid}_{k}", "pred": pred(uid, k, r)} for k, r in enumerate(rs)]}
        for uid, rs in rows.items()
    }


def _write(path: pathlib.Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _fast_placeholders(rev: pathlib.Path, data: pathlib.Path, ewok: dict, n: int) -> None:
    """BLiMP, EWoK and entity-tracking fast predictions of the official sizes, right or wrong by a pattern of n."""
    right = lambda k: (k * (n + 2)) % 5 != 0
    blimp = {f.stem: _lines(f) for f in sorted((data / "blimp_fast").glob("*.jsonl"))}
    _write(
        rev / "blimp/blimp_fast/predictions.json",
        _preds(blimp, lambda u, k, r: r["sentence_good" if right(k) else "sentence_bad"]),
    )
    _write(
        rev / "ewok/ewok_fast/predictions.json",
        _preds(ewok, lambda u, k, r: " " + r["Target1" if right(k) else "Target2"]),
    )
    et = collections.defaultdict(list)
    for r in _lines(data / "entity_tracking_fast" / "regular.jsonl"):
        et[f"regular_{r['numops']}_ops"].append(r)
    _write(
        rev / "entity_tracking/entity_tracking_fast/predictions.json",
        _preds(et, lambda u, k, r: r["options"][0 if right(k) else 1]),
    )


def _full_placeholders(main: pathlib.Path, data: pathlib.Path) -> None:
    """The full sets, COMPS, AoA at every revision and fine-tuning, of the official sizes (from the release's files
    where they are here)."""
    blimp = {f.stem: _lines(f) for f in sorted((data / "blimp_filtered").glob("*.jsonl"))}
    _write(main / ZS / "blimp/blimp_filtered/predictions.json", _preds({_uid(rs): rs for rs in blimp.values()}))
    supp = {f.stem: _lines(f) for f in sorted((data / "supplement_filtered").glob("*.jsonl"))}
    _write(main / ZS / "blimp/supplement_filtered/predictions.json", _preds(supp))
    _write(main / ZS / "ewok/ewok_filtered/predictions.json", _preds({k: [None] * n for k, n in EWOK_FULL.items()}))
    et = collections.defaultdict(list)
    for f in sorted((data / "entity_tracking").glob("*.jsonl")):
        for r in _lines(f):
            et[f"{f.stem}_{r['numops']}_ops"].append(r)
    _write(main / ZS / "entity_tracking/entity_tracking/predictions.json", _preds(et))
    _write(main / ZS / "comps/comps/predictions.json", _preds({k: [None] * n for k, n in COMPS.items()}))
    rows = [
        {"step": rev, "word_count": i, "target_word": f"w{j}", "context_id": j, "context": "", "surprisal": 0.5 * j}
        for i, rev in enumerate(REVISIONS)
        for j in range(8005)
    ]
    _write(main / ZS / "AoA_word/surprisal.json", {"metadata": {"model_name": "tiny"}, "results": rows})
    for task in GLUE:
        n = len((data / "glue_filtered" / f"{task}.valid.jsonl").read_text().splitlines())
        _write(main / "finetune" / task / "predictions.json", _preds({task: [None] * n}, lambda u, k, r: k % 2))


def _uid(rows: list[dict]) -> str:
    return rows[0]["UID"]


@pytest.fixture(scope="module")
def trees(tmp_path_factory, shared_data):
    """(score output of the tiny run with the fast placeholders, a results tree with the full placeholders)."""
    tmp = tmp_path_factory.mktemp("submit")
    data = shared_data / "babylm_eval_2025"
    tok = train_tiny_tokenizer(tmp, shared_data / "babylm_sample")
    make_run(tmp / "run", tok, steps=(0, 10, 20), max_len=128, words_per_step=100_000.0)  # step 10: 1M, 20: 2M words
    scores = tmp / "scores"
    score.score_job(
        score.ScoreConfig(
            run=[score.RunSpec("tiny", tmp / "run")],
            out=scores,
            kind="babylm2025",
            eval=[str(data / d) for d in REAL],
            steps=[10, 20],
            seq_len=128,
        )
    )
    model = scores / "results" / "tiny"
    assert sorted(p.name for p in model.iterdir()) == ["chck_1M", "chck_2M", "main"]
    for rev in REVISIONS[2:]:
        shutil.copytree(model / "chck_2M", model / rev)
    ewok = _ewok_fast(data)
    for n, rev in enumerate(REVISIONS):
        _fast_placeholders(model / rev / ZS, data, ewok, n)
    full = tmp / "full_results"
    _full_placeholders(full / "tiny" / "main", data)
    yield scores, full
    shutil.rmtree(tmp)  # the EWoK text of the fast placeholders: a temporary folder, deleted


# ---- collate_preds.py's rules, written from its code (not babyjax's) --------------------------------------------
def _accuracy(preds: dict, rows_of, field: str) -> dict:
    out = {}
    for subtask, res in preds.items():
        pairs = list(zip(res["predictions"], rows_of(subtask)))
        s = lambda x: x.strip() if isinstance(x, str) else x
        out[subtask] = sum(s(p["pred"]) == s(r[field]) for p, r in pairs) / len(pairs)
    return out


def _reading(preds: dict, csv: pathlib.Path) -> dict:
    import statsmodels.formula.api as smf

    data = pd.read_csv(csv, dtype={"item": str})
    data["pred"] = [p["pred"] for p in preds["reading"]["predictions"]]
    data["prev_pred"] = [p["prev_pred"] for p in preds["reading"]["predictions"]]

    def gain(dv, xs, formula):
        base = smf.ols(f"{dv} ~ {formula}", data=data[[dv, *xs]].dropna()).fit().rsquared
        model = smf.ols(f"{dv} ~ {formula} + pred", data=data[[dv, *xs, "pred"]].dropna()).fit().rsquared
        return (float(model) - float(base)) / (1 - float(base))

    xs = ["Subtlex_log10", "length", "context_length"]
    f = (
        "Subtlex_log10 + length + context_length + Subtlex_log10:length + Subtlex_log10:context_length"
        " + length:context_length"
    )
    rt = [gain(dv, xs, f) for dv in ["RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound"]]
    v = xs + ["prev_length", "prev_pred"]
    spill = " + ".join(v + [f"{a}:{b}" for i, a in enumerate(v) for b in v[i + 1 :]])
    return {"spr": gain("self_paced_reading_time", v, spill), "rt": sum(rt) / len(rt)}


def reference(find, data: pathlib.Path) -> str:
    """What collate_preds.py --backend causal --track strict-small --fast writes."""
    load = lambda rev, rel: json.loads(find(rev, rel).read_text())
    full = [
        ("blimp", "blimp/blimp_filtered"),
        ("blimp_supplement", "blimp/supplement_filtered"),
        ("ewok", "ewok/ewok_filtered"),
        ("entity_tracking", "entity_tracking/entity_tracking"),
        ("wug_adj", "wug_adj/wug_adj_nominalization"),
        ("wug_past", "wug_past/wug_past_tense"),
        ("comps", "comps/comps"),
    ]
    out = {key: load("main", f"{ZS}/{rel}/predictions.json") for key, rel in full}
    out["reading"] = load("main", f"{ZS}/reading/predictions.json")
    out["aoa"] = load("main", f"{ZS}/AoA_word/surprisal.json")
    out["glue"] = {}
    for task in GLUE:
        out["glue"] |= load("main", f"finetune/{task}/predictions.json")
    ewok = _ewok_fast(data)
    et = collections.defaultdict(list)
    for r in _lines(data / "entity_tracking_fast" / "regular.jsonl"):
        et[f"regular_{r['numops']}_ops"].append(r)
    fast = collections.defaultdict(list)
    for rev in REVISIONS:
        p = lambda rel, rev=rev: load(rev, f"{ZS}/{rel}/predictions.json")
        fast["blimp"].append(
            _accuracy(p("blimp/blimp_fast"), lambda s: _lines(data / "blimp_fast" / f"{s}.jsonl"), "sentence_good")
        )
        supp = lambda s: _lines(data / "supplement_fast" / f"{s}.jsonl")
        fast["blimp_supplement"].append(_accuracy(p("blimp/supplement_fast"), supp, "sentence_good"))
        fast["ewok"].append(_accuracy(p("ewok/ewok_fast"), ewok.get, "Target1"))
        et_preds = p("entity_tracking/entity_tracking_fast")
        fast["entity_tracking"].append(_accuracy(et_preds, lambda s: [{"t": r["options"][0]} for r in et[s]], "t"))
        for key, folder in [("wug_adj", "wug_adj_nominalization"), ("wug_past", "wug_past_tense")]:
            human = [r["ratio"] for r in _lines(data / folder / f"{folder}.jsonl")]
            fast[key].append(
                {
                    k: stats.spearmanr([x["prob"] for x in v["predictions"]], human[: len(v["predictions"])])[0]
                    for k, v in p(f"{key}/{folder}").items()
                }
            )
        fast["reading"].append(_reading(p("reading"), data / "reading" / "reading_data.csv"))
    out["fast_eval_results"] = dict(fast)
    return json.dumps(out)


def _argv(trees: list[pathlib.Path], data: pathlib.Path, *more: str) -> list[str]:
    """The command line of a strict-small causal submission with the fast metrics."""
    dirs = [f"--results_dir={t}" for t in trees]
    common = ["--model_path_or_name=runs/tiny", "--backend=causal", "--track=strict-small", "--fast"]
    return [*common, *dirs, f"--fast_eval_dir={data}", *more]


def _find(*roots: pathlib.Path):
    """The first root's tiny/<revision>/<rel> that exists."""
    return lambda rev, rel: next(r / "tiny" / rev / rel for r in roots if (r / "tiny" / rev / rel).is_file())


def test_writes_what_collate_preds_writes(trees, shared_data, capsys):
    scores, full = trees
    data = shared_data / "babylm_eval_2025"
    written = scores / "results" / "tiny" / "all_full_preds_and_fast_scores_causal.json"
    assert submit.main(_argv([scores, full], data, f"--ewok_password={PASSWORD}")) == 0
    assert capsys.readouterr().out == f"wrote {written}\n"
    got = written.read_text()
    assert got == reference(_find(scores / "results", full), data)  # the same bytes: keys, order, every float
    fast = json.loads(got)["fast_eval_results"]
    assert [len(v) for v in fast.values()] == [19] * 7 and list(fast["reading"][0]) == ["spr", "rt"]
    assert fast["blimp"][0]["adjunct_island"] == 0.8 and fast["ewok"][1]["agent-properties"] == 0.8  # the patterns
    assert all(0 < abs(r["rt"]) < 1 for r in fast["reading"])  # real surprisals: a fraction, not percent
    written.unlink()  # --check: the verdict, nothing written (the full results alone: collate_preds.py without --fast)
    argv = [a for a in _argv([scores, full], data, "--check") if a != "--fast"]
    assert submit.main(argv) == 0
    assert capsys.readouterr().out.startswith("complete: every piece of the strict-small submission of tiny (causal)")
    assert not written.exists()


@pytest.fixture
def scratch(tmp_path):
    """A folder for a copy of the tree (EWoK text), deleted after the test."""
    yield tmp_path
    shutil.rmtree(tmp_path)


def test_an_incomplete_tree_names_every_missing_piece_and_writes_nothing(
    trees, shared_data, scratch, capsys, monkeypatch
):
    scores, _ = trees
    data = shared_data / "babylm_eval_2025"
    model = scratch / "results" / "tiny"
    shutil.copytree(scores / "results" / "tiny", model, ignore=shutil.ignore_patterns("all_full_preds*"))
    shutil.rmtree(model / "chck_5M")
    (model / "chck_7M" / ZS / "ewok/ewok_fast/predictions.json").unlink()
    blimp = model / "chck_9M" / ZS / "blimp/blimp_fast/predictions.json"
    preds = json.loads(blimp.read_text())
    preds["adjunct_island"]["predictions"].pop()
    blimp.write_text(json.dumps(preds))
    monkeypatch.setenv("BABYLM_EWOK_PASSWORD", "wrong")  # the password from the environment
    assert submit.main(_argv([scratch / "results"], data)) == 2
    out, err = capsys.readouterr()
    main = f"tiny/main/{ZS}"
    assert out.splitlines()[:-1] == [
        f"{main}/blimp/blimp_filtered/predictions.json: missing (BLiMP)",
        f"{main}/blimp/supplement_filtered/predictions.json: missing (BLiMP supplement)",
        f"{main}/ewok/ewok_filtered/predictions.json: missing (EWoK)",
        f"{main}/entity_tracking/entity_tracking/predictions.json: missing (entity tracking)",
        f"{main}/comps/comps/predictions.json: missing (COMPS)",
        "tiny/main/finetune: missing (the fine-tuning predictions of boolq, mnli, mrpc, multirc, qqp, rte, wsc)",
        f"{main}/AoA_word/surprisal.json: missing (AoA, every checkpoint of the series)",
        "tiny/chck_5M: missing: no results for this revision (score its checkpoint on the fast sets)",
        f"tiny/chck_7M/{ZS}/ewok/ewok_fast/predictions.json: missing (EWoK fast)",
        f"tiny/chck_9M/{ZS}/blimp/blimp_fast/predictions.json: BLiMP fast: wrong number of predictions for 1 "
        "subtasks (adjunct_island 199 of 200)",
    ]
    assert out.splitlines()[-1].startswith(f"the password does not open {data / 'ewok_fast.zip'}: pass the right one")
    assert err == (
        "babyjax.submit: error: the strict-small submission of tiny (causal) is incomplete: 11 pieces missing or "
        "incomplete, listed above; nothing written\n"
    )
    assert sorted(p.name for p in model.iterdir()) == sorted(REVISIONS[:4] + REVISIONS[5:] + ["main"])


def test_aoa_rows_backend_and_track_are_checked(trees, shared_data, tmp_path, capsys):
    scores, _ = trees
    aoa = tmp_path / "tiny" / "main" / ZS / "AoA_word" / "surprisal.json"
    rows = [{"step": "chck_1M"}] * 8005 + [{"step": "chck_2M"}] * 3 + [{"step": "step_0"}]
    _write(aoa, {"results": rows})
    argv = ["--model_path_or_name=tiny", "--backend=causal", "--track=strict-small", f"--results_dir={tmp_path}"]
    assert submit.main([*argv, "--check"]) == 2
    assert (
        f"tiny/main/{ZS}/AoA_word/surprisal.json: AoA: no rows for 17 revisions (chck_3M, chck_4M, chck_5M and 14 "
        "more); rows for revisions the strict-small track does not take (step_0); 8005 rows per revision expected "
        "(chck_2M 3)" in capsys.readouterr().out.splitlines()
    )
    assert submit.main(["--model_path_or_name=tiny", "--backend=mlm", f"--results_dir={scores}", "--check"]) == 2
    assert capsys.readouterr().out.splitlines() == [
        "tiny/main/zero_shot/mlm: missing (score it on the full sets; found causal: is --backend right?)",
        "tiny/main/finetune: missing (the fine-tuning predictions of boolq, mnli, mrpc, multirc, qqp, rte, wsc)",
    ]
    assert submit.main([*argv, "--track=multimodal"]) == 2
    assert capsys.readouterr().err.startswith("babyjax.submit: error: --track=multimodal: babyjax collates the text")


def test_the_fast_data_is_checked(shared_data, tmp_path):
    data = shared_data / "babylm_eval_2025"
    for name in ["supplement_fast", "entity_tracking_fast", "wug_adj_nominalization", "wug_past_tense"]:
        (tmp_path / name).symlink_to(data / name)
    (tmp_path / "blimp_fast").mkdir()
    for f in sorted((data / "blimp_fast").glob("*.jsonl"))[1:]:
        (tmp_path / "blimp_fast" / f.name).symlink_to(f)
    (tmp_path / "ewok_fast.zip").symlink_to(data / "ewok_fast.zip")
    assert submission.FastData(tmp_path, PASSWORD).problems() == [
        f"{tmp_path}/blimp_fast/: no data for 1 subtasks (adjunct_island)",
        f"{tmp_path}/reading/reading_data.csv: missing (fast data of reading)",
    ]
    (tmp_path / "ewok_fast.zip").unlink()
    assert submission.FastData(tmp_path, PASSWORD).problems()[1] == (
        f"{tmp_path}/ewok_fast/ or ewok_fast.zip: missing (fast data of ewok)"
    )
    assert submission.FastData(tmp_path / "nowhere").problems() == [
        f"--fast_eval_dir {tmp_path / 'nowhere'}: no such folder (the organisers' fast sets: blimp_fast/, ...)"
    ]

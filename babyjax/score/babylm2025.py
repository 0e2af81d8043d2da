"""BabyLM 2025 zero-shot results from a `--kind babylm2025` score output, by the official pipeline's rules for the
causal backend (github.com/babylm/evaluation-pipeline-2025, `sentence_zero_shot/run.py`, `compute_results.py`; docs/
science.md, "BabyLM 2025 zero-shot tasks"): a candidate's score is the natural-log probability summed over its
completion's tokens (the first token of a sequence is never scored: babyjax's exported tokenizer adds no BOS); the
first best candidate is chosen, so a tie counts as right; accuracies in percent, macro-averaged over UIDs (entity
tracking: over operation counts within each split, then over splits); wug: Spearman's rho of the first candidate's
softmax probability with the human ratio. Writes the pipeline's results tree for each checkpoint."""

from __future__ import annotations

import json
import math
import os
import pathlib
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from babyjax.checkpoints.schedules import whole_words, words_marks
from babyjax.data import babylm2025 as data
from babyjax.data import ewok_comps
from babyjax.errors import InputError

# the pipeline's intermediate checkpoints (chck_1M ... chck_9M, chck_10M ... chck_100M, chck_200M ... chck_1000M)
MARKS = words_marks(1_000_000_000)
ET_SPLITS = ("regular", "ambiref", "move_contents")
TABLE_COLUMNS = ["run", "step", "words_seen", "revision", "task", "subset", "block", "key", "value"]
EYE_TRACKING = ("RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound")
_BASE = ["Subtlex_log10", "length", "context_length"]
_SPILLOVER = _BASE + ["prev_length", "prev_pred"]


def candidate_logprobs(surprisal_T: np.ndarray, tokens: pd.DataFrame, seqs: pd.DataFrame) -> np.ndarray:
    """Each sequence's natural-log probability summed over its tokens from `start` on (surprisal in bits, one per
    row of tokens.csv); sequences with the same text get the first one's sum (the pipeline scores them alike)."""
    seq = tokens["seq"].to_numpy(np.int64)
    keep = tokens["position"].to_numpy(np.int64) >= seqs["start"].to_numpy(np.int64)[seq]
    logp = np.bincount(seq[keep], weights=-np.asarray(surprisal_T, np.float64)[keep] * math.log(2), minlength=len(seqs))
    first = seqs.groupby(["item", "text"], sort=False)["seq"].transform("first").to_numpy(np.int64)
    return logp[first]


def verdicts(seqs: pd.DataFrame, logp: np.ndarray) -> pd.DataFrame:
    """One row per item: task, subset, uid, field, term, ratio, meta, chosen (the first best candidate), correct,
    prob0 (softmax probability of candidate 0 over the candidates' sums) and pred (the chosen completion's text;
    COMPS: the chosen sentence's, as compute_results.py's rank_and_evaluate writes it)."""
    df = seqs.assign(logp=logp)
    wide = df.pivot(index="item", columns="cand", values="logp").to_numpy(np.float64)
    wide = np.where(np.isnan(wide), -np.inf, wide)
    chosen = np.argmax(wide, axis=1)  # the first maximum, as torch.max
    prob0 = np.exp(wide[:, 0] - np.logaddexp.reduce(wide, axis=1))
    first = np.flatnonzero(df["cand"].to_numpy() == 0)  # sequences are item-major, candidates in order
    items = df.iloc[first].set_index("item")
    text, start = df["text"].to_numpy(), df["start_char"].to_numpy()
    whole = df["task"].isin(ewok_comps.WHOLE_SENTENCE_TASKS).to_numpy()
    pred = [text[r] if whole[r] else text[r][start[r] :] for r in first + chosen]
    return (
        items[["task", "subset", "uid", "field", "term", "ratio", "meta"]]
        .assign(chosen=chosen, correct=chosen == 0, prob0=prob0, pred=pred)
        .reset_index()
    )


def task_summary(v: pd.DataFrame) -> tuple[dict[str, dict[str, float]], float]:
    """(blocks, average) of one task folder's verdicts as the pipeline's process_results computes them: per
    metadata key, 100 x correct / total per value (BLiMP: field, UID, linguistics term; the others: UID, then
    their further metadata, EWoK's context type and contrasts); the average over UIDs (entity tracking: per split,
    then over the splits); wug: Spearman's rho in block UID, key avg."""
    task = v["task"].iloc[0]
    if task.startswith("wug"):
        rho = float(stats.spearmanr(v["prob0"], v["ratio"])[0])
        return {"UID": {"avg": rho}}, rho
    pct = lambda key: {k: 100.0 * int(g.sum()) / len(g) for k, g in v.groupby(key, sort=False)["correct"]}
    if task in ("blimp", "supplement"):
        blocks = {"FIELD": pct("field"), "UID": pct("uid"), "LINGUISTICS_TERM": pct("term")}
    else:
        meta = pd.DataFrame([json.loads(m) if isinstance(m, str) and m else {} for m in v["meta"]], index=v.index)
        blocks = {"UID": pct("uid"), **{key.upper(): pct(meta[key]) for key in meta.columns}}
    mean = lambda xs: sum(xs) / len(xs)
    if task != "entity_tracking":
        return blocks, mean(list(blocks["UID"].values()))
    splits = {}
    for split in ET_SPLITS:
        accs = [a for k, a in blocks["UID"].items() if k.startswith(split)]
        if accs:
            splits[split] = mean(accs)
    if not splits:
        raise InputError(
            f"entity tracking folder {v['subset'].iloc[0]!r} holds none of the release's files "
            f"({', '.join(ET_SPLITS)}.jsonl): the pipeline averages over those splits"
        )
    blocks["UID"].update(splits)
    return blocks, mean(list(splits.values()))


def report_text(task: str, blocks: dict[str, dict[str, float]], average: float) -> str:
    """best_temperature_report.txt as the pipeline's create_evaluation_report writes it (temperature 1)."""
    metric = "SPEARMAN'S RHO" if task.startswith("wug") else "ACCURACY"
    lines = ["TEMPERATURE: 1.00", ""]
    for domain, accs in blocks.items():
        lines += [f"### {domain} {metric}"] + [f"{k}: {a:.2f}" for k, a in accs.items()] + [""]
    return "\n".join(lines + [f"### AVERAGE {metric}", f"{average:.2f}", "", ""])


def predictions(v: pd.DataFrame) -> dict[str, Any]:
    """predictions.json: {UID: {"predictions": [{"id": "<UID>_<k>", "pred": <chosen completion>}, ...]}}, with
    "prob" (the first candidate's probability) for the wug tasks."""
    out: dict[str, Any] = {}
    wug = v["task"].iloc[0].startswith("wug")
    for uid, g in v.groupby("uid", sort=False):
        out[uid] = {
            "predictions": [
                {"id": f"{uid}_{k}", "pred": p, **({"prob": float(q)} if wug else {})}
                for k, (p, q) in enumerate(zip(g["pred"], g["prob0"]))
            ]
        }
    return out


def _r2_gain(df: pd.DataFrame, dv: str, predictors: list[str], scale: float = 100.0) -> float:
    """scale x (R² with `pred` - R² without) / (1 - R² without) of OLS of dv on the predictors and all their pairwise
    interactions (reading/run.py, in percent; collate_preds.py's fast metric, scale 1; each model on the rows it can
    use)."""
    import statsmodels.formula.api as smf

    terms = " + ".join(predictors + [f"{a}:{b}" for i, a in enumerate(predictors) for b in predictors[i + 1 :]])
    base = smf.ols(f"{dv} ~ {terms}", df[[dv] + predictors].dropna()).fit().rsquared
    full = smf.ols(f"{dv} ~ {terms} + pred", df[["pred", dv] + predictors].dropna()).fit().rsquared
    return float((full - base) / (1 - base) * scale)


def reading_results(seqs: pd.DataFrame, logp: np.ndarray, table: pd.DataFrame) -> tuple[pd.DataFrame, float, float]:
    """(table with pred and prev_pred, the surprisal in nats of each word after its context and of the previous word
    after its own; eye-tracking score: mean R² gain over the four RT measures; self-paced reading score: R² gain
    with the previous word's length and surprisal in the baseline), as the pipeline's reading/run.py."""
    per = seqs.assign(logp=logp).groupby(["row", "which"])["logp"].sum()
    df = table.copy()
    for which in ("pred", "prev_pred"):
        got = per.xs(which, level="which") if which in per.index.get_level_values("which") else pd.Series(dtype=float)
        df[which] = -got.reindex(df.index).to_numpy(np.float64)
    gains = [_r2_gain(df, dv, _BASE) for dv in EYE_TRACKING]
    eye = sum(gains) / len(gains)  # run.py's arithmetic
    return df, eye, _r2_gain(df, "self_paced_reading_time", _SPILLOVER)


def write_reading(folder: pathlib.Path, df: pd.DataFrame, eye: float, spr: float) -> None:
    """reading/report.txt and predictions.json as the pipeline writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.txt").write_text(f"EYE TRACKING SCORE: {eye:.2f}\nSELF-PACED READING SCORE: {spr:.2f}\n")
    preds = [
        {"id": int(i), "pred": float(p), "prev_pred": float(q)}
        for i, p, q in zip(df.index, df["pred"], df["prev_pred"])
    ]
    (folder / "predictions.json").write_text(json.dumps({"reading": {"predictions": preds}}))


def aoa_surprisal(seqs: pd.DataFrame, logp: np.ndarray) -> pd.DataFrame:
    """The AoA task's rows at one checkpoint (logp: `candidate_logprobs`): target_word, context_id, context and
    surprisal (nats, the word's tokens summed), in the order of cdi_childes.json."""
    aoa = (seqs["task"] == "aoa").to_numpy()
    return (
        seqs[aoa][["uid", "context_id", "context"]]
        .rename(columns={"uid": "target_word"})
        .assign(context_id=lambda d: d["context_id"].astype(int), surprisal=-logp[aoa])
    )


def _sigmoid_aoa(x: np.ndarray, y: np.ndarray, target: float, p0: list[float], bounds=(-np.inf, np.inf)) -> float:
    """AoAEvaluator's fit: a / (1 + exp(-b (x - c))) + d by curve_fit (maxfev 1000); where it crosses `target`, or
    NaN when the fit fails, a or b <= 0, or the target is outside (d, a + d)."""
    from scipy.optimize import curve_fit

    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # OptimizeWarning on flat curves, as the pipeline ignores it
            (a, b, c, d), _ = curve_fit(
                lambda x, a, b, c, d: a / (1 + np.exp(-b * (x - c))) + d, x, y, p0=p0, bounds=bounds, maxfev=1000
            )
    except Exception:
        return float("nan")
    if b <= 0 or a <= 0 or not d < target < a + d:
        return float("nan")
    return float(c - np.log(a / (target - d) - 1) / b)


def curve_fitness(results: pd.DataFrame, children: pd.DataFrame) -> float:
    """The AoA task's score (utils.py AoAEvaluator.compute_curve_fitness): Pearson r over words of the children's AoA
    (months; 50% producing, fitted with bounds) and the model's (log10 words; every (word count, surprisal) point of
    the word pooled, threshold halfway from log2(300,000), as the pipeline writes it, to the lowest surprisal); 0
    below 3 words. results: target_word, word_count, surprisal (in checkpoint order)."""
    ages = np.array([int(a) for a in map(str, range(16, 31)) if a in children.columns])
    pairs = []
    for word, g in results.dropna(subset=["surprisal"]).groupby("target_word", sort=False):
        hit = np.flatnonzero(children["word"].to_numpy() == word)
        if not len(hit) or len(g) < 3:
            continue
        props = children[[str(a) for a in ages]].to_numpy(np.float64)[hit[0]]
        ok = ~np.isnan(props)
        child = (
            _sigmoid_aoa(
                ages[ok],
                props[ok],
                0.5,
                [1.0, 0.1, ages[ok].mean(), 0.0],
                ([0, 0, ages[ok][0], -0.5], [2.0, 1.0, ages[ok][-1], 0.5]),
            )
            if ok.sum() >= 3
            else np.nan
        )
        if np.isnan(child) or not ages[ok][0] <= child <= ages[ok][-1]:
            continue
        steps, neg = g["word_count"].to_numpy(np.float64), -g["surprisal"].to_numpy(np.float64)
        chance = np.log2(300_000)
        x = np.log10(steps + 1)
        model = _sigmoid_aoa(
            x, neg, -(chance - 0.5 * (chance + neg.max())), [neg.max() - neg.min(), 1.0, x.mean(), neg.min()]
        )
        if not np.isnan(model) and steps[0] <= 10**model - 1 <= steps[-1]:
            pairs.append((model, child))
    return float(stats.pearsonr(*zip(*pairs))[0]) if len(pairs) >= 3 else 0.0


def write_aoa(
    folder: pathlib.Path, model: str, per_step: list[tuple[str, float, pd.DataFrame]], children: pd.DataFrame
) -> float:
    """AoA_word/surprisal.json as the pipeline writes it (results ordered checkpoint, word, context) and babyjax's
    report.txt with the curve fitness (the pipeline computes it at collation); returns the fitness."""
    results = pd.concat(
        [
            df.assign(step=name, word_count=int(count) if float(count).is_integer() else count)
            for name, count, df in per_step
        ]
    )
    fitness = curve_fitness(results, children)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"model_name": model, "use_bos_only": False, "total_steps": len(per_step), "completed_steps": len(per_step)}
    rows = results[["step", "word_count", "target_word", "context_id", "context", "surprisal"]].to_dict("records")
    (folder / "surprisal.json").write_text(json.dumps({"metadata": meta, "results": rows}, indent=2))
    (folder / "report.txt").write_text(f"CURVE FITNESS: {fitness:.2f}\n")
    return fitness


def revisions(index: Iterable[dict], step: int) -> list[str]:
    """The pipeline's names of a checkpoint: chck_<N>M for each words mark it is the first to reach, main for the
    series' last checkpoint, step_<step> when it has neither."""
    entries = sorted(index, key=lambda e: int(e["step"]))
    names = [
        f"chck_{m // 1_000_000}M"
        for m in MARKS
        if next((int(e["step"]) for e in entries if whole_words(e.get("words_seen", -1)) >= m), None) == step
    ]
    names += ["main"] if entries and int(entries[-1]["step"]) == step else []
    return names or [f"step_{step}"]


def write_checkpoint(
    root: pathlib.Path,
    model: str,
    names: list[str],
    seqs: pd.DataFrame,
    logp: np.ndarray,
    reading: pd.DataFrame | None = None,
    backend: str = "causal",
) -> list[dict[str, Any]]:
    """The results tree of one checkpoint (logp: `candidate_logprobs`) under root/<model>/<name>/zero_shot/<backend>/
    <task>/<subset>/ (reading: .../<backend>/reading/) for each of its names; returns the tidy rows (task, subset,
    block, key, value)."""
    read = (seqs["task"] == "reading").to_numpy()
    rows = []
    if read.any() and reading is not None:
        df, eye, spr = reading_results(seqs[read], logp[read], reading)
        for name in names:
            write_reading(root / model / name / "zero_shot" / backend / "reading", df, eye, spr)
        rows += [
            {"task": "reading", "subset": "reading", "block": "AVERAGE", "key": k, "value": x}
            for k, x in (("eye_tracking", eye), ("self_paced_reading", spr))
        ]
    choice = ~(read | (seqs["task"] == "aoa").to_numpy())
    if not choice.any():
        return rows
    v = verdicts(seqs[choice], logp[choice])
    for (task, subset), g in v.groupby(["task", "subset"], sort=False):
        blocks, average = task_summary(g)
        pipeline_task = "blimp" if task == "supplement" else task
        for name in names:
            folder = root / model / name / "zero_shot" / backend / pipeline_task / subset
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "best_temperature_report.txt").write_text(report_text(task, blocks, average))
            (folder / "predictions.json").write_text(json.dumps(predictions(g)))
        rows += [{"task": task, "subset": subset, "block": "AVERAGE", "key": "average", "value": average}]
        rows += [
            {"task": task, "subset": subset, "block": b, "key": k, "value": a}
            for b, accs in blocks.items()
            for k, a in accs.items()
        ]
    return rows


def _aoa_steps(index: Sequence[dict], done: list[tuple[int, float, np.ndarray]]) -> list[tuple[str, float, int]]:
    """(name, word count, position in `done`) of the checkpoints the AoA task uses: the pipeline's chck_<N>M ones,
    counted at N million words; a run that reaches no mark uses every scored checkpoint at its words seen."""
    marked = [
        (n, float(n[5:-1]) * 1e6, i)
        for i, (step, _, _) in enumerate(done)
        for n in revisions(index, step)
        if n.startswith("chck_")
    ]
    return marked or [(f"step_{step}", words, i) for i, (step, words, _) in enumerate(done)]


def write_results(
    out: pathlib.Path,
    runs: Sequence[tuple[str, Sequence[dict], Iterable]],
    ev: Any,
    tokens: pd.DataFrame,
    limit: int,
    backend: str = "causal",
) -> None:
    """The pipeline's results tree (out/results/<run>/<revision>/zero_shot/<backend>/...) of every checkpoint scored so
    far, the AoA task over them, and babylm2025.csv: one row per run, checkpoint, task folder and number. runs:
    (name, series index, done rows (step, words seen, surprisal)) each. backend: the pipeline's backend whose rules
    the scores follow (causal, mlm, mntp)."""
    seqs, rows = ev.sequences, []
    folders = {data.task_of(f): f for f in ev.source.split(",")}
    reading = data.read_reading(folders["reading"], limit) if "reading" in folders else None
    for name, index, done_rows in runs:
        done = list(done_rows)
        logps = [candidate_logprobs(surprisal_T, tokens, seqs) for _, _, surprisal_T in done]
        for (step, words, _), logp in zip(done, logps):
            names = revisions(index, step)
            rows += [
                {"run": name, "step": step, "words_seen": words, "revision": " ".join(names), **row}
                for row in write_checkpoint(out / "results", name, names, seqs, logp, reading, backend)
            ]
        if "aoa" in folders and done:
            per_step = [(n, count, aoa_surprisal(seqs, logps[i])) for n, count, i in _aoa_steps(index, done)]
            children = pd.read_csv(pathlib.Path(folders["aoa"]) / data.AOA_CHILDREN)
            fitness = write_aoa(
                out / "results" / name / "main" / "zero_shot" / backend / "AoA_word", name, per_step, children
            )
            rows.append(
                {
                    "run": name,
                    "step": done[-1][0],
                    "words_seen": done[-1][1],
                    "revision": " ".join(revisions(index, done[-1][0])),
                    "task": "aoa",
                    "subset": "AoA_word",
                    "block": "AVERAGE",
                    "key": "curve_fitness",
                    "value": fitness,
                }
            )
    _write_table(out / "babylm2025.csv", pd.DataFrame(rows, columns=TABLE_COLUMNS), [name for name, _, _ in runs])


def _write_table(path: pathlib.Path, table: pd.DataFrame, runs: list[str]) -> None:
    """babylm2025.csv: the rows of `runs` replaced, those of runs scored into the folder by earlier jobs kept;
    written beside and renamed into place."""
    if path.is_file() and path.stat().st_size:
        old = pd.read_csv(path)
        table = pd.concat([old[~old["run"].astype(str).isin(runs)], table]) if len(old) else table
    tmp = path.with_suffix(".csv.tmp")
    table.to_csv(tmp, index=False)
    os.replace(tmp, path)

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
import pathlib
from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy import stats

# the pipeline's intermediate checkpoints (chck_1M ... chck_9M, chck_10M ... chck_100M, chck_200M ... chck_1000M)
MARKS = [m * 1_000_000 for m in (*range(1, 10), *range(10, 101, 10), *range(200, 1001, 100))]
ET_SPLITS = ("regular", "ambiref", "move_contents")
EYE_TRACKING = ("RTfirstfix", "RTfirstpass", "RTgopast", "RTrightbound")
_BASE = ["Subtlex_log10", "length", "context_length"]
_SPILLOVER = _BASE + ["prev_length", "prev_pred"]


def candidate_logprobs(surprisal_T: np.ndarray, tokens: pd.DataFrame, seqs: pd.DataFrame) -> np.ndarray:
    """Each sequence's natural-log probability summed over its tokens from `start` on (surprisal in bits, one per
    row of tokens.csv); sequences with the same text get the first one's sum (the pipeline scores them alike)."""
    seq = tokens["seq"].to_numpy(np.int64)
    keep = tokens["position"].to_numpy(np.int64) >= seqs["start"].to_numpy(np.int64)[seq]
    logp = np.bincount(seq[keep], weights=-np.asarray(surprisal_T, np.float64)[keep] * math.log(2),
                       minlength=len(seqs))
    first = seqs.groupby(["item", "text"], sort=False)["seq"].transform("first").to_numpy(np.int64)
    return logp[first]


def verdicts(seqs: pd.DataFrame, logp: np.ndarray) -> pd.DataFrame:
    """One row per item: task, subset, uid, field, term, ratio, chosen (the first best candidate), correct, prob0
    (softmax probability of candidate 0 over the candidates' sums) and pred (the chosen completion's text)."""
    df = seqs.assign(logp=logp)
    wide = df.pivot(index="item", columns="cand", values="logp").to_numpy(np.float64)
    wide = np.where(np.isnan(wide), -np.inf, wide)
    chosen = np.argmax(wide, axis=1)  # the first maximum, as torch.max
    prob0 = np.exp(wide[:, 0] - np.logaddexp.reduce(wide, axis=1))
    first = np.flatnonzero(df["cand"].to_numpy() == 0)  # sequences are item-major, candidates in order
    items = df.iloc[first].set_index("item")
    text, start = df["text"].to_numpy(), df["start_char"].to_numpy()
    pred = [text[r][start[r]:] for r in first + chosen]
    return items[["task", "subset", "uid", "field", "term", "ratio"]].assign(
        chosen=chosen, correct=chosen == 0, prob0=prob0, pred=pred).reset_index()


def task_summary(v: pd.DataFrame) -> tuple[dict[str, dict[str, float]], float]:
    """(blocks, average) of one task folder's verdicts as the pipeline's process_results computes them: per
    metadata key, 100 x correct / total per value; the average over UIDs (entity tracking: per split, then over
    the splits); wug: Spearman's rho in block UID, key avg."""
    task = v["task"].iloc[0]
    if task.startswith("wug"):
        rho = float(stats.spearmanr(v["prob0"], v["ratio"])[0])
        return {"UID": {"avg": rho}}, rho
    pct = lambda key: {k: 100.0 * g.mean() for k, g in v.groupby(key, sort=False)["correct"]}  # noqa: E731
    blocks = {"UID": pct("uid")} if task == "entity_tracking" else \
        {"FIELD": pct("field"), "UID": pct("uid"), "LINGUISTICS_TERM": pct("term")}
    if task != "entity_tracking":
        return blocks, float(np.mean(list(blocks["UID"].values())))
    splits = {}
    for split in ET_SPLITS:
        accs = [a for k, a in blocks["UID"].items() if k.startswith(split)]
        if accs:
            splits[split] = float(np.mean(accs))
    blocks["UID"].update(splits)
    return blocks, float(np.mean(list(splits.values())))


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
        out[uid] = {"predictions": [{"id": f"{uid}_{k}", "pred": p, **({"prob": float(q)} if wug else {})}
                                    for k, (p, q) in enumerate(zip(g["pred"], g["prob0"]))]}
    return out


def _r2_gain(df: pd.DataFrame, dv: str, predictors: list[str]) -> float:
    """100 x (R² with `pred` - R² without) / (1 - R² without) of OLS of dv on the predictors and all their pairwise
    interactions (reading/run.py; each model on the rows it can use)."""
    import statsmodels.formula.api as smf

    terms = " + ".join(predictors + [f"{a}:{b}" for i, a in enumerate(predictors) for b in predictors[i + 1:]])
    base = smf.ols(f"{dv} ~ {terms}", df[[dv] + predictors].dropna()).fit().rsquared
    full = smf.ols(f"{dv} ~ {terms} + pred", df[["pred", dv] + predictors].dropna()).fit().rsquared
    return float((full - base) / (1 - base) * 100)


def reading_results(seqs: pd.DataFrame, logp: np.ndarray, data: pd.DataFrame) -> tuple[pd.DataFrame, float, float]:
    """(data with pred and prev_pred, the surprisal in nats of each word after its context and of the previous word
    after its own; eye-tracking score: mean R² gain over the four RT measures; self-paced reading score: R² gain
    with the previous word's length and surprisal in the baseline), as the pipeline's reading/run.py."""
    per = seqs.assign(logp=logp).groupby(["row", "which"])["logp"].sum()
    df = data.copy()
    for which in ("pred", "prev_pred"):
        got = per.xs(which, level="which") if which in per.index.get_level_values("which") else pd.Series(dtype=float)
        df[which] = -got.reindex(df.index).to_numpy(np.float64)
    eye = float(np.mean([_r2_gain(df, dv, _BASE) for dv in EYE_TRACKING]))
    return df, eye, _r2_gain(df, "self_paced_reading_time", _SPILLOVER)


def write_reading(folder: pathlib.Path, df: pd.DataFrame, eye: float, spr: float) -> None:
    """reading/report.txt and predictions.json as the pipeline writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.txt").write_text(f"EYE TRACKING SCORE: {eye:.2f}\nSELF-PACED READING SCORE: {spr:.2f}\n")
    preds = [{"id": int(i), "pred": float(p), "prev_pred": float(q)}
             for i, p, q in zip(df.index, df["pred"], df["prev_pred"])]
    (folder / "predictions.json").write_text(json.dumps({"reading": {"predictions": preds}}))


def revisions(index: Iterable[dict], step: int) -> list[str]:
    """The pipeline's names of a checkpoint: chck_<N>M for each words mark it is the first to reach, main for the
    series' last checkpoint, step_<step> when it has neither."""
    entries = sorted(index, key=lambda e: int(e["step"]))
    names = [f"chck_{m // 1_000_000}M" for m in MARKS
             if next((int(e["step"]) for e in entries if float(e.get("words_seen", -1)) >= m), None) == step]
    names += ["main"] if entries and int(entries[-1]["step"]) == step else []
    return names or [f"step_{step}"]


def write_checkpoint(root: pathlib.Path, model: str, names: list[str], seqs: pd.DataFrame, tokens: pd.DataFrame,
                     surprisal_T: np.ndarray, reading: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """The results tree of one checkpoint under root/<model>/<name>/zero_shot/causal/<task>/<subset>/ (reading:
    .../causal/reading/) for each of its names; returns the tidy rows (task, subset, block, key, value)."""
    logp = candidate_logprobs(surprisal_T, tokens, seqs)
    read = (seqs["task"] == "reading").to_numpy()
    rows = []
    if read.any() and reading is not None:
        df, eye, spr = reading_results(seqs[read], logp[read], reading)
        for name in names:
            write_reading(root / model / name / "zero_shot" / "causal" / "reading", df, eye, spr)
        rows += [{"task": "reading", "subset": "reading", "block": "AVERAGE", "key": k, "value": x}
                 for k, x in (("eye_tracking", eye), ("self_paced_reading", spr))]
    if read.all():
        return rows
    v = verdicts(seqs[~read], logp[~read])
    for (task, subset), g in v.groupby(["task", "subset"], sort=False):
        blocks, average = task_summary(g)
        pipeline_task = "blimp" if task == "supplement" else task
        for name in names:
            folder = root / model / name / "zero_shot" / "causal" / pipeline_task / subset
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "best_temperature_report.txt").write_text(report_text(task, blocks, average))
            (folder / "predictions.json").write_text(json.dumps(predictions(g)))
        rows += [{"task": task, "subset": subset, "block": "AVERAGE", "key": "average", "value": average}]
        rows += [{"task": task, "subset": subset, "block": b, "key": k, "value": a}
                 for b, accs in blocks.items() for k, a in accs.items()]
    return rows

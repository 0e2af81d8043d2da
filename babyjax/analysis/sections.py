"""The report's sections about the study rather than the token curves: the runs and evaluation sets described,
minimal-pair accuracy, training loss and generated text; and the Markdown table every section uses."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from babyjax.analysis import generation, plots, xia
from babyjax.checkpoints.run import RunDir
from babyjax.errors import UserError
from babyjax.imported.run import ImportedRun
from babyjax.model import objectives
from babyjax.model import transformer as model
from babyjax.score.store import ScoreOutput
from babyjax.train.metrics import read_metrics


def md_table(df: pd.DataFrame, floatfmt: str = "{:.3g}") -> str:
    if df.empty:
        return "_(empty)_\n"

    def cell(v):
        if isinstance(v, (int, np.integer)) or (
            isinstance(v, (float, np.floating)) and float(v).is_integer() and abs(v) < 1e15
        ):
            return f"{int(v):,}"
        return floatfmt.format(v) if isinstance(v, (float, np.floating)) else str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(map(cell, r)) + " |" for _, r in df.iterrows()]) + "\n"


def model_cost(run_dir: pathlib.Path, vocab_size: int) -> tuple[float, int] | None:
    """(training FLOPs per token at its data.seq_len, parameter count) of the run's model in `run_dir`, for the
    score output's vocabulary size (babyjax.model.transformer.flops_per_token, num_params); None if unreadable."""
    try:
        run = RunDir.open(run_dir, what="each run folder of --runs-dir")
        cfg = run.model_config(vocab_size)
        seq_len = int(run.config().data.seq_len)
    except (UserError, OSError, AttributeError, KeyError, TypeError, ValueError):
        return None
    return model.flops_per_token(cfg, seq_len), model.num_params(cfg)


def pairs_section(outputs: Sequence[ScoreOutput], out: pathlib.Path) -> list[str]:
    """Minimal-pair accuracy over training, and at the final checkpoint per suite and field."""
    pairs = [so.pairs for so in outputs if so.pairs is not None]
    md = ["## Minimal pairs", ""]
    if not pairs:
        return md + ["_No pairs.csv in the score outputs._", ""]
    p = pd.concat(pairs)
    f = plots.pairs_accuracy(out / "pairs_accuracy.png", p)
    last = p[p["step"] == p.groupby("run")["step"].transform("max")]
    fin = last.groupby(["suite", "field"], as_index=False)[["correct", "ties", "n"]].sum()
    fin["accuracy"] = fin["correct"] / fin["n"]
    return md + [
        f"![minimal-pair accuracy]({f.name})",
        "",
        "Final checkpoint, pooled over runs and paradigms (ties counted separately, not as correct):",
        "",
        md_table(fin),
    ]


def babylm2025_section(outputs: Sequence[ScoreOutput], out: pathlib.Path) -> list[str]:
    """The BabyLM 2025 zero-shot tasks (score outputs of --kind babylm2025; their babylm2025.csv): each task's
    average across training and at each run's last scored checkpoint."""
    tables = [
        pd.read_csv(so.path / "babylm2025.csv")
        for so in outputs
        if so.meta.get("kind") == "babylm2025"
        and (so.path / "babylm2025.csv").is_file()
        and (so.path / "babylm2025.csv").stat().st_size > 1
    ]
    avg = pd.concat(tables) if tables else pd.DataFrame()
    avg = avg[avg["block"] == "AVERAGE"] if len(avg) else avg
    if not len(avg):
        return []
    avg["subset"] = np.where(avg["task"] == "reading", "reading: " + avg["key"], avg["subset"])
    xcol = "words_seen" if avg["words_seen"].gt(0).any() else "step"
    curve = avg[avg["task"] != "aoa"].rename(columns={xcol: "x"})  # the AoA task is one number over the series
    curve.attrs["xlabel"] = xcol.replace("_", " ")
    f = plots.babylm2025_tasks(out / "babylm2025_tasks.png", curve)
    last = avg[avg["step"] == avg.groupby("run")["step"].transform("max")]
    table = last.pivot_table(index=["run", "step"], columns="subset", values="value").reset_index()
    return [
        "## BabyLM 2025 zero-shot tasks (the official pipeline's rules)",
        "",
        f"![BabyLM 2025 tasks]({f.name})",
        "",
        "Task averages as the pipeline reports them (accuracy in percent, "
        "macro over UIDs; wug: Spearman rho; reading: R² gain in percent; AoA: Pearson r with children's AoA, "
        "over the whole series) at each run's last scored checkpoint; every checkpoint's numbers are in the "
        "score output's babylm2025.csv and its results/ tree (docs/science.md).",
        "",
        md_table(table, "{:.2f}"),
    ]


def _pair_accuracy(outputs: Sequence[ScoreOutput]) -> pd.DataFrame:
    """Minimal-pair accuracy per run and step, pooled over every pairs output and paradigm (ties not correct)."""
    pairs = [so.pairs for so in outputs if so.pairs is not None]
    if not pairs:
        return pd.DataFrame(columns=["run", "step", "accuracy"])
    acc = pd.concat(pairs).groupby(["run", "step"], as_index=False)[["correct", "n"]].sum()
    return acc.assign(accuracy=acc["correct"] / acc["n"])


def equal_perplexity_section(outputs: Sequence[ScoreOutput], out: pathlib.Path, notes: list[str]) -> list[str]:
    """Xia et al. (2023): the runs compared at equal validation perplexity of each tokens output's held-out tokens:
    the step and tokens seen at which each run reaches each level, and its minimal-pair accuracy there."""
    md, acc = ["## Runs at equal validation perplexity (Xia et al. 2023)", ""], _pair_accuracy(outputs)
    for so in [so for so in outputs if so.meta.get("kind") in ("tokens", "text") and len(so.surprisal) >= 2]:
        ck = so.checkpoints
        df = xia.equal_perplexity({r: (ck[r]["step"].to_numpy(), so.perplexity(r)) for r in so.surprisal})
        if df.empty:
            notes.append(f"{so.name}: the runs' validation perplexities share no range: no equal-perplexity table")
            continue
        ok = df["step"].notna()
        df["tokens_seen"] = [
            np.interp(st, ck[r]["step"], ck[r]["tokens_seen"]) if o else np.nan
            for r, st, o in zip(df["run"], df["step"], ok)
        ]
        df["pair_accuracy"] = [_at_step(acc[acc["run"] == r], st) for r, st in zip(df["run"], df["step"])]
        df.to_csv(out / f"{so.name}_equal_perplexity.csv", index=False)
        md += [
            f"Output `{so.name}`: validation perplexity = 2 ** the mean surprisal (bits) of its {len(so.tokens):,} "
            "held-out tokens at each checkpoint; five levels inside the range every run passes through; the step "
            "where a run first reaches a level is interpolated in log step, and tokens seen and minimal-pair "
            "accuracy (pooled over all pairs outputs) at that step.",
            "",
            md_table(df, "{:.4g}"),
        ]
    return md if len(md) > 2 else md + ["_Needs a tokens output with 2+ runs._", ""]


def _at_step(acc: pd.DataFrame, step: float) -> float:
    """A run's accuracy at `step`, linear in log10 step between its scored checkpoints after step 0; NaN outside."""
    acc = acc[acc["step"] > 0].sort_values("step")
    if not np.isfinite(step) or acc.empty or not acc["step"].min() <= step <= acc["step"].max():
        return float("nan")
    return float(np.interp(np.log10(step), np.log10(acc["step"]), acc["accuracy"]))


def loss_section(rd: pathlib.Path | None, run_names: Sequence[str], out: pathlib.Path, notes: list[str]) -> list[str]:
    """Training loss of each run (its metrics.jsonl under --runs-dir)."""
    metrics = {}
    for r in run_names:
        try:
            rows = read_metrics(RunDir(rd / r).path) if rd else []
        except ValueError as err:
            notes.append(f"run {r}: training loss skipped: {err}")
            rows = []
        if rows:
            metrics[r] = pd.DataFrame(rows)
    if not metrics:
        return ["## Training loss", "", "_No metrics.jsonl found (pass --runs-dir with one folder per run)._", ""]
    f = plots.training_loss(out / "training_loss.png", metrics)
    return ["## Training loss", "", f"![training loss]({f.name})", ""]


# The training domains of the official releases, per layout (file stems of babylm_10M/ or train_10M/): a folder in a
# release layout holding other domains (a sample, another corpus laid out the same way) is not called a release.
RELEASE_DOMAINS = {
    "2023": {
        "aochildes",
        "bnc_spoken",
        "cbt",
        "children_stories",
        "gutenberg",
        "open_subtitles",
        "qed",
        "simple_wikipedia",
        "switchboard",
        "wikipedia",
    },
    "2024+": {"bnc_spoken", "childes", "gutenberg", "open_subtitles", "simple_wiki", "switchboard"},
}


def corpus_text(data) -> str:
    """A run's training corpus (its config.data) as the report names it: the folder and the release layout that
    babyjax.data.babylm finds there (2023 or 2024+), the packaged sample, or the official download."""
    from babyjax.data import babylm  # here: it loads TensorFlow Datasets, which the rest of the analysis never needs

    track, folder = str(data.track), str(data.dir or "")
    limit = int(data.max_train_lines)
    lines = f", first {limit:,} lines" if limit > 0 else ""
    if not folder:  # babylm.get_builder: $BABYJAX_DATA_DIR at training time (not recorded), else the download
        return f"{track}{lines} of $BABYJAX_DATA_DIR at training, else the official BabyLM 2023 download (no data.dir)"
    try:
        files = babylm.find_release(folder, track)
    except (UserError, OSError):  # moved, removed, or never laid out as a release: name only what the config says
        return f"{track} text{lines} of folder {folder} (no BabyLM release layout found there now)"
    train = files["train"][0].parent
    layout = next(k for k, names in babylm.LAYOUTS.items() if names[track] == train.name)
    domains = sorted({p.name.rsplit(".", 1)[0] for p in files["train"]})
    if any(q.name.startswith("babylm_sample-") for q in train.parents[:2]):  # where babylm.sample_release unpacks
        return f"packaged BabyLM sample, {layout} layout ({', '.join(domains)}){lines} (folder {folder})"
    if set(domains) == RELEASE_DOMAINS[layout]:
        return f"BabyLM {layout} {track}{lines} (folder {folder})"
    return f"folder {folder}: {track} in the BabyLM {layout} layout, not a release ({', '.join(domains)}){lines}"


def run_row(rd: pathlib.Path, run: str) -> dict:
    """What a reader needs about one run: corpus, model, training and checkpoints (its config.json and series)."""
    d = RunDir.open(rd / run, what="each run folder of --runs-dir")
    c, index = d.config(), d.series_index()
    last = index[-1] if index else {}
    cost = model_cost(rd / run, int(c.tokenizer.vocab_size))
    return {
        "run": run,
        "corpus": corpus_text(c.data),
        "seed": c.seed,
        "model": f"{c.model.style}, {c.model.num_layers} layers x {c.model.d_model}, {cost[1] / 1e6:.2f}M parameters"
        if cost
        else c.model.style,
        "tokenizer": f"{c.tokenizer.model_type} SentencePiece, vocab {c.tokenizer.vocab_size:,}",
        "training": f"{objectives.describe(c)}, {d.num_steps():,} steps x {c.train.batch_size} x {c.data.seq_len} "
        f"tokens ({c.data.packing}), {c.optim.schedule} lr {c.optim.lr:g}",
        "words seen": f"{float(last.get('words_seen', 0)):,.0f}",
        "tokens seen": f"{float(last.get('tokens_seen', 0)):,.0f}",
        "checkpoints": f"{len(index)} ({c.ckpt.schedule} schedule)",
    }


def imported_row(run: str, source: str) -> dict[str, Any]:
    """What a reader needs about an imported series (`--run NAME=hf:PATH`): its model and revisions; its corpus and
    training are not known here."""
    imported = ImportedRun(source.removeprefix("hf:"))
    cfg, index, tok = imported.model_config(), imported.series_index(), imported.tokenizer()
    last = index[-1]
    return {
        "run": run,
        "corpus": "not known (an imported series)",
        "seed": "",
        "model": f"{cfg.style}, {cfg.num_layers} layers x {cfg.d_model}, {model.num_params(cfg) / 1e6:.2f}M "
        f"parameters, imported from {source}",
        "tokenizer": f"{type(tok).__name__}, vocab {tok.vocab_size:,}",
        "training": f"{imported.objective} (as its config says)",
        "words seen": f"{float(last['words_seen']):,.0f}" if "words_seen" in last else "not known",
        "tokens seen": f"{float(last['tokens_seen']):,.0f}" if "tokens_seen" in last else "not known",
        "checkpoints": f"{len(index)} revisions (steps {index[0]['step']} to {last['step']})",
    }


def study_section(
    outputs: Sequence[ScoreOutput], rd: pathlib.Path | None, run_names: Sequence[str], notes: list[str]
) -> list[str]:
    """The study described: each run (from its run folder, or an imported series from its files) and each
    evaluation set (from its score output)."""
    rows = []
    sources = {r: str(src) for so in outputs for r, src in so.meta.get("run_workdirs", {}).items()}
    for r in run_names:
        imported = sources.get(r, "").startswith("hf:")
        if not (imported or rd):
            continue
        try:
            rows.append(imported_row(r, sources[r]) if imported else run_row(rd, r))
        except (UserError, OSError, AttributeError, KeyError, TypeError, ValueError) as err:
            notes.append(f"run {r}: not described: {err}")
    evals = pd.DataFrame(
        [
            {
                "output": so.name,
                "kind": so.meta.get("kind"),
                "eval set": so.meta.get("eval_set"),
                "tokens scored": so.meta.get("num_tokens"),
                "sequences": so.meta.get("num_sequences"),
                "contexts": ", ".join(f"{k}: {v}" for k, v in so.meta.get("contexts", {}).items()) or "window",
                "first token": so.meta.get("first_token_policy"),
                "scoring": so.meta.get("scoring", "causal"),
            }
            for so in outputs
        ]
    )
    md = ["## The study", ""]
    md += (
        [md_table(pd.DataFrame(rows))]
        if rows
        else ["_Runs not described: " + ("see notes._" if rd else "pass --runs-dir._"), ""]
    )
    return md + [
        "Evaluation sets (held out from training; tokens-in-context samples come from the test split). "
        "Scoring: causal (log p of each token given the tokens before it), pll_original / "
        "pll_within_word_l2r (masked LMs' pseudo-log-likelihood: the token masked, and in the second form "
        "the later pieces of its word too), mntp (the masked token read from the position before it):",
        "",
        md_table(evals),
    ]


def generations_section(outputs: Sequence[ScoreOutput], rd: pathlib.Path | None, run_names: Sequence[str]) -> list[str]:
    """Text generated at checkpoints (generations*.json of the score outputs and the run directories: greedy and,
    when made, sampled), measured across steps (babyjax.analysis.generation), with a few examples."""
    files = {f"{so.path.name}/{f.name}": f for so in outputs for f in sorted(so.path.glob("generations*.json"))}
    for r in run_names if rd else []:
        files.update({f"{r}/{f.name}": f for f in sorted((rd / r).glob("generations*.json"))})
    md = ["## Generated text at checkpoints", ""]
    if not files:
        return md + ["_No generations.json (format {step: {prompt: text}}) in the score outputs or run folders._", ""]
    md += [
        "Per step: mean continuation length in words (generation stops at EOS or after its token budget), the "
        "share of a continuation's word 3-grams that repeat an earlier one, and distinct-1/2 over all "
        "continuations of the step. Chang, Tu & Bergen (2023) report short repetitive text early and longer, "
        "more varied text later.",
        "",
    ]
    for src, f in files.items():
        try:
            by_step = json.loads(f.read_text())
        except json.JSONDecodeError as err:
            md += [f"### `{src}`", "", f"_unreadable: {err}_", ""]
            continue
        md += [f"### `{src}`", "", md_table(generation.text_measures(by_step))]
        steps = sorted((s for s in by_step if str(s).isdigit()), key=int)
        for step in steps[:1] + steps[-1:] if len(steps) > 1 else steps:
            texts = list(by_step[step].items())[:3] if isinstance(by_step[step], dict) else []
            md += [f"**step {step}** (first prompts)", ""] + [f"- *{pr}* -> {str(tx)!r}" for pr, tx in texts] + [""]
    return md


CHANG = "Chang, Tu & Bergen 2023 (TACL 2024)"
LC = "tylerachang/lm-learning-curves"
REFERENCES = [  # measure, definition as computed, paper, released code it matches (docs/science.md)
    (
        "final_surprisal",
        "mean surprisal (bits) over the last 11 scored checkpoints",
        CHANG,
        f"{LC} utils/annotator.py get_confidence_scores",
    ),
    (
        "within_run_var",
        "standard deviation (bits) of surprisal over the last 11 checkpoints",
        CHANG,
        f"{LC} utils/annotator.py get_variability_scores",
    ),
    (
        "aoa_gam",
        "first log10 step on a 1,000-point grid where the GAM (pygam, 25 splines, lambda grid search) is at "
        "or below halfway between chance and its minimum",
        CHANG,
        f"{LC} utils/annotator.py get_gam_aoas",
    ),
    (
        "aoa_sigmoid",
        "crossing of halfway between chance and the raw minimum by a sigmoid fitted as scipy curve_fit "
        "(MINPACK) fits it",
        CHANG,
        f"{LC} utils/formula_utils.py compute_aoa_vals",
    ),
    (
        "forgettability",
        "sum of the GAM curve's increases (bits)",
        CHANG,
        f"{LC} utils/annotator.py get_forgettability_scores",
    ),
    (
        "cross_run_var",
        "mean squared difference (bits^2) of two runs' GAM curves, averaged over run pairs",
        CHANG,
        f"{LC} utils/annotator.py get_crossrun_variability",
    ),
    (
        "unlearned",
        "GAM minimum above the 95th percentile of all tokens' minima",
        CHANG,
        f"{LC} utils/annotator.py get_unlearned_mask",
    ),
    (
        "partner rank",
        "run-b curves closer to a token's run-a curve than its own run-b curve",
        CHANG,
        f"{LC} analysis/run_crossrun_similarity.py",
    ),
    (
        "unigram, 5-gram",
        "maximum-likelihood n-gram log2 p from the run's training data, orders 3-5 pruned below 2, backoff",
        CHANG,
        f"{LC} utils/annotator.py get_ngram_surprisals(_with_backoff), annotate_curves.py",
    ),
    (
        "contextual_diversity",
        "distinct preceding ids (window 30, 10,000 most frequent) minus a GAM on log frequency",
        CHANG,
        f"{LC} utils/annotator.py get_contextual_diversities, adjust_contextual_diversities",
    ),
    (
        "context_logprob",
        "mean unigram log2 p of the context tokens",
        CHANG,
        f"{LC} utils/annotator.py get_context_ngram_logppls",
    ),
    (
        "pos, pos_bilu",
        "Penn tag of the token's word (TextBlob's pattern tagger; theirs: spaCy) and its place in it",
        CHANG,
        f"{LC} utils/annotator.py get_pos_tag_sequences",
    ),
    (
        "regressions, VIFs",
        "predictors added in order, adjusted R^2, likelihood-ratio tests; VIFs",
        CHANG,
        f"{LC} analysis/run_regressions.py run_lrts, main",
    ),
    (
        "Xia classes",
        "OLS of ppl / ppl at the window's first checkpoint on ln x, p < 0.05; stagnation bands",
        "Xia et al. 2023 (ACL)",
        "xiamengzhou/training_trajectory_analysis utils.py linear_with_statistical_test",
    ),
    (
        "equal perplexity",
        "step, tokens seen and pair accuracy where each run first reaches shared validation perplexity levels",
        "Xia et al. 2023 (ACL)",
        "the paper's comparisons across sizes (no released code)",
    ),
    (
        "word AoA (+ variants)",
        "sigmoid AoA of a word's mean curve over up to 512 occurrences with 7+ tokens of context",
        "Chang & Bergen 2022 (TACL)",
        "tylerachang/word-acquisition-language-models lm_code/word_evaluation.py, r_code/tacl_analyses.rmd",
    ),
    (
        "type-level effects",
        "Spearman rho of type means; bootstrap over types and sequences",
        "this project",
        "babyjax/analysis/effects.py (docs/science.md, Effects)",
    ),
]


def references_section() -> list[str]:
    """Markdown: each measure of the report, its definition and the paper and released-code file it matches."""
    df = pd.DataFrame(REFERENCES, columns=["measure", "definition as computed", "paper", "released code matched"])
    return [
        "## Measures and their references",
        "",
        "Where a paper and its released code differ, the code is "
        "followed (docs/science.md lists every difference and what was checked).",
        "",
        md_table(df),
    ]

"""One study (one or more score outputs of the same runs, and optionally their run directories) -> one Markdown
report with PNG figures and CSV tables (python -m babyjax.analyze)."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from babyjax.analysis import crossrun, curves, xia
from babyjax.analysis.finetune_sections import finetune_section, finetuned_runs, is_finetune_output
from babyjax.analysis.frequency_sections import predictors_section, token_sample_rows
from babyjax.analysis.sections import (
    babylm2025_section,
    equal_perplexity_section,
    generations_section,
    loss_section,
    pairs_section,
    references_section,
    study_section,
)
from babyjax.analysis.token_sections import GZIP, example_curves_section, measures_section, xia_section
from babyjax.analysis.word_sections import word_aoa_section
from babyjax.errors import InputError, MissingError
from babyjax.score.store import ScoreOutput, load_score_output


def _token_study(
    so: ScoreOutput,
    out: pathlib.Path,
    runs_dir: pathlib.Path | None,
    xia_p: Sequence[float],
    x_axis: str,
    aoa_words: pathlib.Path | None,
    notes: list[str],
    progress: bool,
    per_run: dict[str, pd.DataFrame],
) -> list[str]:
    """Measures, classes, predictors and words for one token score output; returns Markdown lines. The per-run
    measures table goes into `per_run` under the output's name (the cross-run spread reads it there)."""
    tag = so.name
    md = [
        f"## Token learning curves: `{tag}`",
        "",
        f"Eval set `{so.meta.get('eval_set', '?')}`, {len(so.tokens)} "
        f"tokens in context, runs {', '.join(so.surprisal)}, vocab {so.vocab_size} (chance "
        f"{curves.chance_surprisal(so.vocab_size):.2f} bits), unit {so.meta.get('unit', 'bits')}.",
        "",
    ]
    steps = {r: ck["step"].to_numpy() for r, ck in so.checkpoints.items()}
    run0 = next(iter(so.surprisal))
    long, table, lines = measures_section(so, out, steps, notes, progress)
    per_run[so.name] = long
    md += lines + example_curves_section(so, out, table, steps, run0)
    md += xia_section(so, out, long, runs_dir, xia_p, x_axis, notes)
    table, lines = predictors_section(so, out, table, long, runs_dir, token_sample_rows(so), run0, notes)
    md += ["### Measures vs. frequency and n-gram predictors", ""] + lines
    table.to_csv(out / f"{tag}_token_table.csv.gz", compression=GZIP)
    md += ["### Word acquisition (Chang & Bergen 2022)", ""]
    if aoa_words is None or "token" not in so.tokens:
        return md + ["_Not computed: no child AoA word list (--aoa-words)._", ""]
    try:
        return md + word_aoa_section(so, out, steps, run0, aoa_words, runs_dir, notes)
    except (FileNotFoundError, ValueError) as err:
        notes.append(f"{tag}: word AoA skipped: {err}")
        return md + ["_Not computed: see notes._", ""]


def write_report(
    score_dirs: Sequence[str | pathlib.Path],
    out: str | pathlib.Path,
    runs_dir: str | None = None,
    xia_p: float | Sequence[float] = xia.P_SWEEP,
    x_axis: str = "step",
    aoa_words: str | None = None,
    progress: bool = True,
    study: str | None = None,
) -> pathlib.Path:
    """Analyse the score outputs of one study into `out` (report.md, PNGs, CSVs); `study`: a study's runs.json
    (the runs' conditions). Returns the report path."""
    if x_axis not in xia.X_AXES:
        raise InputError(f"x axis must be one of {xia.X_AXES}; got {x_axis!r}")
    xia_p = [float(xia_p)] if np.isscalar(xia_p) else [float(p) for p in xia_p]
    out = pathlib.Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file: give a folder for the report")
    if (out / "meta.json").exists() or (out / "config.json").exists():
        raise InputError(f"--out {out} is a score output or a run folder: give the report its own folder")
    out.mkdir(parents=True, exist_ok=True)
    rd = pathlib.Path(runs_dir) if runs_dir else None
    if rd is not None and not rd.is_dir():
        raise MissingError(f"--runs-dir {rd} is not a directory")
    finetuned = [pathlib.Path(d) for d in score_dirs if is_finetune_output(d)]
    outputs = [load_score_output(d) for d in score_dirs if not is_finetune_output(d)]
    notes: list[str] = []
    run_names = sorted({r for so in outputs for r in so.meta.get("runs", [])} | finetuned_runs(finetuned))
    md = [
        "# babyjax learning-curve report",
        "",
        f"Score outputs: {', '.join(f'`{p}`' for p in [*(so.path for so in outputs), *finetuned])}. "
        f"Runs: {', '.join(run_names)}.",
        "",
    ]
    aoa_path = pathlib.Path(aoa_words) if aoa_words else None
    md += study_section(outputs, rd, run_names, notes)
    per_run: dict[str, pd.DataFrame] = {}  # output name -> Chang et al.'s measures per run and token
    for so in tqdm(outputs, desc="score outputs", disable=not progress):
        if so.meta.get("kind") in ("tokens", "text") and so.tokens is not None and so.surprisal:
            md += _token_study(so, out, rd, xia_p, x_axis, aoa_path, notes, progress, per_run)
    md += pairs_section(outputs, out) + babylm2025_section(outputs, out)
    md += finetune_section(finetuned, out, crossrun.conditions(run_names, study)[0] if study else None)
    md += equal_perplexity_section(outputs, out, notes)
    md += crossrun.cross_run_sections(outputs, out, rd, run_names, study, notes, xia_p, per_run)
    md += loss_section(rd, run_names, out, notes)
    md += generations_section(outputs, rd, run_names) + references_section()
    md += ["## Notes", ""] + ([f"- {n}" for n in dict.fromkeys(notes)] or ["- none"]) + [""]
    report = out / "report.md"
    report.write_text("\n".join(md))
    return report

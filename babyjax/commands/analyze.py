"""python -m babyjax.analyze SCORE_DIR [SCORE_DIR ...] --out REPORT_DIR [--runs-dir RUNS] [--xia-p 0.1,0.3,0.5,0.7]
[--x-axis step|tokens|words|flops|perplexity] [--aoa-words word_list.csv] [--study runs.json]

Learning-curve measures (Chang, Tu & Bergen 2023), trajectory classes (Xia et al. 2023), predictors, word AoA
(Chang & Bergen 2022), figures and one Markdown report for the study in REPORT_DIR/report.md.
"""

from __future__ import annotations

import sys

from babyjax.analysis import report, xia
from babyjax.commands import cli
from babyjax.errors import InputError


def main(argv: list[str] | None = None) -> int:
    """The command line; a user error is one line and status 2 (babyjax/commands/cli.py)."""
    return cli.run(_main, argv, prog="babyjax.analyze")


def _main(argv: list[str] | None = None) -> int:
    ap = cli.ArgumentParser(prog="python -m babyjax.analyze", description=__doc__.split("\n\n")[1])
    ap.add_argument("score_dirs", nargs="+", help="babyjax.score output folders (tokens/text and pairs)")
    ap.add_argument("--out", required=True, help="report folder (report.md, PNGs, CSVs)")
    ap.add_argument("--runs-dir", default=None, help="folder with one training run directory per run name")
    ap.add_argument(
        "--xia-p",
        default=",".join(f"{p:g}" for p in xia.P_SWEEP),
        help="Xia et al. window starts: fractions of training, comma-separated (a sweep)",
    )
    ap.add_argument("--x-axis", choices=xia.X_AXES, default="step", help="x axis of the Xia regressions")
    ap.add_argument("--aoa-words", default=None, help="CDI word_list.csv with children's AoA (word_clean, aoa)")
    ap.add_argument(
        "--study",
        default=None,
        help="a study's runs.json (python -m babyjax.study): runs grouped into "
        "conditions by their labels, for the cross-run sections (default: every run one condition)",
    )
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        xia_p = [float(p) for p in args.xia_p.split(",") if p.strip()]
    except ValueError:
        raise InputError(f"--xia-p={args.xia_p!r}: give comma-separated fractions such as 0.1,0.3,0.5,0.7") from None
    path = report.write_report(
        args.score_dirs,
        args.out,
        args.runs_dir,
        xia_p,
        args.x_axis,
        args.aoa_words,
        progress=not args.no_progress,
        study=args.study,
    )
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

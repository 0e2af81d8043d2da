"""Learning-curve measures (Chang, Tu & Bergen 2023), trajectory classes (Xia et al. 2023), predictors, word AoA
(Chang & Bergen 2022), figures and one Markdown report for the study in REPORT_DIR/report.md.

    python -m babyjax.analyze scores/tokens scores/blimp --out report --runs-dir runs --x-axis words
"""

from __future__ import annotations

from absl import flags

from babyjax.analysis import report, xia
from babyjax.commands import cli
from babyjax.errors import InputError

# argparse's --no-progress, and the underscore spellings of the other absl commands' flags (--seq_len)
SPELLINGS = {
    "--no-progress": "--noprogress",
    "--runs_dir": "--runs-dir",
    "--xia_p": "--xia-p",
    "--x_axis": "--x-axis",
    "--aoa_words": "--aoa-words",
}


def define(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("out", None, "report folder (report.md, PNGs, CSVs)", required=True, flag_values=fv)
    flags.DEFINE_string("runs-dir", None, "folder with one training run directory per run name", flag_values=fv)
    flags.DEFINE_string(
        "xia-p",
        ",".join(f"{p:g}" for p in xia.P_SWEEP),
        "Xia et al. window starts: fractions of training, comma-separated (a sweep)",
        flag_values=fv,
    )
    flags.DEFINE_enum("x-axis", "step", list(xia.X_AXES), "x axis of the Xia regressions", flag_values=fv)
    flags.DEFINE_string("aoa-words", None, "CDI word_list.csv with children's AoA (word_clean, aoa)", flag_values=fv)
    flags.DEFINE_string(
        "study",
        None,
        "a study's runs.json (python -m babyjax.study): runs grouped into conditions by their labels, for the "
        "cross-run sections (default: every run one condition)",
        flag_values=fv,
    )
    flags.DEFINE_bool("progress", True, "progress bars on stderr", flag_values=fv)


def run(f: flags.FlagValues, score_dirs: list[str]) -> int:
    if not score_dirs:
        raise InputError("no score folder: give one or more babyjax.score output folders before the flags")
    text = f["xia-p"].value
    try:
        xia_p = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise InputError(f"--xia-p={text!r}: give comma-separated fractions such as 0.1,0.3,0.5,0.7") from None
    path = report.write_report(
        score_dirs,
        f.out,
        f["runs-dir"].value,
        xia_p,
        f["x-axis"].value,
        f["aoa-words"].value,
        progress=f.progress,
        study=f.study,
    )
    print(f"report written to {path}")
    return 0


main = cli.Command(
    usage="python -m babyjax.analyze SCORE_DIR [SCORE_DIR ...] --out REPORT_DIR",
    doc=__doc__,
    define=define,
    main=run,
    prog="babyjax.analyze",
    args=True,
    spellings=SPELLINGS,
)

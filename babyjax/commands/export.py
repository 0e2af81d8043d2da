"""Export series checkpoints to Hugging Face transformers (PyTorch) folders, with a tokenizer HF loads offline
(babyjax/interop/export.py; docs/export.md).

    python -m babyjax.export --workdir runs/tiny --step 600 --out hf/tiny-600
    python -m babyjax.export --workdir runs/ss --series --out hf/ss            # chck_1M/, chck_2M/, ... by words seen
    python -m babyjax.export --workdir runs/tiny --series --names steps --out hf/tiny   # step_0/, step_1/, ...
    python -m babyjax.export --workdir runs/ss --git --out hf/ss-repo     # one git repo: branches chck_1M, ..., main
"""

from __future__ import annotations

from absl import flags

from babyjax.checkpoints.run import RunDir
from babyjax.commands import cli
from babyjax.errors import InputError
from babyjax.interop import export
from babyjax.interop.hf_config import require_peers


def define(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("workdir", None, "run directory (config.json, tokenizer.model, checkpoints/)", flag_values=fv)
    flags.DEFINE_string("out", None, "output folder (one checkpoint) or parent folder (--series)", flag_values=fv)
    flags.DEFINE_integer("step", -1, "series step to export (-1: the last)", flag_values=fv)
    flags.DEFINE_bool("series", False, "export the whole series into <out>/<name>/", flag_values=fv)
    flags.DEFINE_enum(
        "names", "words", ["words", "steps"], "--series folder names: chck_<N>M or step_<n>", flag_values=fv
    )
    flags.DEFINE_bool("overwrite", False, "replace existing folders", flag_values=fv)
    flags.DEFINE_bool(
        "git",
        False,
        "export the series as one git repository, a branch per checkpoint and main at "
        "the last (push it to the Hugging Face Hub for the BabyLM 2025 pipeline's --revision_name)",
        flag_values=fv,
    )


def run(f: flags.FlagValues, args: list[str]) -> None:
    del args
    if not f.workdir or not f.out:
        raise InputError("--workdir and --out are required")
    require_peers()
    if f.git:
        done = export.export_git(f.workdir, f.out, names=f.names)
        print(f"exported {len(done)} branches to the git repository {f.out}: {', '.join(done)}")
    elif f.series:
        done = export.export_series(f.workdir, f.out, names=f.names, overwrite=f.overwrite)
        print(f"exported {len(done)} checkpoints to {f.out}: {', '.join(done)}")
    else:
        step = f.step if f.step >= 0 else int(RunDir.open(f.workdir).series_index()[-1]["step"])
        print(f"exported step {step} to {export.export_checkpoint(f.workdir, step, f.out, overwrite=f.overwrite)}")


main = cli.Command(
    usage="python -m babyjax.export --workdir RUN --out FOLDER [--step N | --series | --git]",
    doc=__doc__,
    define=define,
    main=run,
)

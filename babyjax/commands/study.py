"""One command for a whole study: one shared tokenizer and token sample, every run trained (here, as a SLURM job array,
or on TPU slices), scored on every evaluation set, its text generated, and one report (DIR/report/report.md). Run the
same command again after `kill -9`, a failure or a cluster wait: it goes on where it stopped and never redoes
finished work. Arguments after `--` go to the launcher (slurm: launch/slurm/submit.sh flags such as --partition=gpu
--gpus-per-node=1 --time=12:00:00; tpu: launch/tpu/babysit.sh flags such as --zone=... --accelerator-type=v4-8
--spot). The study config (configs/studies/*.py; its keys: babyjax/study/spec.py) takes `--config.key=value`
overrides like a run config.

    python -m babyjax.study --config configs/studies/chang_tiny.py --workdir studies/chang_tiny
    python -m babyjax.study --config configs/studies/NAME.py --workdir DIR --launcher slurm -- --partition=gpu
"""

from __future__ import annotations

import sys

from absl import flags

from babyjax.commands import cli
from babyjax.study import launchers, runner, spec

# argparse's spellings of the flags, and the underscore spelling of the other absl commands' flags
SPELLINGS = {"--no-wait": "--nowait", "--no-progress": "--noprogress", "--devices_per_run": "--devices-per-run"}


def define(fv: flags.FlagValues) -> None:
    if str(spec.ROOT) not in sys.path:  # study configs import configs/ (and babyjax) like run configs
        sys.path.insert(0, str(spec.ROOT))
    flags.DEFINE_string("workdir", None, "the study folder (created, or continued)", required=True, flag_values=fv)
    flags.DEFINE_enum("launcher", "local", list(launchers.LAUNCHERS), "where the runs train", flag_values=fv)
    flags.DEFINE_integer(
        "parallel", 1, "runs training at once (local), array tasks at once (slurm; 0 = no limit)", flag_values=fv
    )
    flags.DEFINE_integer(
        "devices-per-run", 0, "local, --parallel > 1 on GPUs: CUDA devices each run gets", flag_values=fv
    )
    flags.DEFINE_bool("wait", True, "slurm: wait for the runs (--nowait: submit, then return)", flag_values=fv)
    flags.DEFINE_bool("resubmit", False, "slurm: submit again the runs that failed", flag_values=fv)
    flags.DEFINE_float("poll", 60.0, "seconds between looks at cluster runs", flag_values=fv)
    flags.DEFINE_bool("progress", True, "progress bars on stderr", flag_values=fv)


def run(f: flags.FlagValues, launcher_args: list[str]) -> int:
    study = runner.Study(spec.merge(f.config, f["config"].config_filename), f.workdir, progress=f.progress)
    opts = launchers.LaunchOptions(
        f.launcher, f.parallel, f["devices-per-run"].value, f.wait, f.resubmit, f.poll, tuple(launcher_args)
    )
    with study.locked():
        study.shared_inputs()
        if not launchers.train_runs(study, opts):
            print(f"runs are training on {f.launcher}: run the same command later to score and analyse them")
            return 0
        runner.check_trained(study)
        study.score()
        study.generate()
        study.finetune()
        report = study.analyze()
    print(f"study report written to {report}")
    return 0


main = cli.Command(
    usage="python -m babyjax.study --config configs/studies/NAME.py --workdir DIR [-- LAUNCHER_FLAGS ...]",
    doc=__doc__,
    define=define,
    main=run,
    prog="babyjax.study",
    args=True,
    config=cli.ConfigFile(
        "the study config (configs/studies/*.py)", "configs/studies/chang_tiny.py", "babyjax/study/spec.py"
    ),
    spellings=SPELLINGS,
)

"""python -m babyjax.study --config configs/studies/NAME.py --workdir DIR [--launcher local|slurm|tpu]

One command for a whole study: one shared tokenizer and token sample, every run trained (here, as a SLURM job array,
or on TPU slices), scored on every evaluation set, its text generated, and one report (DIR/report/report.md). Run the
same command again after `kill -9`, a failure or a cluster wait: it goes on where it stopped and never redoes
finished work. Flags after `--` go to the launcher (slurm: launch/slurm/submit.sh flags such as --partition=gpu
--gpus-per-node=1 --time=12:00:00; tpu: launch/tpu/babysit.sh flags such as --zone=... --accelerator-type=v4-8
--spot).
"""

from __future__ import annotations

import argparse
import sys

from babyjax.commands import cli


def main(argv: list[str] | None = None) -> int:
    """The command line; a user error is one line and status 2 (babyjax/commands/cli.py)."""
    return cli.run(_main, argv, prog="babyjax.study")


def _args(argv: list[str] | None) -> argparse.Namespace:
    from babyjax.study.launchers import LAUNCHERS

    ap = cli.ArgumentParser(prog="python -m babyjax.study", description=__doc__.split("\n\n")[1])
    ap.add_argument("--config", required=True, help="study config (configs/studies/*.py)")
    ap.add_argument("--workdir", required=True, help="the study folder (created, or continued)")
    ap.add_argument("--launcher", choices=LAUNCHERS, default="local", help="where the runs train")
    ap.add_argument(
        "--parallel",
        type=int,
        default=1,
        help="runs training at once (local), array tasks at once (slurm; 0 = no limit)",
    )
    ap.add_argument(
        "--devices-per-run", type=int, default=0, help="local, --parallel > 1 on GPUs: CUDA devices each run gets"
    )
    ap.add_argument("--no-wait", action="store_true", help="slurm: submit, then return; run again later to go on")
    ap.add_argument("--resubmit", action="store_true", help="slurm: submit again the runs that failed")
    ap.add_argument("--poll", type=float, default=60.0, help="seconds between looks at cluster runs")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("launcher_args", nargs="*", help="after --: flags for the launcher's script")
    return ap.parse_args(argv)


def _main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    from babyjax.study import launchers, runner, spec

    study = runner.Study(spec.load(args.config), args.workdir, progress=not args.no_progress)
    opts = launchers.LaunchOptions(
        args.launcher,
        args.parallel,
        args.devices_per_run,
        not args.no_wait,
        args.resubmit,
        args.poll,
        tuple(args.launcher_args),
    )
    with study.locked():
        study.shared_inputs()
        if not launchers.train_runs(study, opts):
            print(f"runs are training on {args.launcher}: run the same command later to score and analyse them")
            return 0
        runner.check_trained(study)
        study.score()
        study.generate()
        report = study.analyze()
    print(f"study report written to {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

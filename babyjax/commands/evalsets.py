"""Build evaluation sets (babyjax/data/evalsets): `tokens`, the tokens-in-context sample (Chang, Tu & Bergen 2023) of
a run's held-out text, tokenized by the run's tokenizer.

    python -m babyjax.data.evalsets tokens --workdir runs/tiny --out runs/tiny/token_sample.npz --num_sequences 1000
"""

from __future__ import annotations

from absl import flags

from babyjax.checkpoints.run import RunDir
from babyjax.commands import cli
from babyjax.data import evalsets
from babyjax.errors import InputError

KINDS = ("tokens",)


def define(fv: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "workdir", None, "babyjax run directory (config.json, tokenizer.model)", required=True, flag_values=fv
    )
    flags.DEFINE_string(
        "out", None, "output .npz (never overwritten by a different sample)", required=True, flag_values=fv
    )
    flags.DEFINE_enum("split", "test", ["dev", "test"], "the held-out split sampled", flag_values=fv)
    flags.DEFINE_integer("num_sequences", 1000, "sequences (rows) in the sample", flag_values=fv)
    flags.DEFINE_integer("seq_len", 128, "tokens per sequence", flag_values=fv)
    flags.DEFINE_integer("num_positions", 10, "target positions per sequence", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "the sample's seed", flag_values=fv)


def run(f: flags.FlagValues, args: list[str]) -> int:
    if args != ["tokens"]:
        got = f"got {' '.join(args)!r}" if args else "none given"
        raise InputError(f"give the set to build, one of {', '.join(KINDS)} ({got}): see --help")
    run_dir = RunDir.open(f.workdir, what="--workdir")
    config = run_dir.config()
    if "data" not in config:
        raise InputError(f"{run_dir.config_path} has no 'data' section: --workdir must be a babyjax run directory")
    sample = evalsets.make_token_sample(
        config.data,
        run_dir.tokenizer(),
        f.out,
        split=f.split,
        seed=f.seed,
        num_sequences=f.num_sequences,
        seq_len=f.seq_len,
        num_positions=f.num_positions,
    )
    n, k = sample.positions.shape
    print(f"{n} sequences x {sample.tokens.shape[1]} tokens, {n * k} targets ({f.split}) written to {f.out}")
    return 0


main = cli.Command(
    usage="python -m babyjax.data.evalsets tokens --workdir RUN --out SAMPLE.npz",
    doc=__doc__,
    define=define,
    main=run,
    prog="babyjax.data.evalsets",
    args=True,
    spellings={},
)

"""The score config: every option of a scoring job, with its default and help, written once. `python -m babyjax.score`
defines one flag per field (babyjax/commands/score.py), the study writes a job's flags with `to_argv`, and tests and
notebooks build a `ScoreConfig` directly and hand it to `score_job`."""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import re
from collections.abc import Sequence
from typing import Any

import ml_collections

from babyjax.data.evalsets import SUITES
from babyjax.errors import InputError
from babyjax.score.packing import MASKED_METHODS, POLICIES

KINDS = ("tokens", "text", "pairs", "babylm2025")
SCORINGS = ("auto", "causal", *MASKED_METHODS)
_RUN_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
HF_PREFIX = "hf:"  # --run name=hf:PATH: a series imported from Hugging Face files


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """A run to score: its name in the output and its workdir (config.json, tokenizer.model, checkpoints/), or, when
    `imported`, a Hugging Face series (a model folder, a folder of revision folders or a git repository with a
    branch per revision: babyjax/imported/)."""

    name: str
    workdir: pathlib.Path
    imported: bool = False

    @classmethod
    def parse(cls, text: str) -> RunSpec:
        """'name=workdir', 'name=hf:PATH' (an imported series), or either without 'name=' (named after the folder)."""
        name, sep, path = text.partition("=")
        if not sep:
            name, path = pathlib.Path(text.removeprefix(HF_PREFIX).rstrip("/")).name, text
        if not _RUN_NAME.match(name):
            raise InputError(f"run name {name!r} may only hold letters, digits, '_', '.', '-': use --run name=workdir")
        imported = path.startswith(HF_PREFIX)
        return cls(name, pathlib.Path(path.removeprefix(HF_PREFIX)), imported)

    @property
    def source(self) -> str:
        """The run's source as the flag gives it: the workdir, or hf:PATH."""
        return f"{HF_PREFIX if self.imported else ''}{self.workdir.resolve()}"

    def __str__(self) -> str:
        return f"{self.name}={HF_PREFIX if self.imported else ''}{self.workdir}"


def parse_count(text: str) -> int:
    """'10M' -> 10_000_000, '500K' -> 500_000, '1.5B' -> 1_500_000_000, '1234' -> 1234."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMbBgG]?)\s*", text)
    if not m:
        raise InputError(f"cannot read {text!r} as a count of words (e.g. 10M, 500K, 1234)")
    scale = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9}[m.group(2).lower()]
    return round(float(m.group(1)) * scale)


def parse_steps(texts: Sequence[str | int]) -> list[int]:
    """--steps 0,100,2000 -> [0, 100, 2000]; anything else is one line."""
    try:
        return [int(t) for t in texts]
    except ValueError:
        raise InputError(
            f"--steps takes series steps as whole numbers, e.g. --steps=0,100,2000; got {','.join(map(str, texts))!r}"
        ) from None


def option(default: Any, help: str, *, choices: Sequence[str] = (), repeat: bool = False) -> Any:
    """A ScoreConfig field. A tuple default is a list: `repeat` gives one flag per item (--run a --run b), else one
    comma-separated flag (--steps=0,10); `choices` makes an enum."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": tuple(choices), "repeat": repeat})


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    """A scoring job: which runs, on which evaluation set, into which folder, and how. Field names are the flags of
    `python -m babyjax.score`. Sequences become tuples; runs, steps and words may be given as their flag text."""

    run: tuple[RunSpec, ...] = option(
        (),
        "name=workdir of a run to score, or name=hf:PATH for a Hugging Face series (a model folder, a folder of "
        "revision folders or a git repository with a branch per revision); repeat for several runs/seeds",
        repeat=True,
    )
    kind: str = option(
        "text",
        "evaluation set: tokens (token-sample .npz), text, pairs, babylm2025 (task folders of the BabyLM 2025 "
        "release, scored by the official pipeline's rules)",
        choices=KINDS,
    )
    eval: tuple[str, ...] = option((), "evaluation file or folder (repeatable)", repeat=True)
    out: str | None = option(None, "output folder (created, or continued when it holds this evaluation)")
    steps: tuple[int, ...] = option((), "score only these series steps (comma-separated)")
    words: tuple[int, ...] = option((), "score the first checkpoint reaching each words-seen mark, e.g. 1M,2M,10M")
    suspect: str = option(
        "skip",
        "imported series: revisions the integrity check flags (duplicate, partial_duplicate, equals_final) are "
        "marked in checkpoints.csv and skipped, or scored anyway (score)",
        choices=("skip", "score"),
    )
    policy: str = option("eot_context", "first-token policy of causal scoring (docs/science.md)", choices=POLICIES)
    scoring: str = option(
        "auto",
        "how: auto (the runs' objective: causal, pll_original for mlm, mntp for mntp and hybrid), causal, "
        "pll_original, pll_within_word_l2r, mntp",
        choices=SCORINGS,
    )
    seq_len: int = option(0, "row length = longest context (0: the run's data.seq_len)")
    stride: int = option(0, "tokens scored per window after the first, for long sequences (0: seq_len)")
    batch_rows: int = option(0, "rows per batch (0: auto; rounded up to a multiple of the data-parallel devices)")
    dtype: str = option("", "compute dtype override: float32 | bfloat16 ('' = the run's model.dtype)")
    suite: str | None = option(None, "minimal-pair suite (default: guessed from the files)", choices=SUITES)
    text_unit: str = option("line", "text: one sequence per line, or per file", choices=("line", "file"))
    text_suffix: str = option(".txt", "text: suffix of the files read from an --eval folder")
    head_tokens: int = option(0, "tokens per device in each slice of the output projection (0: auto)")
    limit: int = option(0, "quick runs: keep the first N sequences (pairs: N pairs per paradigm)")
    ewok_password: str = option(
        "",
        "babylm2025: the password of the organisers' ewok_fast.zip, read as it is (default: the environment's "
        "BABYLM_EWOK_PASSWORD; never written to the output)",
    )
    mesh_data: int = option(-1, "mesh: data-parallel axis size (-1: the remaining devices)")
    mesh_fsdp: int = option(1, "mesh: fsdp axis size")
    mesh_tensor: int = option(1, "mesh: tensor axis size")
    cpu_devices: int = option(
        2,
        "on CPU: split the cores into this many devices and score data-parallel over them (faster than one device "
        "on a 2-core CPU: docs/benchmarks.md); ignored when XLA_FLAGS sets a device count or with several processes",
    )

    def __post_init__(self) -> None:
        put = functools.partial(object.__setattr__, self)  # frozen: normalised once, here
        put("run", tuple(RunSpec.parse(r) if isinstance(r, str) else r for r in option_items(self.run)))
        put("eval", tuple(os.fspath(p) for p in option_items(self.eval)))
        put("out", None if self.out is None else os.fspath(self.out))
        put("steps", tuple(parse_steps(option_items(self.steps))))
        put("words", tuple(parse_count(w) if isinstance(w, str) else int(w) for w in option_items(self.words)))

    @property
    def mesh(self) -> ml_collections.ConfigDict:
        """The scoring mesh's axis sizes (babyjax.model.sharding.make_mesh)."""
        return ml_collections.ConfigDict({"data": self.mesh_data, "fsdp": self.mesh_fsdp, "tensor": self.mesh_tensor})

    def check(self) -> None:
        """Refuse a job that cannot start, before anything is read."""
        if not self.out:
            raise InputError("--out is required: the folder the scores go to")
        for field in dataclasses.fields(self):
            value, choices = getattr(self, field.name), field.metadata["choices"]
            if choices and value not in choices and not (value is None and field.default is None):
                raise InputError(f"unknown --{field.name}={value!r}: use one of {', '.join(choices)}")
        if not self.run:
            raise InputError("no run to score: pass --run name=workdir (once per run)")
        if len({r.name for r in self.run}) != len(self.run):
            raise InputError("two runs have the same name: use --run name=workdir with distinct names")
        if not self.eval:
            raise InputError("no evaluation set: pass --eval (a file or a folder)")

    def to_argv(self) -> list[str]:
        """The flags of `python -m babyjax.score` that build this config (defaults left out)."""
        argv = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value == field.default:
                continue
            if field.metadata["repeat"]:
                argv += [f"--{field.name}={v}" for v in value]
            elif isinstance(value, tuple):
                argv.append(f"--{field.name}={','.join(map(str, value))}")
            else:
                argv.append(f"--{field.name}={value}")
        return argv


def option_items(value: Any) -> tuple:
    """A sequence option's items; one string, path or run given alone is one item."""
    return (value,) if isinstance(value, (str, os.PathLike, RunSpec)) else tuple(value)

"""A study config (configs/studies/*.py) -> the runs it crosses, each with its exact training config.

A study config is an ml_collections file like a run config. Its keys (all in `base_study()`):

    base        the run config every run starts from (configs/*.py; relative to the checkout, or absolute)
    overrides   `key=value` overrides for every run, written as on the command line (`train.num_steps=600`)
    axes        the axes to cross, in order: each `axis(name, label=(overrides...), ...)`; `over(key, values)` makes
                one axis of a single key. The axis named `seed` is the replication axis: runs that differ only in
                it form one *condition*, and the report gives the spread over seeds within each condition.
    tokens      the tokens-in-context sample (num_sequences = 0: none)
    pairs       minimal-pair sets, name -> folder or file (BLiMP, Zorro, ...); `pairs_limit` > 0 keeps the first pairs
                of each paradigm (a quick look: not the organisers' fast sets, which `babylm2025` reads)
    babylm2025  the BabyLM 2025 zero-shot tasks by the official pipeline's rules (`sets`: "fast", the organisers'
                fast sets as released, or "full"; `dir`: the release's evaluation folder holding them; EWoK fast is
                read from its ewok_fast.zip with the password in BABYLM_EWOK_PASSWORD)
    finetune    fine-tuning on the BabyLM (Super)GLUE tasks (python -m babyjax.finetune): `options`, its flags as
                `key=value` strings (data_dir=..., tasks=rte,wsc, marks=true or every=10, seeds=42,43, ...);
                empty: none. The report adds each task across training and the seeds' shares of the variation.
    text        text sets scored per token, name -> folder or file
    imported    series trained elsewhere, name -> hf:PATH (docs/imported.md), scored on the pairs and text sets beside
                the study's runs (each into its own score folders: its tokenizer is its own) and fine-tuned with them
    generate    text generated at a few checkpoints (heldout_prompts = 0: none)
    analysis    the report's options (python -m babyjax.analyze)

Overrides are parsed by ml_collections' own flag parser, so a run trained by the study has exactly the config that
`launch/train.py --config BASE --config.key=value ...` gives, and a cluster job runs that very command line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import pathlib
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import ml_collections

from babyjax.errors import InputError, unknown_config_key

ROOT = pathlib.Path(__file__).resolve().parents[2]  # the checkout (launch/, configs/)
# Keys an axis may not vary: every run must read the same corpus through the same tokenizer, so that the runs score
# the same tokens in context.
SHARED_KEYS = ("tokenizer", "data.dir", "data.track", "data.tfds_dir", "data.max_train_lines", "data.dev_split")
# Keys the study sets itself.
STUDY_KEYS = ("tokenizer.path", "train.progress_bar")
_LABEL = re.compile(r"^[A-Za-z0-9.\-]+$")


def axis(name: str, **labels: Sequence[str]) -> dict:
    """One axis: each label (a run-name part) with the overrides it applies, e.g.
    `axis("size", small=("model.d_model=64",), large=("model.d_model=256",))`."""
    return {"name": name, "labels": tuple(labels), "overrides": tuple(tuple(v) for v in labels.values())}


def over(key: str, values: Iterable[Any], name: str | None = None) -> dict:
    """An axis over one config key: `over("seed", [0, 1, 2])` -> labels seed0, seed1, seed2."""
    name = name or key.rsplit(".", 1)[-1]
    values = list(values)
    return {
        "name": name,
        "labels": tuple(f"{name}{v:g}" if isinstance(v, float) else f"{name}{v}" for v in values),
        "overrides": tuple((f"{key}={v}",) for v in values),
    }


def base_study() -> ml_collections.ConfigDict:
    """Every study key with its default."""
    s = ml_collections.ConfigDict()
    s.base = "configs/tiny.py"
    s.overrides = ()
    s.axes = ()
    s.tokens = ml_collections.ConfigDict(
        {"num_sequences": 0, "num_positions": 10, "seq_len": 128, "split": "test", "seed": 0}
    )
    s.pairs = ml_collections.ConfigDict()
    s.pairs_limit = 0  # pairs per paradigm (0 = all)
    s.babylm2025 = ml_collections.ConfigDict({"sets": "", "dir": ""})
    s.finetune = ml_collections.ConfigDict({"options": ()})
    s.text = ml_collections.ConfigDict()
    s.imported = ml_collections.ConfigDict()
    s.generate = ml_collections.ConfigDict({"heldout_prompts": 0, "max_new_tokens": 40})
    s.analysis = ml_collections.ConfigDict({"xia_p": "0.1,0.3,0.5,0.7", "x_axis": "step", "aoa_words": ""})
    return s


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """One run of the study: its name, the label it takes on each axis, and its overrides (`key=value`)."""

    name: str
    labels: dict[str, str]
    overrides: tuple[str, ...]

    def condition(self) -> str:
        """The run's condition: its labels on every axis but `seed` ('all' when seed is the only axis)."""
        return "_".join(v for k, v in self.labels.items() if k != "seed") or "all"


def expand(study: ml_collections.ConfigDict) -> list[RunPlan]:
    """The runs of a study: the product of its axes (the first axis varies slowest), named by their labels."""
    axes = [dict(a) for a in study.axes]
    names = [a.get("name") for a in axes]
    if len(set(names)) != len(names):
        raise InputError(f"study axes {names} repeat a name: give each axis its own name")
    for a in axes:
        labels, overrides = tuple(a.get("labels", ())), tuple(a.get("overrides", ()))
        if not labels or len(labels) != len(overrides):
            raise InputError(
                f"study axis {a.get('name')!r} needs labels and one overrides tuple per label: write it "
                "with babyjax.study.spec.axis() or over()"
            )
        if len(set(labels)) != len(labels) or not all(_LABEL.match(str(x)) for x in labels):
            raise InputError(
                f"study axis {a['name']!r}: labels {list(labels)} must be distinct and hold only "
                "letters, digits, '.' and '-'"
            )
        for ov in itertools.chain.from_iterable(overrides):
            _check_override(ov, a["name"])
    common = tuple(study.overrides)
    for ov in common:
        _check_override(ov, "overrides")
    runs = []
    for combo in itertools.product(*[list(zip(a["labels"], a["overrides"])) for a in axes]):
        labels = {a["name"]: str(lab) for a, (lab, _) in zip(axes, combo)}
        overrides = common + tuple(ov for _, ovs in combo for ov in ovs)
        runs.append(RunPlan("_".join(labels.values()) or "run", labels, overrides))
    return runs


# The release's task folders of each BabyLM 2025 evaluation (eval_zero_shot_fast.sh, eval_zero_shot.sh, eval_aoa.sh);
# the ones marked optional come from the user's own download and are left out, with a warning, when absent.
BABYLM2025_SETS = {
    "fast": (
        "blimp_fast",
        "supplement_fast",
        "ewok_fast.zip",
        "entity_tracking_fast",
        "wug_adj_nominalization",
        "wug_past_tense",
        "reading",
    ),
    "full": (
        "blimp_filtered",
        "supplement_filtered",
        "ewok_filtered?",
        "entity_tracking",
        "wug_adj_nominalization",
        "wug_past_tense",
        "comps?",
        "reading",
        "aoa",
    ),
}


def babylm2025_folders(study: ml_collections.ConfigDict) -> tuple[list[str], list[str]]:
    """(the task folders of the study's BabyLM 2025 evaluation, the optional ones absent from its `dir`); none when
    `babylm2025.sets` is empty. A required folder that is missing is one line naming it."""
    sets, folder = str(study.babylm2025.sets), pathlib.Path(str(study.babylm2025.dir))
    if not sets:
        return [], []
    if sets not in BABYLM2025_SETS:
        raise InputError(f"study babylm2025.sets={sets!r}: use 'fast' (the organisers' fast sets), 'full' or ''")
    found, absent = [], []
    for name in BABYLM2025_SETS[sets]:
        path = folder / name.rstrip("?")
        if path.exists():
            found.append(str(path))
        elif name.endswith("?"):
            absent.append(path.name)
        else:
            raise InputError(
                f"study babylm2025.dir={str(folder)!r} lacks {path.name}: give the release's evaluation folder "
                f"holding the {sets} sets (nothing was trained)"
            )
    return found, absent


def _check_override(ov: str, where: str) -> None:
    key, sep, _ = str(ov).partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", key):
        raise InputError(f"study {where}: override {ov!r} must read key=value, e.g. optim.lr=1e-3")
    if any(key == k or key.startswith(k + ".") for k in STUDY_KEYS):
        raise InputError(f"study {where}: {key} is set by the study itself (one tokenizer for all runs); remove it")
    if where != "overrides" and any(key == k or key.startswith(k + ".") for k in SHARED_KEYS):
        raise InputError(
            f"study axis {where!r} varies {key}: every run must read the same corpus and tokenizer "
            "(put it in the study's overrides instead)"
        )


def base_path(study: ml_collections.ConfigDict) -> pathlib.Path:
    """The base run config's file: absolute, or relative to the checkout."""
    p = pathlib.Path(study.base)
    p = p if p.is_absolute() else ROOT / p
    if not p.is_file():
        raise InputError(
            f"study base config {study.base} not found: give a configs/*.py path relative to the "
            f"checkout ({ROOT}) or an absolute path"
        )
    return p


def run_argv(study: ml_collections.ConfigDict, run: RunPlan, extra: Sequence[str] = ()) -> list[str]:
    """The run's `launch/train.py` flags but --workdir: the base config (relative to the checkout when inside it, as
    the launch scripts want it) and every override, as flags."""
    base = base_path(study)
    base = base.relative_to(ROOT) if base.is_relative_to(ROOT) else base
    return ["--config", str(base), *[f"--config.{ov}" for ov in (*run.overrides, *extra)]]


def run_config(study: ml_collections.ConfigDict, run: RunPlan, extra: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """The run's training config, parsed by ml_collections' flag parser exactly as launch/train.py parses it."""
    from absl import flags
    from ml_collections import config_flags

    argv = ["study", *run_argv(study, run, extra)]
    argv[1:3] = [f"--config={base_path(study)}"]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, flag_values=fv, sys_argv=argv)
    try:
        fv(argv)
    except flags.Error as e:
        raise InputError(f"run {run.name}: {str(e).splitlines()[0]}") from None
    except (AttributeError, KeyError) as e:  # as launch/train.py says it: the key, and the closest one
        raise InputError(f"run {run.name}: {unknown_config_key(argv, e)}") from None
    except (ValueError, TypeError) as e:
        raise InputError(f"run {run.name}: bad override value ({str(e).splitlines()[0]})") from None
    return fv.config


def fingerprint(study: ml_collections.ConfigDict, configs: dict[str, ml_collections.ConfigDict]) -> dict:
    """What defines a study's outputs: the study config and each run's resolved training config (where its data
    lives left out, as for runs)."""
    from babyjax.checkpoints.run import LOCATIONS

    runs = {}
    for name, c in configs.items():
        d = json.loads(c.to_json_best_effort(sort_keys=True))
        for key in LOCATIONS:
            section, field = key.split(".")
            d.get(section, {}).pop(field, None)
        d.get("train", {}).pop("progress_bar", None)
        runs[name] = d
    spec = json.loads(study.to_json_best_effort(sort_keys=True))
    body = {"study": spec, "runs": runs}
    body["sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return body


def load(path: str) -> ml_collections.ConfigDict:
    """A study config file: its get_config() over base_study()'s defaults (unknown keys refused)."""
    import importlib.util

    p = pathlib.Path(path)
    if not p.is_file():
        raise InputError(f"study config {path} not found: give a configs/studies/*.py file")
    module_spec = importlib.util.spec_from_file_location(f"babyjax_study_{p.stem}", p)
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, str(ROOT))  # study configs import configs/ and babyjax like run configs
    try:
        module_spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT))
    if not hasattr(module, "get_config"):
        raise InputError(f"study config {path} has no get_config()")
    return merge(module.get_config(), path)


def merge(given: ml_collections.ConfigDict, path: str) -> ml_collections.ConfigDict:
    """A study config's keys (read from `path`) over base_study()'s defaults (unknown keys refused), its axes
    checked."""
    study = base_study()
    unknown = sorted(set(given.keys()) - set(study.keys()))
    if unknown:
        raise InputError(f"study config {path}: unknown keys {unknown}; the keys are listed in babyjax/study/spec.py")
    for key in given:
        value = given[key]
        if isinstance(study[key], ml_collections.ConfigDict) and key in (
            "tokens",
            "generate",
            "analysis",
            "babylm2025",
            "finetune",
        ):
            study[key].update(value)
        else:
            study[key] = value
    expand(study)
    return study

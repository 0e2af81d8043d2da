"""`python -m babyjax.finetune`'s job: every chosen checkpoint of every run fine-tuned on every task with every seed,
each such unit written when it ends, so that a killed job goes on with the units not done and ends with the same
outputs as one never stopped (docs/finetune.md).

    <out>/meta.json                                          the job's recipe and data; a continued job must match
    <out>/units/<run>/step_<step>/<task>/seed_<seed>.json    one unit: per-epoch losses and metrics, the best epoch
    <out>/finetune.csv                                       every unit's epochs, one row each
    <out>/results/<run>/<revision>/finetune/<task>/          the first seed's results.txt and predictions.json, as
                                                             the pipeline writes them (babyjax.submit reads them)
The revisions of a checkpoint are the pipeline's names (chck_<N>M, main; step_<step> for any other)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import pathlib
import time
from collections.abc import Iterator, Sequence

import jax
from flax import nnx

from babyjax import paths
from babyjax.checkpoints.schedules import words_marks
from babyjax.checkpoints.series import restore_params
from babyjax.errors import ExistsError, InputError
from babyjax.finetune.config import FinetuneConfig
from babyjax.finetune.model import Classifier, backbone_shapes
from babyjax.finetune.outputs import UnitResult, write_table, write_tree
from babyjax.finetune.tasks import TASKS, Examples, encode, read_examples
from babyjax.finetune.train import majority_metrics, run_recipe
from babyjax.model import sharding
from babyjax.model.transformer import ModelConfig
from babyjax.score.babylm2025 import revisions
from babyjax.score.runs import OpenedRun, open_run, select_checkpoints

log = logging.getLogger("babyjax")


@dataclasses.dataclass
class Summary:
    done: list[tuple[str, int, str, int]] = dataclasses.field(default_factory=list)
    already_done: int = 0
    seconds: float = 0.0


def finetune_job(config: FinetuneConfig) -> Summary:
    """Run (or continue) the job of `config`; returns what it did."""
    t0, summary = time.time(), Summary()
    config.check()
    if jax.process_count() > 1:
        raise InputError(
            "babyjax.finetune runs in one process (every local device on its mesh); a multi-host slice is not "
            "supported yet: run it on one host"
        )
    runs = [open_run(r) for r in config.run]  # each encodes with its own tokenizer
    data = {t: _task_files(config, t) for t in config.tasks}
    chosen = {r.spec.name: checkpoints_of(r, config) for r in runs}
    cfgs = {r.spec.name: _model_config(r, config.seq_len) for r in runs}
    for name in [n for n, c in cfgs.items() if not c.encoder and config.pool == "first"]:
        log.warning("run %s is a decoder: --pool first classifies its first token, which has read nothing else "
                    "(the pipeline's default); --pool auto reads the last", name)  # fmt: skip
    out = pathlib.Path(config.out)
    _open_folder(out, _meta(config, data))
    mesh = sharding.make_mesh(config.mesh)
    for run in runs:
        cfg = cfgs[run.spec.name]
        encoded = {t: _encoded(run, ex, config.seq_len, cfg.encoder) for t, ex in data.items()}
        todo = [e for e in chosen[run.spec.name] if _pending(out, run, int(e["step"]), config)]
        summary.already_done += len(chosen[run.spec.name]) - len(todo)
        for entry, backbone in _prefetched(run, todo, cfg):
            _finetune_checkpoint(out, run, entry, backbone, encoded, config, mesh, summary)
    if jax.process_index() == 0:
        write_table(out)
    summary.seconds = time.time() - t0
    return summary


def checkpoints_of(run: OpenedRun, config: FinetuneConfig) -> list[dict]:
    """The series entries to fine-tune: --steps, --words, --marks and --every together (all when none is given)."""
    index = sorted(run.index, key=lambda e: int(e["step"]))
    words = list(config.words)
    if config.marks:
        most = max(float(e.get("words_seen", 0)) for e in index)
        words += words_marks(most)
    picked = select_checkpoints(index, config.steps, words, run.spec.name) if config.steps or words else []
    if config.every:
        picked += [e for i, e in enumerate(index) if i % config.every == 0 or i == len(index) - 1]
    if not (config.steps or words or config.every):
        picked = index
    return sorted({int(e["step"]): e for e in picked}.values(), key=lambda e: int(e["step"]))


def _task_files(config: FinetuneConfig, task: str) -> tuple[Examples, Examples]:
    folder = pathlib.Path(config.data_dir)
    train = read_examples(folder / f"{task}.train.jsonl", task)
    valid = read_examples(folder / f"{task}.valid.jsonl", task)
    if config.limit:
        train = dataclasses.replace(
            train,
            texts_a=train.texts_a[: config.limit],
            texts_b=None if train.texts_b is None else train.texts_b[: config.limit],
            labels=train.labels[: config.limit],
        )
    return train, valid


def _model_config(run: OpenedRun, seq_len: int) -> ModelConfig:
    cfg = run.dir.model_config(None if run.imported else run.tokenizer.vocab_size)
    if cfg.position == "learned" and seq_len > cfg.max_len:
        raise InputError(
            f"--seq_len={seq_len} is beyond run {run.spec.name}'s context (model.max_len {cfg.max_len}): "
            f"pass --seq_len at most {cfg.max_len}"
        )
    return dataclasses.replace(cfg, remat=False)


def _encoded(run: OpenedRun, ex: tuple[Examples, Examples], seq_len: int, masked: bool) -> tuple:
    """((train ids, labels), (valid ids, labels)) under the run's tokenizer, as its export's tokenizer gives them."""
    return tuple((encode(run.tokenizer, e, seq_len, masked), e.labels) for e in ex)


def unit_path(out: pathlib.Path, run: str, step: int, task: str, seed: int) -> pathlib.Path:
    return out / "units" / run / f"step_{step}" / task / f"seed_{seed}.json"


def _pending(out: pathlib.Path, run: OpenedRun, step: int, config: FinetuneConfig) -> bool:
    return any(not unit_path(out, run.spec.name, step, t, s).is_file() for t in config.tasks for s in config.seeds)


def _prefetched(run: OpenedRun, todo: Sequence[dict], cfg: ModelConfig) -> Iterator[tuple[dict, nnx.Module]]:
    """(entry, transformer) of each checkpoint (its parameters checked against their hash), the next one restored on
    the host in a thread while the caller trains."""
    graphdef, abstract = backbone_shapes(cfg)
    if run.imported:  # a Hugging Face revision, converted as it is read
        load = lambda e: run.dir.restore(int(e["step"]), abstract)
    else:
        load = lambda e: restore_params(run.dir.path, int(e["step"]), abstract, host=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(load, todo[0]) if todo else None
        for i, entry in enumerate(todo):
            params = future.result()
            future = pool.submit(load, todo[i + 1]) if i + 1 < len(todo) else None
            yield entry, nnx.merge(graphdef, params)


def _finetune_checkpoint(
    out: pathlib.Path,
    run: OpenedRun,
    entry: dict,
    backbone: nnx.Module,
    encoded: dict,
    config: FinetuneConfig,
    mesh: jax.sharding.Mesh,
    summary: Summary,
) -> None:
    """Every task and seed of one checkpoint not done yet, each unit written when it ends."""
    step, name = int(entry["step"]), run.spec.name
    names = revisions(run.index, step)
    for task in config.tasks:
        chance = majority_metrics(encoded[task][0][1], encoded[task][1][1], TASKS[task].metrics)
        for n, seed in enumerate(config.seeds):
            path = unit_path(out, name, step, task, seed)
            if path.is_file():
                continue
            t0, recipe, spec = time.time(), config.recipe(task), TASKS[task]
            head_rngs = nnx.Rngs(params=jax.random.PRNGKey(seed))
            classifier = Classifier(backbone, spec.num_labels, recipe.classifier_dropout, config.pool, rngs=head_rngs)
            outcome = run_recipe(
                classifier, *encoded[task], recipe, metric_names=spec.metrics,
                metric_for_valid=spec.metric_for_valid, seed=seed, mesh=mesh,
            )  # fmt: skip
            result = UnitResult.of(name, step, entry, task, seed, outcome, spec.metrics, chance)
            if jax.process_index() == 0:  # the tree holds the first seed's results (the pipeline's: its one seed)
                if n == 0:
                    write_tree(out / "results" / name, names, task, result)
                paths.write_atomic(path, json.dumps(dataclasses.asdict(result), indent=1))
            summary.done.append((name, step, task, seed))
            best = result.epochs[result.best_epoch - 1]
            log.info(
                "run %s step %d %s seed %d: best epoch %d, %s, %.1fs",
                name, step, task, seed, result.best_epoch,
                ", ".join(f"{k} {best[k]:.3f}" for k in spec.metrics), time.time() - t0,
            )  # fmt: skip


def _meta(config: FinetuneConfig, data: dict) -> dict:
    """What the outputs depend on besides the checkpoints: the recipe of every task, the pooling, the data."""
    return {
        "recipes": {t: dataclasses.asdict(config.recipe(t)) for t in config.tasks},
        "pool": config.pool,
        "seq_len": config.seq_len,
        "limit": config.limit,
        "data": {t: [hashlib.sha256(ex.path.read_bytes()).hexdigest() for ex in pair] for t, pair in data.items()},
    }


def _open_folder(out: pathlib.Path, meta: dict) -> None:
    """Create the folder, or continue one made by the same recipe on the same data; refuse any other."""
    path = out / "meta.json"
    if path.is_file():
        stored = json.loads(path.read_text())
        for key in meta:
            if key in ("recipes", "data"):
                differ = [t for t in meta[key] if t in stored.get(key, {}) and stored[key][t] != meta[key][t]]
            else:
                differ = [key] if stored.get(key) != meta[key] else []
            if differ:
                raise ExistsError(
                    f"{out} holds fine-tuning by another {key} ({differ[0]}): pass a new --out, or the same options"
                )
        meta = {**stored, **{k: {**stored.get(k, {}), **v} if isinstance(v, dict) else v for k, v in meta.items()}}
    if jax.process_index() == 0:
        paths.write_atomic(path, json.dumps(meta, indent=1))

"""The runs of a scoring job: opened (run directory, config, tokenizer, series index), the checkpoints chosen, how
they are scored (the method their objective allows, their model, their contexts), and their parameters restored and
checked against the series index."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import ml_collections

from babyjax.checkpoints import series as checkpoints
from babyjax.checkpoints.run import RunDir
from babyjax.checkpoints.schedules import whole_words
from babyjax.data.tokenizer import Tokenizer
from babyjax.errors import CheckpointError, InputError
from babyjax.imported.run import ImportedRun
from babyjax.imported.weights import Unreadable
from babyjax.model import objectives
from babyjax.model.transformer import ModelConfig
from babyjax.score.config import RunSpec
from babyjax.score.scorer import Scorer


@dataclasses.dataclass
class OpenedRun:
    """A run to score, opened: its run directory (or imported series), config, tokenizer and series index."""

    spec: RunSpec
    dir: RunDir | ImportedRun
    config: ml_collections.ConfigDict
    tokenizer: Tokenizer
    index: list[dict]

    @property
    def imported(self) -> bool:
        return isinstance(self.dir, ImportedRun)


def open_run(spec: RunSpec) -> OpenedRun:
    """A run's directory or imported series, config, tokenizer and series index (refused when it has no checkpoint)."""
    if spec.imported:
        run: RunDir | ImportedRun = ImportedRun(spec.workdir)
    else:
        run = RunDir.open(spec.workdir, what=f"--run {spec.name}=...")
    config, tok = run.config(), run.tokenizer()
    try:
        index = run.series_index()
    except CheckpointError as e:
        raise CheckpointError(f"run {spec.name} has no checkpoints to score: {e}") from None
    if not index:
        raise CheckpointError(f"run {spec.name} has no checkpoints to score ({spec.workdir})")
    return OpenedRun(spec, run, config, tok, index)


def open_runs(runs: Sequence[RunSpec]) -> list[OpenedRun]:
    """Every run opened; they must share one tokenizer (tokens.csv is shared by the runs of one folder)."""
    opened = [open_run(r) for r in runs]
    first = opened[0]
    for r in opened[1:]:
        if r.tokenizer.sha256 != first.tokenizer.sha256:
            raise InputError(
                f"runs {first.spec.name} and {r.spec.name} use different tokenizers: score them into "
                "separate --out folders (tokens.csv is shared by the runs of one folder)"
            )
    return opened


def select_checkpoints(
    index: Sequence[Mapping[str, Any]],
    steps: Sequence[int] | None = None,
    words: Sequence[int] | None = None,
    run: str = "",
) -> list[dict]:
    """Index entries to score: all, the given steps, and/or the first checkpoint reaching each words-seen mark."""
    entries = sorted((dict(e) for e in index), key=lambda e: int(e["step"]))
    if not steps and not words:
        return entries
    by_step = {int(e["step"]): e for e in entries}
    chosen: dict[int, dict] = {}
    for s in steps or ():
        if int(s) not in by_step:
            raise InputError(
                f"run {run}: no checkpoint at step {s} (the series has {len(entries)} steps, "
                f"{entries[0]['step']} to {entries[-1]['step']})"
            )
        chosen[int(s)] = by_step[int(s)]
    for w in words or ():
        hit = next((e for e in entries if whole_words(e.get("words_seen", -1)) >= w), None)
        if hit is None:
            most = max(float(e.get("words_seen", 0)) for e in entries)
            raise InputError(f"run {run}: no checkpoint has seen {w:,} words (the last saw {most:,.0f})")
        chosen[int(hit["step"])] = hit
    return [chosen[s] for s in sorted(chosen)]


def scoring_method(runs: Sequence[OpenedRun], requested: str = "auto") -> str:
    """How the runs are scored: a method their objective allows (`objectives.features(...).scorings`), `requested`
    or, for 'auto', the objective's default."""
    trained = {r.spec.name: objectives.features(r.config) for r in runs}
    kinds = {name: f.kind for name, f in trained.items()}
    if len(set(kinds.values())) > 1:
        raise InputError(
            f"the runs were trained with different objectives ({kinds}): score each objective into its own --out folder"
        )
    name, features = next(iter(trained.items()))
    method = features.default_scoring if requested == "auto" else requested
    if method not in features.scorings:
        raise InputError(
            f"run {name} was trained with objective {features.kind!r}: --scoring={method} does not apply to it; "
            f"use --scoring={' or '.join(features.scorings)}"
        )
    return method


def model_configs(runs: Sequence[OpenedRun], seq_len: int, dtype: str) -> dict[str, ModelConfig]:
    """Each run's model (compute dtype overridden by --dtype); learned positions must cover seq_len."""
    out = {}
    for r in runs:
        cfg = r.dir.model_config(None if r.imported else r.tokenizer.vocab_size)
        cfg = dataclasses.replace(cfg, dtype=dtype) if dtype else cfg
        cfg.check_length(seq_len, fix=f"pass --seq_len at most {cfg.max_len} to score run {r.spec.name}")
        out[r.spec.name] = cfg
    return out


def contexts(run: OpenedRun) -> str:
    """How a run's rows are scored: as it was trained. 'documents' (data.packing 'pack': attention and positions
    restart at every EOS) or 'window' ('chunk': one causal window across documents)."""
    return "documents" if run.config.data.get("packing", "pack") == "pack" else "window"


def restore(run: OpenedRun, entry: Mapping[str, Any], scorer: Scorer, host: bool = False) -> tuple[Any, str, str]:
    """(params or None, status, message): 'ok', 'corrupt' (unreadable), 'hash_mismatch' (vs the series index), or an
    imported revision's unreadable status ('lfs_pointer', 'needs_torch'). host: the parameters as numpy arrays
    (`checkpoints.restore_params`; an imported revision's always are)."""
    step = int(entry["step"])
    try:
        if run.imported:
            params = run.dir.restore(step, scorer.abstract_params)
        else:
            params = checkpoints.restore_params(run.dir.path, step, scorer.abstract_params, verify=False, host=host)
        indexed = entry.get("params_hash")  # an imported foreign revision has none: its tensors were hashed as read
        digest = checkpoints.params_hash(params) if indexed else ""
    except Unreadable as e:
        return None, e.status, str(e)
    except Exception as e:
        return None, "corrupt", f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
    if indexed and digest != indexed:
        return None, "hash_mismatch", f"parameters hash to {digest[:12]}..., the series index records {indexed[:12]}..."
    return params, "ok", ""


def restored(
    run: OpenedRun, todo: Sequence[Mapping[str, Any]], scorer: Scorer
) -> Iterator[tuple[Mapping[str, Any], tuple[Any, str, str]]]:
    """(entry, (params, status, why)) for each checkpoint of `todo`. In one process, the next one is restored and
    hashed on the host in a background thread while the caller scores the current one (the thread touches no device:
    device programs started from two threads could interleave their collectives and hang), then put on the mesh here.
    Several processes restore each checkpoint in turn, sharded (the hash then gathers across processes; an imported
    revision is read whole by each process and placed on the mesh)."""
    if jax.process_count() > 1:
        for entry in todo:
            params, status, why = restore(run, entry, scorer)
            if run.imported and params is not None:
                params = jax.device_put(params, scorer.param_shardings)
            yield entry, (params, status, why)
        return
    host_restore = functools.partial(restore, run, scorer=scorer, host=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(host_restore, todo[0]) if todo else None
        for j, entry in enumerate(todo):
            params, status, why = future.result()
            if j + 1 < len(todo):
                future = pool.submit(host_restore, todo[j + 1])
            yield entry, (None if params is None else jax.device_put(params, scorer.param_shardings), status, why)

"""The scoring job: chosen checkpoints of one or more runs on one evaluation set, into one output folder (command:
score/__main__.py; conventions: docs/science.md; output: score/store.py). Resumable: a job started again scores the
checkpoints not yet `done`, the next one restored in a background thread while the current one is scored. A checkpoint
whose parameter hash differs from the series index is skipped as `hash_mismatch`, an unreadable one as `corrupt`
(both retried by the next job)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import logging
import math
import os
import pathlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import pandas as pd
from absl import flags
from jax.experimental import multihost_utils

from babyjax import distributed
from babyjax.analysis.pairs import pair_table
from babyjax.checkpoints import series as checkpoints
from babyjax.checkpoints.run import RunDir
from babyjax.data import babylm2025 as babylm2025_data
from babyjax.data import evalsets
from babyjax.data.tokenizer import Tokenizer
from babyjax.errors import CheckpointError, InputError
from babyjax.model import objectives
from babyjax.model.transformer import ModelConfig
from babyjax.score.babylm2025 import write_results
from babyjax.score.packing import (
    MASKED_METHODS,
    POLICIES,
    Packed,
    eval_copies,
    eval_windows,
    layout_hash,
    pack,
    row_length,
    token_table,
)
from babyjax.score.scorer import Scorer, scoring_mesh
from babyjax.score.store import ScoreFolder

log = logging.getLogger("babyjax")

KINDS = ("tokens", "text", "pairs", "babylm2025")
SCORINGS = ("auto", "causal", *MASKED_METHODS)
# the BabyLM 2025 pipeline's backend each scoring method follows (within_word_l2r: none; named apart)
PIPELINE_BACKENDS = {
    "causal": "causal",
    "pll_original": "mlm",
    "mntp": "mntp",
    "pll_within_word_l2r": "mlm_within_word_l2r",
}
# how a run trained with each objective can be scored; the first is the default ('auto')
SCORING_OF = {
    "causal": ("causal",),
    "mlm": ("pll_original", "pll_within_word_l2r"),
    "mntp": ("mntp",),
    "hybrid": ("mntp", "causal"),
}
_RUN_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """A run to score: its name in the output and its workdir (config.json, tokenizer.model, checkpoints/)."""

    name: str
    workdir: pathlib.Path

    @classmethod
    def parse(cls, text: str) -> RunSpec:
        """'name=workdir', or 'workdir' (named after the folder)."""
        name, sep, path = text.partition("=")
        if not sep:
            name, path = pathlib.Path(text.rstrip("/")).name, text
        if not _RUN_NAME.match(name):
            raise InputError(f"run name {name!r} may only hold letters, digits, '_', '.', '-': use --run name=workdir")
        return cls(name, pathlib.Path(path))


@dataclasses.dataclass
class Summary:
    """What a job did: checkpoints scored now, skipped (run, step, status, why), and already scored before."""

    scored: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    skipped: list[tuple[str, int, str, str]] = dataclasses.field(default_factory=list)
    already_done: int = 0
    num_tokens: int = 0
    seconds: float = 0.0


def parse_count(text: str) -> int:
    """'10M' -> 10_000_000, '500K' -> 500_000, '1.5B' -> 1_500_000_000, '1234' -> 1234."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMbBgG]?)\s*", text)
    if not m:
        raise InputError(f"cannot read {text!r} as a count of words (e.g. 10M, 500K, 1234)")
    scale = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9}[m.group(2).lower()]
    return round(float(m.group(1)) * scale)


def parse_steps(texts: Sequence[str]) -> list[int]:
    """--steps 0,100,2000 -> [0, 100, 2000]; anything else is one line."""
    try:
        return [int(t) for t in texts]
    except ValueError:
        raise InputError(
            f"--steps takes series steps as whole numbers, e.g. --steps=0,100,2000; got {','.join(texts)!r}"
        ) from None


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
        hit = next((e for e in entries if float(e.get("words_seen", -1)) >= w), None)
        if hit is None:
            most = max(float(e.get("words_seen", 0)) for e in entries)
            raise InputError(f"run {run}: no checkpoint has seen {w:,} words (the last saw {most:,.0f})")
        chosen[int(hit["step"])] = hit
    return [chosen[s] for s in sorted(chosen)]


@dataclasses.dataclass
class _Run:
    """A run to score, opened: its run directory, config, tokenizer and series index."""

    spec: RunSpec
    dir: RunDir
    config: ml_collections.ConfigDict
    tokenizer: Tokenizer
    index: list[dict]


def _open_run(spec: RunSpec) -> _Run:
    run = RunDir.open(spec.workdir, what=f"--run {spec.name}=...")
    config, tok = run.config(), run.tokenizer()
    try:
        index = run.series_index()
    except CheckpointError as e:
        raise CheckpointError(f"run {spec.name} has no checkpoints to score: {e}") from None
    if not index:
        raise CheckpointError(f"run {spec.name} has no checkpoints to score ({spec.workdir})")
    return _Run(spec, run, config, tok, index)


def _check_request(kind: str, policy: str, runs: Sequence[RunSpec], eval_paths: Sequence[str]) -> None:
    """The job's arguments, before anything is read."""
    if kind not in KINDS:
        raise InputError(f"unknown evaluation kind {kind!r}: use one of {', '.join(KINDS)}")
    if policy not in POLICIES:
        raise InputError(f"unknown first-token policy {policy!r}: use one of {', '.join(POLICIES)}")
    if not runs:
        raise InputError("no run to score: pass --run name=workdir (once per run)")
    if len({r.name for r in runs}) != len(runs):
        raise InputError("two runs have the same name: use --run name=workdir with distinct names")
    if not eval_paths:
        raise InputError("no evaluation set: pass --eval (a file or a folder)")


def _open_runs(runs: Sequence[RunSpec]) -> list[_Run]:
    """Every run opened; they must share one tokenizer (tokens.csv is shared by the runs of one folder)."""
    opened = [_open_run(r) for r in runs]
    first = opened[0]
    for r in opened[1:]:
        if r.tokenizer.sha256 != first.tokenizer.sha256:
            raise InputError(
                f"runs {first.spec.name} and {r.spec.name} use different tokenizers: score them into "
                "separate --out folders (tokens.csv is shared by the runs of one folder)"
            )
    return opened


def _eval_set(
    kind: str, eval_paths: Sequence[str], run: _Run, *, suite: str | None, text_unit: str, text_suffix: str, limit: int
) -> evalsets.EvalSet:
    """The evaluation set of `--kind` (a token sample must come from the runs' tokenizer)."""
    tok = run.tokenizer
    if kind == "text":
        return evalsets.load_text(eval_paths, tok, unit=text_unit, suffix=text_suffix, limit=limit)
    if kind == "pairs":
        return evalsets.load_pair_set(eval_paths, tok, suite=suite, limit=limit)
    if kind == "babylm2025":
        return babylm2025_data.load_suite(eval_paths, tok, limit=limit)
    if len(eval_paths) != 1:
        raise InputError("--kind=tokens takes exactly one token-sample file")
    ev = evalsets.load_tokens(eval_paths[0], limit=limit)
    if ev.tokenizer_hash and ev.tokenizer_hash != tok.sha256:
        raise InputError(
            f"the token sample {eval_paths[0]} was made with another tokenizer (sha256 "
            f"{ev.tokenizer_hash[:12]}...) than run {run.spec.name} ({tok.sha256[:12]}...): make a "
            "sample with this run's tokenizer"
        )
    return ev


def scoring_method(runs: Sequence[_Run], requested: str = "auto") -> str:
    """How the runs are scored: the method their objective allows (SCORING_OF), `requested` or the default."""
    if requested not in SCORINGS:
        raise InputError(f"unknown --scoring={requested!r}: use one of {', '.join(SCORINGS)}")
    trained = {r.spec.name: objectives.config_of(r.config)["kind"] for r in runs}
    if len(set(trained.values())) > 1:
        raise InputError(
            f"the runs were trained with different objectives ({trained}): score each objective into "
            "its own --out folder"
        )
    name, kind = next(iter(trained.items()))
    allowed = SCORING_OF[kind]
    method = allowed[0] if requested == "auto" else requested
    if method not in allowed:
        raise InputError(
            f"run {name} was trained with objective {kind!r}: --scoring={method} does not apply to it; "
            f"use --scoring={' or '.join(allowed)}"
        )
    return method


def _model_configs(runs: Sequence[_Run], seq_len: int, dtype: str) -> dict[str, ModelConfig]:
    """Each run's model (compute dtype overridden by --dtype); learned positions must cover seq_len."""
    out = {}
    for r in runs:
        cfg = r.dir.model_config(r.tokenizer.vocab_size)
        cfg = dataclasses.replace(cfg, dtype=dtype) if dtype else cfg
        cfg.check_length(seq_len, fix=f"pass --seq_len at most {cfg.max_len} to score run {r.spec.name}")
        out[r.spec.name] = cfg
    return out


def _token_rows(wins: Sequence, tok: Tokenizer, ev: evalsets.EvalSet) -> pd.DataFrame:
    """tokens.csv of the windows, refused when there is nothing to score or the ids are beyond the vocabulary."""
    tokens = token_table(wins, tok)
    if not len(tokens):
        raise InputError(
            f"nothing to score in {ev.source}: every sequence is empty (or one token long under --policy=no_context)"
        )
    if int(tokens["token_id"].max()) >= tok.vocab_size:
        raise InputError(
            f"the evaluation set holds token ids up to {tokens['token_id'].max()}, beyond the "
            f"tokenizer's vocabulary ({tok.vocab_size}): it was made with another tokenizer"
        )
    return tokens


def contexts(run: _Run) -> str:
    """How a run's rows are scored: as it was trained. 'documents' (data.packing 'pack': attention and positions
    restart at every EOS) or 'window' ('chunk': one causal window across documents)."""
    return "documents" if run.config.data.get("packing", "pack") == "pack" else "window"


def _meta(
    kind: str,
    ev: evalsets.EvalSet,
    tokens: pd.DataFrame,
    tok: Tokenizer,
    runs: Sequence[_Run],
    *,
    policy: str,
    seq_len: int,
    stride: int,
    text_unit: str,
    limit: int,
) -> dict:
    """meta.json of the output (the keys in store.IDENTITY say what is scored)."""
    source = ",".join(str(pathlib.Path(p).resolve()) for p in ev.source.split(","))  # readable from any folder
    return {
        "kind": kind,
        "log_base": 2,
        "unit": "bits",
        "eval_set": source,
        "eval_hash": ev.eval_hash,
        "layout_hash": layout_hash(tokens),
        "first_token_policy": policy,
        "tokenizer_hash": tok.sha256,
        "vocab_size": tok.vocab_size,
        "seq_len": seq_len,
        "stride": stride,
        "num_tokens": len(tokens),
        "num_sequences": len(ev.sequences),
        "text_unit": text_unit if kind == "text" else None,
        "limit": limit,
        "runs": [r.spec.name for r in runs],
        "contexts": {r.spec.name: contexts(r) for r in runs},
        "run_workdirs": {r.spec.name: str(r.spec.workdir.resolve()) for r in runs},
        "created": time.time(),
    }


def _broadcast_json(obj: Any) -> Any:
    """Process 0's `obj` on every process (JSON-serialisable)."""
    if jax.process_count() == 1:
        return obj
    data = np.frombuffer(json.dumps(obj).encode(), np.uint8) if jax.process_index() == 0 else np.zeros(0, np.uint8)
    n = int(multihost_utils.broadcast_one_to_all(np.array(data.size, np.int64)))
    buf = np.zeros(n, np.uint8)
    buf[: data.size] = data
    return json.loads(bytes(np.asarray(multihost_utils.broadcast_one_to_all(buf))).decode())


PairRows = Callable[[np.ndarray], pd.DataFrame]


def _plan(
    store: ScoreFolder, chosen: Mapping[str, list[dict]], pair_rows: PairRows | None
) -> tuple[dict[str, list[dict]], int]:
    """(checkpoints still to score per run, how many were done before): process 0 reads what is done (and the pair
    rows of done checkpoints); every process then scores the same checkpoints in the same order."""
    plan, already = {}, 0
    if store.primary:
        for name, entries in chosen.items():
            table = store.table(name)
            if pair_rows is not None:
                for step, _, row in table.done_rows():
                    store.set_pairs(name, step, pair_rows(row), write=False)
            table.add(entries)
            todo = [e for e in entries if table.status(int(e["step"])) != "done"]
            already += len(entries) - len(todo)
            plan[name] = todo
    plan, already = _broadcast_json([plan, already])
    return plan, already


def _restore(spec: RunSpec, entry: Mapping[str, Any], scorer: Scorer, host: bool = False) -> tuple[Any, str, str]:
    """(params or None, status, message): 'ok', 'corrupt' (unreadable) or 'hash_mismatch' (vs the series index).
    host: the parameters as numpy arrays (`checkpoints.restore_params`)."""
    step = int(entry["step"])
    try:
        params = checkpoints.restore_params(spec.workdir, step, scorer.abstract_params, verify=False, host=host)
        digest = checkpoints.params_hash(params)
    except Exception as e:
        return None, "corrupt", f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
    indexed = entry.get("params_hash")
    if indexed and digest != indexed:
        return None, "hash_mismatch", f"parameters hash to {digest[:12]}..., the series index records {indexed[:12]}..."
    return params, "ok", ""


def _restored(spec: RunSpec, todo: Sequence[Mapping[str, Any]], scorer: Scorer):
    """(entry, (params, status, why)) for each checkpoint of `todo`. In one process, the next one is restored and
    hashed on the host in a background thread while the caller scores the current one (the thread touches no device:
    device programs started from two threads could interleave their collectives and hang), then put on the mesh here.
    Several processes restore each checkpoint in turn, sharded (the hash then gathers across processes)."""
    if jax.process_count() > 1:
        for entry in todo:
            yield entry, _restore(spec, entry, scorer)
        return
    restore = functools.partial(_restore, spec, scorer=scorer, host=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(restore, todo[0]) if todo else None
        for j, entry in enumerate(todo):
            params, status, why = future.result()
            if j + 1 < len(todo):
                future = pool.submit(restore, todo[j + 1])
            yield entry, (None if params is None else jax.device_put(params, scorer.param_shardings), status, why)


def _score_run(
    spec: RunSpec,
    todo: Sequence[Mapping[str, Any]],
    scorer: Scorer,
    placed: tuple[Packed, list],
    store: ScoreFolder,
    pair_rows: PairRows | None,
    summary: Summary,
) -> None:
    """Score the checkpoints `todo` of one run into the store (process 0 writes), recording them in `summary`."""
    packed, device_batches = placed
    for entry, (params, status, why) in _restored(spec, todo, scorer):
        step, t0 = int(entry["step"]), time.time()
        if params is None:
            log.warning("run %s step %d skipped (%s): %s", spec.name, step, status, why)
            summary.skipped.append((spec.name, step, status, why))
            if store.primary:
                store.table(spec.name).mark(step, status)
            continue
        logp_T = scorer.logprobs(params, packed, device_batches)
        del params
        surprisal_T = (-logp_T.astype(np.float64) / math.log(2)).astype(np.float32)
        extra = ""
        if store.primary:
            store.table(spec.name).write(step, surprisal_T)
            if pair_rows is not None:
                pairs = store.set_pairs(spec.name, step, pair_rows(surprisal_T))
                extra = f", pair accuracy {pairs['correct'].sum() / max(1, pairs['n'].sum()):.3f}"
        summary.scored.append((spec.name, step))
        log.info(
            "run %s step %d: mean surprisal %.3f bits, %.1fs (%.0f tokens/s)%s",
            spec.name,
            step,
            float(np.mean(surprisal_T)) if surprisal_T.size else float("nan"),
            time.time() - t0,
            summary.num_tokens / max(time.time() - t0, 1e-9),
            extra,
        )


def _units(
    kind: str, ev: evalsets.EvalSet, method: str, policy: str, seq_len: int, stride: int, tok: Tokenizer, encoder: bool
) -> tuple[list, str]:
    """(what is packed: causal windows or masked copies, the first-token policy recorded in meta.json)."""
    if method != "causal":  # masked LMs read every token after </s> (the exported tokenizer prepends it too)
        if kind == "babylm2025" and (other := set(ev.sequences["task"]) & {"reading", "aoa"}):
            raise InputError(
                f"--scoring={method}: the BabyLM 2025 {' and '.join(sorted(other))} tasks are scored "
                "causally only for now (their mlm/mntp rules are not built): leave those folders out"
            )
        return eval_copies(
            ev, method, seq_len, tok.word_starts()
        ), "sample_context" if kind == "tokens" else "eot_context"
    if kind == "babylm2025" and (long := sum(len(s) > seq_len for s in ev.token_ids)):
        log.warning(
            "%d of %d candidates are longer than the %d-token context: scored in windows (the pipeline "
            "cannot score them on this model)",
            long,
            len(ev.token_ids),
            seq_len,
        )
    if kind == "babylm2025":  # what the pipeline reads: encoders' exported tokenizers prepend </s>, decoders' add none
        policy = "eot_context" if encoder else "no_context"
    wins = eval_windows(ev, policy if kind != "tokens" else "eot_context", seq_len, stride)
    return wins, "sample_context" if kind == "tokens" else policy


def score_job(
    runs: Sequence[RunSpec],
    out: str | os.PathLike,
    *,
    kind: str,
    eval_paths: Sequence[str],
    policy: str = "eot_context",
    steps: Sequence[int] | None = None,
    words: Sequence[int] | None = None,
    seq_len: int = 0,
    stride: int = 0,
    batch_rows: int = 0,
    mesh_cfg: Any = None,
    dtype: str = "",
    suite: str | None = None,
    text_unit: str = "line",
    text_suffix: str = ".txt",
    limit: int = 0,
    head_tokens: int = 0,
    scoring: str = "auto",
) -> Summary:
    """Score checkpoints of `runs` on an evaluation set into the folder `out` (resumable; see module docstring). kind:
    'tokens' (a token-sample .npz), 'text' (files or folders of `text_suffix` files) or 'pairs' (BLiMP / Zorro /
    BLiMP-supplement files or folders). seq_len 0: the first run's data.seq_len; stride 0: seq_len. scoring: how
    (`scoring_method`: 'auto' follows the runs' objective)."""
    t_start = time.time()
    _check_request(kind, policy, runs, eval_paths)
    opened = _open_runs(runs)
    method, tok = scoring_method(opened, scoring), opened[0].tokenizer
    ev = _eval_set(kind, eval_paths, opened[0], suite=suite, text_unit=text_unit, text_suffix=text_suffix, limit=limit)
    seq_len = seq_len or int(opened[0].config.data.seq_len)
    stride = stride or seq_len
    model_cfgs = _model_configs(opened, seq_len, dtype)
    wins, policy = _units(
        kind, ev, method, policy, seq_len, stride, tok, encoder=next(iter(model_cfgs.values())).encoder
    )
    tokens = _token_rows(wins, tok, ev)
    meta = _meta(
        kind, ev, tokens, tok, opened, policy=policy, seq_len=seq_len, stride=stride, text_unit=text_unit, limit=limit
    )
    meta["scoring"] = method
    chosen = {r.spec.name: select_checkpoints(r.index, steps, words, r.spec.name) for r in opened}
    store = ScoreFolder(pathlib.Path(out), meta, tokens, ev.sequences, jax.process_index() == 0)
    pair_rows = (
        functools.partial(pair_table, token_seq_T=tokens["seq"].to_numpy(np.int64), sequences=ev.sequences)
        if kind == "pairs"
        else None
    )
    plan, already = _plan(store, chosen, pair_rows)
    summary = Summary(already_done=already, num_tokens=len(tokens))
    packed = pack(wins, row_length(wins, seq_len))
    mesh = scoring_mesh(mesh_cfg)
    log.info(
        "scoring %d tokens (%d sequences, %d rows of %d, %s) of %s; %d checkpoints to score, %d done before; "
        "mesh %s of %s devices",
        len(tokens),
        len(ev.sequences),
        packed.num_rows,
        seq_len,
        method,
        ev.source,
        sum(map(len, plan.values())),
        already,
        dict(mesh.shape),
        mesh.devices.flat[0].platform,
    )
    _score_runs(
        [r for r in opened if plan[r.spec.name]],
        plan,
        packed,
        model_cfgs,
        meta,
        store,
        pair_rows,
        summary,
        lambda cfg: Scorer(cfg, mesh, batch_rows, head_tokens, causal=method == "causal"),
    )
    if kind == "babylm2025" and store.primary:
        write_results(
            store.out,
            [(r.spec.name, r.index, store.table(r.spec.name).done_rows()) for r in opened],
            ev,
            tokens,
            limit,
            PIPELINE_BACKENDS[method],
        )
    summary.seconds = time.time() - t_start
    return summary


def _score_runs(
    runs: Sequence[_Run],
    plan: Mapping[str, list[dict]],
    packed: Packed,
    model_cfgs: Mapping[str, ModelConfig],
    meta: dict,
    store: ScoreFolder,
    pair_rows: PairRows | None,
    summary: Summary,
    make_scorer: Callable[[ModelConfig], Scorer],
) -> None:
    """Score every run's planned checkpoints: one scorer per model shape, one placement per batch size and layout."""
    scorers: dict[ModelConfig, Scorer] = {}
    placed: dict[tuple[int, str], tuple[Packed, list]] = {}
    layouts = {"window": packed}
    for r in runs:
        cfg, contexts = model_cfgs[r.spec.name], meta["contexts"][r.spec.name]
        if contexts not in layouts:
            layouts[contexts] = packed.split_at_eos()
        scorer = scorers[cfg] = scorers.get(cfg) or make_scorer(cfg)
        key = (scorer.batch_rows, contexts)
        placed[key] = placed.get(key) or scorer.place(layouts[contexts])
        _score_run(r.spec, plan[r.spec.name], scorer, placed[key], store, pair_rows, summary)


def define_flags() -> None:
    """The absl flags of `python -m babyjax.score` (and the distributed-runtime flags)."""
    flags.DEFINE_multi_string("run", [], "name=workdir of a run to score (repeat for several runs/seeds)")
    flags.DEFINE_enum(
        "kind",
        "text",
        list(KINDS),
        "evaluation set: tokens (token-sample .npz), text, pairs, "
        "babylm2025 (task folders of the BabyLM 2025 release, scored by the official pipeline's rules)",
    )
    flags.DEFINE_multi_string("eval", [], "evaluation file or folder (repeatable)")
    flags.DEFINE_string("out", None, "output folder (created, or continued when it holds this evaluation)")
    flags.DEFINE_list("steps", [], "score only these series steps (comma-separated)")
    flags.DEFINE_list("words", [], "score the first checkpoint reaching each words-seen mark, e.g. 1M,2M,10M")
    flags.DEFINE_enum("policy", "eot_context", list(POLICIES), "first-token policy of causal scoring (docs/science.md)")
    flags.DEFINE_enum(
        "scoring",
        "auto",
        list(SCORINGS),
        "how: auto (the runs' objective: causal, pll_original for "
        "mlm, mntp for mntp and hybrid), causal, pll_original, pll_within_word_l2r, mntp",
    )
    flags.DEFINE_integer("seq_len", 0, "row length = longest context (0: the run's data.seq_len)")
    flags.DEFINE_integer("stride", 0, "tokens scored per window after the first, for long sequences (0: seq_len)")
    flags.DEFINE_integer(
        "batch_rows", 0, "rows per batch (0: auto; rounded up to a multiple of the data-parallel devices)"
    )
    flags.DEFINE_string("dtype", "", "compute dtype override: float32 | bfloat16 ('' = the run's model.dtype)")
    flags.DEFINE_enum("suite", None, list(evalsets.SUITES), "minimal-pair suite (default: guessed from the files)")
    flags.DEFINE_enum("text_unit", "line", ["line", "file"], "text: one sequence per line, or per file")
    flags.DEFINE_string("text_suffix", ".txt", "text: suffix of the files read from an --eval folder")
    flags.DEFINE_integer("head_tokens", 0, "tokens per device in each slice of the output projection (0: auto)")
    flags.DEFINE_integer("limit", 0, "quick runs: keep the first N sequences (pairs: N pairs per paradigm)")
    flags.DEFINE_integer("mesh_data", -1, "mesh: data-parallel axis size (-1: the remaining devices)")
    flags.DEFINE_integer("mesh_fsdp", 1, "mesh: fsdp axis size")
    flags.DEFINE_integer("mesh_tensor", 1, "mesh: tensor axis size")
    flags.DEFINE_integer(
        "cpu_devices",
        2,
        "on CPU: split the cores into this many devices and score data-parallel "
        "over them (2 scored the tiny model 7-21%% faster than 1 on 2 cores); ignored when XLA_FLAGS "
        "sets a device count or with several processes",
    )
    distributed.define_flags()


def split_cpu(devices: int) -> None:
    """Ask for `devices` CPU devices before JAX starts its backends (no effect on accelerators' devices); left alone
    when XLA_FLAGS or jax_num_cpu_devices already sets a count, or in a multi-process job."""
    f = flags.FLAGS
    if (
        devices < 1
        or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
        or jax.config.jax_num_cpu_devices != -1
        or f.coordinator_address
        or distributed.cluster_detected()
    ):
        return
    try:
        jax.config.update("jax_num_cpu_devices", devices)
    except RuntimeError:  # the backends already started (a caller of main() that used JAX before): keep them
        log.debug("babyjax.score: JAX already started; --cpu_devices=%d not applied", devices)


def main(argv: Sequence[str]) -> None:
    """Run the job of the flags; process 0 prints what was done."""
    del argv
    f = flags.FLAGS
    split_cpu(f.cpu_devices)
    distributed.initialize_from_flags()
    if not f.out:
        raise InputError("--out is required: the folder the scores go to")
    summary = score_job(
        [RunSpec.parse(r) for r in f.run],
        f.out,
        kind=f.kind,
        eval_paths=f.eval,
        policy=f.policy,
        steps=parse_steps(f.steps),
        words=[parse_count(w) for w in f.words],
        seq_len=f.seq_len,
        stride=f.stride,
        batch_rows=f.batch_rows,
        dtype=f.dtype,
        suite=f.suite,
        text_unit=f.text_unit,
        text_suffix=f.text_suffix,
        limit=f.limit,
        head_tokens=f.head_tokens,
        scoring=f.scoring,
        mesh_cfg=ml_collections.ConfigDict({"data": f.mesh_data, "fsdp": f.mesh_fsdp, "tensor": f.mesh_tensor}),
    )
    if jax.process_index() == 0:
        print(
            f"scored {len(summary.scored)} checkpoints ({summary.num_tokens} tokens each) in {summary.seconds:.1f}s; "
            f"{summary.already_done} were done before; {len(summary.skipped)} skipped -> {f.out}"
        )
        for run, step, status, why in summary.skipped:
            print(f"skipped: run {run} step {step}: {status}: {why}")

"""The scoring job: chosen checkpoints of one or more runs on one evaluation set, into one output folder (options:
score/config.py; the runs: score/runs.py; conventions: docs/science.md; output: score/store.py). Resumable: a job
started again scores the checkpoints not yet `done`, the next one restored in a background thread while the current
one is scored. A checkpoint whose parameter hash differs from the series index is skipped as `hash_mismatch`, an
unreadable one as `corrupt` (both retried by the next job)."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import pandas as pd
from jax.experimental import multihost_utils

from babyjax.data import babylm2025 as babylm2025_data
from babyjax.data import evalsets, ewok_comps
from babyjax.data.tokenizer import Tokenizer
from babyjax.errors import InputError, writing_to
from babyjax.model.transformer import ModelConfig
from babyjax.score.babylm2025 import write_results
from babyjax.score.config import ScoreConfig
from babyjax.score.masked_words import suite_copies
from babyjax.score.packing import Buckets, Packed, eval_copies, eval_windows, layout_hash, pack_buckets, token_table
from babyjax.score.pairs import pair_table
from babyjax.score.runs import (
    OpenedRun,
    contexts,
    model_configs,
    open_runs,
    restored,
    scoring_method,
    select_checkpoints,
)
from babyjax.score.scorer import Scorer, scoring_mesh
from babyjax.score.store import SUSPECT, ScoreFolder

log = logging.getLogger("babyjax")

# the BabyLM 2025 pipeline's backend each scoring method follows (within_word_l2r: none; named apart)
PIPELINE_BACKENDS = {
    "causal": "causal",
    "pll_original": "mlm",
    "mntp": "mntp",
    "pll_within_word_l2r": "mlm_within_word_l2r",
}
PairRows = Callable[[np.ndarray], pd.DataFrame]


@dataclasses.dataclass
class Summary:
    """What a job did: checkpoints scored now, skipped (run, step, status, why), and already scored before."""

    scored: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    skipped: list[tuple[str, int, str, str]] = dataclasses.field(default_factory=list)
    already_done: int = 0
    num_tokens: int = 0
    seconds: float = 0.0


@dataclasses.dataclass
class _Job:
    """What a job decided before its first checkpoint: the runs, the method, what is scored, and where."""

    runs: list[OpenedRun]
    method: str
    ev: evalsets.EvalSet
    wins: list
    tokens: pd.DataFrame
    seq_len: int
    model_cfgs: dict[str, ModelConfig]
    meta: dict
    store: ScoreFolder
    pair_rows: PairRows | None
    chosen: dict[str, list[dict]]
    findings: dict[str, dict[int, tuple[str, str]]]  # imported runs: step -> (status, why) of flagged revisions


def score_job(config: ScoreConfig) -> Summary:
    """Score checkpoints of `config.run` on an evaluation set into the folder `config.out` (resumable; see the module
    docstring and ScoreConfig for the options). A full disk stops it as a resumable failure reported for `config.out`
    (errors.disk_full)."""
    with writing_to(config.out):
        return _score_job(config)


def _score_job(config: ScoreConfig) -> Summary:
    """`score_job` within its output folder."""
    t_start = time.time()
    config.check()
    job = _prepare(config)
    plan, already = _plan(job.store, job.chosen, job.pair_rows, _flagged(job.findings, config.suspect))
    summary = Summary(already_done=already, num_tokens=len(job.tokens))
    packed = pack_buckets(job.wins, job.seq_len)
    mesh = scoring_mesh(config.mesh)
    log.info(
        "scoring %d tokens (%d sequences, %d rows of %s tokens, %s) of %s; %d checkpoints to score, %d done before; "
        "mesh %s of %s devices",
        len(job.tokens),
        len(job.ev.sequences),
        packed.num_rows,
        "/".join(map(str, packed.widths)),
        job.method,
        job.ev.source,
        sum(map(len, plan.values())),
        already,
        dict(mesh.shape),
        mesh.devices.flat[0].platform,
    )
    _score_runs(
        job,
        plan,
        packed,
        summary,
        lambda cfg: Scorer(cfg, mesh, config.batch_rows, config.head_tokens, causal=job.method == "causal"),
    )
    if config.kind == "babylm2025" and job.store.primary:
        write_results(
            job.store.out,
            [(r.spec.name, r.index, job.store.table(r.spec.name).done_rows()) for r in job.runs],
            job.ev,
            job.tokens,
            config.limit,
            PIPELINE_BACKENDS[job.method],
        )
    summary.seconds = time.time() - t_start
    return summary


def _prepare(config: ScoreConfig) -> _Job:
    """The runs opened, the evaluation set read and laid out, the checkpoints chosen, the output folder opened."""
    opened = open_runs(config.run)
    method, tok = scoring_method(opened, config.scoring), opened[0].tokenizer
    ev = _eval_set(config, opened[0])
    seq_len = config.seq_len or int(opened[0].config.data.seq_len)
    stride = config.stride or seq_len
    model_cfgs = model_configs(opened, seq_len, config.dtype)
    encoder = next(iter(model_cfgs.values())).encoder
    wins, policy = _units(config.kind, ev, method, config.policy, seq_len, stride, tok, encoder)
    tokens = _token_rows(wins, tok, ev)
    meta = _meta(config, ev, tokens, tok, opened, policy=policy, seq_len=seq_len, stride=stride)
    meta["scoring"] = method
    chosen = {r.spec.name: select_checkpoints(r.index, config.steps, config.words, r.spec.name) for r in opened}
    stored = ewok_comps.redacted(tokens, ev.sequences)  # EWoK's text stays out of the CSV files
    store = ScoreFolder(pathlib.Path(config.out), meta, *stored, jax.process_index() == 0)
    pair_rows = (
        functools.partial(pair_table, token_seq_T=tokens["seq"].to_numpy(np.int64), sequences=ev.sequences)
        if config.kind == "pairs"
        else None
    )
    everything = not (config.steps or config.words)  # missing revisions are marked when the whole series is scored
    findings = {
        r.spec.name: {
            step: found
            for step, found in r.dir.findings.items()
            if step in {int(e["step"]) for e in chosen[r.spec.name]} or (everything and found[0] == "missing")
        }
        for r in opened
        if r.imported
    }
    return _Job(opened, method, ev, wins, tokens, seq_len, model_cfgs, meta, store, pair_rows, chosen, findings)


def _eval_set(config: ScoreConfig, run: OpenedRun) -> evalsets.EvalSet:
    """The evaluation set of `--kind` (a token sample must come from the runs' tokenizer)."""
    tok, paths, limit = run.tokenizer, config.eval, config.limit
    if config.kind == "text":
        return evalsets.load_text(paths, tok, unit=config.text_unit, suffix=config.text_suffix, limit=limit)
    if config.kind == "pairs":
        return evalsets.load_pair_set(paths, tok, suite=config.suite, limit=limit)
    if config.kind == "babylm2025":
        return babylm2025_data.load_suite(paths, tok, limit=limit, ewok_password=config.ewok_password)
    if len(paths) != 1:
        raise InputError("--kind=tokens takes exactly one token-sample file")
    ev = evalsets.load_tokens(paths[0], limit=limit)
    if ev.tokenizer_hash and ev.tokenizer_hash != tok.sha256:
        raise InputError(
            f"the token sample {paths[0]} was made with another tokenizer (sha256 "
            f"{ev.tokenizer_hash[:12]}...) than run {run.spec.name} ({tok.sha256[:12]}...): make a "
            "sample with this run's tokenizer"
        )
    return ev


def _units(
    kind: str, ev: evalsets.EvalSet, method: str, policy: str, seq_len: int, stride: int, tok: Tokenizer, encoder: bool
) -> tuple[list, str]:
    """(what is packed: causal windows or masked copies, the first-token policy recorded in meta.json)."""
    if method != "causal":  # masked LMs read after </s> (the exported tokenizer prepends it); babylm2025: its own rules
        copies_of = suite_copies if kind == "babylm2025" else eval_copies
        copies = copies_of(ev, method, seq_len, tok.word_starts(), tok.specials)
        return copies, "sample_context" if kind == "tokens" else "eot_context"
    if kind == "babylm2025" and (long := sum(len(s) > seq_len for s in ev.token_ids)):
        log.warning(
            "%d of %d candidates are longer than the %d-token context: scored in windows (the pipeline "
            "cannot score them on this model)",
            long,
            len(ev.token_ids),
            seq_len,
        )
    if kind == "babylm2025":  # what the pipeline reads: encoders' exported tokenizers prepend </s>, decoders' add none
        policy = "eot_context" if encoder or getattr(tok, "adds_prefix", False) else "no_context"  # OPT, Llama: bos
    wins = eval_windows(ev, policy if kind != "tokens" else "eot_context", seq_len, stride, tok.specials.context)
    return wins, "sample_context" if kind == "tokens" else policy


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


def _meta(
    config: ScoreConfig,
    ev: evalsets.EvalSet,
    tokens: pd.DataFrame,
    tok: Tokenizer,
    runs: Sequence[OpenedRun],
    *,
    policy: str,
    seq_len: int,
    stride: int,
) -> dict:
    """meta.json of the output (the keys in store.IDENTITY say what is scored)."""
    source = ",".join(str(pathlib.Path(p).resolve()) for p in ev.source.split(","))  # readable from any folder
    return {
        "kind": config.kind,
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
        "text_unit": config.text_unit if config.kind == "text" else None,
        "limit": config.limit,
        "runs": [r.spec.name for r in runs],
        "contexts": {r.spec.name: contexts(r) for r in runs},
        "run_workdirs": {r.spec.name: r.spec.source for r in runs},
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


def _flagged(
    findings: Mapping[str, Mapping[int, tuple[str, str]]], suspect: str
) -> dict[str, dict[int, tuple[str, str]]]:
    """The imported revisions not scored: unreadable and missing ones always, the suspect ones (store.SUSPECT) unless
    --suspect=score (then only logged)."""
    out: dict[str, dict[int, tuple[str, str]]] = {}
    for name, found in findings.items():
        for step, (status, why) in found.items():
            if suspect == "score" and status in SUSPECT:
                log.warning("run %s step %d scored though flagged %s: %s", name, step, status, why)
                continue
            out.setdefault(name, {})[step] = (status, why)
    return out


def _plan(
    store: ScoreFolder,
    chosen: Mapping[str, list[dict]],
    pair_rows: PairRows | None,
    flagged: Mapping[str, Mapping[int, tuple[str, str]]],
) -> tuple[dict[str, list[dict]], int]:
    """(checkpoints still to score per run, how many were done before): process 0 reads what is done (and the pair
    rows of done checkpoints) and marks the flagged revisions of imported runs (`_flagged`, rows added for missing
    ones); every process then scores the same checkpoints in the same order."""
    plan, already = {}, 0
    if store.primary:
        for name, entries in chosen.items():
            table, flags = store.table(name), flagged.get(name, {})
            if pair_rows is not None:
                for step, _, row in table.done_rows():
                    store.set_pairs(name, step, pair_rows(row), write=False)
            table.add([*entries, *({"step": s} for s in flags if s not in {int(e["step"]) for e in entries})])
            for step, (status, _) in flags.items():
                if table.status(step) != "done" or status == "missing":
                    table.mark(step, status)
            todo = [e for e in entries if table.status(int(e["step"])) != "done" and int(e["step"]) not in flags]
            already += sum(table.status(int(e["step"])) == "done" for e in entries)
            plan[name] = todo
    plan, already = _broadcast_json([plan, already])
    return plan, already


def _score_runs(
    job: _Job,
    plan: Mapping[str, list[dict]],
    packed: Buckets,
    summary: Summary,
    make_scorer: Callable[[ModelConfig], Scorer],
) -> None:
    """Score every run's planned checkpoints: one scorer per model shape, one placement per batch size and layout."""
    scorers: dict[ModelConfig, Scorer] = {}
    placed: dict[tuple[int, str], tuple[Buckets, list]] = {}
    layouts = {"window": packed}
    for r in (r for r in job.runs if plan[r.spec.name]):
        cfg, layout = job.model_cfgs[r.spec.name], job.meta["contexts"][r.spec.name]
        if layout not in layouts:
            layouts[layout] = packed.map(Packed.split_at_eos)
        scorer = scorers[cfg] = scorers.get(cfg) or make_scorer(cfg)
        key = (scorer.batch_rows, layout)
        placed[key] = placed.get(key) or (layouts[layout], [scorer.place(p) for p in layouts[layout].packs])
        _score_run(r, plan[r.spec.name], scorer, placed[key], job, summary)


def _score_run(
    run: OpenedRun,
    todo: Sequence[Mapping[str, Any]],
    scorer: Scorer,
    placed: tuple[Buckets, list],
    job: _Job,
    summary: Summary,
) -> None:
    """Score the checkpoints `todo` of one run into the store (process 0 writes), recording them in `summary`."""
    (buckets, on_device), spec, store = placed, run.spec, job.store
    for entry, (params, status, why) in restored(run, todo, scorer):
        step, t0 = int(entry["step"]), time.time()
        if params is None:
            log.warning("run %s step %d skipped (%s): %s", spec.name, step, status, why)
            summary.skipped.append((spec.name, step, status, why))
            if store.primary:
                store.table(spec.name).mark(step, status)
            continue
        logp_T = buckets.gather([scorer.logprobs(params, p, batches) for p, batches in on_device])
        del params
        surprisal_T = (-logp_T.astype(np.float64) / math.log(2)).astype(np.float32)
        extra = ""
        if store.primary:
            store.table(spec.name).write(step, surprisal_T)
            if job.pair_rows is not None:
                pairs = store.set_pairs(spec.name, step, job.pair_rows(surprisal_T))
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

"""Per-token surprisal at every checkpoint of a run's series: `python -m babyjax.score`.

    python -m babyjax.score --run seed0=runs/s0 --run seed1=runs/s1 --kind pairs --eval ../shared/data/blimp --out scores/blimp
    python -m babyjax.score --run runs/s0 --kind text --eval data/held_out.txt --words 1M,2M,10M --out scores/text
    python -m babyjax.score --run runs/s0 --kind tokens --eval runs/s0/token_sample.npz --out scores/tokens

Scoring conventions (Chang, Tu & Bergen 2023, TACL 2024; BabyLM 2023 evaluation pipeline; see docs/science.md):
- surprisal of token t in context c is `-log2 p(t | c)`, in bits; the log base is recorded in meta.json.
- first-token policy `eot_context` (default): every sequence is preceded by one end-of-text token (EOS_ID=3), so its
  first real token is scored, as the BabyLM 2023 pipeline does for an empty context; `no_context`: the first token is
  only context and is not scored (minicons' default without a BOS token).
- a minimal pair is correct when the good sentence has the higher total log-probability (lower summed surprisal);
  ties are counted separately, never as correct.
- sequences longer than the model context are scored in windows (lm-evaluation-harness rolling windows): the first
  window scores `seq_len` tokens, each later one `stride` tokens with the `seq_len - stride + 1` tokens before them as
  context (stride = seq_len: disjoint chunks, lm-eval's convention).

Short sequences are packed several to a row of `seq_len` tokens with segment ids and per-segment positions (attention
never crosses them), and the packing and the padded, masked last batch are fixed before any checkpoint is scored, so
the scores do not depend on batch size or device count (big_vision's evaluators pad and mask the same way).

Output layout (docs/architecture.md, "Score output")::

    <out>/meta.json                     kind, log_base, unit, eval_set, eval_hash, first_token_policy, tokenizer_hash ...
    <out>/tokens.csv                    index, seq, position, token_id, token, context_length (one row per scored token)
    <out>/sequences.csv                 seq, text (+ suite, paradigm, field, pair, which for minimal pairs)
    <out>/runs/<run>/surprisal.npy      float32 [checkpoints, tokens], bits, NaN = not scored (yet)
    <out>/runs/<run>/checkpoints.csv    step, tokens_seen, words_seen, wall_time, params_hash, status
    <out>/pairs.csv                     run, step, words_seen, suite, paradigm, field, n, correct, ties, accuracy

Read it with `np.load(".../surprisal.npy", mmap_mode="r")` and `pd.read_csv(".../tokens.csv", keep_default_na=False)`
(keep_default_na keeps pieces such as "NA" as strings), or `load_scores(out, run)`; `word_surprisal` sums pieces into
words (minicons `word_score`).

The job is resumable: a row of the matrix is written and flushed before its checkpoint is marked `done`, so a killed
job started again scores exactly the checkpoints not yet done. The next checkpoint is restored in a background thread
while the current one is scored. A checkpoint whose parameter hash does not match the series index is skipped with
status `hash_mismatch`; one that cannot be read, with status `corrupt` (both are retried by the next job).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import pathlib
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pandas as pd
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from babyjax import checkpoints, paths, sharding
from babyjax.errors import CheckpointError, InputError, MissingError
from babyjax.data import evalsets
from babyjax.data.tokenizer import EOS_ID, PAD_ID, Tokenizer
from babyjax.model import ModelConfig, Transformer

log = logging.getLogger("babyjax")

POLICIES = ("eot_context", "no_context")
KINDS = ("tokens", "text", "pairs")
STATUSES = ("pending", "done", "hash_mismatch", "corrupt")
CHECKPOINT_COLUMNS = ("step", "tokens_seen", "words_seen", "wall_time", "params_hash", "status")
PAIR_COLUMNS = ("run", "step", "words_seen", "suite", "paradigm", "field", "n", "correct", "ties", "accuracy")
TOKEN_COLUMNS = ("index", "seq", "position", "token_id", "token", "context_length")


# ---------------------------------------------------------------------------------------------------------------------
# Windows and packing


@dataclasses.dataclass(frozen=True)
class Window:
    """A stretch of one sequence scored in one forward pass: the model reads `context_ids + target_ids[:-1]` and
    every token of `target_ids` is scored. `start` is the position of `target_ids[0]` in the sequence's tokens."""

    seq: int
    start: int
    context_ids: tuple[int, ...]
    target_ids: tuple[int, ...]
    keep: tuple[int, ...] | None = None  # indices into target_ids that are scored (None: all)

    @property
    def kept(self) -> tuple[int, ...]:
        return tuple(range(len(self.target_ids))) if self.keep is None else self.keep

    @property
    def length(self) -> int:
        """Tokens the model reads (positions of the packed segment)."""
        return len(self.context_ids) + len(self.target_ids) - 1


def windows(seq: int, ids: Sequence[int], policy: str, seq_len: int, stride: int | None = None) -> list[Window]:
    """The windows that score sequence `seq` (its token ids) under a first-token `policy` (see module docstring)."""
    if policy not in POLICIES:
        raise InputError(f"unknown first-token policy {policy!r}: use one of {', '.join(POLICIES)}")
    stride = seq_len if stride is None else stride
    if not 1 <= stride <= seq_len:
        raise InputError(f"stride={stride} must be between 1 and seq_len={seq_len}")
    full = ([EOS_ID] if policy == "eot_context" else []) + [int(i) for i in ids]
    offset = 1 if policy == "eot_context" else 0  # full index -> position in the sequence
    out: list[Window] = []
    a = 1  # full[a] is the next token to score
    while a < len(full):
        b = min(len(full), seq_len + 1 if a == 1 else a + stride)
        c = max(0, b - 1 - seq_len)
        out.append(Window(seq, a - offset, tuple(full[c:a]), tuple(full[a:b])))
        a = b
    return out


@dataclasses.dataclass
class Packed:
    """Windows packed into rows of `seq_len` (int32/float32 numpy [rows, seq_len]), and where each scored token is."""

    inputs: np.ndarray
    targets: np.ndarray
    segment_ids: np.ndarray
    positions: np.ndarray
    weights: np.ndarray
    token_index: np.ndarray  # int64 [T]: row * seq_len + column of each scored token, in window order

    @property
    def num_rows(self) -> int:
        return self.inputs.shape[0]

    @property
    def num_tokens(self) -> int:
        return self.token_index.shape[0]

    def padded(self, batch_rows: int) -> Packed:
        """A copy with empty rows (segment 0, weight 0) appended up to a multiple of `batch_rows`."""
        extra = -self.num_rows % batch_rows
        if extra == 0 and self.num_rows > 0:
            return self
        extra = extra or batch_rows
        pad = lambda x: np.concatenate([x, np.zeros((extra, x.shape[1]), x.dtype)])
        return Packed(pad(self.inputs), pad(self.targets), pad(self.segment_ids), pad(self.positions),
                      pad(self.weights), self.token_index)

    def batches(self, batch_rows: int) -> Iterable[dict[str, np.ndarray]]:
        """Consecutive batches of `batch_rows` rows (the row count must be a multiple: see `padded`)."""
        for r in range(0, self.num_rows, batch_rows):
            yield {k: getattr(self, k)[r:r + batch_rows]
                   for k in ("inputs", "targets", "segment_ids", "positions", "weights")}


def pack(wins: Sequence[Window], seq_len: int) -> Packed:
    """Best-fit-decreasing packing of windows into rows of `seq_len` tokens, deterministic (ties by window order)."""
    lengths = np.array([w.length for w in wins], dtype=np.int64)
    if len(wins) and (lengths.max() > seq_len or lengths.min() < 1):
        raise InputError(f"a window reads {lengths.max()} tokens, more than seq_len={seq_len}")
    order = sorted(range(len(wins)), key=lambda i: (-lengths[i], i))
    free: list[list[int]] = [[] for _ in range(seq_len + 1)]  # free[r]: rows with exactly r slots left
    nonempty = 0  # bit r set <=> free[r] is not empty
    fill: list[int] = []
    nseg: list[int] = []
    row_of = np.zeros(len(wins), np.int64)
    col_of = np.zeros(len(wins), np.int64)
    seg_of = np.zeros(len(wins), np.int64)
    for i in order:
        m = int(lengths[i])
        above = nonempty >> m
        if above:
            r = m + (above & -above).bit_length() - 1
            row = free[r].pop()
            if not free[r]:
                nonempty &= ~(1 << r)
        else:
            row = len(fill)
            fill.append(0)
            nseg.append(0)
        row_of[i], col_of[i] = row, fill[row]
        fill[row] += m
        nseg[row] += 1
        seg_of[i] = nseg[row]
        left = seq_len - fill[row]
        if left:
            free[left].append(row)
            nonempty |= 1 << left
    n = len(fill)
    inputs = np.full((n, seq_len), PAD_ID, np.int32)
    targets = np.full((n, seq_len), PAD_ID, np.int32)
    segment_ids = np.zeros((n, seq_len), np.int32)
    positions = np.zeros((n, seq_len), np.int32)
    weights = np.zeros((n, seq_len), np.float32)
    token_index: list[np.ndarray] = []
    for i, w in enumerate(wins):
        row, col, m = row_of[i], col_of[i], int(lengths[i])
        full = w.context_ids + w.target_ids
        inputs[row, col:col + m] = full[:-1]
        targets[row, col:col + m] = full[1:]
        segment_ids[row, col:col + m] = seg_of[i]
        positions[row, col:col + m] = np.arange(m)
        cols = col + len(w.context_ids) - 1 + np.asarray(w.kept, np.int64)
        weights[row, cols] = 1.0
        token_index.append(row * seq_len + cols)
    flat = np.concatenate(token_index) if token_index else np.zeros((0,), np.int64)
    return Packed(inputs, targets, segment_ids, positions, weights, flat)


# ---------------------------------------------------------------------------------------------------------------------
# The jitted scoring function


def _head_logprobs(model: Transformer, x_BxLxD: jax.Array, targets_BxL: jax.Array) -> jax.Array:
    """log p(target) from final hidden states: logits (float32, as `Transformer.logits`) minus their logsumexp."""
    w_DxV = model.head_kernel_DxV().astype(x_BxLxD.dtype)
    logits_BxLxV = jnp.einsum("bld,dv->blv", x_BxLxD, w_DxV, preferred_element_type=jnp.float32)
    target_BxL = jnp.take_along_axis(logits_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]
    return target_BxL - jax.nn.logsumexp(logits_BxLxV, axis=-1)


def _target_logprobs(model: Transformer, batch: Mapping[str, jax.Array], chunks: int = 1) -> jax.Array:
    """log p(target | context) in nats, float32 [B, L]; 0 where the weight is 0.

    The output projection and log-softmax run over `chunks` slices of the batch in turn (a lax.map), so the
    [rows, L, V] logits of one slice stay small and in cache: on CPU this is 1.5x faster than one [B, L, V] pass.
    Slice j holds rows j, j + chunks, ..., so every device keeps working on its own rows.
    """
    x_BxLxD = model.features(batch["inputs"], batch["segment_ids"], batch["positions"], deterministic=True)
    targets_BxL = batch["targets"]
    if chunks == 1:
        logp_BxL = _head_logprobs(model, x_BxLxD, targets_BxL)
    else:
        b, length, d = x_BxLxD.shape
        x_CxBxLxD = x_BxLxD.reshape(b // chunks, chunks, length, d).swapaxes(0, 1)
        x_CxBxLxD = sharding.constrain(x_CxBxLxD, (None, "batch", "length", "embed"))
        t_CxBxL = targets_BxL.reshape(b // chunks, chunks, length).swapaxes(0, 1)
        logp_CxBxL = jax.lax.map(lambda xt: _head_logprobs(model, *xt), (x_CxBxLxD, t_CxBxL))
        logp_BxL = logp_CxBxL.swapaxes(0, 1).reshape(b, length)
    return jnp.where(batch["weights"] > 0, logp_BxL, 0.0)


def head_chunks(rows_per_shard: int, seq_len: int, tokens_per_chunk: int = 512) -> int:
    """How many slices the output projection of a batch is split into: about `tokens_per_chunk` tokens per device
    each, and a divisor of the rows each device holds."""
    k = max(1, rows_per_shard // max(1, tokens_per_chunk // seq_len))
    while rows_per_shard % k:
        k -= 1
    return k


class Scorer:
    """The jitted, sharded scoring function for one model shape on one mesh.

    Parameters are laid out by their logical axes (babyjax/sharding.py); batches are split over ('data', 'fsdp');
    the log-probabilities come back replicated, so every process holds all of them. batch_rows (0 = 8 per
    data-parallel device on CPU, where small batches stay in cache and run ~1.8x faster than 32, or 128 on
    accelerators) is rounded up to a multiple of the data-parallel devices. head_tokens: tokens per device in each
    slice of the output projection (see `_target_logprobs`; 0 = 256 on CPU, 16,384 on accelerators).
    """

    def __init__(self, model_cfg: ModelConfig, mesh: Mesh, batch_rows: int = 0, head_tokens: int = 0):
        cpu = mesh.devices.flat[0].platform == "cpu"
        head_tokens = head_tokens or (256 if cpu else 16384)
        self.model_cfg = dataclasses.replace(model_cfg, dropout=0.0, remat=False)
        self.mesh = mesh
        abstract_model = nnx.eval_shape(lambda: Transformer(self.model_cfg, rngs=nnx.Rngs(0)))
        self.graphdef, abstract, rest = nnx.split(abstract_model, nnx.Param, ...)
        if jax.tree.leaves(rest):
            raise InputError("babyjax.score expects a model whose only state is nnx.Param")
        self._rest = rest
        self.param_shardings = sharding.tree_shardings(abstract, mesh)
        self.abstract_params = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                            abstract, self.param_shardings)
        shards = mesh.shape["data"] * mesh.shape["fsdp"]
        batch_rows = batch_rows or (8 if cpu else 128) * shards
        self.batch_rows = max(1, math.ceil(batch_rows / shards)) * shards
        self.batch_sharding = NamedSharding(mesh, sharding.logical_to_spec(("batch", "length")))
        replicated = NamedSharding(mesh, PartitionSpec())

        def logprobs(params: nnx.State, batch: dict[str, jax.Array]) -> jax.Array:
            chunks = head_chunks(batch["inputs"].shape[0] // shards, batch["inputs"].shape[1], head_tokens)
            with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
                return _target_logprobs(nnx.merge(self.graphdef, params, self._rest), batch, chunks)

        self._fn = jax.jit(logprobs, in_shardings=(self.param_shardings, self.batch_sharding),
                           out_shardings=replicated)

    def place_params(self, params: Any) -> Any:
        """Put parameters (an nnx.State of arrays, e.g. from a model made on one device) into the scorer's layout."""
        return jax.device_put(params, self.param_shardings)

    def place(self, packed: Packed) -> tuple[Packed, list[dict[str, jax.Array]]]:
        """Pad `packed` to whole batches and put every batch on the mesh once (reused for every checkpoint)."""
        packed = packed.padded(self.batch_rows)

        def put(x: np.ndarray) -> jax.Array:
            return jax.make_array_from_callback(x.shape, self.batch_sharding, lambda idx: x[idx])

        return packed, [{k: put(v) for k, v in b.items()} for b in packed.batches(self.batch_rows)]

    def logprobs(self, params: Any, packed: Packed, device_batches: Sequence[dict[str, jax.Array]]) -> np.ndarray:
        """float32 [T]: natural-log probability of every scored token of `packed`, in window order."""
        outs = [self._fn(params, b) for b in device_batches]  # dispatch everything, then read back
        flat = np.concatenate([np.asarray(o.addressable_data(0)).reshape(-1) for o in outs]) if outs else \
            np.zeros((0,), np.float32)
        return flat[packed.token_index]


def score_sequences(model: Transformer, token_lists: Sequence[Sequence[int]], *, policy: str = "eot_context",
                    seq_len: int | None = None, stride: int | None = None, batch_rows: int = 0,
                    mesh: Mesh | None = None, head_tokens: int = 0) -> list[np.ndarray]:
    """Natural-log probabilities of the scored tokens of each sequence (a notebook helper around `Scorer`).

    With `eot_context` every token of a sequence is scored; with `no_context` all but the first.
    """
    cfg = model.cfg
    seq_len = seq_len or cfg.max_len
    mesh = mesh or sharding.make_mesh(ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1}))
    scorer = Scorer(cfg, mesh, batch_rows, head_tokens)
    wins = [w for s, ids in enumerate(token_lists) for w in windows(s, ids, policy, seq_len, stride)]
    packed, device_batches = scorer.place(pack(wins, seq_len))
    params = scorer.place_params(nnx.state(model, nnx.Param))
    logp = scorer.logprobs(params, packed, device_batches)
    counts = np.bincount([w.seq for w in wins], weights=[len(w.target_ids) for w in wins],
                         minlength=len(token_lists)).astype(np.int64)
    return np.split(logp, np.cumsum(counts)[:-1]) if len(token_lists) else []


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation sets


@dataclasses.dataclass
class EvalSet:
    """Tokenized sequences to score and what they are.

    sequences: one row per sequence (column `seq` = its index in `token_ids`), plus `text` and, for minimal pairs,
    suite, paradigm, field, pair and which ('good' | 'bad'). positions (tokens-in-context sample only): per row of
    `token_ids`, the positions scored, each in the context of all tokens before it in the row.
    """

    kind: str
    source: str
    eval_hash: str
    token_ids: list[list[int]]
    sequences: pd.DataFrame
    tokenizer_hash: str | None = None  # the tokenizer a pre-tokenized set was made with
    positions: list[list[int]] | None = None


def files_hash(paths: Sequence[str | os.PathLike]) -> str:
    """sha256 over the names (not folders) and bytes of files, in sorted name order."""
    h = hashlib.sha256()
    for p in sorted((pathlib.Path(p) for p in paths), key=lambda p: p.name):
        h.update(p.name.encode() + b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()



def _files_of(path: str | os.PathLike, suffix: str) -> list[pathlib.Path]:
    p = pathlib.Path(path)
    if p.is_dir():
        return sorted(q for q in p.glob(f"*{suffix}") if q.is_file())
    if not p.is_file():
        raise MissingError(f"evaluation set {p} not found")
    return [p]


def _limited_hash(files: Sequence[pathlib.Path], limit: int) -> str:
    digest = files_hash(files)
    return digest if not limit else hashlib.sha256(f"{digest}|limit={limit}".encode()).hexdigest()


def load_text(paths: Sequence[str], tok: Tokenizer, *, unit: str = "line", suffix: str = ".txt",
              limit: int = 0) -> EvalSet:
    """Held-out text: each non-empty line a sequence (`unit='line'`), or each file one sequence whose lines are
    documents joined by EOS, as in the training token stream (`unit='file'`). `limit` > 0 keeps the first sequences."""
    if unit not in ("line", "file"):
        raise InputError(f"unknown text unit {unit!r}: use 'line' or 'file'")
    files = [f for p in paths for f in _files_of(p, suffix)]
    lines = [t for p in paths for t in evalsets.load_texts(p, suffix)]
    if not lines:
        raise InputError(f"no text to score in {', '.join(map(str, paths))} (empty files?)")
    encoded = tok.encode_batch([t.text for t in lines])
    rows: list[dict] = []
    ids: list[list[int]] = []
    if unit == "line":
        for t, e in zip(lines, encoded):
            rows.append({"seq": len(ids), "file": t.source, "line": t.line, "text": t.text})
            ids.append(e)
    else:
        by_file: dict[str, list[int]] = {}
        for t, e in zip(lines, encoded):
            joined = by_file.setdefault(t.source, [])
            joined.extend(([EOS_ID] if joined else []) + e)
        for name, joined in by_file.items():
            rows.append({"seq": len(ids), "file": name, "line": -1, "text": ""})
            ids.append(joined)
    if limit:
        ids, rows = ids[:limit], rows[:limit]
    return EvalSet("text", ",".join(map(str, paths)), _limited_hash(files, limit), ids, pd.DataFrame(rows))


def load_pairs(paths: Sequence[str], tok: Tokenizer, *, suite: str | None = None, limit: int = 0) -> EvalSet:
    """Minimal pairs (BLiMP, BLiMP supplement, Zorro; babyjax.data.evalsets): sequence 2i is pair i's good
    sentence, 2i + 1 its bad one. `limit` > 0 keeps the first pairs of each paradigm."""
    pairs: list[evalsets.MinimalPair] = []
    files: list[pathlib.Path] = []
    for p in paths:
        found = evalsets.load_pairs(p, suite)
        if not found:
            raise InputError(f"no minimal pairs in {p}: the file is empty or holds no sentence pairs")
        pairs += found
        files += _files_of(p, ".txt" if found[0].suite == "zorro" else ".jsonl")
    if limit:
        seen: dict[tuple[str, str], int] = {}
        kept = []
        for pr in pairs:
            k = (pr.suite, pr.paradigm)
            seen[k] = seen.get(k, 0) + 1
            if seen[k] <= limit:
                kept.append(pr)
        pairs = kept
    texts = [s for pr in pairs for s in (pr.good, pr.bad)]
    ids = tok.encode_batch(texts)
    rows = [{"seq": 2 * i + j, "pair": i, "which": which, "suite": pr.suite, "paradigm": pr.paradigm,
             "field": pr.field, "phenomenon": pr.phenomenon, "pair_id": pr.pair_id, "text": text}
            for i, pr in enumerate(pairs) for j, (which, text) in enumerate((("good", pr.good), ("bad", pr.bad)))]
    return EvalSet("pairs", ",".join(map(str, paths)), _limited_hash(files, limit), ids, pd.DataFrame(rows))


def load_tokens(path: str, *, limit: int = 0) -> EvalSet:
    """A tokens-in-context sample (Chang et al. 2023; babyjax.data.evalsets.make_token_sample): each row of `tokens`
    is read as one context and the tokens at `positions` are scored."""
    sample = evalsets.load_token_sample(path)
    if sample.tokens.ndim != 2 or sample.positions.ndim != 2 or sample.positions.shape[0] != sample.tokens.shape[0]:
        raise InputError(f"{path} is not a token sample: tokens [N, L] and positions [N, k] expected")
    if sample.positions.size and (sample.positions.min() < 1 or sample.positions.max() >= sample.tokens.shape[1]):
        raise InputError(f"{path}: target positions must be in [1, L-1]")
    tokens, positions, offsets = sample.tokens, sample.positions, sample.offsets
    if limit:
        tokens, positions, offsets = tokens[:limit], positions[:limit], offsets[:limit]
    rows = pd.DataFrame({"seq": np.arange(tokens.shape[0]), "offset": offsets, "text": ""})
    return EvalSet("tokens", str(path), _limited_hash([pathlib.Path(path)], limit), tokens.tolist(), rows,
                   tokenizer_hash=sample.meta.get("tokenizer_sha256"), positions=[p.tolist() for p in positions])


def eval_windows(ev: EvalSet, policy: str, seq_len: int, stride: int | None = None) -> list[Window]:
    """The windows that score an evaluation set."""
    if ev.kind != "tokens":
        return [w for s, ids in enumerate(ev.token_ids) for w in windows(s, ids, policy, seq_len, stride)]
    out = []
    for s, (ids, pos) in enumerate(zip(ev.token_ids, ev.positions or [])):
        if not pos:
            continue
        last = max(pos)
        if last > seq_len:
            raise InputError(f"the token sample's targets reach position {last}, beyond seq_len={seq_len}")
        out.append(Window(s, 1, (int(ids[0]),), tuple(int(i) for i in ids[1:last + 1]),
                          tuple(int(p) - 1 for p in pos)))
    return out


def token_table(wins: Sequence[Window], tok: Tokenizer) -> pd.DataFrame:
    """One row per scored token, in scoring order: index, seq, position, token_id, token, context_length."""
    seq, position, token_id, context = [], [], [], []
    for w in wins:
        kept = np.asarray(w.kept, np.int64)
        seq.append(np.full(kept.shape, w.seq, np.int64))
        position.append(w.start + kept)
        token_id.append(np.asarray(w.target_ids, np.int64)[kept])
        context.append(len(w.context_ids) + kept)
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros((0,), np.int64)
    ids = cat(token_id)
    pieces = np.array([tok.id_to_piece(i) for i in range(tok.vocab_size)], dtype=object)
    return pd.DataFrame({"index": np.arange(ids.shape[0]), "seq": cat(seq), "position": cat(position),
                         "token_id": ids, "token": pieces[ids] if ids.size else [], "context_length": cat(context)})


def layout_hash(tokens: pd.DataFrame) -> str:
    """sha256 of what is scored: token ids, sequences, positions and context lengths (the output's row identity)."""
    h = hashlib.sha256()
    for col in ("seq", "position", "token_id", "context_length"):
        h.update(np.ascontiguousarray(tokens[col].to_numpy(np.int64)).data)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------------------
# The output folder


def _write_csv(path: pathlib.Path, df: pd.DataFrame) -> None:
    paths.write_atomic(path, lambda tmp: df.to_csv(tmp, index=False), fsync=True)


def _read_checkpoints_csv(path: pathlib.Path) -> pd.DataFrame:
    df = pd.read_csv(path, dtype={"params_hash": str, "status": str}, keep_default_na=False)
    if tuple(df.columns) != CHECKPOINT_COLUMNS:
        raise InputError(f"{path} is not a babyjax checkpoints table (columns {list(df.columns)}); "
                         "use a new --out")
    return df


class RunTable:
    """`runs/<run>/surprisal.npy` and `checkpoints.csv` of one run (process 0 only).

    Rows stay sorted by step. New checkpoints (a series that grew, or other --steps) are merged in without losing a
    scored row: the grown matrix and table are written beside the old ones, then the matrix is renamed in and then the
    table; a job killed between the two renames is finished by the next one (`checkpoints.csv.pending`).
    """

    def __init__(self, directory: pathlib.Path, num_tokens: int):
        self.dir = directory
        self.num_tokens = num_tokens
        self.matrix_path = directory / "surprisal.npy"
        self.table_path = directory / "checkpoints.csv"
        self.pending_path = directory / "checkpoints.csv.pending"
        directory.mkdir(parents=True, exist_ok=True)
        self._recover()
        if self.table_path.exists():
            self.rows = _read_checkpoints_csv(self.table_path)
            self.matrix = np.lib.format.open_memmap(self.matrix_path, mode="r+")
            if self.matrix.shape != (len(self.rows), num_tokens) or self.matrix.dtype != np.float32:
                raise InputError(f"{self.matrix_path} has shape {self.matrix.shape}, but {self.table_path} lists "
                                 f"{len(self.rows)} checkpoints of {num_tokens} tokens: the folder was changed by "
                                 "hand; use a new --out")
        else:
            self.rows = pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
                CHECKPOINT_COLUMNS, ("int64", "float64", "float64", "float64", "str", "str"))})
            self.matrix = None

    def _recover(self) -> None:
        if not self.pending_path.exists():
            return
        pending = _read_checkpoints_csv(self.pending_path)
        if self.matrix_path.exists() and np.load(self.matrix_path, mmap_mode="r").shape[0] == len(pending):
            os.replace(self.pending_path, self.table_path)  # the matrix was renamed in: finish the commit
        else:
            self.pending_path.unlink()

    def add(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Make sure every index entry has a row (new rows: NaN, status 'pending')."""
        have = set(self.rows["step"].astype(int).tolist())
        new = [e for e in entries if int(e["step"]) not in have]
        if not new and self.matrix is not None:
            return
        added = pd.DataFrame([{"step": int(e["step"]), "tokens_seen": float(e.get("tokens_seen", np.nan)),
                               "words_seen": float(e.get("words_seen", np.nan)),
                               "wall_time": float(e.get("wall_time", np.nan)),
                               "params_hash": str(e.get("params_hash", "")), "status": "pending"} for e in new],
                             columns=list(CHECKPOINT_COLUMNS))
        rows = pd.concat([self.rows, added], ignore_index=True) if len(self.rows) else added
        rows = rows.sort_values("step", kind="stable").reset_index(drop=True)
        old_at = {int(s): i for i, s in enumerate(self.rows["step"])}
        tmp = self.dir / ".surprisal.npy.grow"
        grown = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(rows), self.num_tokens))
        for i, s in enumerate(rows["step"]):
            grown[i] = self.matrix[old_at[int(s)]] if int(s) in old_at else np.nan
        grown.flush()
        del grown
        _write_csv(self.pending_path, rows)
        os.replace(tmp, self.matrix_path)
        os.replace(self.pending_path, self.table_path)
        self.rows = rows
        self.matrix = np.lib.format.open_memmap(self.matrix_path, mode="r+")

    def row_of(self, step: int) -> int:
        return int(np.flatnonzero(self.rows["step"].to_numpy() == step)[0])

    def status(self, step: int) -> str:
        return str(self.rows.at[self.row_of(step), "status"])

    def write(self, step: int, surprisal_T: np.ndarray) -> None:
        """Write and flush the row, then mark it done (a kill in between only means it is scored again)."""
        i = self.row_of(step)
        self.matrix[i] = surprisal_T
        self.matrix.flush()
        self.mark(step, "done")

    def mark(self, step: int, status: str) -> None:
        self.rows.at[self.row_of(step), "status"] = status
        _write_csv(self.table_path, self.rows)

    def done_rows(self) -> Iterable[tuple[int, float, np.ndarray]]:
        """(step, words_seen, surprisal row) of every checkpoint scored so far."""
        for i, r in self.rows.iterrows():
            if r["status"] == "done":
                yield int(r["step"]), float(r["words_seen"]), np.asarray(self.matrix[i])


def pair_table(surprisal_T: np.ndarray, token_seq_T: np.ndarray, sequences: pd.DataFrame) -> pd.DataFrame:
    """Per paradigm: n, correct (good sentence has the lower summed surprisal), ties, accuracy = correct / n."""
    total = np.bincount(token_seq_T, weights=surprisal_T.astype(np.float64), minlength=len(sequences))
    good, bad = total[0::2], total[1::2]
    meta = sequences.iloc[0::2][["suite", "paradigm", "field"]].reset_index(drop=True)
    df = meta.assign(n=1, correct=(good < bad).astype(np.int64), ties=(good == bad).astype(np.int64))
    out = df.groupby(["suite", "paradigm", "field"], sort=True, as_index=False)[["n", "correct", "ties"]].sum()
    out["accuracy"] = out["correct"] / out["n"]
    return out


def word_surprisal(surprisal: np.ndarray, tokens: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Word-level surprisal: the sum over each word's pieces (minicons `word_score`). A word starts at a piece that
    begins with SentencePiece's boundary mark '▁', at a sequence's first scored token, and after a gap in positions.

    surprisal: [..., T] (e.g. a run's [checkpoints, tokens] matrix); tokens: tokens.csv. Returns (words, [..., W]):
    words has seq, word (index within the sequence), first_index (its first row of tokens.csv), num_pieces (Chang &
    Bergen 2022 keep single-piece words) and text.
    """
    seq = tokens["seq"].to_numpy(np.int64)
    pos = tokens["position"].to_numpy(np.int64)
    pieces = tokens["token"].astype(str).to_numpy()
    if len(seq) == 0:
        return pd.DataFrame(columns=["seq", "word", "first_index", "num_pieces", "text"]), \
            np.zeros(np.shape(surprisal)[:-1] + (0,), np.float64)
    new_seq = np.r_[True, seq[1:] != seq[:-1]]
    starts = new_seq | np.char.startswith(pieces.astype(str), "\u2581") | np.r_[True, pos[1:] != pos[:-1] + 1]
    first = np.flatnonzero(starts)
    counts = np.diff(np.r_[first, len(seq)])
    texts = ["".join(pieces[a:a + n]).replace("\u2581", " ").strip() for a, n in zip(first, counts)]
    words = pd.DataFrame({"seq": seq[first], "first_index": first, "num_pieces": counts, "text": texts})
    words.insert(1, "word", words.groupby("seq").cumcount())
    return words, np.add.reduceat(np.asarray(surprisal, np.float64), first, axis=-1)


def load_scores(out: str | os.PathLike, run: str) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """(surprisal [checkpoints, tokens] memory-mapped, checkpoints table, tokens table) of `run` in a score folder."""
    out = pathlib.Path(out)
    run_dir = out / "runs" / run
    if not (run_dir / "surprisal.npy").exists():
        raise MissingError(f"no scores for run {run!r} in {out}")
    return (np.load(run_dir / "surprisal.npy", mmap_mode="r"), _read_checkpoints_csv(run_dir / "checkpoints.csv"),
            pd.read_csv(out / "tokens.csv", keep_default_na=False))


# ---------------------------------------------------------------------------------------------------------------------
# The batch job

_IDENTITY = ("kind", "eval_hash", "layout_hash", "first_token_policy", "tokenizer_hash", "log_base", "seq_len",
             "stride")
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


def select_checkpoints(index: Sequence[Mapping[str, Any]], steps: Sequence[int] | None = None,
                       words: Sequence[int] | None = None, run: str = "") -> list[dict]:
    """Index entries to score: all, the given steps, and/or the first checkpoint reaching each words-seen mark."""
    entries = sorted((dict(e) for e in index), key=lambda e: int(e["step"]))
    if not steps and not words:
        return entries
    by_step = {int(e["step"]): e for e in entries}
    chosen: dict[int, dict] = {}
    for s in steps or ():
        if int(s) not in by_step:
            raise InputError(f"run {run}: no checkpoint at step {s} (the series has {len(entries)} steps, "
                             f"{entries[0]['step']} to {entries[-1]['step']})")
        chosen[int(s)] = by_step[int(s)]
    for w in words or ():
        hit = next((e for e in entries if float(e.get("words_seen", -1)) >= w), None)
        if hit is None:
            most = max(float(e.get("words_seen", 0)) for e in entries)
            raise InputError(f"run {run}: no checkpoint has seen {w:,} words (the last saw {most:,.0f})")
        chosen[int(hit["step"])] = hit
    return [chosen[s] for s in sorted(chosen)]


def _load_run(spec: RunSpec) -> tuple[ml_collections.ConfigDict, Tokenizer, list[dict]]:
    config_path = spec.workdir / "config.json"
    if not config_path.is_file():
        raise MissingError(f"run {spec.name}: {config_path} not found; --run must name a babyjax run directory")
    config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
    tok = Tokenizer(spec.workdir / "tokenizer.model")
    try:
        index = checkpoints.load_series_index(spec.workdir)
    except CheckpointError as e:
        raise CheckpointError(f"run {spec.name} has no checkpoints to score: {e}") from None
    if not index:
        raise CheckpointError(f"run {spec.name} has no checkpoints to score ({spec.workdir})")
    return config, tok, index


def _broadcast_json(obj: Any) -> Any:
    """Process 0's `obj` on every process (JSON-serialisable)."""
    if jax.process_count() == 1:
        return obj
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(obj).encode(), np.uint8) if jax.process_index() == 0 else np.zeros(0, np.uint8)
    n = int(multihost_utils.broadcast_one_to_all(np.array(data.size, np.int64)))
    buf = np.zeros(n, np.uint8)
    buf[:data.size] = data
    return json.loads(bytes(np.asarray(multihost_utils.broadcast_one_to_all(buf))).decode())


class _Store:
    """The output folder (process 0 writes; other processes only compute)."""

    def __init__(self, out: pathlib.Path, meta: dict, tokens: pd.DataFrame, sequences: pd.DataFrame,
                 primary: bool):
        self.out, self.meta, self.primary = out, meta, primary
        self.tables: dict[str, RunTable] = {}
        self.pairs: dict[tuple[str, int], pd.DataFrame] = {}
        self.token_seq = tokens["seq"].to_numpy(np.int64)
        self.sequences = sequences
        if not primary:
            return
        meta_path = out / "meta.json"
        if meta_path.exists():
            stored = json.loads(meta_path.read_text())
            for key in _IDENTITY:
                if stored.get(key) != meta.get(key):
                    raise InputError(f"{out} holds scores of another evaluation ({key}: stored {stored.get(key)!r}, "
                                     f"now {meta.get(key)!r}); use a new --out")
            for run, wd in meta["run_workdirs"].items():
                if stored["run_workdirs"].get(run, wd) != wd:
                    raise InputError(f"{out} holds run {run!r} from {stored['run_workdirs'][run]}, not {wd}: "
                                     "give this run another name")
            merged = {**stored["run_workdirs"], **meta["run_workdirs"]}
            self.meta = {**meta, "runs": sorted(merged), "run_workdirs": merged, "created": stored.get("created")}
        else:
            out.mkdir(parents=True, exist_ok=True)
            _write_csv(out / "tokens.csv", tokens)
            _write_csv(out / "sequences.csv", sequences)
        paths.write_atomic(meta_path, json.dumps(self.meta, indent=1), fsync=True)

    def table(self, run: str) -> RunTable:
        if run not in self.tables:
            self.tables[run] = RunTable(self.out / "runs" / run, len(self.token_seq))
            if self.meta["kind"] == "pairs":
                for step, words, row in self.tables[run].done_rows():
                    self.pairs[(run, step)] = self._pair_rows(run, step, words, row)
        return self.tables[run]

    def _pair_rows(self, run: str, step: int, words: float, surprisal_T: np.ndarray) -> pd.DataFrame:
        df = pair_table(surprisal_T, self.token_seq, self.sequences)
        df.insert(0, "words_seen", words)
        df.insert(0, "step", step)
        df.insert(0, "run", run)
        return df[list(PAIR_COLUMNS)]

    def write(self, run: str, step: int, surprisal_T: np.ndarray) -> pd.DataFrame | None:
        table = self.table(run)
        table.write(step, surprisal_T)
        if self.meta["kind"] != "pairs":
            return None
        words = float(table.rows.at[table.row_of(step), "words_seen"])
        self.pairs[(run, step)] = rows = self._pair_rows(run, step, words, surprisal_T)
        self.write_pairs()
        return rows

    def write_pairs(self) -> None:
        if self.meta["kind"] == "pairs" and self.pairs:
            df = pd.concat([self.pairs[k] for k in sorted(self.pairs)], ignore_index=True)
            _write_csv(self.out / "pairs.csv", df)


def _restore(spec: RunSpec, entry: Mapping[str, Any], scorer: Scorer) -> tuple[Any, str, str]:
    """(params or None, status, message): 'ok', 'corrupt' (unreadable) or 'hash_mismatch' (vs the series index)."""
    step = int(entry["step"])
    try:
        params = checkpoints.restore_params(spec.workdir, step, scorer.abstract_params, verify=False)
        digest = checkpoints.params_hash(params)
    except Exception as e:  # noqa: BLE001 - orbax and the filesystem raise many kinds; all mean unreadable
        return None, "corrupt", f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
    expected = entry.get("params_hash")
    if expected and digest != expected:
        return None, "hash_mismatch", f"parameters hash to {digest[:12]}..., the series index records {expected[:12]}..."
    return params, "ok", ""


def score_job(runs: Sequence[RunSpec], out: str | os.PathLike, *, kind: str, eval_paths: Sequence[str],
              policy: str = "eot_context", steps: Sequence[int] | None = None, words: Sequence[int] | None = None,
              seq_len: int = 0, stride: int = 0, batch_rows: int = 0, mesh_cfg: Any = None, dtype: str = "",
              suite: str | None = None, text_unit: str = "line", text_suffix: str = ".txt",
              limit: int = 0, head_tokens: int = 0) -> Summary:
    """Score checkpoints of `runs` on an evaluation set into the folder `out` (resumable; see module docstring).

    kind: 'tokens' (a token-sample .npz), 'text' (files or folders of `text_suffix` files) or 'pairs' (BLiMP / Zorro /
    BLiMP-supplement files or folders). seq_len 0: the first run's data.seq_len; stride 0: seq_len.
    """
    t_start = time.time()
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
    loaded = {r.name: _load_run(r) for r in runs}
    first = runs[0]
    config0, tok, _ = loaded[first.name]
    for r in runs[1:]:
        if loaded[r.name][1].sha256 != tok.sha256:
            raise InputError(f"runs {first.name} and {r.name} use different tokenizers: score them into separate "
                             "--out folders (tokens.csv is shared by the runs of one folder)")

    if kind == "text":
        ev = load_text(eval_paths, tok, unit=text_unit, suffix=text_suffix, limit=limit)
    elif kind == "pairs":
        ev = load_pairs(eval_paths, tok, suite=suite, limit=limit)
    else:
        if len(eval_paths) != 1:
            raise InputError("--kind=tokens takes exactly one token-sample file")
        ev = load_tokens(eval_paths[0], limit=limit)
        if ev.tokenizer_hash and ev.tokenizer_hash != tok.sha256:
            raise InputError(f"the token sample {eval_paths[0]} was made with another tokenizer (sha256 "
                             f"{ev.tokenizer_hash[:12]}...) than run {first.name} ({tok.sha256[:12]}...): make a "
                             "sample with this run's tokenizer")
        policy = "sample_context"

    seq_len = seq_len or int(config0.data.seq_len)
    stride = stride or seq_len
    model_cfgs: dict[str, ModelConfig] = {}
    for r in runs:
        cfg = ModelConfig.from_config(loaded[r.name][0].model, loaded[r.name][1].vocab_size)
        cfg = dataclasses.replace(cfg, dtype=dtype) if dtype else cfg
        if cfg.style == "gpt2" and seq_len > cfg.max_len:
            raise InputError(f"seq_len={seq_len} exceeds run {r.name}'s model.max_len={cfg.max_len} (learned "
                             "positions): pass --seq_len at most that")
        model_cfgs[r.name] = cfg
    wins = eval_windows(ev, policy if kind != "tokens" else "eot_context", seq_len, stride)
    tokens = token_table(wins, tok)
    if not len(tokens):
        raise InputError(f"nothing to score in {ev.source}: every sequence is empty (or one token long under "
                         "--policy=no_context)")
    if int(tokens["token_id"].max()) >= tok.vocab_size:
        raise InputError(f"the evaluation set holds token ids up to {tokens['token_id'].max()}, beyond the "
                         f"tokenizer's vocabulary ({tok.vocab_size}): it was made with another tokenizer")
    source = ",".join(str(pathlib.Path(p).resolve()) for p in ev.source.split(","))  # readable from any folder
    meta = {"kind": kind, "log_base": 2, "unit": "bits", "eval_set": source, "eval_hash": ev.eval_hash,
            "layout_hash": layout_hash(tokens), "first_token_policy": policy, "tokenizer_hash": tok.sha256,
            "vocab_size": tok.vocab_size, "seq_len": seq_len, "stride": stride, "num_tokens": len(tokens),
            "num_sequences": len(ev.sequences), "text_unit": text_unit if kind == "text" else None,
            "limit": limit, "runs": [r.name for r in runs],
            "run_workdirs": {r.name: str(r.workdir.resolve()) for r in runs}, "created": time.time()}
    chosen = {r.name: select_checkpoints(loaded[r.name][2], steps, words, r.name) for r in runs}
    primary = jax.process_index() == 0
    store = _Store(pathlib.Path(out), meta, tokens, ev.sequences, primary)

    # The plan: process 0 reads what is done; every process scores the same checkpoints in the same order.
    plan = {}
    already = 0
    if primary:
        for r in runs:
            table = store.table(r.name)
            table.add(chosen[r.name])
            todo = [e for e in chosen[r.name] if table.status(int(e["step"])) != "done"]
            already += len(chosen[r.name]) - len(todo)
            plan[r.name] = todo
    plan, already = _broadcast_json([plan, already])
    summary = Summary(already_done=already, num_tokens=len(tokens))

    mesh = sharding.make_mesh(mesh_cfg or ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1}))
    scorers: dict[ModelConfig, Scorer] = {}
    placed: dict[int, tuple[Packed, list]] = {}
    packed0 = pack(wins, seq_len)
    log.info("scoring %d tokens (%d sequences, %d rows of %d) of %s; %d checkpoints to score, %d done before",
             len(tokens), len(ev.sequences), packed0.num_rows, seq_len, ev.source,
             sum(len(v) for v in plan.values()), already)
    for r in runs:
        todo = plan[r.name]
        if not todo:
            continue
        cfg = model_cfgs[r.name]
        if cfg not in scorers:
            scorers[cfg] = Scorer(cfg, mesh, batch_rows, head_tokens)
        scorer = scorers[cfg]
        if scorer.batch_rows not in placed:
            placed[scorer.batch_rows] = scorer.place(packed0)
        packed, device_batches = placed[scorer.batch_rows]
        overlap = jax.process_count() == 1  # collectives in a second thread could interleave across processes
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            restore = functools.partial(_restore, r, scorer=scorer)
            future = pool.submit(restore, todo[0]) if overlap else None
            for j, entry in enumerate(todo):
                step = int(entry["step"])
                t0 = time.time()
                params, status, why = future.result() if overlap else restore(entry)
                if overlap and j + 1 < len(todo):
                    future = pool.submit(restore, todo[j + 1])
                if params is None:
                    log.warning("run %s step %d skipped (%s): %s", r.name, step, status, why)
                    summary.skipped.append((r.name, step, status, why))
                    if primary:
                        store.table(r.name).mark(step, status)
                    continue
                logp_T = scorer.logprobs(params, packed, device_batches)
                del params
                surprisal_T = (-logp_T.astype(np.float64) / math.log(2)).astype(np.float32)
                extra = ""
                if primary:
                    pairs = store.write(r.name, step, surprisal_T)
                    if pairs is not None:
                        extra = f", pair accuracy {pairs['correct'].sum() / max(1, pairs['n'].sum()):.3f}"
                summary.scored.append((r.name, step))
                log.info("run %s step %d: mean surprisal %.3f bits, %.1fs (%.0f tokens/s)%s", r.name, step,
                         float(np.mean(surprisal_T)) if surprisal_T.size else float("nan"), time.time() - t0,
                         len(tokens) / max(time.time() - t0, 1e-9), extra)
    summary.seconds = time.time() - t_start
    return summary


# ---------------------------------------------------------------------------------------------------------------------
# Command line


def _define_flags() -> None:
    from absl import flags

    from babyjax import distributed

    flags.DEFINE_multi_string("run", [], "name=workdir of a run to score (repeat for several runs/seeds)")
    flags.DEFINE_enum("kind", "text", list(KINDS), "evaluation set: tokens (token-sample .npz), text, pairs")
    flags.DEFINE_multi_string("eval", [], "evaluation file or folder (repeatable)")
    flags.DEFINE_string("out", None, "output folder (created, or continued when it holds this evaluation)")
    flags.DEFINE_list("steps", [], "score only these series steps (comma-separated)")
    flags.DEFINE_list("words", [], "score the first checkpoint reaching each words-seen mark, e.g. 1M,2M,10M")
    flags.DEFINE_enum("policy", "eot_context", list(POLICIES), "first-token policy (see python -m babyjax.score)")
    flags.DEFINE_integer("seq_len", 0, "row length = longest context (0: the run's data.seq_len)")
    flags.DEFINE_integer("stride", 0, "tokens scored per window after the first, for long sequences (0: seq_len)")
    flags.DEFINE_integer("batch_rows", 0, "rows per batch (0: auto; rounded up to a multiple of the data-parallel "
                         "devices)")
    flags.DEFINE_string("dtype", "", "compute dtype override: float32 | bfloat16 ('' = the run's model.dtype)")
    flags.DEFINE_enum("suite", None, list(evalsets.SUITES), "minimal-pair suite (default: guessed from the files)")
    flags.DEFINE_enum("text_unit", "line", ["line", "file"], "text: one sequence per line, or per file")
    flags.DEFINE_string("text_suffix", ".txt", "text: suffix of the files read from an --eval folder")
    flags.DEFINE_integer("head_tokens", 0, "tokens per device in each slice of the output projection (0: auto)")
    flags.DEFINE_integer("limit", 0, "quick runs: keep the first N sequences (pairs: N pairs per paradigm)")
    flags.DEFINE_integer("mesh_data", -1, "mesh: data-parallel axis size (-1: the remaining devices)")
    flags.DEFINE_integer("mesh_fsdp", 1, "mesh: fsdp axis size")
    flags.DEFINE_integer("mesh_tensor", 1, "mesh: tensor axis size")
    distributed.define_flags()


def main(argv: Sequence[str]) -> None:
    from absl import flags

    from babyjax import distributed

    del argv
    f = flags.FLAGS
    distributed.initialize_from_flags()
    if not f.out:
        raise InputError("--out is required: the folder the scores go to")
    summary = score_job(
        [RunSpec.parse(r) for r in f.run], f.out, kind=f.kind, eval_paths=f.eval, policy=f.policy,
        steps=[int(s) for s in f.steps], words=[parse_count(w) for w in f.words], seq_len=f.seq_len,
        stride=f.stride, batch_rows=f.batch_rows, dtype=f.dtype, suite=f.suite, text_unit=f.text_unit,
        text_suffix=f.text_suffix, limit=f.limit, head_tokens=f.head_tokens,
        mesh_cfg=ml_collections.ConfigDict({"data": f.mesh_data, "fsdp": f.mesh_fsdp, "tensor": f.mesh_tensor}))
    if jax.process_index() == 0:
        print(f"scored {len(summary.scored)} checkpoints ({summary.num_tokens} tokens each) in {summary.seconds:.1f}s; "
              f"{summary.already_done} were done before; {len(summary.skipped)} skipped -> {f.out}")
        for run, step, status, why in summary.skipped:
            print(f"skipped: run {run} step {step}: {status}: {why}")


if __name__ == "__main__":
    from babyjax import cli

    _define_flags()
    cli.run_absl(main)

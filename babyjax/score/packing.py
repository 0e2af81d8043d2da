"""Windows and packing: how the tokens of an evaluation set become fixed rows of `seq_len` tokens (first-token
policies, rolling windows, best-fit packing with segment ids; definitions: docs/science.md, "Scoring conventions")."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from babyjax.data.tokenizer import EOS_ID, PAD_ID, SPECIALS, Specials, Tokenizer
from babyjax.errors import InputError

if TYPE_CHECKING:
    from babyjax.data.evalsets import EvalSet

POLICIES = ("eot_context", "no_context")
MASKED_METHODS = ("pll_original", "pll_within_word_l2r", "mntp")


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

    def row(self) -> tuple[tuple[int, ...], tuple[int, ...], np.ndarray]:
        """(inputs, targets, scored columns) of the packed segment."""
        full = self.context_ids + self.target_ids
        return full[:-1], full[1:], len(self.context_ids) - 1 + np.asarray(self.kept, np.int64)

    def scored(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions in the sequence, token ids, context lengths) of the scored tokens."""
        kept = np.asarray(self.kept, np.int64)
        return self.start + kept, np.asarray(self.target_ids, np.int64)[kept], len(self.context_ids) + kept


@dataclasses.dataclass(frozen=True)
class MaskedCopy:
    """A stretch of one sequence read by a masked LM with the scored token (and, within_word_l2r, the later pieces of
    its word) replaced by <mask>: the output at `col` (pll: the token's own column; mntp: the column before)
    predicts `target`, the token at `start` of the sequence. Attention looks both ways within the copy."""

    seq: int
    start: int
    tokens: tuple[int, ...]
    col: int
    target: int

    @property
    def length(self) -> int:
        return len(self.tokens)

    def row(self) -> tuple[tuple[int, ...], tuple[int, ...], np.ndarray]:
        targets = [PAD_ID] * len(self.tokens)
        targets[self.col] = self.target
        return self.tokens, tuple(targets), np.asarray([self.col], np.int64)

    def scored(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.asarray([self.start]), np.asarray([self.target]), np.asarray([len(self.tokens) - 1])


def masked_copies(
    seq: int,
    ids: Sequence[int],
    method: str,
    seq_len: int,
    word_starts: np.ndarray,
    scored: Sequence[int] | None = None,
    context: bool = True,
    specials: Specials = SPECIALS,
) -> list[MaskedCopy]:
    """The copies that score sequence `seq` by `method` (docs/science.md, "Masked and hybrid LMs"): 'pll_original'
    (Salazar et al. 2020: one token masked), 'pll_within_word_l2r' (Kauf & Ivanova 2023: also the later pieces of
    its word; a word starts at a piece in `word_starts`) or 'mntp' (one token masked, read at the column before).
    The model reads the context token (babyjax: `</s>`; RoBERTa: `<s>`), the sequence and the tokenizer's suffix
    (RoBERTa: `</s>`; babyjax: none); context=False: the sequence alone, whose first token then has no column before
    it under mntp. Longer sequences are read in a window of `seq_len` tokens around each scored token.
    scored: the positions of `ids` to score (default all)."""
    if method not in MASKED_METHODS:
        raise InputError(f"unknown masked scoring method {method!r}: use one of {', '.join(MASKED_METHODS)}")
    around = ([specials.context], list(specials.suffix)) if context else ([], [])
    full = np.asarray(around[0] + [int(i) for i in ids] + around[1], np.int64)
    offset = len(around[0])
    word = np.cumsum(np.asarray(word_starts)[full] | (np.arange(full.size) < offset + 1))
    out = []
    for p in range(len(ids)) if scored is None else scored:
        t = p + offset
        if method == "mntp" and t == 0:
            continue  # nothing before the first token to read it from
        masked = full.copy()
        masked[t] = specials.mask
        if method == "pll_within_word_l2r":
            later = np.flatnonzero((word == word[t]) & (np.arange(full.size) > t))
            masked[later] = specials.mask
        a = int(np.clip(t - seq_len // 2, 0, max(0, full.size - seq_len)))
        window = tuple(int(x) for x in masked[a : a + seq_len])
        out.append(MaskedCopy(seq, p, window, t - a - (method == "mntp"), int(full[t])))
    return out


def windows(
    seq: int, ids: Sequence[int], policy: str, seq_len: int, stride: int | None = None, context_id: int = EOS_ID
) -> list[Window]:
    """The windows that score sequence `seq` (its token ids) under a first-token `policy` (docs/science.md); the
    eot_context policy reads `context_id` first (the tokenizer's `Specials.context`)."""
    if policy not in POLICIES:
        raise InputError(f"unknown first-token policy {policy!r}: use one of {', '.join(POLICIES)}")
    stride = seq_len if stride is None else stride
    if not 1 <= stride <= seq_len:
        raise InputError(f"stride={stride} must be between 1 and seq_len={seq_len}")
    full = ([context_id] if policy == "eot_context" else []) + [int(i) for i in ids]
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
    token_index: np.ndarray  # int64 [T]: row * seq_len + column of each scored token, in window order (row * K + k
    # when compacted)
    cols: np.ndarray | None = None  # int32 [rows, K]: the columns read, scored ones first (`compact`); None: all

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
        return Packed(
            pad(self.inputs),
            pad(self.targets),
            pad(self.segment_ids),
            pad(self.positions),
            pad(self.weights),
            self.token_index,
            None if self.cols is None else pad(self.cols),
        )

    def compact(self, multiple: int = 8) -> Packed:
        """The same rows, read only at their scored columns: `cols` [rows, K], K the most scored columns of any row
        rounded up to `multiple`, so the output projection runs on K columns a row instead of seq_len (masked copies
        score one token each, token samples a few a row). Unchanged when K would exceed half the row."""
        scored = self.weights > 0
        length = scored.shape[1]
        k = -(-max(1, int(scored.sum(1).max(initial=0))) // multiple) * multiple
        if 2 * k > length or self.cols is not None:
            return self
        cols = np.argsort(~scored, axis=1, kind="stable")[:, :k].astype(np.int32)
        rank = np.cumsum(scored, axis=1) - 1
        r, c = np.divmod(self.token_index, length)
        return dataclasses.replace(self, cols=cols, token_index=r * k + rank[r, c])

    def split_at_eos(self) -> Packed:
        """The same rows scored as a pack-trained model was trained (babyjax.data.pipeline, packing 'pack'): every
        EOS input inside a segment starts a new segment, its position 0, so no token attends across a document
        start. Segments that begin at the row's or the window's first token keep their start."""
        live = self.segment_ids > 0
        starts = np.zeros_like(live)
        starts[:, 0] = live[:, 0]
        starts[:, 1:] = live[:, 1:] & (
            (self.segment_ids[:, 1:] != self.segment_ids[:, :-1]) | (self.inputs[:, 1:] == EOS_ID)
        )
        col = np.arange(self.inputs.shape[1])
        first = np.maximum.accumulate(np.where(starts, col, 0), axis=1)
        return dataclasses.replace(
            self,
            segment_ids=np.where(live, np.cumsum(starts, 1), 0).astype(np.int32),
            positions=np.where(live, col - first, 0).astype(np.int32),
        )

    def batches(self, batch_rows: int) -> Iterable[dict[str, np.ndarray]]:
        """Consecutive batches of `batch_rows` rows (the row count must be a multiple: see `padded`)."""
        names = ("inputs", "targets", "segment_ids", "positions", "weights")
        names += ("cols",) if self.cols is not None else ()
        for r in range(0, self.num_rows, batch_rows):
            yield {k: getattr(self, k)[r : r + batch_rows] for k in names}


MASKED_COPIES_PER_ROW = 8  # see `pack`


def pack(wins: Sequence[Window | MaskedCopy], seq_len: int) -> Packed:
    """Best-fit-decreasing packing of windows (or masked copies) into rows of `seq_len` tokens, deterministic (ties by
    window order). A row holds at most MASKED_COPIES_PER_ROW masked copies (one scored token each): the output
    projection reads as many columns in every row as the fullest row scores (`Packed.compact`), and rows of a few very
    short copies made BLiMP's PLL read 16 columns a row where 4.3 were scored on average."""
    cap = MASKED_COPIES_PER_ROW if wins and isinstance(wins[0], MaskedCopy) else seq_len
    lengths = np.array([w.length for w in wins], dtype=np.int64)
    if len(wins) and (lengths.max() > seq_len or lengths.min() < 1):
        raise InputError(f"a window reads {lengths.max()} tokens, more than seq_len={seq_len}")
    order = sorted(range(len(wins)), key=lambda i: (-lengths[i], i))
    free: list[list[int]] = [[] for _ in range(seq_len + 1)]  # free[r]: rows with exactly r slots left
    nonempty = 0  # bit r set <=> free[r] is not empty
    fill: list[int] = []  # tokens used in each row
    nseg: list[int] = []  # segments in each row
    row_of, col_of, seg_of = np.zeros((3, len(wins)), np.int64)  # where each window goes
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
        if left and nseg[row] < cap:
            free[left].append(row)
            nonempty |= 1 << left
    n = len(fill)
    inputs, targets = np.full((2, n, seq_len), PAD_ID, np.int32)
    segment_ids, positions = np.zeros((2, n, seq_len), np.int32)
    weights = np.zeros((n, seq_len), np.float32)
    token_index: list[np.ndarray] = []
    for i, w in enumerate(wins):
        row, col, m = row_of[i], col_of[i], int(lengths[i])
        segment_inputs, segment_targets, scored_cols = w.row()
        inputs[row, col : col + m] = segment_inputs
        targets[row, col : col + m] = segment_targets
        segment_ids[row, col : col + m] = seg_of[i]
        positions[row, col : col + m] = np.arange(m)
        cols = col + scored_cols
        weights[row, cols] = 1.0
        token_index.append(row * seq_len + cols)
    flat = np.concatenate(token_index) if token_index else np.zeros((0,), np.int64)
    return Packed(inputs, targets, segment_ids, positions, weights, flat)


BUCKET_STEP = 32  # masked copies: row widths 64, 96, 128, ... (see `pack_buckets`)
MIN_BUCKET = 256  # copies: a width holding fewer joins the next wider one (every width compiles once)


@dataclasses.dataclass
class Buckets:
    """Units packed into rows of a few widths (`pack_buckets`): `packs[i]` scores the tokens at window-order
    positions `slots[i]`, in its own order."""

    packs: list[Packed]
    slots: list[np.ndarray]

    @property
    def num_rows(self) -> int:
        return sum(p.num_rows for p in self.packs)

    @property
    def widths(self) -> list[int]:
        return [p.inputs.shape[1] for p in self.packs]

    def map(self, f: Callable[[Packed], Packed]) -> Buckets:
        return Buckets([f(p) for p in self.packs], self.slots)

    def gather(self, outs: Sequence[np.ndarray]) -> np.ndarray:
        """The packs' outputs (each in its own order) as one array in window order."""
        out = np.zeros((sum(s.size for s in self.slots),), outs[0].dtype if outs else np.float32)
        for slots, o in zip(self.slots, outs):
            out[slots] = o
        return out


def pack_buckets(units: Sequence[Window | MaskedCopy], seq_len: int) -> Buckets:
    """Causal windows: one `pack` in rows of `seq_len`. Masked copies, read both ways, where attention costs a row's
    length per token: each copy in the narrowest width that holds it, of 64, 96, 128, ... (steps of BUCKET_STEP, the
    last `row_length`), a width with fewer than MIN_BUCKET copies merged into the next. On the BabyLM 2025 entity
    tracking fast set (up to 361 tokens) one width of 368 spends 42% of the attention on padding, ten widths 11%."""
    counts = np.array([1 if isinstance(u, MaskedCopy) else len(u.kept) for u in units], np.int64)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    width = row_length(units, seq_len)
    if not units or not isinstance(units[0], MaskedCopy):
        return Buckets([pack(units, width)], [np.arange(counts.sum(), dtype=np.int64)])
    lengths = np.array([u.length for u in units], np.int64)
    bounds = [*range(64, width, BUCKET_STEP), width]
    which = np.searchsorted(bounds, lengths)  # the narrowest bound >= each length
    for b in range(len(bounds) - 1):  # too few copies: move them up a width
        if 0 < (moved := which == b).sum() < MIN_BUCKET:
            which[moved] = b + 1
    packs, slots = [], []
    for b in np.unique(which):
        members = np.flatnonzero(which == b)
        packs.append(pack([units[i] for i in members], bounds[b]))
        slots.append(first[members])
    return Buckets(packs, slots)


def eval_windows(
    ev: EvalSet, policy: str, seq_len: int, stride: int | None = None, context_id: int = EOS_ID
) -> list[Window]:
    """The windows that score an evaluation set (`context_id`: see `windows`)."""
    if ev.kind != "tokens":
        return [w for s, ids in enumerate(ev.token_ids) for w in windows(s, ids, policy, seq_len, stride, context_id)]
    out = []
    for s, (ids, pos) in enumerate(zip(ev.token_ids, ev.positions or [])):
        if not pos:
            continue
        last = max(pos)
        if last > seq_len:
            raise InputError(f"the token sample's targets reach position {last}, beyond seq_len={seq_len}")
        out.append(
            Window(s, 1, (int(ids[0]),), tuple(int(i) for i in ids[1 : last + 1]), tuple(int(p) - 1 for p in pos))
        )
    return out


def row_length(units: Sequence[Window | MaskedCopy], seq_len: int) -> int:
    """The packed row length: `seq_len` for causal windows; for masked copies (read both ways) the shortest multiple of
    16 from 64 up that holds the longest copy, since attention over a row costs its length per token."""
    if not units or not isinstance(units[0], MaskedCopy):
        return seq_len
    return min(seq_len, max(64, -(-max(u.length for u in units) // 16) * 16))


def eval_copies(
    ev: EvalSet, method: str, seq_len: int, word_starts: np.ndarray, specials: Specials = SPECIALS
) -> list[MaskedCopy]:
    """The masked copies that score an evaluation set: every token after the context token (`masked_copies`), or a
    token sample's positions in the context of its whole row."""
    if ev.kind != "tokens":
        return [
            c
            for s, ids in enumerate(ev.token_ids)
            for c in masked_copies(s, ids, method, seq_len, word_starts, specials=specials)
        ]
    last = max((max(pos) for pos in ev.positions or [] if pos), default=0)
    if last >= seq_len:
        raise InputError(f"the token sample's targets reach position {last}, beyond seq_len={seq_len}")
    return [
        c
        for s, (ids, pos) in enumerate(zip(ev.token_ids, ev.positions or []))
        for c in masked_copies(
            s, ids[:seq_len], method, seq_len, word_starts, scored=pos, context=False, specials=specials
        )
    ]


def token_table(wins: Sequence[Window | MaskedCopy], tok: Tokenizer) -> pd.DataFrame:
    """One row per scored token, in scoring order: index, seq, position, token_id, token, context_length (tokens the
    model reads besides the scored one: before it for causal windows, the whole copy for masked ones)."""
    seq, position, token_id, context = [], [], [], []
    for w in wins:
        pos, ids, ctx = w.scored()
        seq.append(np.full(pos.shape, w.seq, np.int64))
        position.append(pos)
        token_id.append(ids)
        context.append(ctx)
    cat = lambda xs: np.concatenate(xs).astype(np.int64) if xs else np.zeros((0,), np.int64)
    ids = cat(token_id)
    pieces = np.array([tok.id_to_piece(i) for i in range(tok.vocab_size)], dtype=object)
    return pd.DataFrame(
        {
            "index": np.arange(ids.shape[0]),
            "seq": cat(seq),
            "position": cat(position),
            "token_id": ids,
            "token": pieces[ids] if ids.size else [],
            "context_length": cat(context),
        }
    )


def layout_hash(tokens: pd.DataFrame) -> str:
    """sha256 of what is scored: token ids, sequences, positions and context lengths (the output's row identity)."""
    h = hashlib.sha256()
    for col in ("seq", "position", "token_id", "context_length"):
        h.update(np.ascontiguousarray(tokens[col].to_numpy(np.int64)).data)
    return h.hexdigest()

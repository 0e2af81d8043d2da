"""Grain input pipeline (docs/architecture.md, "data/pipeline.py" and "Batches"): row r of a split holds its token
stream `[r*L, (r+1)*L)` as inputs and the next token of each as target, so every token is an input once per epoch and
only the last row is padded; in `pack` mode a document cut by a row boundary continues in the next row as a new
segment. Each process builds its slice of every global batch: a batch depends only on the seed and global batch size."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import pathlib
from typing import Any

import grain
import jax
import numpy as np
from absl import flags
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from babyjax import paths
from babyjax.data import babylm
from babyjax.data.tokenizer import EOS_ID, PAD_ID, Tokenizer
from babyjax.errors import InputError

log = logging.getLogger(__name__)

PACKING_MODES = ("pack", "chunk")
# The absl flag Grain reads when it starts worker processes: grain 0.2.18 reads it even when no command line was
# parsed (tests, notebooks), and that read fails.
GRAIN_WORKER_FLAG = "grain_enable_multiprocess_worker_profiling"
BATCH_AXES = ("data", "fsdp")
_CHUNK = 65_536  # examples read and tokenized at a time
TOTALS = "_global_totals"  # batch key of the host-side totals, popped by the Loader


@dataclasses.dataclass
class TokenizedSplit:
    """A split as one token stream: `tokens[doc_starts[d]:doc_starts[d+1]]` is EOS followed by document d."""

    tokens: np.ndarray  # [T] uint16 or int32
    doc_starts: np.ndarray  # [D + 1] int64, doc_starts[-1] == T
    words_cum: np.ndarray  # [D + 1] int64, cumulative whitespace words of the source text
    cache_dir: pathlib.Path | None = None

    @property
    def num_tokens(self) -> int:
        return int(self.doc_starts[-1])

    @property
    def num_docs(self) -> int:
        return len(self.doc_starts) - 1

    @property
    def num_words(self) -> int:
        return int(self.words_cum[-1])

    def save(self, directory: pathlib.Path) -> None:
        """Write atomically: a temporary folder renamed into place (an existing cache is kept)."""

        def fill(tmp: pathlib.Path) -> None:
            for name in ("tokens", "doc_starts", "words_cum"):
                np.save(tmp / f"{name}.npy", getattr(self, name))
            (tmp / "meta.json").write_text(
                json.dumps({"num_tokens": self.num_tokens, "num_docs": self.num_docs, "num_words": self.num_words})
            )

        paths.write_folder(directory, fill)

    @classmethod
    def load(cls, directory: pathlib.Path) -> TokenizedSplit:
        arrays = {n: np.load(directory / f"{n}.npy", mmap_mode="r") for n in ("tokens", "doc_starts", "words_cum")}
        return cls(**arrays, cache_dir=directory)

    def __getstate__(self) -> dict[str, Any]:  # worker processes re-open the memory-mapped cache
        return {"cache_dir": self.cache_dir} if self.cache_dir else dataclasses.asdict(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        if set(state) == {"cache_dir"}:
            state = dataclasses.asdict(TokenizedSplit.load(state["cache_dir"]))
        self.__dict__.update(state)


def tokenize_split(source: Any, tokenizer: Tokenizer, cache_dir: pathlib.Path | None = None) -> TokenizedSplit:
    """Tokenize every example of a BabyLM data source into one stream (loaded from `cache_dir` when there)."""
    if cache_dir is not None and (cache_dir / "meta.json").exists():
        return TokenizedSplit.load(cache_dir)
    n = len(source)
    if n == 0:
        raise babylm.DataError("cannot build batches from an empty split")
    dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32
    pieces: list[np.ndarray] = []
    lengths, words = np.empty((2, n), dtype=np.int64)  # tokens (with the EOS before it) and words of each document
    last = (b"", -1)
    for start in range(0, n, _CHUNK):
        items = babylm.read_records(source, range(start, min(n, start + _CHUNK)))
        order = [(domain, line) for _, domain, line, _ in items]
        if order[0] <= last or any(a >= b for a, b in itertools.pairwise(order)):
            raise babylm.DataError("BabyLM examples are not in file order (domain, line): re-prepare the dataset")
        last = order[-1]
        ids = tokenizer.encode_batch([text.decode("utf-8") for text, *_ in items])
        lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        lengths[start : start + len(items)] = lens + 1
        words[start : start + len(items)] = [w for *_, w in items]
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=int(lens.sum()))
        pieces.append(np.insert(flat, np.cumsum(lens) - lens, EOS_ID))  # EOS before every document
    data = TokenizedSplit(
        tokens=np.concatenate(pieces),
        doc_starts=np.r_[0, np.cumsum(lengths)].astype(np.int64),
        words_cum=np.r_[0, np.cumsum(words)].astype(np.int64),
    )
    if cache_dir is not None:
        try:
            data.save(cache_dir)
            return TokenizedSplit.load(cache_dir)
        except OSError as e:
            log.warning("could not cache tokens in %s (%s): keeping them in memory", cache_dir, e)
    return data


class _RowBatcher:
    """Builds this process's rows of one global batch of row indices (-1 = padding row), and the whole global
    batch's totals (tokens and words), which every process can count on the host without the device."""

    def __init__(self, data: TokenizedSplit, seq_len: int, packing: str, batch_size: int, lo: int, hi: int):
        self.data, self.seq_len, self.packing = data, seq_len, packing
        self.batch_size, self.lo, self.hi = batch_size, lo, hi

    def _words_before(self, pos_B: np.ndarray) -> np.ndarray:
        """Words of the stream before token position `pos` (a document's words spread evenly over its tokens)."""
        doc_starts, words_cum = self.data.doc_starts, self.data.words_cum
        pos_B = np.clip(pos_B, 0, self.data.num_tokens)
        d = np.clip(np.searchsorted(doc_starts, pos_B, side="right") - 1, 0, self.data.num_docs - 1)
        frac = (pos_B - doc_starts[d]) / (doc_starts[d + 1] - doc_starts[d])
        return words_cum[d] + frac * (words_cum[d + 1] - words_cum[d])

    def _row_words(self, rows_B: np.ndarray) -> np.ndarray:
        """float64 [B]: words of the source text each row consumes (0 for padding rows); rows sum to an epoch's."""
        start_B = rows_B.astype(np.int64) * self.seq_len
        end_B = np.minimum(start_B + self.seq_len, self.data.num_tokens)
        return np.where(rows_B >= 0, self._words_before(end_B) - self._words_before(start_B), 0.0)

    def _row_tokens(self, rows_B: np.ndarray) -> np.ndarray:
        """int64 [B]: the tokens each row holds (padding excluded), counted without building the rows."""
        start_B = rows_B.astype(np.int64) * self.seq_len
        return np.where(rows_B >= 0, np.clip(self.data.num_tokens - start_B, 0, self.seq_len), 0)

    def __call__(self, rows_B: np.ndarray) -> dict[str, np.ndarray]:
        all_B = np.concatenate([rows_B, np.full(self.batch_size - len(rows_B), -1)])
        rows_B = all_B[self.lo : self.hi]
        tokens, doc_starts, num_tokens = self.data.tokens, self.data.doc_starts, self.data.num_tokens
        L = self.seq_len
        start_B = rows_B.astype(np.int64) * L
        pos_BxL = start_B[:, None] + np.arange(L)
        valid_BxL = (rows_B >= 0)[:, None] & (pos_BxL < num_tokens)
        tvalid_BxL = valid_BxL & (pos_BxL + 1 < num_tokens)
        pos_BxL_c = np.clip(pos_BxL, 0, num_tokens - 1)
        tpos_BxL_c = np.clip(pos_BxL + 1, 0, num_tokens - 1)
        inputs = np.where(valid_BxL, tokens[pos_BxL_c], PAD_ID).astype(np.int32)
        targets = np.where(tvalid_BxL, tokens[tpos_BxL_c], PAD_ID).astype(np.int32)
        if self.packing == "pack":
            doc_BxL = np.searchsorted(doc_starts, pos_BxL_c, side="right") - 1
            segment_ids = np.where(valid_BxL, doc_BxL - doc_BxL[:, :1] + 1, 0)
            seg_start_BxL = np.maximum(doc_starts[doc_BxL], start_B[:, None])
            positions = np.where(valid_BxL, pos_BxL - seg_start_BxL, 0)
        else:
            segment_ids = valid_BxL.astype(np.int32)
            positions = np.broadcast_to(np.arange(L), pos_BxL.shape)
        # Every next token is a target in both modes: the only target across a document start is the EOS that ends a
        # document (it opens the next segment as input, position 0), learned as in causal LM training.
        weights = tvalid_BxL
        words_B = self._row_words(all_B)  # every process counts the whole global batch, and keeps its own rows
        totals = np.array([self._row_tokens(all_B).sum(), words_B.sum()])
        return {
            "inputs": inputs,
            "targets": targets,
            "segment_ids": segment_ids.astype(np.int32),
            "positions": positions.astype(np.int32),
            "weights": weights.astype(np.float32),
            "num_words": words_B[self.lo : self.hi].astype(np.float32),
            "num_tokens": valid_BxL.sum(1).astype(np.float32),
            TOTALS: totals,
        }


class Loader:
    """Iterator of batch dicts (docs/architecture.md) with `get_state()` / `set_state()`; see the module doc."""

    def __init__(
        self,
        data: TokenizedSplit,
        *,
        seq_len: int,
        packing: str,
        global_batch_size: int,
        seed: int,
        shuffle: bool,
        num_epochs: int,
        mesh: Mesh | None = None,
        process_index: int | None = None,
        process_count: int | None = None,
        worker_count: int = 0,
        words_per_epoch: float = 0,
    ):
        if packing not in PACKING_MODES:
            raise InputError(f"unknown data.packing {packing!r}: use one of {', '.join(PACKING_MODES)}")
        if seq_len <= 0 or global_batch_size <= 0:
            raise InputError(f"seq_len ({seq_len}) and global_batch_size ({global_batch_size}) must be positive")
        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
        if not 0 <= process_index < process_count or global_batch_size % process_count:
            raise InputError(
                f"global_batch_size {global_batch_size} must split evenly over {process_count} "
                f"processes (process_index {process_index})"
            )
        self.mesh, self.global_batch_size, self.seq_len, self.data = mesh, global_batch_size, seq_len, data
        self._shardings = self._make_shardings(mesh, process_count, global_batch_size)
        self.num_rows = math.ceil(data.num_tokens / seq_len)
        self.num_epochs = num_epochs if num_epochs and num_epochs > 0 else None
        self.steps_per_epoch = math.ceil(self.num_rows / global_batch_size)
        # the words an epoch counts as: the split's own, or a nominal count (data.words_per_epoch; the BabyLM rules
        # count the release's 10M or 100M words per epoch); every batch's words are scaled to it
        self.words_per_epoch = float(words_per_epoch) if words_per_epoch and words_per_epoch > 0 else data.num_words
        self._words_scale = self.words_per_epoch / data.num_words if data.num_words else 1.0
        self._fingerprint = {
            "num_tokens": data.num_tokens,
            "num_docs": data.num_docs,
            "seq_len": seq_len,
            "packing": packing,
            "global_batch_size": global_batch_size,
            "seed": int(seed),
            "shuffle": bool(shuffle),
            "num_epochs": self.num_epochs,
            "worker_count": worker_count,
        }  # Grain's state format depends on it
        local = global_batch_size // process_count
        ds = grain.MapDataset.range(self.num_rows)
        if shuffle:
            ds = ds.shuffle(seed=int(seed) % 2**32)
        ds = ds.repeat(self.num_epochs).batch(global_batch_size)
        ds = ds.map(
            _RowBatcher(data, seq_len, packing, global_batch_size, process_index * local, (process_index + 1) * local)
        )
        it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=8))
        if worker_count > 0:
            _let_grain_read_its_worker_flag()
            it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
        self._iter = iter(it_ds)

    @staticmethod
    def _make_shardings(mesh: Mesh | None, process_count: int, global_batch_size: int) -> NamedSharding | None:
        if mesh is None:
            return None
        if process_count != jax.process_count():
            raise InputError(
                f"global arrays need process_count == jax.process_count() ({jax.process_count()}), "
                f"got {process_count}: pass mesh=None to simulate processes"
            )
        axes = tuple(a for a in BATCH_AXES if a in mesh.axis_names)
        shards = math.prod(mesh.shape[a] for a in axes)
        if global_batch_size % shards:
            raise InputError(
                f"global batch size {global_batch_size} must be a multiple of the mesh's batch shards "
                f"{ {a: mesh.shape[a] for a in axes} } = {shards}"
            )
        return NamedSharding(mesh, PartitionSpec(axes))

    def __iter__(self) -> Loader:
        return self

    def __next__(self) -> dict[str, Any]:
        return self.next_with_totals()[0]

    def next_with_totals(self) -> tuple[dict[str, Any], tuple[float, float]]:
        """The next batch, and (tokens, words) of the whole global batch, counted on the host: the sums of
        `num_tokens` (input tokens, padding excluded) and `num_words` over every process's rows."""
        batch = next(self._iter)
        tokens, words = batch.pop(TOTALS)
        totals = (float(tokens), float(words) * self._words_scale)
        if self._shardings is None:
            return batch, totals
        return {
            k: jax.make_array_from_process_local_data(self._shardings, v, (self.global_batch_size, *v.shape[1:]))
            for k, v in batch.items()
        }, totals

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable position: restoring it yields exactly the next batch."""
        return {"grain": self._iter.get_state(), **self._fingerprint}

    def set_state(self, state: dict[str, Any]) -> None:
        """Resume at a state from `get_state()` of a loader over the same data and settings."""
        diff = {k: (state.get(k), v) for k, v in self._fingerprint.items() if state.get(k) != v}
        if diff:
            raise InputError(f"data iterator state does not match this loader (saved, now): {diff}")
        self._iter.set_state(state["grain"])


def load_split_tokens(data_cfg: Any, tokenizer: Tokenizer, split: str, *, prepare: bool = True) -> TokenizedSplit:
    """The token stream of `split`, cached beside the prepared dataset per tokenizer. prepare=False: never download
    or prepare the dataset (a DataError when it is not prepared)."""
    if split not in babylm.SPLITS:
        raise InputError(f"unknown split {split!r}: use one of {', '.join(babylm.SPLITS)}")
    builder = babylm.get_builder(data_cfg, prepare=prepare)
    cache = pathlib.Path(str(builder.data_path)) / "babyjax_tokens" / f"{split}-{tokenizer.sha256[:16]}"
    return tokenize_split(builder.as_data_source(split), tokenizer, cache_dir=cache)


def _let_grain_read_its_worker_flag() -> None:
    """Outside a parsed command line (tests, notebooks), mark Grain's worker flag as given at its default, so that
    Grain can read it; every other flag, and whether absl's FLAGS are parsed, stay as they are."""
    if not flags.FLAGS.is_parsed() and GRAIN_WORKER_FLAG in flags.FLAGS:
        flags.FLAGS[GRAIN_WORKER_FLAG].present = True


def make_loader(
    data_cfg: Any,
    tokenizer: Tokenizer,
    *,
    split: str,
    global_batch_size: int,
    seed: int,
    mesh: Mesh | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    shuffle: bool | None = None,
    num_epochs: int | None = None,
) -> Loader:
    """A loader over `split` of the BabyLM dataset of `data_cfg` (prepared if needed), tokenized by `tokenizer`. shuffle
    / num_epochs default to data_cfg.shuffle / data_cfg.num_epochs (-1 = forever). For dev loss use shuffle=False,
    num_epochs=1: the last partial batch is padded with rows of weight 0."""
    data = load_split_tokens(data_cfg, tokenizer, split)
    return Loader(
        data,
        seq_len=data_cfg.seq_len,
        packing=data_cfg.packing,
        global_batch_size=global_batch_size,
        seed=seed,
        shuffle=data_cfg.shuffle if shuffle is None else shuffle,
        num_epochs=data_cfg.num_epochs if num_epochs is None else num_epochs,
        mesh=mesh,
        process_index=process_index,
        process_count=process_count,
        worker_count=data_cfg.worker_count,
        words_per_epoch=data_cfg.get("words_per_epoch", 0),
    )

"""SentencePiece tokenizer (unigram or BPE) trained on the training split and saved inside the run directory, with
fixed special ids (PAD 0, UNK 1, BOS 2, EOS 3 = end of text, MASK 4) and an exact round trip: identity normalisation,
whitespace kept, unseen characters as bytes, so `decode(encode(s)) == s` for any text."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import sentencepiece as spm
from etils import epath

from babyjax import paths
from babyjax.errors import InputError, MissingError

log = logging.getLogger(__name__)

PAD_ID, UNK_ID, BOS_ID, EOS_ID, MASK_ID = 0, 1, 2, 3, 4
PAD, UNK, BOS, EOS, MASK = "<pad>", "<unk>", "<s>", "</s>", "<mask>"
MODEL_FILE = "tokenizer.model"
MODEL_TYPES = ("unigram", "bpe")


@dataclasses.dataclass(frozen=True)
class Specials:
    """The special ids the scorer writes into rows: `context` (the token a document starts after: the first-token
    policy's context and a masked LM's CLS), `eos` (what ends a document inside a token stream), `mask`, `pad`, and
    `suffix` (ids a masked LM reads after a sequence: RoBERTa's `</s>`). babyjax's tokenizers: `SPECIALS`;
    imported Hugging Face tokenizers: their own (babyjax/imported/tokenizer.py)."""

    context: int = EOS_ID
    eos: int = EOS_ID
    mask: int = MASK_ID
    pad: int = PAD_ID
    suffix: tuple[int, ...] = ()


SPECIALS = Specials()


class Tokenizer:
    """A SentencePiece model file with babyjax's fixed special ids."""

    def __init__(self, path: str | os.PathLike):
        self.path = epath.Path(path)  # local or cloud storage (gs://...), so a run directory can live in a bucket
        if not self.path.is_file():
            raise MissingError(f"tokenizer model {self.path} not found: train one with get_tokenizer()")
        self._bytes = self.path.read_bytes()
        self.sp = spm.SentencePieceProcessor(model_proto=self._bytes)
        found = (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id(), self.sp.piece_to_id(MASK))
        if found[:4] == (PAD_ID, UNK_ID, BOS_ID, EOS_ID) and found[4] != MASK_ID:
            raise InputError(
                f"{self.path} has no {MASK} piece at id {MASK_ID} (masked LMs need one): train a "
                "tokenizer with get_tokenizer() (tokenizer.path='')"
            )
        if found != (PAD_ID, UNK_ID, BOS_ID, EOS_ID, MASK_ID):
            raise InputError(
                f"{self.path} has special ids (pad, unk, bos, eos, mask) = {found}, babyjax needs "
                f"{(PAD_ID, UNK_ID, BOS_ID, EOS_ID, MASK_ID)}: retrain it with get_tokenizer()"
            )

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def specials(self) -> Specials:
        """babyjax's fixed special ids (the module docstring)."""
        return SPECIALS

    @property
    def sha256(self) -> str:
        """Hash of the model file (identifies the tokenizer in caches and score metadata)."""
        return hashlib.sha256(self._bytes).hexdigest()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text, out_type=int)

    def encode_batch(self, texts: Sequence[str], num_threads: int = 0) -> list[list[int]]:
        """Encode many texts at once (multi-threaded in SentencePiece; num_threads 0 = all cores)."""
        return self.sp.encode(list(texts), out_type=int, num_threads=num_threads or os.cpu_count() or 1)

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([int(i) for i in ids])

    def id_to_piece(self, i: int) -> str:
        return self.sp.id_to_piece(int(i))

    def word_starts(self) -> np.ndarray:
        """bool[V]: pieces that begin a word (SentencePiece's '▁' prefix, as the exported tokenizer's Metaspace
        pre-tokenizer splits words); special pieces count as words of their own."""
        return np.array([i <= MASK_ID or self.sp.id_to_piece(i).startswith("▁") for i in range(self.vocab_size)])

    def __repr__(self) -> str:
        return f"Tokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"


def read_texts(source: Any, indices: Sequence[int] | np.ndarray, chunk: int = 8192) -> Iterator[str]:
    """Texts at `indices` of a BabyLM data source (or of any sequence of strings)."""
    from babyjax.data.babylm import read_records

    for start in range(0, len(indices), chunk):
        idx = indices[start : start + chunk]
        if hasattr(source, "data_source") or (len(source) and isinstance(source[0], dict)):
            yield from (text.decode("utf-8") for text, *_ in read_records(source, idx))
        else:
            yield from (str(source[int(i)]) for i in idx)


def train(
    source: Any,
    path: str | os.PathLike,
    *,
    vocab_size: int,
    model_type: str = "unigram",
    input_sentence_size: int = 2_000_000,
    seed: int = 0,
) -> Tokenizer:
    """Train a SentencePiece model on the lines of `source` and write it atomically to `path`. Deterministic: the
    sampled lines depend only on `seed` (SentencePiece's own sampling and shuffling are off), and training runs on one
    thread."""
    if model_type not in MODEL_TYPES:
        raise InputError(f"unknown tokenizer.model_type {model_type!r}: use one of {', '.join(MODEL_TYPES)}")
    if len(source) == 0:
        raise InputError("cannot train a tokenizer on an empty training split")
    n, k = len(source), input_sentence_size  # k sorted lines drawn by `seed`; all when k <= 0 or k >= n
    keep = np.arange(n) if k <= 0 or k >= n else np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
    texts = list(read_texts(source, keep))
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        user_defined_symbols=[MASK],
        pad_piece=PAD,
        unk_piece=UNK,
        bos_piece=BOS,
        eos_piece=EOS,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        byte_fallback=True,
        character_coverage=0.9995,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        max_sentence_length=1 << 16,
        hard_vocab_limit=True,
        num_threads=1,
        minloglevel=2,
    )
    paths.write_atomic(path, model.getvalue())
    log.info("trained a %s tokenizer (vocab %d) on %d lines: %s", model_type, vocab_size, len(texts), path)
    return Tokenizer(path)


def get_tokenizer(tok_cfg: Any, train_source: Any, workdir: str | os.PathLike | None) -> Tokenizer:
    """The run's tokenizer: `tok_cfg.path` if set, else `<workdir>/tokenizer.model` (trained there if absent). A
    tokenizer given by path is copied into the run directory, so that a run is self-contained; an existing
    `<workdir>/tokenizer.model` is never overwritten (a different one raises)."""
    target = epath.Path(workdir) / MODEL_FILE if workdir else None
    if tok_cfg.path:
        tok = Tokenizer(tok_cfg.path)
        if target is not None and paths.absolute(target, resolve=True) != paths.absolute(tok.path, resolve=True):
            if not target.exists():
                paths.write_atomic(target, tok.path.read_bytes())  # a killed copy leaves no half file
            elif Tokenizer(target).sha256 != tok.sha256:
                raise InputError(f"{target} differs from tokenizer.path={tok_cfg.path}: use a new workdir")
            return Tokenizer(target)
        return tok
    if target is None:
        raise InputError("get_tokenizer needs a workdir (or tokenizer.path) to save the tokenizer into")
    if target.exists():
        return Tokenizer(target)
    return train(
        train_source,
        target,
        vocab_size=tok_cfg.vocab_size,
        model_type=tok_cfg.model_type,
        input_sentence_size=tok_cfg.input_sentence_size,
    )

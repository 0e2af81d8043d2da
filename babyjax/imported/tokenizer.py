"""A Hugging Face tokenizer (the `tokenizers` library, no transformers needed) with the interface the scorer reads
from babyjax's SentencePiece `Tokenizer`: encode, decode, pieces, word starts, a sha256 and the special ids
(`Specials`) the tokenizer's own template writes around a text. A revision that ships babyjax's `tokenizer.model`
(a babyjax export) is read with babyjax's `Tokenizer`: the same ids and hash as the run it came from."""

from __future__ import annotations

import hashlib
import json
import pathlib
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from babyjax import paths
from babyjax.data.tokenizer import MODEL_FILE, Specials, Tokenizer
from babyjax.errors import InputError, MissingError

WORD_MARKS = ("Ġ", "▁")  # byte-level BPE (GPT-2, OPT, Pythia, RoBERTa) and SentencePiece (Llama) word starts


class HfTokenizer:
    """A `tokenizers.Tokenizer` with babyjax's tokenizer interface. `config`: tokenizer_config.json (and
    special_tokens_map.json) merged, for the names of the bos, eos, pad and mask tokens."""

    def __init__(self, tk: Any, source: bytes, config: dict[str, Any]):
        self.tk, self._sha = tk, hashlib.sha256(source).hexdigest()
        self.config = config
        self.path = config.get("_path", "")

    @property
    def vocab_size(self) -> int:
        return self.tk.get_vocab_size(with_added_tokens=True)

    @property
    def sha256(self) -> str:
        return self._sha

    def encode(self, text: str) -> list[int]:
        return self.tk.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str], num_threads: int = 0) -> list[list[int]]:
        return [e.ids for e in self.tk.encode_batch(list(texts), add_special_tokens=False)]

    def char_ends(self, text: str) -> tuple[list[int], list[int]]:
        """(ids, the character offset where each token's span ends) of `text`."""
        enc = self.tk.encode(text, add_special_tokens=False)
        return enc.ids, [end for _, end in enc.offsets]

    def encode_examples(
        self, texts_a: Sequence[str], texts_b: Sequence[str] | None, max_length: int
    ) -> list[list[int]]:
        """Fine-tuning rows as the pipeline's `tokenizer(a, b, truncation=True, max_length=...)` gives them: the
        tokenizer's own special tokens, pairs cut longest first."""
        tk = self.tk.__class__.from_str(self.tk.to_str())  # a copy: truncation is state of the tokenizer
        tk.enable_truncation(max_length, strategy="longest_first")
        pairs = list(texts_a) if texts_b is None else list(zip(texts_a, texts_b, strict=True))
        return [e.ids for e in tk.encode_batch(pairs, add_special_tokens=True)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tk.decode([int(i) for i in ids], skip_special_tokens=False)

    def id_to_piece(self, i: int) -> str:
        return self.tk.id_to_token(int(i)) or ""

    def word_starts(self) -> np.ndarray:
        """bool[V]: pieces that begin a word ('Ġ' or '▁' first) and the special tokens."""
        special = {t.content for t in self.tk.get_added_tokens_decoder().values() if t.special}
        pieces = [self.id_to_piece(i) for i in range(self.vocab_size)]
        return np.array([p.startswith(WORD_MARKS) or p in special or not p for p in pieces])

    def token_id(self, key: str) -> int | None:
        """The id of the tokenizer config's `key` token (bos_token, eos_token, ...), None when it names none."""
        tok = self.config.get(key)
        tok = tok.get("content") if isinstance(tok, dict) else tok
        return None if tok is None else self.tk.token_to_id(tok)

    def template(self) -> tuple[list[int], list[int]]:
        """(prefix, suffix): the ids the tokenizer's template writes before and after a text (add_special_tokens)."""
        bare, full = self.encode("a"), self.tk.encode("a", add_special_tokens=True).ids
        at = next((i for i in range(len(full)) if full[i : i + len(bare)] == bare), 0)
        return full[:at], full[at + len(bare) :]

    @property
    def adds_prefix(self) -> bool:
        """Whether the tokenizer writes a token before every text (OPT's `</s>`, Llama's `<s>`, RoBERTa's `<s>`): the
        BabyLM 2025 pipeline then scores a sentence after it."""
        return bool(self.template()[0])

    @property
    def specials(self) -> Specials:
        """The ids the tokenizer's template writes before and after a text (`template`): the context a document
        starts after is the last one before it, else the bos token, else the eos token (GPT-2 and Pythia add none:
        their `<|endoftext|>`)."""
        prefix, suffix = self.template()
        eos, bos = self.token_id("eos_token"), self.token_id("bos_token")
        context = prefix[-1] if prefix else bos if bos is not None else eos
        if context is None:
            raise InputError(f"tokenizer {self.path} has no bos or eos token to start a document after")
        pad, mask = self.token_id("pad_token"), self.token_id("mask_token")
        return Specials(
            context=context,
            eos=eos if eos is not None else context,
            mask=-1 if mask is None else mask,
            pad=0 if pad is None else pad,
            suffix=tuple(suffix),
        )

    def __repr__(self) -> str:
        return f"HfTokenizer({self.path!r}, vocab_size={self.vocab_size})"


def _config(read: Any) -> dict[str, Any]:
    """tokenizer_config.json over special_tokens_map.json (either may be absent)."""
    out: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        data = read(name)
        if data is not None:
            out.update(json.loads(data))
    return out


def open_tokenizer(files: Any) -> Tokenizer | HfTokenizer:
    """The tokenizer of a revision (`files`: a weights.Source). A babyjax export's `tokenizer.model` is read with
    babyjax's `Tokenizer` (the run's own ids and hash); otherwise `tokenizer.json`, then GPT-2's `vocab.json` +
    `merges.txt` (byte-level BPE)."""
    import tokenizers

    if files.read_bytes("babyjax_export.json") is not None and files.read_bytes(MODEL_FILE) is not None:
        local = files.local_path(MODEL_FILE)
        if local is None:  # a git revision: one copy per tokenizer in the temporary folder, named by its hash
            data = files.read_bytes(MODEL_FILE)
            local = (
                pathlib.Path(tempfile.gettempdir()) / "babyjax-tokenizers" / f"{hashlib.sha256(data).hexdigest()}.model"
            )
            if not local.is_file():
                local.parent.mkdir(parents=True, exist_ok=True)
                paths.write_atomic(local, data)
        return Tokenizer(local)
    config = {**_config(files.read_bytes), "_path": str(files.where)}
    data = files.read_bytes("tokenizer.json")
    if data is not None:
        return HfTokenizer(tokenizers.Tokenizer.from_str(data.decode("utf-8")), data, config)
    vocab, merges = files.read_bytes("vocab.json"), files.read_bytes("merges.txt")
    if vocab is None or merges is None:
        raise MissingError(
            f"{files.where} has no tokenizer (tokenizer.json, vocab.json + merges.txt, or a babyjax export's "
            "tokenizer.model): copy the model's tokenizer files into it"
        )
    return HfTokenizer(_byte_level_bpe(vocab, merges), vocab + merges, config)


def _byte_level_bpe(vocab: bytes, merges: bytes) -> Any:
    """GPT-2's tokenizer from its vocab.json and merges.txt (as transformers' GPT2TokenizerFast builds it)."""
    from tokenizers import Tokenizer as Tk
    from tokenizers import decoders, models, pre_tokenizers

    lines = [ln for ln in merges.decode("utf-8").splitlines() if ln and not ln.startswith("#version")]
    bpe = models.BPE(json.loads(vocab), [tuple(ln.split(" ")) for ln in lines])
    tk = Tk(bpe)
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    return tk

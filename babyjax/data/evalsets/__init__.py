"""Every evaluation set babyjax reads, each tokenized into an `EvalSet` for the scorer with the hash of the files
it came from (`eval_hash`, the identity of a score output): the tokens-in-context sample of Chang, Tu & Bergen (2023)
(the .npz: docs/architecture.md, "Tokens-in-context sample"; made by `python -m babyjax.data.evalsets tokens`),
plain text, and minimal pairs (BLiMP, BLiMP supplement, Zorro) as `MinimalPair`."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from babyjax import paths
from babyjax.data import babylm
from babyjax.data.pipeline import TokenizedSplit, load_split_tokens
from babyjax.data.tokenizer import EOS_ID, Tokenizer
from babyjax.errors import ExistsError, InputError, MissingError

SUITES = ("blimp", "blimp_supplement", "zorro")


@dataclasses.dataclass
class TokenSample:
    """`tokens[n, positions[n, j]]` is a target whose context is `tokens[n, :positions[n, j]]`."""

    tokens: np.ndarray  # int32 [N, L]
    positions: np.ndarray  # int32 [N, k], sorted, all >= 1
    offsets: np.ndarray  # int64 [N], where each sequence starts in the split's token stream
    meta: dict[str, Any]

    @property
    def target_ids(self) -> np.ndarray:
        """int32 [N, k]: the target tokens."""
        return np.take_along_axis(self.tokens, self.positions, axis=1)

    def save(self, path: str | os.PathLike) -> pathlib.Path:
        """Write atomically; an existing different file is never overwritten (the same bytes again are fine)."""
        path = pathlib.Path(path)
        buf = io.BytesIO()  # npz members carry a fixed date: the same sample gives the same bytes
        np.savez(
            buf,
            tokens=self.tokens,
            positions=self.positions,
            offsets=self.offsets,
            meta=np.array(json.dumps(self.meta, sort_keys=True)),
        )
        data = buf.getvalue()
        if path.is_dir():
            raise InputError(f"--out {path} is a folder: give a file for the sample, e.g. {path / 'tokens.npz'}")
        if not path.exists():
            paths.write_atomic(path, data)
        elif path.read_bytes() != data:
            raise ExistsError(f"{path} exists with another sample: choose a new path (scores refer to it)")
        return path


def load_token_sample(path: str | os.PathLike) -> TokenSample:
    """A token sample written by `TokenSample.save`; anything else is one line."""
    if not os.path.isfile(path):
        raise MissingError(f"no token sample at {path}: make one with python -m babyjax.data.evalsets tokens")
    try:
        with np.load(path) as z:
            return TokenSample(
                tokens=z["tokens"], positions=z["positions"], offsets=z["offsets"], meta=json.loads(str(z["meta"]))
            )
    except (OSError, ValueError, KeyError, EOFError, AttributeError, TypeError) as err:
        why = (str(err).splitlines() or [""])[0][:120]
        raise InputError(
            f"{path} is not a token sample ({type(err).__name__}: {why}): make one with python -m "
            "babyjax.data.evalsets tokens"
        ) from None


def sample_tokens(
    data: TokenizedSplit,
    *,
    num_sequences: int,
    seq_len: int,
    num_positions: int,
    seed: int,
    exclude_ids: tuple[int, ...] = (EOS_ID,),
) -> TokenSample:
    """Draw `num_sequences` distinct non-overlapping windows of `seq_len` tokens and `num_positions` targets each,
    uniformly among positions 1..seq_len-1 whose token is not in `exclude_ids` (by default the EOS document
    separators are contexts, never targets)."""
    if not 1 <= num_positions < seq_len:
        raise InputError(f"num_positions must be in [1, seq_len - 1] = [1, {seq_len - 1}], got {num_positions}")
    num_windows = data.num_tokens // seq_len
    if not 0 < num_sequences <= num_windows:
        raise InputError(
            f"asked for {num_sequences} sequences of {seq_len} tokens but the split holds "
            f"{num_windows}: ask for fewer or shorter sequences"
        )
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.choice(num_windows, size=num_sequences, replace=False)).astype(np.int64) * seq_len
    tokens = np.asarray(data.tokens)[offsets[:, None] + np.arange(seq_len)].astype(np.int32)
    keys = rng.random(tokens.shape)
    keys[:, 0] = np.inf
    keys[np.isin(tokens, exclude_ids)] = np.inf
    short = np.flatnonzero(np.isfinite(keys).sum(1) < num_positions)
    if short.size:
        raise InputError(f"{short.size} sequences have fewer than {num_positions} eligible targets: ask for fewer")
    positions = np.sort(np.argsort(keys, axis=1, kind="stable")[:, :num_positions], axis=1).astype(np.int32)
    meta = {
        "kind": "tokens",
        "num_sequences": num_sequences,
        "seq_len": seq_len,
        "num_positions": num_positions,
        "seed": seed,
        "exclude_ids": list(exclude_ids),
        "stream": "EOS-separated documents in file order",
    }
    return TokenSample(tokens=tokens, positions=positions, offsets=offsets, meta=meta)


def make_token_sample(
    data_cfg: Any,
    tokenizer: Tokenizer,
    path: str | os.PathLike,
    *,
    split: str = "test",
    num_sequences: int = 100_000,
    seq_len: int = 128,
    num_positions: int = 10,
    seed: int = 0,
) -> TokenSample:
    """Tokens-in-context sample from `split` of the BabyLM dataset of `data_cfg`, saved to `path`."""
    if split not in ("dev", "test"):
        raise InputError(f"tokens in context must come from held-out text: split 'dev' or 'test', not {split!r}")
    data = load_split_tokens(data_cfg, tokenizer, split)
    sample = sample_tokens(data, num_sequences=num_sequences, seq_len=seq_len, num_positions=num_positions, seed=seed)
    config_name = babylm.builder_config(data_cfg.track, data_cfg.max_train_lines).name
    sample.meta.update(
        split=split, dataset=f"babylm/{config_name}", tokenizer_sha256=tokenizer.sha256, vocab_size=tokenizer.vocab_size
    )
    sample.save(path)
    return sample


@dataclasses.dataclass(frozen=True)
class TextLine:
    source: str  # file name
    line: int  # 0-based line index in the file
    text: str


def _files(path: str | os.PathLike, suffix: str) -> list[pathlib.Path]:
    """The `*suffix` files of a folder (sorted by name), or the file itself; MissingError when there are none."""
    path = pathlib.Path(path)
    files = sorted(path.glob(f"*{suffix}")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise MissingError(f"no {suffix} files at {path}")
    return files


def _lines(path: pathlib.Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not UTF-8 text (byte {e.start}): convert it with iconv -t UTF-8") from None


def load_texts(path: str | os.PathLike, suffix: str = ".txt") -> list[TextLine]:
    """Non-empty lines of a text file, or of every `*suffix` file of a folder (sorted by name)."""
    return [TextLine(f.name, i, t) for f in _files(path, suffix) for i, t in enumerate(_lines(f)) if t.strip()]


@dataclasses.dataclass(frozen=True)
class MinimalPair:
    """One grammatical / ungrammatical pair; the scorer counts it correct when `good` scores higher."""

    good: str
    bad: str
    suite: str  # blimp | blimp_supplement | zorro
    paradigm: str  # BLiMP UID, supplement task, Zorro file stem
    field: str  # BLiMP field (syntax, morphology, ...), supplement field or task, Zorro phenomenon
    phenomenon: str = ""  # BLiMP linguistics_term, Zorro phenomenon
    pair_id: str = ""


def _jsonl(path: pathlib.Path) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate(_lines(path)):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{i + 1} is not valid JSON ({e.msg})") from None
            if not {"sentence_good", "sentence_bad"} <= rows[-1].keys():
                raise InputError(f"{path}:{i + 1} lacks sentence_good / sentence_bad")
    return rows


# BLiMP's files spell one field two ways (1 paradigm `syntax/semantics`, 13 `syntax_semantics`); the official
# pipeline (evaluation-pipeline-2025, sentence_zero_shot/read_files.py decode_blimp) reports them as one field,
# `syntax/semantics`, and so does every table and figure here.
BLIMP_FIELD_SPELLINGS = {"syntax_semantics": "syntax/semantics"}


def load_jsonl_pairs(path: str | os.PathLike, suite: str = "blimp") -> list[MinimalPair]:
    """BLiMP (Warstadt et al. 2020) or the BLiMP supplement (BabyLM 2023): a .jsonl file of sentence_good /
    sentence_bad or a folder of them. The paradigm is the UID, else the file stem; a supplement's field is its own,
    else the paradigm; `syntax_semantics` is read as `syntax/semantics` (`BLIMP_FIELD_SPELLINGS`)."""
    pairs = []
    for f in _files(path, ".jsonl"):
        for i, r in enumerate(_jsonl(f)):
            paradigm = r.get("UID") or f.stem
            field = r.get("field") or (paradigm if suite == "blimp_supplement" else "")
            field = BLIMP_FIELD_SPELLINGS.get(field, field)
            pairs.append(
                MinimalPair(
                    r["sentence_good"],
                    r["sentence_bad"],
                    suite,
                    paradigm,
                    field,
                    r.get("linguistics_term", ""),
                    str(r.get("pairID", i)),
                )
            )
    return pairs


def load_zorro(path: str | os.PathLike) -> list[MinimalPair]:
    """Zorro (Huebner et al. 2021): `<phenomenon>-<paradigm>.txt`, odd lines (1, 3, ...) bad, even lines good."""
    pairs = []
    for f in _files(path, ".txt"):
        lines = [t for t in _lines(f) if t.strip()]
        if len(lines) % 2:
            raise InputError(f"{f} has an odd number of sentences ({len(lines)}): Zorro files hold bad/good pairs")
        phenomenon = f.stem.rsplit("-", 1)[0]
        pairs += [
            MinimalPair(lines[j + 1], lines[j], "zorro", f.stem, phenomenon, phenomenon, str(j // 2))
            for j in range(0, len(lines), 2)
        ]
    return pairs


def load_pairs(path: str | os.PathLike, suite: str | None = None) -> list[MinimalPair]:
    """Minimal pairs of any suite; `suite=None` guesses it (.txt: zorro; jsonl with linguistics_term: blimp)."""
    if suite is None:
        p = pathlib.Path(path)
        first = (sorted(p.glob("*.jsonl")) or sorted(p.glob("*.txt")) or [p])[0] if p.is_dir() else p
        if first.suffix == ".txt":
            suite = "zorro"
        else:
            rows = _jsonl(first) if first.is_file() else []
            suite = "blimp" if rows and "linguistics_term" in rows[0] else "blimp_supplement"
    if suite not in SUITES:
        raise InputError(f"unknown minimal-pair suite {suite!r}: use one of {', '.join(SUITES)}")
    return load_zorro(path) if suite == "zorro" else load_jsonl_pairs(path, suite)


@dataclasses.dataclass
class EvalSet:
    """Tokenized sequences to score. `sequences`: sequences.csv (docs/architecture.md, "Score output"), one row per
    sequence, `seq` its index in `token_ids`. `positions` (tokens-in-context samples only): per row of `token_ids`, the
    positions scored, each in the context of all tokens before it in the row."""

    kind: str
    source: str
    eval_hash: str
    token_ids: list[list[int]]
    sequences: pd.DataFrame
    tokenizer_hash: str | None = None  # the tokenizer a pre-tokenized set was made with
    positions: list[list[int]] | None = None


def files_hash(files: Sequence[str | os.PathLike]) -> str:
    """sha256 over the names (not folders) and bytes of files, in sorted name order."""
    h = hashlib.sha256()
    for p in sorted((pathlib.Path(p) for p in files), key=lambda p: p.name):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def limited_hash(files: Sequence[pathlib.Path], limit: int) -> str:
    digest = files_hash(files)
    return digest if not limit else hashlib.sha256(f"{digest}|limit={limit}".encode()).hexdigest()


def load_text(
    sources: Sequence[str], tok: Tokenizer, *, unit: str = "line", suffix: str = ".txt", limit: int = 0
) -> EvalSet:
    """Held-out text: each non-empty line a sequence (`unit='line'`), or each file one sequence whose lines are
    documents joined by EOS, as in the training token stream (`unit='file'`). `limit` > 0 keeps the first sequences."""
    if unit not in ("line", "file"):
        raise InputError(f"unknown text unit {unit!r}: use 'line' or 'file'")
    files = [f for p in sources for f in _files(p, suffix)]
    lines = [t for p in sources for t in load_texts(p, suffix)]
    if not lines:
        raise InputError(f"no text to score in {', '.join(map(str, sources))} (empty files?)")
    encoded = tok.encode_batch([t.text for t in lines])
    if unit == "line":
        ids = list(encoded)
        rows = [{"seq": s, "file": t.source, "line": t.line, "text": t.text} for s, t in enumerate(lines)]
    else:
        by_file: dict[str, list[int]] = {}
        for t, e in zip(lines, encoded):
            joined = by_file.setdefault(t.source, [])
            joined.extend(([tok.specials.eos] if joined else []) + e)
        ids = list(by_file.values())
        rows = [{"seq": s, "file": name, "line": -1, "text": ""} for s, name in enumerate(by_file)]
    if limit:
        ids, rows = ids[:limit], rows[:limit]
    return EvalSet("text", ",".join(map(str, sources)), limited_hash(files, limit), ids, pd.DataFrame(rows))


def load_pair_set(sources: Sequence[str], tok: Tokenizer, *, suite: str | None = None, limit: int = 0) -> EvalSet:
    """Minimal pairs (BLiMP, BLiMP supplement, Zorro; `load_pairs`): sequence 2i is pair i's good sentence, 2i + 1
    its bad one. `limit` > 0 keeps the first pairs of each paradigm."""
    pairs: list[MinimalPair] = []
    files: list[pathlib.Path] = []
    for p in sources:
        found = load_pairs(p, suite)
        if not found:
            raise InputError(f"no minimal pairs in {p}: the file is empty or holds no sentence pairs")
        pairs += found
        files += _files(p, ".txt" if found[0].suite == "zorro" else ".jsonl")
    if limit:  # the first `limit` pairs of each paradigm
        rank = pd.DataFrame([(pr.suite, pr.paradigm) for pr in pairs]).groupby([0, 1], sort=False).cumcount()
        pairs = [pr for pr, r in zip(pairs, rank) if r < limit]
    ids = tok.encode_batch([s for pr in pairs for s in (pr.good, pr.bad)])
    rows = [
        {
            "seq": 2 * i + j,
            "pair": i,
            "which": which,
            "suite": pr.suite,
            "paradigm": pr.paradigm,
            "field": pr.field,
            "phenomenon": pr.phenomenon,
            "pair_id": pr.pair_id,
            "text": text,
        }
        for i, pr in enumerate(pairs)
        for j, (which, text) in enumerate((("good", pr.good), ("bad", pr.bad)))
    ]
    return EvalSet("pairs", ",".join(map(str, sources)), limited_hash(files, limit), ids, pd.DataFrame(rows))


def load_tokens(path: str, *, limit: int = 0) -> EvalSet:
    """A tokens-in-context sample (Chang et al. 2023; `make_token_sample`): each row of `tokens` is read as one
    context and the tokens at `positions` are scored."""
    sample = load_token_sample(path)
    if sample.tokens.ndim != 2 or sample.positions.ndim != 2 or sample.positions.shape[0] != sample.tokens.shape[0]:
        raise InputError(f"{path} is not a token sample: tokens [N, L] and positions [N, k] expected")
    if sample.positions.size and (sample.positions.min() < 1 or sample.positions.max() >= sample.tokens.shape[1]):
        raise InputError(f"{path}: target positions must be in [1, L-1]")
    n = limit or len(sample.tokens)
    tokens, positions, offsets = sample.tokens[:n], sample.positions[:n], sample.offsets[:n]
    rows = pd.DataFrame({"seq": np.arange(tokens.shape[0]), "offset": offsets, "text": ""})
    return EvalSet(
        "tokens",
        str(path),
        limited_hash([pathlib.Path(path)], limit),
        tokens.tolist(),
        rows,
        tokenizer_hash=sample.meta.get("tokenizer_sha256"),
        positions=[p.tolist() for p in positions],
    )

"""Training objectives: what a batch of packed rows (babyjax/data/pipeline.py) teaches the model, applied inside the
jitted step with the step's random key, so masks are drawn anew at every step (dynamic masking, as RoBERTa) and a
resumed run draws the same masks as an uninterrupted one.

  causal  every next token (decoders; an encoder run this way attends causally)
  mlm     masked LM (BERT, RoBERTa, LTG-BERT): a share `mask_rate` of the tokens is chosen, the output at a chosen
          position predicts its original token
  mntp    masked next-token prediction (GPT-BERT): tokens are chosen as for mlm, the output at position i - 1 predicts
          the chosen token at i
  hybrid  GPT-BERT's mix: a share `causal_share` of each batch's rows is causal (causal attention), the rest mntp

Chosen tokens are replaced by <mask>, by a random ordinary token or kept, with probabilities `replace` (BERT's
80/10/10). Only ordinary tokens are chosen (never <pad>, <unk>, <s>, </s>, <mask>). `masking`: 'token' (as fairseq's
RoBERTa and GPT-BERT: exactly mask_rate x n of a row's n ordinary tokens, stochastically rounded, uniformly at
random), 'whole_word' (each word with probability mask_rate, and every piece of a chosen word: a word starts at a
piece with SentencePiece's '▁' or after a special token), 'span' (SpanBERT: spans of whole words with geometric
lengths, mean `span_mean`, at most `span_max` words, started at a rate that masks `mask_rate` of the tokens on
average). Definitions: docs/science.md, "Masked and hybrid LMs".
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from babyjax.data.tokenizer import MASK_ID, Tokenizer
from babyjax.errors import InputError

KINDS = ("causal", "mlm", "mntp", "hybrid")
MASKINGS = ("token", "whole_word", "span")
FIRST_ORDINARY = MASK_ID + 1  # ids below are special: <pad> <unk> <s> </s> <mask>


@dataclasses.dataclass(frozen=True)
class Features:
    """What an objective allows a trained run downstream, so that no other module reads the kind's name.
    `scorings`: how the run can be scored (babyjax/score), the first being the default ('auto')."""

    kind: str
    scorings: tuple[str, ...]
    needs_encoder: bool

    @property
    def default_scoring(self) -> str:
        return self.scorings[0]

    @property
    def causal_capable(self) -> bool:
        """Whether the run predicts the next token causally: it can be scored causally and generate text."""
        return "causal" in self.scorings


FEATURES = {
    "causal": Features("causal", ("causal",), needs_encoder=False),
    "mlm": Features("mlm", ("pll_original", "pll_within_word_l2r"), needs_encoder=True),
    "mntp": Features("mntp", ("mntp",), needs_encoder=True),
    "hybrid": Features("hybrid", ("mntp", "causal"), needs_encoder=True),
}


def features(config: Any) -> Features:
    """The features of a run config's objective (a config without an objective section is causal)."""
    kind = config_of(config)["kind"]
    if kind not in FEATURES:
        raise InputError(f"objective.kind={kind!r}: use one of {', '.join(KINDS)}")
    return FEATURES[kind]


def config_of(config: Any) -> dict:
    """A run config's objective section with the package's defaults for the keys it lacks (runs made before
    objectives existed are causal); `replace` as a list of floats, as JSON keeps it."""
    section = config.get("objective") if hasattr(config, "get") else None
    out = {**DEFAULT, **(dict(section) if section else {})}
    return {**out, "replace": [float(x) for x in out["replace"]]}


def describe(config: Any) -> str:
    """A run config's objective in words: 'causal LM', 'masked LM (15% whole_word)', 'hybrid (25% causal rows, mntp
    30% span)' ..."""
    o = config_of(config)
    masking = f"{100 * o['mask_rate']:g}% {o['masking']}"
    return {
        "causal": "causal LM",
        "mlm": f"masked LM ({masking})",
        "mntp": f"masked next token ({masking})",
        "hybrid": f"hybrid ({100 * o['causal_share']:g}% causal rows, mntp {masking})",
    }[features(config).kind]


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
    """One objective (see the module docstring); `objective(batch, key)` turns loader rows into loss rows: inputs
    (masked), targets, weights (the scored positions) and causal (bool[B], attention of each row)."""

    kind: str  # a config without objective.kind is causal (DEFAULT)
    vocab_size: int
    # The config.objective keys' one default each: DEFAULT, and through it configs/base.py, reads them from here.
    mask_rate: float = 0.15
    replace: tuple[float, float, float] = (0.8, 0.1, 0.1)
    masking: str = "token"
    span_mean: float = 3.0
    span_max: int = 10
    causal_share: float = 0.0
    word_starts: np.ndarray | None = None  # bool[V]: pieces that begin a word (whole_word and span masking)
    compact: bool = True  # mlm, mntp: the loss reads only the chosen columns (at most `capacity` a row)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"objective.kind={self.kind!r}: use one of {', '.join(KINDS)}")
        if self.masking not in MASKINGS:
            raise InputError(f"objective.masking={self.masking!r}: use one of {', '.join(MASKINGS)}")
        if not 0.0 < self.mask_rate < 1.0:
            raise InputError(f"objective.mask_rate={self.mask_rate} must be in (0, 1), e.g. 0.15 (BERT) or 0.4")
        if len(self.replace) != 3 or min(self.replace) < 0 or abs(sum(self.replace) - 1.0) > 1e-6:
            raise InputError(
                f"objective.replace={tuple(self.replace)} must be three shares (mask, random, keep) "
                "that sum to 1, e.g. (0.8, 0.1, 0.1)"
            )
        if not 0.0 <= self.causal_share <= 1.0:
            raise InputError(f"objective.causal_share={self.causal_share} must be in [0, 1]")
        if self.masking != "token" and self.word_starts is None:
            raise InputError(
                f"objective.masking={self.masking!r} needs the tokenizer's word starts: build the "
                "objective with Objective.from_config"
            )
        if self.masking == "span" and not (1.0 <= self.span_mean <= self.span_max):
            raise InputError(f"objective.span_mean={self.span_mean} must be in [1, span_max={self.span_max}]")

    @classmethod
    def from_config(cls, config: Any, tokenizer: Tokenizer, encoder: bool) -> Objective:
        """The objective of a run config (`config.objective`) for a model that is an `encoder` or a decoder."""
        c = config_of(config)
        if features(config).needs_encoder and not encoder:
            raise InputError(
                f"objective.kind={c['kind']!r} needs an encoder: set model.style to roberta or "
                "ltg_bert (decoders attend causally only)"
            )
        starts = tokenizer.word_starts()
        return cls(
            kind=c["kind"],
            vocab_size=tokenizer.vocab_size,
            mask_rate=float(c["mask_rate"]),
            replace=tuple(float(x) for x in c["replace"]),
            masking=c["masking"],
            span_mean=float(c["span_mean"]),
            span_max=int(c["span_max"]),
            causal_share=float(c["causal_share"]),
            word_starts=starts,
        )

    @property
    def masked(self) -> bool:
        """Whether any row is masked (mlm, mntp, hybrid with a causal share below 1)."""
        return self.kind in ("mlm", "mntp") or (self.kind == "hybrid" and self.causal_share < 1.0)

    def capacity(self, length: int) -> int:
        """The most tokens chosen in one row of `length` (mlm, mntp): token masking chooses at most rate x length + 1;
        whole words and spans vary, so twice the expected count plus 8, which a row reaches about never (BERT caps its
        predictions per sequence the same way: 20 of 128). Chosen tokens past it, in column order, are left
        unmasked; the loss then reads only these columns (`cols`): the output projection runs on capacity / length
        of each row."""
        if self.masking == "token":
            return min(length, math.floor(self.mask_rate * length) + 1)
        return min(length, math.ceil(2 * self.mask_rate * length) + 8)

    def head_fraction(self, length: int) -> float:
        """The share of a row's columns the output projection reads (1 unless the loss is compacted)."""
        return self.capacity(length) / length if self.compact and self.kind in ("mlm", "mntp") else 1.0

    def __call__(self, batch: dict[str, jax.Array], key: jax.Array) -> dict[str, jax.Array]:
        rows, length = batch["inputs"].shape
        if self.kind == "causal":
            return {**batch, "causal": jnp.ones((rows,), jnp.bool_)}
        k_choose, k_replace = jax.random.split(key)
        chosen_BxL = self.choose(batch, k_choose)
        if self.compact and self.kind in ("mlm", "mntp"):
            chosen_BxL &= jnp.cumsum(chosen_BxL, axis=1) <= self.capacity(length)
        inputs_BxL = self.replace_chosen(batch["inputs"], chosen_BxL, k_replace)
        if self.kind == "mlm":
            return self._compacted(
                {
                    **batch,
                    "inputs": inputs_BxL,
                    "targets": batch["inputs"],
                    "weights": chosen_BxL.astype(jnp.float32),
                    "causal": jnp.zeros((rows,), jnp.bool_),
                }
            )
        # mntp: the output at i predicts the token at i + 1, scored when that token was chosen
        next_chosen_BxL = jnp.pad(chosen_BxL[:, 1:], ((0, 0), (0, 1)))
        mntp = {
            **batch,
            "inputs": inputs_BxL,
            "weights": jnp.where(next_chosen_BxL, batch["weights"], 0.0),
            "causal": jnp.zeros((rows,), jnp.bool_),
        }
        if self.kind == "mntp":
            return self._compacted(mntp)
        causal_B = jnp.arange(rows) < round(self.causal_share * rows)  # rows are shuffled: the first ones will do
        pick = lambda causal_row, masked_row: jnp.where(causal_B[:, None], causal_row, masked_row)
        return {
            **mntp,
            "inputs": pick(batch["inputs"], inputs_BxL),
            "weights": pick(batch["weights"], mntp["weights"]),
            "causal": causal_B,
        }

    def _compacted(self, rows: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """`cols` [B, capacity]: the scored columns of each row first, in column order (the loss reads only these)."""
        if not self.compact:
            return rows
        k = self.capacity(rows["weights"].shape[1])
        return {**rows, "cols": jnp.argsort(rows["weights"] <= 0, axis=1, stable=True)[:, :k].astype(jnp.int32)}

    def choose(self, batch: dict[str, jax.Array], key: jax.Array) -> jax.Array:
        """bool[B, L]: the positions whose tokens are masked (ordinary tokens of live segments only)."""
        inputs_BxL = batch["inputs"]
        ordinary_BxL = (inputs_BxL >= FIRST_ORDINARY) & (batch["segment_ids"] > 0)
        u_BxL = jax.random.uniform(key, inputs_BxL.shape)
        if self.masking == "token":  # fairseq's RoBERTa rule: exactly rate x n tokens a row, stochastically rounded
            n_B = jnp.sum(ordinary_BxL, axis=1)
            k_B = jnp.floor(self.mask_rate * n_B + jax.random.uniform(jax.random.fold_in(key, 2), n_B.shape))
            rank_BxL = jnp.argsort(jnp.argsort(jnp.where(ordinary_BxL, u_BxL, 2.0), axis=1), axis=1)
            return ordinary_BxL & (rank_BxL < k_B[:, None])
        col_L = jnp.arange(inputs_BxL.shape[1])
        after_special_BxL = jnp.pad(~ordinary_BxL[:, :-1], ((0, 0), (1, 0)), constant_values=True)
        starts_BxL = jnp.asarray(self.word_starts)[inputs_BxL] | ~ordinary_BxL | after_special_BxL
        if self.masking == "whole_word":
            first_BxL = jax.lax.cummax(jnp.where(starts_BxL, col_L, 0), axis=1)  # column where each word starts
            return ordinary_BxL & (jnp.take_along_axis(u_BxL, first_BxL, axis=1) < self.mask_rate)
        return ordinary_BxL & self._spans(starts_BxL, ordinary_BxL, u_BxL, key)

    def _spans(self, starts_BxL: jax.Array, ordinary_BxL: jax.Array, u_BxL: jax.Array, key: jax.Array) -> jax.Array:
        """bool[B, L]: positions inside a span; a span starts at a word start with probability `span_start_rate` and
        covers a geometric number of words (at most span_max)."""
        word_BxL = jnp.cumsum(starts_BxL, axis=1)  # word index of each position, from 1
        p = 1.0 / self.span_mean
        g = jax.random.uniform(jax.random.fold_in(key, 1), u_BxL.shape, minval=1e-12)
        length_BxL = jnp.minimum(1 + jnp.floor(jnp.log(g) / np.log1p(-p)), self.span_max) if p < 1 else 1
        rate = span_start_rate(self.mask_rate, self.span_mean, self.span_max)
        begins_BxL = starts_BxL & ordinary_BxL & (u_BxL < rate)
        reach_BxL = jax.lax.cummax(jnp.where(begins_BxL, word_BxL - 1 + length_BxL, 0), axis=1)  # last word covered
        return word_BxL <= reach_BxL

    def replace_chosen(self, inputs_BxL: jax.Array, chosen_BxL: jax.Array, key: jax.Array) -> jax.Array:
        """Chosen tokens -> <mask>, a random ordinary token, or themselves, with probabilities `replace`."""
        k_which, k_token = jax.random.split(key)
        r_BxL = jax.random.uniform(k_which, inputs_BxL.shape)
        random_BxL = jax.random.randint(k_token, inputs_BxL.shape, FIRST_ORDINARY, self.vocab_size, inputs_BxL.dtype)
        p_mask, p_random, _ = self.replace
        out = jnp.where(r_BxL < p_mask + p_random, random_BxL, inputs_BxL)
        out = jnp.where(r_BxL < p_mask, jnp.asarray(MASK_ID, inputs_BxL.dtype), out)
        return jnp.where(chosen_BxL, out, inputs_BxL)


SECTION = ("kind", "mask_rate", "replace", "masking", "span_mean", "span_max", "causal_share")  # config.objective
DEFAULT = {"kind": "causal"} | {f.name: f.default for f in dataclasses.fields(Objective) if f.name in SECTION[1:]}


def span_start_rate(mask_rate: float, span_mean: float, span_max: int) -> float:
    """The rate at which spans start at word starts so that a share `mask_rate` of the words is covered on average:
    a word is uncovered when no span starting 0..span_max-1 words before reaches it, so
    1 - mask_rate = prod_k (1 - q P(length > k)), with P(length > k) = (1 - 1/span_mean)^k for k < span_max."""
    survive = (1.0 - 1.0 / span_mean) ** np.arange(span_max)
    lo, hi = 0.0, 1.0
    for _ in range(60):  # bisection: coverage grows with q
        q = (lo + hi) / 2
        lo, hi = (q, hi) if 1.0 - np.prod(1.0 - q * survive) < mask_rate else (lo, q)
    return (lo + hi) / 2

"""Measures of generated text across checkpoints, for Chang, Tu & Bergen's finding that models first produce short,
repetitive text and later longer, more varied text: per step, the continuations' length in words, the share of
their word 3-grams that repeat an earlier 3-gram of the same continuation, and distinct-1 / distinct-2 (unique
n-grams over all n-grams of the step's continuations; Li et al. 2016)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd


def continuation(prompt: str, text: str) -> list[str]:
    """The words generated after `prompt` (generations.json holds prompt + continuation)."""
    words, head = text.split(), prompt.split()
    return words[len(head) :] if words[: len(head)] == head else words


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def repeated_ngram_rate(words: list[str], n: int = 3) -> float:
    """Share of the n-grams of one text that already occurred earlier in it (NaN without an n-gram)."""
    grams = _ngrams(words, n)
    if not grams:
        return float("nan")
    seen, repeats = set(), 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams)


def distinct_n(texts: list[list[str]], n: int) -> float:
    """Unique n-grams over all n-grams of `texts` (NaN without an n-gram)."""
    grams = [g for words in texts for g in _ngrams(words, n)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def text_measures(generations: Mapping[str, Mapping[str, str]]) -> pd.DataFrame:
    """One row per step of a generations.json ({step: {prompt: text}}): prompts, mean continuation length (words),
    mean repeated 3-gram rate, distinct-1 and distinct-2."""
    rows = []
    for step, by_prompt in generations.items():
        if not isinstance(by_prompt, Mapping) or not str(step).lstrip("-").isdigit():
            continue
        conts = [continuation(p, str(t)) for p, t in by_prompt.items()]
        rows.append(
            {
                "step": int(step),
                "prompts": len(conts),
                "mean_words": float(np.mean([len(c) for c in conts])) if conts else np.nan,
                "repeated_3gram_rate": float(np.nanmean([repeated_ngram_rate(c) for c in conts]))
                if any(len(c) >= 3 for c in conts)
                else np.nan,
                "distinct_1": distinct_n(conts, 1),
                "distinct_2": distinct_n(conts, 2),
            }
        )
    return pd.DataFrame(
        rows, columns=["step", "prompts", "mean_words", "repeated_3gram_rate", "distinct_1", "distinct_2"]
    ).sort_values("step", ignore_index=True)

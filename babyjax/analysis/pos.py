"""Part of speech of scored tokens, Chang et al.'s `pos` and `pos_bilu` predictors (utils/annotator.py
`get_pos_tag_sequences`; analysis/run_regressions.py). Their tagger is spaCy's en_core_web_sm, which is not on the
package index; this one is TextBlob's pattern tagger (a Brill-style lexicon and context-rule tagger shipped inside
the `textblob` package, Penn Treebank tags, no model download). A token gets the tag of the word it belongs to and
its place in that word: U (the whole word), B, I or L (first, inner or last piece)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

WORD_MARK = "\u2581"


def _words(pieces: Sequence[str]) -> tuple[list[str], list[int]]:
    """The words of a run of pieces and the word index of each piece: a word starts at a piece that carries the
    boundary mark, at punctuation and after it."""
    words: list[str] = []
    index: list[int] = []
    for piece in pieces:
        text = piece.replace(WORD_MARK, "")
        punct = bool(text) and not any(ch.isalnum() for ch in text)
        if not words or piece.startswith(WORD_MARK) or punct or not any(ch.isalnum() for ch in words[-1]):
            words.append(text or piece)
        else:
            words[-1] += text
        index.append(len(words) - 1)
    return words, index


def tag_rows(rows_NxL: np.ndarray, pieces: Sequence[str], special_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """([N, L] tag, [N, L] BILU) of every token of token rows; a special token (EOS, PAD, ...) is its own word with
    the tag "[SPECIAL]" and splits the text around it, which is tagged run by run."""
    from textblob.en import tag

    special = {int(i) for i in special_ids}
    tags = np.full(rows_NxL.shape, "[SPECIAL]", dtype=object)
    bilu = np.full(rows_NxL.shape, "U", dtype=object)
    for n, row in enumerate(np.asarray(rows_NxL)):
        cuts = [-1] + [j for j, t in enumerate(row) if int(t) in special] + [len(row)]
        for a, b in zip(cuts[:-1], cuts[1:]):
            if b - a <= 1:
                continue
            words, index = _words([pieces[int(t)] for t in row[a + 1 : b]])
            word_tags = [t for _, t in tag(" ".join(w.replace(" ", "_") or "_" for w in words), tokenize=False)]
            counts = np.bincount(index)
            for k, w in enumerate(index):
                j = a + 1 + k
                tags[n, j] = word_tags[w]
                first, last = k == 0 or index[k - 1] != w, k == len(index) - 1 or index[k + 1] != w
                bilu[n, j] = "U" if counts[w] == 1 else "B" if first else "L" if last else "I"
    return tags, bilu

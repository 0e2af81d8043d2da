"""The BabyLM 2025 suite read by a masked or hybrid LM: the masked copies of a `--kind babylm2025` evaluation set as the
official pipeline's mlm and mntp backends read it (github.com/babylm/evaluation-pipeline-2025; docs/science.md,
"BabyLM 2025 zero-shot tasks"). Reading (`reading/evaluation_functions.py`, get_p2_mlm / get_p2_mntp): each query's
context followed by NUM_MASK_TOKENS masks, read at the first mask (mlm) or at the column before it (mntp). AoA
(`AoA_word/evaluation_functions.py`, process_mlm_input / process_mntp_input): each of the word's tokens masked alone in
`context word`, read at its own column (mlm) or the one before (mntp). The sentence tasks: each token of the
completion masked in turn (sentence_zero_shot/dataset.py, process_mlm_sentences / process_mntp_sentences): the whole
candidate for BLiMP, the supplement and the wug tasks, the options after the shared prefix for entity tracking, EWoK
and COMPS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from babyjax.data.tokenizer import SPECIALS, Specials
from babyjax.errors import InputError
from babyjax.score.packing import MaskedCopy, masked_copies

if TYPE_CHECKING:
    from babyjax.data.evalsets import EvalSet

NUM_MASK_TOKENS = 3  # reading/run.py's --number_of_mask_tokens_to_append, as eval_zero_shot.sh leaves it
WORD_TASKS = ("reading", "aoa")  # the tasks whose masked rules are the pipeline's own, not pseudo-log-likelihood
PIPELINE_METHODS = ("pll_original", "mntp")  # the scorings that are a pipeline backend (mlm, mntp)


def reading_copy(
    seq: int, query: Sequence[int], method: str, seq_len: int, specials: Specials = SPECIALS
) -> MaskedCopy:
    """The copy that scores one reading query (context ids, then the id scored): `</s>`, the context and
    NUM_MASK_TOKENS masks, read at the first mask (pll_original: the mlm backend) or at the context's last token
    (mntp), as the exported tokenizer gives `</s>` + context + masks and appends nothing. A context longer than the
    model's window keeps its last tokens."""
    tokens = [specials.context, *(int(i) for i in query[:-1]), *[specials.mask] * NUM_MASK_TOKENS]
    col = len(query) - (method == "mntp")  # the first mask is at len(query): </s> + len(query) - 1 context tokens
    cut = max(0, len(tokens) - seq_len)
    return MaskedCopy(seq, len(query) - 1, tuple(tokens[cut:]), col - cut, int(query[-1]))


def suite_copies(
    ev: EvalSet, method: str, seq_len: int, word_starts: np.ndarray, specials: Specials = SPECIALS
) -> list[MaskedCopy]:
    """The masked copies that score a BabyLM 2025 suite by `method`: reading queries as `reading_copy`; for every
    other task, the completion's tokens (from each sequence's `start`) each masked alone."""
    tasks = ev.sequences["task"].to_numpy()
    if method not in PIPELINE_METHODS and (words := sorted(set(tasks) & set(WORD_TASKS))):
        raise InputError(
            f"--scoring={method}: the BabyLM 2025 {' and '.join(words)} tasks follow the pipeline's mlm and mntp "
            "backends, which have no such rule: score them with --scoring=pll_original or mntp, or leave them out"
        )
    starts = ev.sequences["start"].to_numpy(np.int64)
    out: list[MaskedCopy] = []
    for s, ids in enumerate(ev.token_ids):
        if tasks[s] == "reading":
            out.append(reading_copy(s, ids, method, seq_len, specials))
        else:
            scored = range(int(starts[s]), len(ids))
            out += masked_copies(s, ids, method, seq_len, word_starts, scored=scored, specials=specials)
    return out

"""The BabyLM track rules on words seen: a run plans at most its track's cap, checked before its first step.

The 2025 and 2026 rules cap the words a model sees in training, every epoch and every objective counted: strict-small
100M (10 epochs of its 10M words), strict 1B (10 epochs of 100M). A run's track is its `data.track`; the planned words
are the prepared training split's words per epoch times the epochs its steps read (`planned_words`).
"""

from __future__ import annotations

from babyjax.errors import InputError

# Words a model of each track may see in all of its training (BabyLM 2025/2026 rules).
WORDS_CAPS = {"strict_small": 100_000_000, "strict": 1_000_000_000}
OVERRIDE_KEY = "train.allow_over_cap"


def planned_words(words_per_epoch: float, rows_per_epoch: int, rows_planned: int, num_epochs: int | None) -> float:
    """Words the planned rows read: whole epochs count the split's words, a part epoch its share of the rows
    (the loader spreads each document's words over its tokens, so a row's share is its words). `num_epochs`:
    the loader stops after that many epochs (None: it repeats for as long as the steps ask)."""
    if rows_per_epoch <= 0:
        return 0.0
    if num_epochs is not None:
        rows_planned = min(rows_planned, num_epochs * rows_per_epoch)
    return words_per_epoch * rows_planned / rows_per_epoch


def check_words_cap(track: str, planned: float, allow_over_cap: bool) -> None:
    """A one-line InputError when `planned` words exceed the cap of `track`, unless the departure is deliberate."""
    cap = WORDS_CAPS.get(track)
    if cap is None or allow_over_cap or planned <= cap:
        return
    raise InputError(
        f"this run plans {planned / 1e6:,.1f}M words seen, over the BabyLM {track} cap of {cap / 1e6:,.0f}M: lower "
        f"train.num_steps (or data.num_epochs), or set --config.{OVERRIDE_KEY}=True to depart from the track's rules"
    )

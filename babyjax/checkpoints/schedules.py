"""When to save a checkpoint of the series: the schedules of the learning-curve literature (Chang et al., Pythia,
Stanford CRFM, BabyLM 2025 words-seen marks; sources in docs/science.md) and any explicit list.

Every schedule includes step 0 (the initialisation, the left end of every learning curve); `series_schedule` also adds
the final step. Step `s` means "the parameters after `s` optimizer updates"; `words_seen_before`/`words_seen_after`
are the cumulative words consumed by updates 1..s-1 and 1..s.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Iterable, Sequence

import ml_collections

from babyjax.errors import InputError

SCHEDULES = ("chang", "pythia", "crfm", "words", "chang_words", "list", "none")


def chang_steps(max_steps: int, s0: float = 100.0, s1: float = 25_000.0, t1: float = 1_000_000.0) -> list[int]:
    """Chang, Tu & Bergen 2023 exponential schedule: `round(s0*t1/(s1-s0) * (exp(n*(s1-s0)/t1) - 1))`, n = 0, 1, ...

    s0 = steps between saves at the start, s1 = steps between saves at step t1. Returns every value <= max_steps
    (defaults up to 1M: 0, 101, 205, 311, 421, ..., 981,536; 222 steps).
    """
    if not (0 < s0 < s1) or t1 <= 0:
        raise InputError(f"chang schedule needs 0 < s0 < s1 and t1 > 0; got s0={s0}, s1={s1}, t1={t1}")
    scale, rate = s0 * t1 / (s1 - s0), (s1 - s0) / t1
    steps: list[int] = []
    n = 0
    while (step := round(scale * math.expm1(n * rate))) <= max_steps:
        if not steps or step != steps[-1]:
            steps.append(step)
        n += 1
    return steps


def pythia_steps(max_steps: int) -> list[int]:
    """Biderman et al. 2023 (Pythia): 0, 1, 2, 4, ..., 512, then every 1,000 (154 steps for 143,000)."""
    early = [0] + [2**i for i in range(10)]
    return sorted({s for s in early if s <= max_steps} | set(range(1000, max_steps + 1, 1000)))


def crfm_steps(max_steps: int) -> list[int]:
    """Stanford CRFM Mistral: every 10 steps to 100, every 50 to 2,000, every 100 to 20,000, every 1,000 after."""
    steps: set[int] = set()
    start = 0
    for every, until in ((10, 100), (50, 2_000), (100, 20_000), (1_000, max(max_steps, 20_000))):
        steps.update(range(start, min(until, max_steps) + 1, every))
        start = until
    return sorted(steps)


def words_marks(max_words: float) -> list[int]:
    """BabyLM 2025 words-seen marks up to `max_words`: 1M..9M by 1M, 10M..90M by 10M, 100M..900M by 100M, 1000M, ..."""
    marks: list[int] = []
    decade = 1_000_000
    while decade <= max_words:
        marks.extend(m * decade for m in range(1, 10) if m * decade <= max_words)
        decade *= 10
    return marks


def words_mark_name(words: int) -> str:
    """Checkpoint name of a words-seen mark, as the BabyLM 2025 pipeline spells it: 1_000_000 -> 'chck_1M'."""
    if words <= 0 or words % 1_000_000:
        raise InputError(f"words-seen marks are positive multiples of 1M; got {words}")
    return f"chck_{words // 1_000_000}M"


def whole_words(words: float) -> int:
    """Words seen as the whole count the marks are compared with: a step's words are sums of each row's share of its
    documents' words (fractions), so an epoch's sum can fall a rounding error short of the words it holds."""
    return round(float(words))


def words_checkpoint_names(index: Sequence[dict], max_words: float) -> dict[str, int]:
    """Maps each BabyLM mark name to the first series step (from an index) whose `words_seen` reaches the mark."""
    entries = sorted(index, key=lambda e: e["step"])
    names: dict[str, int] = {}
    for mark in words_marks(max_words):
        step = next((e["step"] for e in entries if whole_words(e["words_seen"]) >= mark), None)
        if step is not None:
            names[words_mark_name(mark)] = int(step)
    return names


@dataclasses.dataclass(frozen=True)
class StepSchedule:
    """A schedule fixed in advance: save exactly at `steps` (sorted, unique)."""

    steps: tuple[int, ...]
    needs_words: bool = dataclasses.field(default=False, init=False)

    def should_save(
        self, step: int, words_seen_before: float | None = None, words_seen_after: float | None = None
    ) -> bool:
        i = bisect.bisect_left(self.steps, step)
        return i < len(self.steps) and self.steps[i] == step

    def planned_steps(self) -> list[int]:
        return list(self.steps)


@dataclasses.dataclass(frozen=True)
class WordsSchedule:
    """BabyLM 2025 words-seen schedule, decided online: save at the first step whose cumulative words reach a mark.

    Also saves at `always_steps` (sorted: step 0, the final step, and for `chang_words` Chang et al.'s dense series).
    """

    marks: tuple[int, ...]
    always_steps: tuple[int, ...] = (0,)
    needs_words: bool = dataclasses.field(default=True, init=False)

    def due(self, words_seen_before: float, words_seen_after: float) -> list[int]:
        """The marks crossed by a step that took cumulative words from `words_seen_before` to `words_seen_after`."""
        lo = bisect.bisect_right(self.marks, whole_words(words_seen_before))
        hi = bisect.bisect_right(self.marks, whole_words(words_seen_after))
        return list(self.marks[lo:hi])

    def should_save(self, step: int, words_seen_before: float | None, words_seen_after: float | None) -> bool:
        i = bisect.bisect_left(self.always_steps, step)
        if i < len(self.always_steps) and self.always_steps[i] == step:
            return True
        if words_seen_before is None or words_seen_after is None:
            return False
        return bool(self.due(words_seen_before, words_seen_after))

    def planned_steps(self) -> None:
        return None


def _with_ends(steps: Iterable[int], num_steps: int) -> tuple[int, ...]:
    return tuple(sorted({0, num_steps} | {s for s in steps if s <= num_steps}))


def series_schedule(ckpt_cfg: ml_collections.ConfigDict, num_steps: int) -> StepSchedule | WordsSchedule:
    """The series schedule named by `ckpt_cfg.schedule` for a run of `num_steps` steps (steps 0 and num_steps added)."""
    if num_steps < 0:
        raise InputError(f"train.num_steps must be >= 0; got {num_steps}")
    name = ckpt_cfg.schedule
    if name == "chang":
        steps = chang_steps(num_steps, ckpt_cfg.chang_s0, ckpt_cfg.chang_s1, ckpt_cfg.chang_t1)
    elif name == "pythia":
        steps = pythia_steps(num_steps)
    elif name == "crfm":
        steps = crfm_steps(num_steps)
    elif name == "list":
        bad = [s for s in ckpt_cfg.steps if s != int(s) or not 0 <= s <= num_steps]
        if bad:
            raise InputError(f"ckpt.steps must be whole steps in 0..train.num_steps={num_steps}; got {bad[:5]}")
        steps = [int(s) for s in ckpt_cfg.steps]
    elif name in ("words", "chang_words"):  # chang_words: Chang's dense series plus the BabyLM words marks
        dense = (
            [] if name == "words" else chang_steps(num_steps, ckpt_cfg.chang_s0, ckpt_cfg.chang_s1, ckpt_cfg.chang_t1)
        )
        return WordsSchedule(
            marks=tuple(words_marks(ckpt_cfg.words_marks_max)), always_steps=_with_ends(dense, num_steps)
        )
    elif name == "none":
        return StepSchedule(steps=())
    else:
        raise InputError(f"unknown ckpt.schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    return StepSchedule(steps=_with_ends(steps, num_steps))

"""Every series schedule yields the documented steps (docs/science.md, "Checkpoint schedules")."""

import math

import pytest

from babyjax.checkpoints import schedules
from configs import base


def _ckpt_cfg(**overrides):
    cfg = base.get_config().ckpt
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


def test_chang_defaults_match_the_paper():
    steps = schedules.chang_steps(1_000_000)
    assert steps[:5] == [0, 101, 205, 311, 421]
    assert steps[-1] == 981_536
    assert len(steps) == 222
    assert sum(s <= 1_000 for s in steps) == 9
    assert sum(s <= 10_000 for s in steps) == 51
    assert sum(s <= 100_000 for s in steps) == 131
    assert all(a < b for a, b in zip(steps, steps[1:]))
    # the formula itself, at a few n
    for n in (1, 50, 221):
        assert steps[n] == round(100 * 1e6 / 24_900 * math.expm1(n * 24_900 / 1e6))


def test_chang_spacing_grows_from_s0_to_s1():
    steps = schedules.chang_steps(1_000_000)
    assert 100 <= steps[1] - steps[0] <= 102
    gap_at_t1 = steps[-1] - steps[-2]
    assert 20_000 < gap_at_t1 < 25_000


def test_chang_scaled_to_a_short_run():
    steps = schedules.chang_steps(2_000, s0=1, s1=100, t1=2_000)
    assert steps[:4] == [0, 1, 2, 3] and steps[-1] <= 2_000
    assert len(steps) == len(set(steps))


def test_chang_rejects_bad_parameters():
    with pytest.raises(ValueError, match="s0 < s1"):
        schedules.chang_steps(100, s0=10, s1=5)


def test_pythia():
    steps = schedules.pythia_steps(143_000)
    assert len(steps) == 154
    assert steps[:11] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert steps[11:] == list(range(1_000, 143_001, 1_000))
    assert schedules.pythia_steps(5) == [0, 1, 2, 4]


def test_crfm():
    steps = schedules.crfm_steps(25_000)
    expected = (
        list(range(0, 101, 10))
        + list(range(150, 2_001, 50))
        + list(range(2_100, 20_001, 100))
        + list(range(21_000, 25_001, 1_000))
    )
    assert steps == expected
    assert len(steps) == 11 + 38 + 180 + 5
    assert schedules.crfm_steps(120) == list(range(0, 101, 10))


def test_words_marks_and_names():
    marks = schedules.words_marks(1_000_000_000)
    m = 1_000_000
    assert marks == [i * m for i in range(1, 10)] + [i * 10 * m for i in range(1, 10)] + [
        i * 100 * m for i in range(1, 10)
    ] + [1_000 * m]
    names = [schedules.words_mark_name(x) for x in marks]
    assert names[:3] == ["chck_1M", "chck_2M", "chck_3M"]
    assert names[9:11] == ["chck_10M", "chck_20M"] and names[-1] == "chck_1000M"
    assert schedules.words_marks(10_000_000)[-1] == 10 * m
    with pytest.raises(ValueError, match="multiples of 1M"):
        schedules.words_mark_name(1_500_000)


def test_words_schedule_saves_the_first_step_that_reaches_each_mark():
    sched = schedules.series_schedule(_ckpt_cfg(schedule="words", words_marks_max=100_000_000), num_steps=400)
    assert sched.needs_words and sched.planned_steps() is None
    assert sched.due(900_000, 1_100_000) == [1_000_000]
    assert sched.due(1_000_000, 1_500_000) == []  # reached exactly at the previous step
    assert sched.due(0, 2_500_000) == [1_000_000, 2_000_000]
    # an uneven words-per-step sequence: compare with the definition, mark by mark
    words_per_step = [123_457 + 37_000 * (i % 7) for i in range(400)]
    cumulative, saved = [0.0], []
    for step in range(1, 401):
        cumulative.append(cumulative[-1] + words_per_step[step - 1])
        if sched.should_save(step, cumulative[step - 1], cumulative[step]):
            saved.append(step)
    first_reaching = sorted(
        {
            next(s for s in range(1, 401) if cumulative[s] >= mark)
            for mark in schedules.words_marks(100_000_000)
            if cumulative[-1] >= mark
        }
    )
    assert saved == sorted(set(first_reaching) | {400})
    assert sched.should_save(0, 0, 0) and sched.should_save(0, None, None)
    assert not sched.should_save(5, None, None)  # words unknown: only steps 0 and the final step


def test_chang_words_keeps_the_dense_series_and_adds_the_words_marks():
    cfg = _ckpt_cfg(schedule="chang_words", chang_s0=1.0, chang_s1=50.0, chang_t1=400.0, words_marks_max=100_000_000)
    sched = schedules.series_schedule(cfg, num_steps=400)
    dense = schedules.chang_steps(400, 1.0, 50.0, 400.0)
    assert all(sched.should_save(s, None, None) for s in dense) and sched.should_save(400, None, None)
    assert not sched.should_save(int(dense[-1]) - 1, 5.0, 6.0)  # between dense steps, no mark crossed
    assert sched.should_save(int(dense[-1]) - 1, 900_000, 1_100_000)  # a mark crossed between dense steps


def test_strict_config_keeps_a_chang_like_dense_series():
    """Learning curves need Chang et al.'s density: about 221 saves, the last 11 within the last ~22% of training."""
    from configs import strict

    cfg = strict.get_config()
    # its steps are derived from the prepared corpus (10 epochs): here at the estimated 131M tokens per epoch
    num_steps = math.ceil(cfg.data.num_epochs * math.ceil(131_000_000 / cfg.data.seq_len) / cfg.train.batch_size)
    sched = schedules.series_schedule(cfg.ckpt, num_steps)
    assert sched.needs_words  # BabyLM 2025 marks on top
    planned = list(sched.always_steps)
    assert 200 <= len(planned) <= 240 and planned[-1] == num_steps
    assert 1 - planned[-11] / planned[-1] == pytest.approx(0.22, abs=0.03)
    paper = schedules.chang_steps(1_000_000)
    assert 1 - paper[-11] / paper[-1] == pytest.approx(0.22, abs=0.03)


def test_words_checkpoint_names_from_an_index():
    index = [{"step": s, "words_seen": s * 400_000.0} for s in (0, 3, 5, 8, 26)]
    assert schedules.words_checkpoint_names(index, 10_000_000) == {
        "chck_1M": 3,
        "chck_2M": 5,
        "chck_3M": 8,
        **{f"chck_{i}M": 26 for i in range(4, 11)},
    }


@pytest.mark.parametrize(
    "name,num_steps,expected",
    [
        ("chang", 1_000_000, schedules.chang_steps(1_000_000) + [1_000_000]),
        ("pythia", 143_000, schedules.pythia_steps(143_000)),
        ("crfm", 2_345, schedules.crfm_steps(2_345) + [2_345]),
        ("none", 100, []),
    ],
)
def test_series_schedule_from_config(name, num_steps, expected):
    sched = schedules.series_schedule(_ckpt_cfg(schedule=name), num_steps)
    assert sched.planned_steps() == expected
    assert not sched.needs_words
    assert [s for s in range(num_steps + 1) if sched.should_save(s, None, None)] == expected


def test_series_schedule_explicit_list_adds_step_zero_and_the_end():
    sched = schedules.series_schedule(_ckpt_cfg(schedule="list", steps=(50, 10, 10, 30)), 60)
    assert sched.planned_steps() == [0, 10, 30, 50, 60]
    with pytest.raises(ValueError, match="0..train.num_steps=60"):
        schedules.series_schedule(_ckpt_cfg(schedule="list", steps=(10, 70)), 60)
    with pytest.raises(ValueError, match="whole steps"):
        schedules.series_schedule(_ckpt_cfg(schedule="list", steps=(2.5,)), 60)


def test_series_schedule_unknown_name():
    with pytest.raises(ValueError, match="unknown ckpt.schedule 'linear'"):
        schedules.series_schedule(_ckpt_cfg(schedule="linear"), 10)

"""Every config overrides only keys that base.py defines, documents how to run it, and finds its data."""

import importlib
import math
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NAMES = [
    "tiny",
    "bench",
    "strict_small",
    "strict",
    "roberta_tiny",
    "ltg_bert_tiny",
    "gpt_bert_tiny",
    "roberta_strict_small",
    "ltg_bert_strict_small",
    "gpt_bert_strict_small",
]


def _keys(cfg, prefix=""):
    out = set()
    for k, v in cfg.items():
        if hasattr(v, "items"):
            out |= _keys(v, f"{prefix}{k}.")
        else:
            out.add(f"{prefix}{k}")
    return out


@pytest.mark.parametrize("name", NAMES)
def test_config_keys_are_base_keys(name):
    base = importlib.import_module("configs.base").get_config()
    mod = importlib.import_module(f"configs.{name}")
    cfg = mod.get_config()
    assert _keys(cfg) == _keys(base)
    doc = mod.__doc__
    for word in ("Command:", "Hardware:", "Time:"):
        assert word in doc, f"configs/{name}.py docstring lacks {word}"
    assert "launch/train.py" in doc or "benchmarks/" in doc


@pytest.mark.parametrize(
    "name", ["strict_small", "strict", "roberta_strict_small", "ltg_bert_strict_small", "gpt_bert_strict_small"]
)
def test_strict_configs_read_a_release_or_download(name, monkeypatch):
    monkeypatch.delenv("BABYJAX_DATA_DIR", raising=False)
    assert importlib.import_module(f"configs.{name}").get_config().data.dir == ""  # never the packaged sample


def test_base_model_and_objective_sections_are_the_packages_defaults():
    """configs/base.py reads the model and objective defaults from the package (written once there): same keys, same
    values, same types (a ConfigDict override is cast to the type of the default)."""
    from babyjax.model import objectives
    from babyjax.model.transformer import ModelConfig

    base = importlib.import_module("configs.base").get_config()
    typed = lambda d: {k: (type(v), v) for k, v in d.items()}
    assert typed(base.model.to_dict()) == typed(ModelConfig.defaults())
    assert typed(base.objective.to_dict()) == typed(objectives.DEFAULT)
    assert base.objective.kind == "causal" and base.model.num_kv_heads == -1  # the spellings a user reads and sets


# The strict-small corpus as the configs' docstrings estimate it (the real 10M-word release is not on this machine):
# 10M words, ~13.1M tokens with a 16k unigram vocabulary and an EOS per document.
_SS_WORDS, _SS_TOKENS = 10_000_000, 13_100_000


def test_a_plan_over_the_strict_small_cap_is_a_one_line_error():
    from babyjax.data import tracks
    from babyjax.errors import InputError

    base = importlib.import_module("configs.base").get_config()
    assert base.train.allow_over_cap is False
    planned = tracks.planned_words(_SS_WORDS, rows_per_epoch=1000, rows_planned=20_000, num_epochs=None)
    assert planned == 200_000_000  # 20 epochs, as configs/strict_small.py planned before the 2025 rules
    with pytest.raises(InputError) as e:
        tracks.check_words_cap(base.data.track, planned, base.train.allow_over_cap)
    line = str(e.value)
    assert "\n" not in line and "200.0M" in line and "100M" in line and "train.allow_over_cap" in line
    tracks.check_words_cap("strict_small", planned, allow_over_cap=True)  # a deliberate departure
    tracks.check_words_cap("strict_small", 100_000_000, allow_over_cap=False)  # the cap itself is allowed
    assert tracks.planned_words(_SS_WORDS, 1000, 20_000, num_epochs=10) == 100_000_000  # the loader stops at 10


@pytest.mark.parametrize(
    "name, cap",
    [
        ("strict_small", 100_000_000),
        ("roberta_strict_small", 100_000_000),
        ("ltg_bert_strict_small", 100_000_000),
        ("gpt_bert_strict_small", 100_000_000),
        ("strict", 1_000_000_000),
    ],
)
def test_track_configs_plan_within_the_cap_and_save_the_chck_marks(name, cap):
    from babyjax.checkpoints import schedules
    from babyjax.data import tracks

    c = importlib.import_module(f"configs.{name}").get_config()
    assert tracks.WORDS_CAPS[c.data.track] == cap and not c.train.allow_over_cap
    # 10 epochs, each counted as the release's nominal words, the steps derived from the prepared corpus
    assert c.train.num_steps == 0 and c.data.num_epochs == 10 and c.data.words_per_epoch * 10 == cap
    assert c.ckpt.schedule == "chang_words" and c.ckpt.words_marks_max == cap
    scale = 10 if c.data.track == "strict" else 1  # strict: 100M words, ~131M tokens
    for tokens in (_SS_TOKENS * scale, int(_SS_TOKENS * scale * 0.87)):  # the estimate, and a corpus 13% smaller
        rows = math.ceil(tokens / c.data.seq_len)
        num_steps = math.ceil(c.data.num_epochs * rows / c.train.batch_size)  # train/loop.py's _plan
        planned = tracks.planned_words(c.data.words_per_epoch, rows, num_steps * c.train.batch_size, 10)
        assert planned == cap
        tracks.check_words_cap(c.data.track, planned, c.train.allow_over_cap)
        schedule = schedules.series_schedule(c.ckpt, num_steps)
        assert len(schedule.always_steps) > 150  # Chang et al.'s dense series is kept
        # the schedule run at the loader's words per step (a step's rows times an epoch's words per row; the last
        # batch padded): every mark up to the cap saved, at the step that crosses it, the cap at the last step
        words = lambda s, rows=rows: min(s * c.train.batch_size, 10 * rows) * c.data.words_per_epoch / rows
        saved = [s for s in range(num_steps + 1) if schedule.should_save(s, words(s - 1), words(s))]
        crossing = {m: next(s for s in range(num_steps + 1) if round(words(s)) >= m) for m in schedule.marks}
        assert set(crossing.values()) <= set(saved) and set(schedule.always_steps) <= set(saved)
        assert crossing[cap] == num_steps and sorted(crossing.values()) == list(crossing.values())
    if c.data.track == "strict_small":
        names = [schedules.words_mark_name(m) for m in schedule.marks]
        assert names == [f"chck_{n}M" for n in (*range(1, 10), *range(10, 101, 10))]

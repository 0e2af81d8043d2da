"""Every config overrides only keys that base.py defines, documents how to run it, and finds its data."""

import importlib
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

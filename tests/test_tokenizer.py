"""SentencePiece tokenizer: special ids, exact round trip, deterministic training, saved in the run directory."""

import os

import pytest

from babyjax.data import babylm
from babyjax.data import tokenizer as T
from configs.base import get_config


@pytest.fixture(scope="session")
def sources(babylm_sample, tmp_path_factory):
    c = get_config().data
    c.dir, c.tfds_dir, c.max_train_lines = str(babylm_sample), str(tmp_path_factory.mktemp("tfds_tok")), 4000
    return babylm.prepare(c)


def tok_cfg(model_type="unigram", vocab_size=1000, path=""):
    c = get_config().tokenizer
    c.model_type, c.vocab_size, c.path = model_type, vocab_size, path
    return c


@pytest.fixture(scope="session")
def trained(sources, tmp_path_factory):
    return {m: T.get_tokenizer(tok_cfg(m), sources["train"], tmp_path_factory.mktemp(m)) for m in T.MODEL_TYPES}


@pytest.mark.parametrize("model_type", T.MODEL_TYPES)
def test_special_ids_and_exact_round_trip(trained, sources, model_type):
    tok = trained[model_type]
    assert tok.vocab_size == 1000
    assert [tok.id_to_piece(i) for i in range(5)] == [T.PAD, T.UNK, T.BOS, T.EOS, T.MASK]
    assert (T.PAD_ID, T.UNK_ID, T.BOS_ID, T.EOS_ID, T.MASK_ID) == (0, 1, 2, 3, 4)
    dev = list(T.read_texts(sources["dev"], range(len(sources["dev"]))))
    ids = tok.encode_batch(dev)
    assert all(tok.decode(i) == text for i, text in zip(ids, dev))
    assert ids[:50] == [tok.encode(t) for t in dev[:50]]
    assert not any(set(i) & {T.PAD_ID, T.BOS_ID, T.EOS_ID, T.MASK_ID} for i in ids)
    # Unseen characters fall back to bytes: no UNK, still exact.
    odd = "Ünïcødé  漢字\ttab 🙂 "
    assert tok.decode(tok.encode(odd)) == odd and T.UNK_ID not in tok.encode(odd)
    assert len(tok.sha256) == 64


def test_training_is_deterministic(trained, sources, tmp_path):
    again = T.train(sources["train"], tmp_path / "again.model", vocab_size=1000, model_type="unigram")
    assert again.path.read_bytes() == trained["unigram"].path.read_bytes()
    sampled = [
        T.train(sources["train"], tmp_path / f"s{i}.model", vocab_size=800, model_type="bpe", input_sentence_size=1500)
        for i in range(2)
    ]
    assert sampled[0].sha256 == sampled[1].sha256 != trained["bpe"].sha256


def test_get_tokenizer_saves_into_the_run_and_reuses_it(trained, sources, tmp_path):
    run = trained["unigram"].path.parent
    assert os.fspath(trained["unigram"].path) == os.fspath(run / "tokenizer.model")
    mtime = os.stat(run / "tokenizer.model").st_mtime_ns
    again = T.get_tokenizer(tok_cfg("unigram", vocab_size=777), sources["train"], run)  # present: loaded, not trained
    assert again.vocab_size == 1000 and os.stat(run / "tokenizer.model").st_mtime_ns == mtime
    # A tokenizer given by path is copied into a new run directory (the run is self-contained).
    copied = T.get_tokenizer(tok_cfg(path=str(trained["bpe"].path)), None, tmp_path / "run2")
    assert (
        os.fspath(copied.path) == os.fspath(tmp_path / "run2" / "tokenizer.model")
        and copied.sha256 == trained["bpe"].sha256
    )
    with pytest.raises(ValueError, match="differs from tokenizer.path"):
        T.get_tokenizer(tok_cfg(path=str(trained["unigram"].path)), None, tmp_path / "run2")
    assert T.Tokenizer(tmp_path / "run2" / "tokenizer.model").sha256 == trained["bpe"].sha256


def test_bad_tokenizer_input(sources, tmp_path):
    with pytest.raises(ValueError, match="unknown tokenizer.model_type 'wordpiece'"):
        T.get_tokenizer(tok_cfg("wordpiece"), sources["train"], tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        T.Tokenizer(tmp_path / "missing.model")
    with pytest.raises(ValueError, match="empty training split"):
        T.train([], tmp_path / "x.model", vocab_size=100)
    assert not (tmp_path / "tokenizer.model").exists() and not (tmp_path / "x.model").exists()

"""Evaluation sets: the Chang et al. tokens-in-context sample, plain text, and BLiMP / supplement / Zorro pairs."""

import json

import numpy as np
import pytest

from babyjax.commands import evalsets as evalsets_command
from babyjax.data import babylm, evalsets, pipeline
from babyjax.data import tokenizer as T
from babyjax.score.pairs import pair_table
from configs.base import get_config


@pytest.fixture(scope="session")
def setup(babylm_sample, tmp_path_factory):
    c = get_config().data
    c.dir, c.tfds_dir, c.max_train_lines = str(babylm_sample), str(tmp_path_factory.mktemp("tfds_eval")), 2000
    tc = get_config().tokenizer
    tc.vocab_size = 1000
    tok = T.get_tokenizer(tc, babylm.prepare(c)["train"], tmp_path_factory.mktemp("run"))
    return c, tok


def test_token_sample_is_seeded_saved_once_and_excludes_position_zero(setup, tmp_path):
    c, tok = setup
    kw = {"split": "test", "num_sequences": 300, "seq_len": 64, "num_positions": 10}
    s = evalsets.make_token_sample(c, tok, tmp_path / "a.npz", seed=1, **kw)
    assert s.tokens.shape == (300, 64) and s.positions.shape == (300, 10)
    assert s.tokens.dtype == np.int32 and s.positions.dtype == np.int32
    assert np.all(s.positions >= 1) and np.all(s.positions < 64) and np.all(np.diff(s.positions, axis=1) > 0)
    assert not np.any(s.target_ids == T.EOS_ID)
    stream = np.asarray(pipeline.load_split_tokens(c, tok, "test").tokens)
    assert np.array_equal(s.tokens, stream[s.offsets[:, None] + np.arange(64)])
    assert len(set(s.offsets.tolist())) == 300 and np.all(s.offsets % 64 == 0)
    loaded = evalsets.load_token_sample(tmp_path / "a.npz")
    assert np.array_equal(loaded.tokens, s.tokens) and np.array_equal(loaded.positions, s.positions)
    assert loaded.meta["split"] == "test" and loaded.meta["tokenizer_sha256"] == tok.sha256
    json.dumps(loaded.meta)
    # Same seed: the same file, byte for byte; another seed: another sample, and never over the first one.
    evalsets.make_token_sample(c, tok, tmp_path / "b.npz", seed=1, **kw)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    other = evalsets.make_token_sample(c, tok, tmp_path / "c.npz", seed=2, **kw)
    assert not np.array_equal(other.offsets, s.offsets)
    before = (tmp_path / "a.npz").read_bytes()
    with pytest.raises(FileExistsError, match="exists with another sample"):
        evalsets.make_token_sample(c, tok, tmp_path / "a.npz", seed=2, **kw)
    assert (tmp_path / "a.npz").read_bytes() == before
    evalsets.make_token_sample(c, tok, tmp_path / "a.npz", seed=1, **kw)  # same content: fine


def test_token_sample_bad_requests(setup, tmp_path):
    c, tok = setup
    with pytest.raises(ValueError, match="the split holds"):
        evalsets.make_token_sample(c, tok, tmp_path / "x.npz", split="dev", num_sequences=10**7, seq_len=128)
    with pytest.raises(ValueError, match="held-out text"):
        evalsets.make_token_sample(c, tok, tmp_path / "x.npz", split="train", num_sequences=1)
    with pytest.raises(ValueError, match="num_positions"):
        evalsets.make_token_sample(c, tok, tmp_path / "x.npz", split="dev", num_sequences=1, seq_len=8, num_positions=8)
    assert not (tmp_path / "x.npz").exists()


def test_tokens_command_line(setup, tmp_path, capsys):
    c, tok = setup
    run = tmp_path / "run"
    run.mkdir()
    cfg = get_config()
    cfg.data = c
    (run / "config.json").write_text(cfg.to_json())
    (run / "tokenizer.model").write_bytes(tok.path.read_bytes())
    args = [
        "tokens",
        "--workdir",
        str(run),
        "--split",
        "dev",
        "--num_sequences",
        "20",
        "--seq_len",
        "32",
        "--num_positions",
        "4",
        "--seed",
        "3",
    ]
    assert evalsets_command.main([*args, "--out", str(tmp_path / "s.npz")]) == 0
    s = evalsets.load_token_sample(tmp_path / "s.npz")
    ref = evalsets.make_token_sample(
        c, tok, tmp_path / "ref.npz", split="dev", num_sequences=20, seq_len=32, num_positions=4, seed=3
    )
    assert (tmp_path / "s.npz").read_bytes() == (tmp_path / "ref.npz").read_bytes()
    assert s.positions.shape == (20, 4) and s.meta["split"] == "dev" and s.meta["tokenizer_sha256"] == tok.sha256
    assert np.array_equal(s.tokens, ref.tokens)
    capsys.readouterr()
    # Bad input: one line on stderr, exit status 2, the existing sample untouched.
    before = (tmp_path / "s.npz").read_bytes()
    bad = {
        "another seed over an existing sample": [*args[:-1], "4", "--out", str(tmp_path / "s.npz")],
        "no run directory": ["tokens", "--workdir", str(tmp_path / "nope"), "--out", str(tmp_path / "x.npz")],
        "too many sequences": [*args[:3], "--num_sequences", "1000000", "--out", str(tmp_path / "x.npz")],
    }
    for why, argv in bad.items():
        assert evalsets_command.main(argv) == 2, why
        err = capsys.readouterr().err
        assert err.startswith("babyjax.data.evalsets: error: ") and err.count("\n") == 1, (why, err)
    assert (tmp_path / "s.npz").read_bytes() == before and not (tmp_path / "x.npz").exists()
    (run / "config.json").write_text("{not json")
    assert evalsets_command.main([*args, "--out", str(tmp_path / "y.npz")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # a bad flag value: refused before anything is read
        evalsets_command.main(["tokens", "--workdir", str(run), "--out", str(tmp_path / "z.npz"), "--split", "train"])
    assert e.value.code == 2


def test_blimp(shared_data):
    pairs = evalsets.load_pairs(shared_data / "blimp")
    assert len(pairs) == 67_000 and {p.suite for p in pairs} == {"blimp"}
    assert len({p.paradigm for p in pairs}) == 67
    # BLiMP's files spell one field both ways; it is read as one, spelled as the official pipeline spells it.
    raw = {json.loads(line)["field"] for f in (shared_data / "blimp").glob("*.jsonl") for line in f.open()}
    assert {"syntax_semantics", "syntax/semantics"} <= raw
    assert {p.field for p in pairs} == {"morphology", "syntax", "semantics", "syntax/semantics"}
    paradigms: dict[str, set[str]] = {}
    for p in pairs:
        paradigms.setdefault(p.field, set()).add(p.paradigm)
    assert len(paradigms["syntax/semantics"]) == 14 and sum(map(len, paradigms.values())) == 67
    first = json.loads((shared_data / "blimp" / "wh_island.jsonl").read_text().splitlines()[5])
    p = [p for p in pairs if p.paradigm == "wh_island"][5]
    assert (p.good, p.bad, p.phenomenon, p.pair_id) == (
        first["sentence_good"],
        first["sentence_bad"],
        first["linguistics_term"],
        str(first["pairID"]),
    )


def test_blimp_field_is_one_in_the_scored_pair_table(setup, shared_data):
    # 60 pairs per paradigm: 60 spelled `syntax/semantics` and 780 `syntax_semantics` in the files, one field of 840.
    _, tok = setup
    ev = evalsets.load_pair_set([str(shared_data / "blimp")], tok, limit=60)
    seq = np.concatenate([np.full(len(ids), i) for i, ids in enumerate(ev.token_ids)])
    surprisal = (seq % 2).astype(np.float32)  # every good sentence scores lower: 0 bits against 1 a token
    table = pair_table(surprisal, seq, ev.sequences)
    fields = table.groupby("field")["n"].sum()
    assert fields.to_dict() == {"morphology": 1080, "semantics": 540, "syntax": 1560, "syntax/semantics": 840}
    assert set(ev.sequences["field"]) == set(fields.index) and (table["correct"] == table["n"]).all()


def test_zorro_odd_lines_bad_even_lines_good(shared_data, tmp_path):
    pairs = evalsets.load_pairs(shared_data / "zorro")
    assert len(pairs) == 23 * 2000 and len({p.paradigm for p in pairs}) == 23
    f = shared_data / "zorro" / "filler-gap-wh_question_object.txt"
    lines = f.read_text().splitlines()
    p = [p for p in pairs if p.paradigm == f.stem]
    assert (p[0].bad, p[0].good) == (lines[0], lines[1]) and (p[7].bad, p[7].good) == (lines[14], lines[15])
    assert p[0].field == p[0].phenomenon == "filler-gap" and p[0].suite == "zorro"
    (tmp_path / "case-odd.txt").write_text("a b .\nb a .\nc d .\n")
    with pytest.raises(ValueError, match="odd number of sentences"):
        evalsets.load_zorro(tmp_path / "case-odd.txt")


def test_blimp_supplement_format(tmp_path):
    d = tmp_path / "supplement_filtered"
    d.mkdir()
    rows = [
        {"sentence_good": "A: Is it raining?\nB: Yes, it is.", "sentence_bad": "A: Is it raining?\nB: Yes, I am."},
        {"sentence_good": "Did he leave?", "sentence_bad": "Did he left?"},
    ]
    (d / "turn_taking.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    (d / "hypernym.jsonl").write_text(json.dumps({**rows[1], "UID": "hypernym", "field": "semantics"}) + "\n")
    pairs = evalsets.load_pairs(d)
    assert [(p.suite, p.paradigm, p.field, p.pair_id) for p in pairs] == [
        ("blimp_supplement", "hypernym", "semantics", "0"),
        ("blimp_supplement", "turn_taking", "turn_taking", "0"),
        ("blimp_supplement", "turn_taking", "turn_taking", "1"),
    ]
    assert pairs[1].good == rows[0]["sentence_good"]
    (d / "broken.jsonl").write_text('{"sentence_good": "x"\n')
    with pytest.raises(ValueError, match="broken.jsonl:1 is not valid JSON"):
        evalsets.load_pairs(d, "blimp_supplement")
    with pytest.raises(ValueError, match="unknown minimal-pair suite"):
        evalsets.load_pairs(d, suite="cola")


def test_plain_text(tmp_path):
    (tmp_path / "a.txt").write_text("first line\n\n  \nsecond line\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("other\n", encoding="utf-8")
    texts = evalsets.load_texts(tmp_path)
    assert [(t.source, t.line, t.text) for t in texts] == [
        ("a.txt", 0, "first line"),
        ("a.txt", 3, "second line"),
        ("b.txt", 0, "other"),
    ]
    (tmp_path / "c.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(ValueError, match="c.txt is not UTF-8"):
        evalsets.load_texts(tmp_path)
    with pytest.raises(FileNotFoundError):
        evalsets.load_texts(tmp_path / "nothing")


def test_a_file_that_is_not_a_token_sample_is_one_line(tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    (tmp_path / "notes.md").write_text("not numpy")
    for name in ("empty.npz", "other.npz", "notes.md"):
        with pytest.raises(ValueError, match=r"is not a token sample \(.*\): make one with python -m babyjax"):
            evalsets.load_tokens(str(tmp_path / name))
    for path in (tmp_path / "nope.npz", tmp_path):
        with pytest.raises(FileNotFoundError, match="no token sample at"):
            evalsets.load_tokens(str(path))
    sample = evalsets.TokenSample(
        tokens=np.zeros((2, 8), np.int32), positions=np.ones((2, 1), np.int32), offsets=np.zeros(2, np.int64), meta={}
    )
    with pytest.raises(ValueError, match="is a folder: give a file for the sample"):
        sample.save(tmp_path)
    assert len(evalsets.load_tokens(str(sample.save(tmp_path / "s.npz"))).token_ids) == 2  # written, read back

"""Grain pipeline: packing invariants, determinism, exact resume, per-process sharding, global arrays, dev padding."""

import json
import math

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec

from babyjax.data import babylm, pipeline
from babyjax.data import tokenizer as T
from configs.base import get_config

SEQ_LEN, BATCH = 32, 8


@pytest.fixture(scope="session")
def setup(babylm_sample, tmp_path_factory):
    """A capped sample (3,000 training lines), a 1,000-piece tokenizer, and the data config."""
    c = get_config().data
    c.dir, c.tfds_dir = str(babylm_sample), str(tmp_path_factory.mktemp("tfds"))
    c.max_train_lines, c.seq_len = 3000, SEQ_LEN
    sources = babylm.prepare(c)
    tc = get_config().tokenizer
    tc.vocab_size = 1000
    tok = T.get_tokenizer(tc, sources["train"], tmp_path_factory.mktemp("run"))
    return c, tok, sources


def loader(setup, split="train", packing="pack", seed=0, **kw):
    c, tok, _ = setup
    c = c.copy_and_resolve_references()
    c.packing = packing
    kw.setdefault("global_batch_size", BATCH)
    return pipeline.make_loader(c, tok, split=split, seed=seed, **kw)


def take(it, n):
    return [b for _, b in zip(range(n), it)]


def same(a, b):
    return all(np.array_equal(np.asarray(x[k]), np.asarray(y[k])) for x, y in zip(a, b, strict=True) for k in x)


def epoch(setup, **kw):
    ld = loader(setup, num_epochs=1, **kw)
    return ld, list(ld)


def test_stream_is_every_document_after_an_eos(setup):
    _, tok, sources = setup
    data = pipeline.load_split_tokens(setup[0], tok, "train")
    texts = list(T.read_texts(sources["train"], range(len(sources["train"]))))
    assert data.num_docs == len(texts) == 3000
    for d in [0, 1, 1234, 2999]:
        doc = np.asarray(data.tokens[data.doc_starts[d] : data.doc_starts[d + 1]])
        assert doc[0] == T.EOS_ID and tok.decode(doc[1:]) == texts[d]
    assert data.num_words == sum(len(t.split()) for t in texts)


@pytest.mark.parametrize("packing", ["pack", "chunk"])
def test_one_epoch_holds_every_token_once_and_never_attends_across_documents(setup, packing):
    ld, batches = epoch(setup, packing=packing, shuffle=False)
    data = ld.data
    stream = np.asarray(data.tokens).astype(np.int32)
    doc_of = np.searchsorted(data.doc_starts, np.arange(data.num_tokens), side="right") - 1
    cat = lambda k: np.concatenate([b[k] for b in batches])
    inputs, targets, seg, pos, w = (cat(k) for k in ("inputs", "targets", "segment_ids", "positions", "weights"))
    assert len(batches) == math.ceil(ld.num_rows / BATCH) and inputs.shape[1] == SEQ_LEN
    real = seg > 0
    # Unshuffled rows are the stream in order: every token is an input exactly once, nothing else is.
    assert np.array_equal(inputs[real], stream) and real.sum() == data.num_tokens
    assert np.array_equal(targets[real][:-1], stream[1:]) and np.all(inputs[~real] == T.PAD_ID)
    assert cat("num_tokens").sum() == data.num_tokens
    np.testing.assert_allclose(cat("num_words").sum(), data.num_words, rtol=1e-6)
    docs = np.full(inputs.shape, -1)
    docs[real] = doc_of
    tdocs = np.full(inputs.shape, -1)
    tdocs[real] = np.append(doc_of[1:], -2)
    if packing == "pack":
        # The attention mask the model builds from segment ids joins two real tokens exactly when they belong to
        # the same document (and never joins padding).
        for r in range(inputs.shape[0]):
            s, d, m = seg[r], docs[r], real[r]
            mask = (s[:, None] == s[None, :]) & (s[:, None] > 0)
            assert np.array_equal(mask[np.ix_(m, m)], d[m][:, None] == d[m][None, :])
            assert not mask[~m].any()
        # Positions restart at each segment; a segment that is not a row's first starts with EOS.
        starts = real & (pos == 0)
        assert np.all(inputs[starts & (np.arange(SEQ_LEN) > 0)] == T.EOS_ID)
        cont = (np.diff(seg, axis=1) == 0) & real[:, 1:]
        assert np.all(np.diff(pos, axis=1)[cont] == 1) and np.all(pos[:, 1:][~cont & real[:, 1:]] == 0)
        # A target never crosses a document start, except the EOS that ends a document: that one is learned.
        ends = real & (tdocs >= 0) & (docs != tdocs)
        assert np.all(targets[ends] == T.EOS_ID) and ends.sum() == data.num_docs - 1
        assert np.array_equal(w > 0, real & (tdocs >= 0)) and np.all(w[ends] > 0)
    else:
        assert np.all(seg[real] == 1) and np.array_equal(pos, np.broadcast_to(np.arange(SEQ_LEN), pos.shape))
        assert np.array_equal(w > 0, real & (tdocs >= 0))


def test_shuffled_epochs_are_permutations_of_the_same_rows(setup):
    _, plain = epoch(setup, shuffle=False)
    ld = loader(setup, shuffle=True, num_epochs=2)
    batches = list(ld)
    n = ld.num_rows  # the last batch of each pass is padded: rows past n are padding
    unshuffled = np.concatenate([b["inputs"] for b in plain])[:n]
    both = np.concatenate([b["inputs"] for b in batches])
    first, second = both[:n], both[n : 2 * n]
    assert sorted(map(bytes, unshuffled)) == sorted(map(bytes, first)) == sorted(map(bytes, second))
    assert not np.array_equal(first, second)  # reshuffled each epoch
    assert not np.array_equal(first, unshuffled)


def test_same_seed_same_batches_other_seed_other_batches(setup):
    a, b, c = (take(loader(setup, seed=s), 6) for s in (7, 7, 8))
    assert same(a, b)
    assert not np.array_equal(a[0]["inputs"], c[0]["inputs"])


@pytest.mark.parametrize("packing", ["pack", "chunk"])
def test_restored_state_yields_exactly_the_uninterrupted_batches(setup, packing):
    kw = {"packing": packing, "seed": 3, "global_batch_size": 64}
    full = take(loader(setup, **kw), 45)
    first = loader(setup, **kw)
    assert 20 < first.steps_per_epoch < 45  # the resumed part crosses an epoch boundary
    take(first, 20)
    state = json.loads(json.dumps(first.get_state()))
    resumed = loader(setup, **kw)
    resumed.set_state(state)
    assert same(take(resumed, 25), full[20:])
    with pytest.raises(ValueError, match="does not match"):
        loader(setup, packing=packing, seed=4).set_state(state)


def test_two_processes_read_disjoint_halves_of_every_global_batch(setup):
    whole = list(loader(setup, num_epochs=1, seed=5))
    parts = [list(loader(setup, num_epochs=1, seed=5, process_index=p, process_count=2)) for p in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(whole)
    for g, p0, p1 in zip(whole, *parts):
        assert p0["inputs"].shape == (BATCH // 2, SEQ_LEN)
        for k in g:
            assert np.array_equal(np.concatenate([p0[k], p1[k]]), g[k])
    rows = [{bytes(r) for b in part for r, n in zip(b["inputs"], b["num_tokens"]) if n} for part in parts]
    assert not rows[0] & rows[1]
    assert sum(b["num_tokens"].sum() for part in parts for b in part) == sum(b["num_tokens"].sum() for b in whole)
    with pytest.raises(ValueError, match="split evenly over 3 processes"):
        loader(setup, process_index=0, process_count=3)


def test_global_arrays_on_a_mesh_match_the_numpy_batches(setup):
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2, 1), ("data", "fsdp", "tensor"))
    ref = take(loader(setup, seed=1), 2)
    got = take(loader(setup, seed=1, mesh=mesh), 2)
    for r, g in zip(ref, got):
        for k in r:
            assert isinstance(g[k], jax.Array) and g[k].sharding.spec == PartitionSpec(("data", "fsdp"))
            assert g[k].shape == r[k].shape and np.array_equal(np.asarray(g[k]), r[k])
    with pytest.raises(ValueError, match="multiple of the mesh's batch shards"):
        loader(setup, mesh=mesh, global_batch_size=12)


def test_dev_loader_is_one_padded_pass(setup):
    ld, batches = epoch(setup, split="dev", shuffle=False)
    assert len(batches) == ld.steps_per_epoch == math.ceil(ld.num_rows / BATCH)
    last = batches[-1]
    pad_rows = BATCH * len(batches) - ld.num_rows
    assert pad_rows > 0 and np.all(last["weights"][BATCH - pad_rows :] == 0)
    assert np.all(last["num_tokens"][BATCH - pad_rows :] == 0) and np.all(last["segment_ids"][BATCH - pad_rows :] == 0)
    assert sum(b["num_tokens"].sum() for b in batches) == len(ld.data.tokens)  # each token of the stream once


def test_token_cache_is_reused_and_bad_settings_are_refused(setup):
    ld = loader(setup)
    cache = ld.data.cache_dir
    assert cache is not None and (cache / "tokens.npy").exists()
    mtime = (cache / "tokens.npy").stat().st_mtime_ns
    assert loader(setup).data.cache_dir == cache and (cache / "tokens.npy").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="unknown data.packing 'packed'"):
        loader(setup, packing="packed")
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        loader(setup, split="validation")


@pytest.mark.parametrize("packing", ["pack", "chunk"])
def test_host_totals_are_the_global_batch_sums_on_every_process(setup, packing):
    """Tokens and words seen are counted on the host: each process's totals are the sums of num_tokens (input tokens,
    padding excluded: not loss targets, which leave out each row's last token and, packed, each document's last)
    and num_words over the whole global batch, its own rows and the other processes' alike."""
    whole = loader(setup, num_epochs=1, seed=3, packing=packing)
    parts = [loader(setup, num_epochs=1, seed=3, packing=packing, process_index=p, process_count=2) for p in range(2)]
    for _ in range(whole.steps_per_epoch):
        batch, (tokens, words) = whole.next_with_totals()
        assert tokens == batch["num_tokens"].sum() == (batch["segment_ids"] > 0).sum()
        assert tokens >= batch["weights"].sum() and words == pytest.approx(batch["num_words"].astype(float).sum())
        for part in parts:
            assert part.next_with_totals()[1] == (tokens, words)


WORKERS = """
import json, sys
import ml_collections
import numpy as np
from absl import flags
from babyjax.data import pipeline, tokenizer

if __name__ == "__main__":  # Grain's workers start by spawn: they import this file again
    c = ml_collections.ConfigDict(json.loads(sys.argv[1]))
    tok = tokenizer.Tokenizer(sys.argv[2])
    batches = {}
    for workers in (0, 2):
        c.worker_count = workers
        it = pipeline.make_loader(c, tok, split="train", global_batch_size=8, seed=2)
        batches[workers] = [next(it) for _ in range(3)]
    assert all(np.array_equal(a[k], b[k]) for a, b in zip(batches[0], batches[2]) for k in a)
    print(json.dumps({"parsed": flags.FLAGS.is_parsed(), "batches": len(batches[2])}))
"""


def test_worker_processes_load_outside_absl_and_parse_no_flags(setup, tmp_path):
    """A fresh interpreter that never ran absl.app (a notebook, a test): Grain's worker processes give the same
    batches as the loader in process, and absl's FLAGS are still unparsed after."""
    import subprocess
    import sys

    script = tmp_path / "workers.py"
    script.write_text(WORKERS)
    c, tok, _ = setup
    r = subprocess.run(
        [sys.executable, str(script), c.to_json(), str(tok.path)], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"parsed": False, "batches": 3}

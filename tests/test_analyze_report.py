"""python -m babyjax.analyze on a synthetic score output in the documented layout (docs/architecture.md)."""

import importlib
import json

import numpy as np
import pandas as pd
import pytest

from babyjax.commands import analyze
from babyjax.score.store import load_score_output


def exp_steps(max_steps=3000, s0=10.0, s1=400.0, t1=3000.0):
    out, n = [], 0
    while (s := round(s0 * t1 / (s1 - s0) * (np.exp(n * (s1 - s0) / t1) - 1))) <= max_steps:
        out.append(s)
        n += 1
    return np.array(sorted(set(out)))


@pytest.fixture(scope="module")
def study(tmp_path_factory, babylm_sample, shared_data):
    import sentencepiece as spm

    root = tmp_path_factory.mktemp("study")
    lines = (babylm_sample / "babylm_10M" / "aochildes.train").read_text().splitlines()[:3000]
    runs_dir = root / "runs"
    for run in ("seed0", "seed1"):
        rd = runs_dir / run
        rd.mkdir(parents=True)
        if run == "seed0":
            (root / "train.txt").write_text("\n".join(lines))
            spm.SentencePieceTrainer.train(
                input=str(root / "train.txt"),
                model_prefix=str(rd / "tokenizer"),
                vocab_size=400,
                model_type="unigram",
                pad_id=0,
                unk_id=1,
                bos_id=2,
                eos_id=3,
                user_defined_symbols=["<mask>"],
                minloglevel=2,
            )
        else:
            (rd / "tokenizer.model").write_bytes((runs_dir / "seed0" / "tokenizer.model").read_bytes())
        cfg = importlib.import_module("configs.base").get_config()  # a run's config.json, as babyjax.train.loop writes
        cfg.data.dir, cfg.data.tfds_dir, cfg.data.max_train_lines = str(babylm_sample), str(root / "tfds"), 3000
        cfg.tokenizer.vocab_size, cfg.model.d_model, cfg.model.num_layers, cfg.model.mlp_dim = 400, 32, 2, 64
        cfg.model.num_heads = 2
        (rd / "config.json").write_text(cfg.to_json_best_effort())
        steps_m = np.arange(0, 3001, 100)
        with open(rd / "metrics.jsonl", "w") as f:
            for s in steps_m:
                f.write(
                    json.dumps(
                        {
                            "step": int(s),
                            "loss": 6 * np.exp(-s / 800) + 2.5,
                            "dev_loss": (6 * np.exp(-s / 800) + 2.7) if s % 500 == 0 else None,
                        }
                    )
                    + "\n"
                )
            if run == "seed1":  # resumed from step 2000: the repeated steps replace the first ones; killed mid-line
                for s in steps_m[steps_m >= 2000]:
                    f.write(json.dumps({"step": int(s), "loss": 99.0, "dev_loss": None}) + "\n")
                f.write('{"step": 3100, "lo')
    # the runs trained on this machine, so their dataset is prepared (the analysis never prepares one)
    importlib.import_module("babyjax.data.babylm").prepare(cfg.data)
    (runs_dir / "seed0" / "generations.json").write_text(
        json.dumps({"0": {"the dog": "the the the"}, "3000": {"the dog": "the dog is in the garden ."}})
    )

    sp = spm.SentencePieceProcessor(model_file=str(runs_dir / "seed0" / "tokenizer.model"))
    dev = (babylm_sample / "babylm_dev" / "aochildes.dev").read_text().splitlines()
    # the token sample (babyjax.data.evalsets layout): the EOS-separated dev stream in rows of 24; targets at the
    # first 16 positions of each row
    stream = np.concatenate([sp.encode(line) + [3] for line in dev[:400]])
    sample_rows = stream[: 80 * 24].reshape(80, 24).astype(np.int32)
    rows = [
        {
            "index": 16 * seq + pos,
            "seq": seq,
            "position": pos,
            "token_id": int(sample_rows[seq, pos]),
            "token": sp.id_to_piece(int(sample_rows[seq, pos])),
            "context_length": pos + 1,
        }
        for seq in range(80)
        for pos in range(16)
    ]
    tokens = pd.DataFrame(rows)
    np.savez(root / "dev_tokens.npz", tokens=sample_rows)
    steps = exp_steps()
    assert 28 <= len(steps) <= 40
    freq = np.bincount(np.concatenate([sp.encode(x) for x in lines[:2000]]), minlength=400) + 1
    logf = np.log10(freq[tokens["token_id"]])
    out = root / "score_tokens"
    (out / "runs").mkdir(parents=True)
    rng = np.random.default_rng(0)
    x = np.log10(np.maximum(steps, 1))[:, None]
    for run in ("seed0", "seed1"):
        chance = np.log2(400)
        end = 9 - 1.5 * logf + rng.normal(0, 0.3, len(tokens))
        xmid = 3.2 - 0.4 * logf
        s = chance + (end - chance) / (1 + np.exp((xmid - x) / 0.25)) + rng.normal(0, 0.4, (len(steps), len(tokens)))
        s[-1] = np.nan  # last checkpoint not scored yet
        (out / "runs" / run).mkdir()
        np.save(out / "runs" / run / "surprisal.npy", s.astype(np.float32))
        pd.DataFrame(
            {
                "step": steps,
                "tokens_seen": steps * 4096,
                "words_seen": steps * 3000,
                "wall_time": steps * 0.1,
                "params_hash": "h",
                "status": ["done"] * (len(steps) - 1) + ["pending"],
            }
        ).to_csv(out / "runs" / run / "checkpoints.csv", index=False)
    tokens.to_csv(out / "tokens.csv", index=False)
    (out / "meta.json").write_text(
        json.dumps(
            {
                "kind": "tokens",
                "log_base": 2,
                "unit": "bits",
                "eval_set": str(root / "dev_tokens.npz"),
                "eval_hash": "x",
                "first_token_policy": "eot_context",
                "vocab_size": 400,
                "runs": ["seed0", "seed1"],
                "tokenizer_hash": "t",
            }
        )
    )
    pairs_out = root / "score_pairs"
    pairs_out.mkdir()
    prow = []
    for run in ("seed0", "seed1"):
        for step in steps[::4]:
            for field, para in [
                ("syntax", "anaphor_agreement"),
                ("morphology", "irregular_forms"),
                ("semantics", "npi"),
            ]:
                acc = 0.5 + 0.4 * (1 - np.exp(-step / 1000)) * (0.5 if field == "semantics" else 1)
                prow.append(
                    {
                        "run": run,
                        "step": int(step),
                        "words_seen": int(step * 3000),
                        "suite": "blimp",
                        "paradigm": para,
                        "field": field,
                        "n": 1000,
                        "correct": int(acc * 990),
                        "ties": 10,
                        "accuracy": acc,
                    }
                )
    pd.DataFrame(prow).to_csv(pairs_out / "pairs.csv", index=False)
    (pairs_out / "meta.json").write_text(
        json.dumps({"kind": "pairs", "log_base": 2, "unit": "bits", "vocab_size": 400, "runs": ["seed0", "seed1"]})
    )
    return root, out, pairs_out, runs_dir, shared_data / "aoa" / "word_list.csv"


def test_report_end_to_end(study, capsys):
    root, tok_out, pairs_out, runs_dir, aoa = study
    rep = root / "report"
    rc = analyze.main(
        [
            str(tok_out),
            str(pairs_out),
            "--out",
            str(rep),
            "--runs-dir",
            str(runs_dir),
            "--aoa-words",
            str(aoa),
            "--x-axis",
            "tokens",
            "--no-progress",
        ]
    )
    assert rc == 0
    text = (rep / "report.md").read_text()
    for section in [
        "## Token learning curves",
        "### Measures (Chang",
        "### Example learning curves",
        "### Trajectory classes (Xia",
        "### Measures vs. frequency",
        "### Word acquisition",
        "## Minimal pairs",
        "## Training loss",
        "## Generated text at checkpoints",
        "## Notes",
    ]:
        assert section in text, section
    assert "the dog is in the garden" in text and "not scored yet" in text
    # Xia et al.: both runs compared at five shared validation-perplexity levels, with their pair accuracy there
    eq = pd.read_csv(rep / "score_tokens_equal_perplexity.csv")
    assert "## Runs at equal validation perplexity" in text and len(eq) == 10 and set(eq["run"]) == {"seed0", "seed1"}
    assert eq["step"].notna().all() and eq["pair_accuracy"].between(0.5, 1).all()
    np.testing.assert_allclose(eq["tokens_seen"], eq["step"] * 4096, rtol=1e-9)
    # every measure with its definition and the released code it matches; the frequency effect at the type level
    assert "## Measures and their references" in text and "formula_utils.py compute_aoa_vals" in text
    assert "rho (types)" in text and "bootstrap resamples of token types and sequences" in text
    for png in [
        "score_tokens_example_curves.png",
        "score_tokens_xia_shares.png",
        "score_tokens_measures_vs_frequency.png",
        "pairs_accuracy.png",
        "training_loss.png",
    ]:
        assert (rep / png).stat().st_size > 5000, png
        assert f"]({png})" in text
    table = pd.read_csv(rep / "score_tokens_token_table.csv.gz")
    assert table["cross_run_var"].notna().all() and table["aoa_gam"].notna().all()
    rank = pd.read_csv(rep / "score_tokens_spearman.csv").set_index(["measure", "predictor"])
    # synthetic curves follow Chang et al.'s direction: frequent tokens end lower and are acquired earlier
    assert rank.loc[("final_surprisal", "unigram"), "spearman_rho"] < -0.3
    assert rank.loc[("aoa_gam", "unigram"), "spearman_rho"] < -0.3
    # n-grams come from exactly the run's training stream (babyjax.data.pipeline), documents split at EOS
    import ml_collections

    from babyjax.data.pipeline import load_split_tokens
    from babyjax.data.tokenizer import Tokenizer

    cfg = ml_collections.ConfigDict(json.loads((runs_dir / "seed0" / "config.json").read_text()))
    split = load_split_tokens(cfg.data, Tokenizer(runs_dir / "seed0" / "tokenizer.model"), "train")
    assert f"training data ({split.num_tokens - split.num_docs:,} tokens;" in text
    # Chang & Bergen's occurrences: 8+ per word, each with 7+ tokens of context
    wdf = pd.read_csv(rep / "score_tokens_word_aoa.csv")
    assert len(wdf) and (wdf["n_occurrences"] >= 8).all() and wdf["model_aoa"].notna().any()


def test_corpus_named_by_its_folder_and_release_layout(tmp_path, babylm_sample):
    import ml_collections

    from babyjax.analysis import sections
    from babyjax.analysis.sections import corpus_text
    from babyjax.data import babylm

    def data(folder, lines=-1, track="strict_small"):
        return ml_collections.ConfigDict({"dir": str(folder), "track": track, "max_train_lines": lines})

    def laid_out(root, train, dev, test, domains):
        for sub, suffix in ((train, "train"), (dev, "dev"), (test, "test")):
            (root / sub).mkdir(parents=True)
            for d in domains:
                (root / sub / f"{d}.{suffix}").write_text("a line\n")

    r24 = tmp_path / "babylm_2025"
    domains24 = ["bnc_spoken", "childes", "gutenberg", "open_subtitles", "simple_wiki", "switchboard"]
    laid_out(r24, "train_10M", "dev", "test", domains24)
    assert corpus_text(data(r24)) == f"BabyLM 2024+ strict_small (folder {r24})"
    r23 = tmp_path / "babylm_2023"  # the 2023 zip unpacks into babylm_data/, found one level below the folder named
    domains23 = ["aochildes", "bnc_spoken", "cbt", "children_stories", "gutenberg", "open_subtitles", "qed"]
    domains23 += ["simple_wikipedia", "switchboard", "wikipedia"]
    laid_out(r23 / "babylm_data", "babylm_10M", "babylm_dev", "babylm_test", domains23)
    assert corpus_text(data(r23, 3000)) == f"BabyLM 2023 strict_small, first 3,000 lines (folder {r23})"
    other = tmp_path / "held_out"  # another corpus laid out as a release
    laid_out(other, "train_10M", "dev", "test", ["novels"])
    assert (
        corpus_text(data(other)) == f"folder {other}: strict_small in the BabyLM 2024+ layout, not a release (novels)"
    )
    # the report's study table: a run trained on the shared sample (2023 layout, 4 domains) is not called a release
    cfg = importlib.import_module("configs.base").get_config()
    cfg.data.dir, cfg.data.max_train_lines = str(babylm_sample), 3000
    run = tmp_path / "runs" / "seed0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(cfg.to_json_best_effort())
    (run / "checkpoints" / "series.json").write_text(json.dumps([{"step": 10, "words_seen": 5e3, "tokens_seen": 7e3}]))
    notes = []
    table = "\n".join(sections.study_section([], tmp_path / "runs", ["seed0"], notes))
    corpus = f"folder {babylm_sample}: strict_small in the BabyLM 2023 layout, not a release "
    assert f"| seed0 | {corpus}(aochildes, cbt, children_stories, switchboard), first 3,000 lines |" in table
    assert "BabyLM strict_small" not in table and not notes
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.txt").write_text("some text\n")
    for folder, track in ((plain, "strict_small"), (tmp_path / "gone", "strict_small"), (r24, "strict")):
        assert corpus_text(data(folder, track=track)) == (
            f"{track} text of folder {folder} (no BabyLM release layout found there now)"
        )
    sample = babylm.sample_release(tmp_path / "cache")
    assert corpus_text(data(sample)) == f"packaged BabyLM sample, 2023 layout (cbt, children_stories) (folder {sample})"
    assert corpus_text(data("")) == (
        "strict_small of $BABYJAX_DATA_DIR at training, else the official BabyLM 2023 download (no data.dir)"
    )


def test_model_cost_counts_the_runs_model(tmp_path):
    """The report's x axis in FLOPs: a run's parameters, counted by hand and in its initialised model, and its
    training FLOPs per token, PaLM's appendix B by hand: 6 x the matmul parameters + 12 x layers x d_attn x context."""
    import jax
    from flax import nnx

    from babyjax.analysis.sections import model_cost
    from babyjax.model import transformer as model

    cfg = importlib.import_module("configs.base").get_config()
    cfg.model.style, cfg.model.tie_embeddings, cfg.data.seq_len = "llama", False, 48
    cfg.model.num_layers, cfg.model.d_model, cfg.model.mlp_dim = 2, 64, 96
    cfg.model.num_heads, cfg.model.num_kv_heads = 8, 4
    (tmp_path / "config.json").write_text(cfg.to_json_best_effort())
    vocab, layers, d, heads, kv_heads, head_dim, mlp, context = 1000, 2, 64, 8, 4, 8, 96, 48
    matmuls = d * heads * head_dim * 2 + d * kv_heads * head_dim * 2 + 3 * d * mlp  # q, o; k, v; gate, up, down
    norms = 2 * d  # RMSNorm scales before attention and before the MLP
    per_token, num_params = model_cost(tmp_path, vocab)
    assert num_params == vocab * d + layers * (matmuls + norms) + d + d * vocab  # embed, blocks, final norm, head
    real = model.Transformer(model.ModelConfig.from_config(cfg.model, vocab), rngs=nnx.Rngs(0))
    assert num_params == sum(x.size for x in jax.tree.leaves(nnx.state(real, nnx.Param)))
    assert per_token == pytest.approx(6 * (layers * matmuls + d * vocab) + 12 * layers * heads * head_dim * context)
    assert model_cost(tmp_path / "missing", vocab) is None


def test_word_occurrences_follow_chang_bergen():
    """word_evaluation.py's get_sample_sentences: the exact piece "▁dog" (not "▁Dog", not "dog"), with 7+
    tokens before it, one per sequence, the first 512 sequences; words with fewer than 8 get no curve."""
    from babyjax.analysis import words

    tokens = pd.DataFrame(
        {
            "seq": [0, 0, 0, 1, 2, 3, 4],
            "position": [7, 9, 3, 6, 12, 8, 8],
            "token": ["\u2581dog", "\u2581dog", "\u2581dog", "\u2581dog", "\u2581Dog", "dog", "\u2581dog"],
        }
    )
    occ = words.word_occurrences(tokens, {"dog"})
    assert sorted(occ["seq"]) == [0, 4] and set(occ["word"]) == {"dog"}  # one of rows 0/1; rows 2, 3 lack context
    many = pd.DataFrame({"seq": np.arange(600), "position": 7, "token": "\u2581dog"})
    occ = words.word_occurrences(many, {"dog"})
    assert occ["seq"].tolist() == list(range(words.MAX_OCCURRENCES))
    s = np.random.default_rng(0).random((5, 600))
    names, c = words.word_curves(s, words.word_occurrences(many.iloc[:8], {"dog"}))
    assert names == ["dog"] and np.allclose(c[:, 0], s[:, :8].mean(1))
    assert words.word_curves(s, words.word_occurrences(many.iloc[:7], {"dog"}))[0] == []


def test_word_aoa_nan_in_one_word_keeps_the_others():
    from babyjax.analysis import words

    steps = exp_steps()
    x = np.log10(np.maximum(steps, 1))
    chance = np.log2(400)
    names = ["dog", "cat", "ball"]
    tokens = pd.DataFrame(
        {"seq": np.arange(24), "position": 7, "token": [f"\u2581{w}" for w in names for _ in range(8)]}
    )
    child = pd.DataFrame({"word": names, "child_aoa": [20.0, 22.0, 18.0]})
    s = np.stack([chance + (e - chance) / (1 + np.exp((m - x) / 0.25)) for e, m in [(3, 2.5), (4, 2.9), (2, 3.1)]], 1)
    s = np.repeat(s, 8, axis=1)  # 8 occurrences of each word
    clean, _ = words.word_aoa(s, steps, tokens, child, 400)
    holey = np.vstack([s, np.full((1, 24), np.nan)])  # one more checkpoint, not scored yet
    holey[10, :8] = np.nan  # and a hole in one word
    res, corr = words.word_aoa(holey, np.r_[steps, steps[-1] + 100], tokens, child, 400)
    c, r = clean.set_index("word"), res.set_index("word")
    np.testing.assert_allclose(r.loc[["cat", "ball"], "model_aoa"], c.loc[["cat", "ball"], "model_aoa"], atol=1e-9)
    assert abs(r.loc["dog", "model_aoa"] - c.loc["dog", "model_aoa"]) < 0.01
    np.testing.assert_allclose(r["final_surprisal"], c["final_surprisal"], atol=1e-9)  # unscored row left out
    assert corr["n_words"] == 3 and (c["n_occurrences"] == 8).all()


def test_xia_on_a_validation_perplexity_axis(study, tmp_path):
    """x = the perplexity of the scored held-out tokens at each checkpoint: the sweep still classifies tokens."""
    from babyjax.analysis import report

    root, tok_out, _, _, _ = study
    path = report.write_report([tok_out], tmp_path / "r", x_axis="perplexity", xia_p=[0.3, 0.5], progress=False)
    section = path.read_text().split("### Trajectory classes")[1].split("###")[0]
    assert "x = perplexity" in section and "| seed0 | 0.3 |" in section and "| seed1 | 0.5 |" in section


def test_bad_inputs(study, tmp_path, capsys):
    root, tok_out, _, _, _ = study
    assert analyze.main([str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "meta.json" in capsys.readouterr().err
    so = load_score_output(tok_out)
    assert so.surprisal["seed0"].shape == (len(so.checkpoints["seed0"]), len(so.tokens))
    # a single run: the report is still written, with cross-run variability skipped and said so
    single = tmp_path / "single"
    (single / "runs" / "seed0").mkdir(parents=True)
    for f in ["tokens.csv"]:
        (single / f).write_bytes((tok_out / f).read_bytes())
    for f in ["surprisal.npy", "checkpoints.csv"]:
        (single / "runs" / "seed0" / f).write_bytes((tok_out / "runs" / "seed0" / f).read_bytes())
    meta = json.loads((tok_out / "meta.json").read_text()) | {"runs": ["seed0"]}
    (single / "meta.json").write_text(json.dumps(meta))
    # a meta.json without vocab_size, a checkpoints.csv without step: one clear line, exit 2
    broken = tmp_path / "broken"
    (broken / "runs" / "seed0").mkdir(parents=True)
    for f in ["tokens.csv"]:
        (broken / f).write_bytes((tok_out / f).read_bytes())
    (broken / "runs" / "seed0" / "surprisal.npy").write_bytes(
        (tok_out / "runs" / "seed0" / "surprisal.npy").read_bytes()
    )
    pd.read_csv(tok_out / "runs" / "seed0" / "checkpoints.csv").drop(columns="step").to_csv(
        broken / "runs" / "seed0" / "checkpoints.csv", index=False
    )
    meta0 = json.loads((tok_out / "meta.json").read_text()) | {"runs": ["seed0"]}
    (broken / "meta.json").write_text(json.dumps({k: v for k, v in meta0.items() if k != "vocab_size"}))
    assert analyze.main([str(broken), "--out", str(tmp_path / "rb"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "lacks vocab_size" in err and "Traceback" not in err
    (broken / "meta.json").write_text(json.dumps(meta0))
    assert analyze.main([str(broken), "--out", str(tmp_path / "rb"), "--no-progress"]) == 2
    assert "checkpoints.csv lacks step" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="at least 2 runs"):
        assert analyze.main([str(single), "--out", str(tmp_path / "r1"), "--no-progress"]) == 0
    text = (tmp_path / "r1" / "report.md").read_text()
    assert "cross-run variability needs at least 2 runs" in text and "--runs-dir" in text
    assert (tmp_path / "r1" / "single_example_curves.png").is_file()


def test_word_aoa_variants_and_their_regressions():
    """Chang & Bergen's get_lm_aoa types on known sigmoids, word_stats by brute force, and run_regressions' drop-one
    likelihood-ratio tests."""
    from babyjax.analysis import words
    from babyjax.data.pipeline import TokenizedSplit

    steps = exp_steps()
    x = np.log10(np.maximum(steps, 1))
    chance = np.log2(400)
    tokens = pd.DataFrame({"seq": np.arange(8), "position": 7, "token": "\u2581dog", "token_id": 11})
    curve = 7.0 + (3.0 - 7.0) / (1 + np.exp((2.6 - x) / 0.2))  # from 7 bits down to 3, midpoint 2.6
    df, _ = words.word_aoa(
        np.repeat(curve[:, None], 8, 1), steps, tokens, pd.DataFrame({"word": ["dog"], "child_aoa": [20.0]}), 400
    )
    xs = x[steps > 0]
    assert df["model_aoa_midpoint"][0] == pytest.approx(2.6, abs=1e-3)
    raw = curve[steps > 0]
    thr_chance, thr_max = 0.5 * (chance + raw.min()), 0.5 * (raw.max() + raw.min())  # from chance / from the max
    for col, thr in (("model_aoa", thr_chance), ("model_aoa_max_surprisal", thr_max)):
        want = 2.6 - 0.2 * np.log((3.0 - 7.0) / (thr - 7.0) - 1) if thr < 7 else xs.min()
        assert df[col][0] == pytest.approx(np.clip(want, xs.min(), xs.max()), abs=2e-3), col
    docs = [[11, 12, 13], [14, 11], [12, 12, 12, 12], [11]]
    stream = np.concatenate([[3, *d] for d in docs]).astype(np.int32)
    starts = np.concatenate([[0], np.cumsum([len(d) + 1 for d in docs])])
    stats_df = words.word_stats(TokenizedSplit(stream, starts, np.zeros(len(starts), np.int64)), {"dog": 11, "x": 12})
    assert stats_df.set_index("word").loc["dog", "log_freq"] == pytest.approx(np.log(3))
    assert stats_df.set_index("word").loc["dog", "mlu"] == pytest.approx(np.mean([3, 2, 1]))
    assert stats_df.set_index("word").loc["x", "mlu"] == pytest.approx(np.mean([3, 4]))
    rng = np.random.default_rng(0)
    n = 120
    wdf = pd.DataFrame(
        {
            "log_freq": rng.normal(8, 2, n),
            "mlu": rng.normal(6, 1, n),
            "n_chars": rng.integers(2, 9, n),
            "concreteness": rng.uniform(1, 5, n),
            "lexical_category": rng.choice(["nouns", "predicates", "function_words"], n),
        }
    )
    wdf["model_aoa"] = 5 - 0.3 * wdf["log_freq"] + 0.2 * (wdf["lexical_category"] == "nouns") + rng.normal(0, 0.2, n)
    table, fit = words.aoa_regressions(wdf)
    t = table.set_index("predictor")
    assert t.loc["log_freq", "sign"] == "-" and t.loc["log_freq", "lrt_p"] < 1e-10
    assert t.loc["mlu", "sign"] == "ns" and fit["adj_r2_all"] > fit["adj_r2_log_freq"] > 0.5
    import scipy.stats
    import statsmodels.formula.api as smf

    full = smf.ols("model_aoa ~ log_freq + mlu + n_chars + concreteness + C(lexical_category)", wdf).fit()
    red = smf.ols("model_aoa ~ log_freq + mlu + n_chars + concreteness", wdf).fit()
    assert t.loc["lexical_class", "lrt_p"] == pytest.approx(scipy.stats.chi2.sf(2 * (full.llf - red.llf), 2))

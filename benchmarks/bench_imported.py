"""An imported Hugging Face series scored by babyjax against minicons, side by side in one run, loading included
(docs/benchmarks.md, docs/imported.md).

    python benchmarks/bench_imported.py                    # 10 revisions, 4 x 100 BLiMP pairs, 300 dev lines, 3 rounds
    python benchmarks/bench_imported.py --revisions 2 --pairs 10 --lines 20 --rounds 1   # smoke test

The series (built once, not timed; reused from --workdir when its settings match): a random GPT-NeoX model
(tests/imported_models.py: hidden 256, 4 layers, 4 heads, MLP 1024, rotary_pct 0.25, context 128, a byte-level BPE
tokenizer of --vocab pieces trained on the BabyLM sample; about 7.3M parameters, untied embeddings) saved as
`step_0/`, `step_1000/`, ... in one folder, each revision a perturbed copy of the one before (so babyjax's integrity
check flags none). The work: the first --pairs pairs of each of the --paradigms BLiMP files below (every sentence's
summed log-probability after the bos token, and the pair's verdict) and a tokens-in-context sample, the first --lines
non-empty lines of the BabyLM dev files (--lines / 4 from each, lines of at most 120 tokens so that both sides read
each line in one window), every token scored after the bos token; on every revision.

Timed, per round, each side from the files on disk to its scores on disk, in fresh processes, wall clock:
  babyjax:  the two commands a user types, one after the other, as subprocesses with the CLI's defaults (the 2 CPU
            cores split into 2 devices, --policy eot_context): Python start, JAX start, the series read and its
            integrity check, tokenization, compiling, scoring every revision and writing the score folder --
              python -m babyjax.score --run neox=hf:SERIES --kind pairs --eval F1 ... --eval F4 --limit PAIRS --out D
              python -m babyjax.score --run neox=hf:SERIES --kind text --eval dev_sample.txt --out D
  minicons: one subprocess (this script with --side minicons) as a user would write it: Python start, importing
            torch, transformers and minicons, torch.set_num_threads(--threads), then per revision
            `AutoModelForCausalLM.from_pretrained` + `AutoTokenizer.from_pretrained`, `IncrementalLMScorer(model,
            "cpu", tokenizer=tok)`, `sequence_score(batch, reduction=lambda x: x.sum(0).item(), bos_token=True)` on
            the pair sentences and `token_score(batch, surprisal=True, base_two=True, bos_token=True)` on the lines,
            both in batches of --peer_batch; the scores written to one .npz. Each revision is read once for both
            tasks (babyjax reads the series once per command).
The sides alternate which goes first from round to round; only one runs at a time. The ratio is minicons' seconds
over babyjax's in the same round, reported as median (min-max) over --rounds; a second, conservative ratio leaves
minicons' Python start and imports out (its in-process seconds from the first from_pretrained on). Before a round
counts, the two sides' outputs are compared on every revision: each sentence's sum within --tol bits (minicons' nats
converted), the pairs' verdicts equal (a pair whose margin is within --tol on either side may differ: reported), the
text's token counts equal and every token's surprisal within --tol bits; the script stops on a failed check. Needs
the 'peers' extra (torch, transformers, minicons).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = pathlib.Path(os.environ.get("BABYJAX_SHARED_DATA", ROOT.parent / "shared" / "data"))

PARADIGMS = (
    "anaphor_number_agreement",
    "determiner_noun_agreement_2",
    "regular_plural_subject_verb_agreement_1",
    "wh_vs_that_no_gap",
)
DEV_FILES = ("aochildes", "cbt", "children_stories", "switchboard")
MAX_LINE_TOKENS = 120
RUN = "neox"


# -- the series and the evaluation data (built once, not timed) ------------------------------------------------------
def settings(args) -> dict:
    keys = ("revisions", "vocab", "hidden", "layers", "heads", "mlp", "max_len", "scale")
    return {k: getattr(args, k) for k in keys}


def build_series(args, workdir: pathlib.Path) -> pathlib.Path:
    """workdir/series/step_0 ... step_{1000 (revisions - 1)}, reused when built with the same settings."""
    from tests import imported_models as im

    series, marker = workdir / "series", workdir / "series.json"
    if marker.exists() and json.loads(marker.read_text()) == settings(args):
        return series
    shutil.rmtree(series, ignore_errors=True)
    marker.unlink(missing_ok=True)
    t0 = time.perf_counter()
    tok = im.tokenizer("gpt_neox", im.sample_lines(DATA / "babylm_sample", 40_000), args.vocab)
    size = {
        "hidden_size": args.hidden,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "intermediate_size": args.mlp,
    }
    im.build("gpt_neox", series / "step_0", tok, seed=0, max_len=args.max_len, **size)
    for i in range(1, args.revisions):
        im.perturbed(series / f"step_{1000 * (i - 1)}", series / f"step_{1000 * i}", seed=i, scale=args.scale)
    marker.write_text(json.dumps(settings(args)))
    print(f"built {args.revisions} revisions ({len(tok)} tokens) in {time.perf_counter() - t0:.0f}s", flush=True)
    return series


def text_sample(series: pathlib.Path, lines: int, out: pathlib.Path) -> list[str]:
    """The first lines / 4 non-empty lines of each dev file of at most MAX_LINE_TOKENS tokens, written to `out`."""
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(series / "step_0")
    kept = []
    for name in DEV_FILES:
        text = (DATA / "babylm_sample" / "babylm_dev" / f"{name}.dev").read_text().splitlines()
        short = [t.strip() for t in text if t.strip() and len(tok(t.strip())["input_ids"]) <= MAX_LINE_TOKENS]
        kept += short[: lines // len(DEV_FILES) + (DEV_FILES.index(name) < lines % len(DEV_FILES))]
    out.write_text("\n".join(kept) + "\n")
    return kept


def pair_files(paradigms: int) -> list[pathlib.Path]:
    return [DATA / "blimp" / f"{p}.jsonl" for p in PARADIGMS[:paradigms]]


def pair_sentences(files: list[pathlib.Path], pairs: int) -> list[str]:
    """good, bad, good, bad, ... of the first `pairs` pairs of each file, in babyjax's sequence order."""
    from babyjax.data.evalsets import load_pairs

    return [s for f in files for p in load_pairs(f)[:pairs] for s in (p.good, p.bad)]


# -- the babyjax side -------------------------------------------------------------------------------------------------
def babyjax_command(series: pathlib.Path, kind: str, evals: list[pathlib.Path], out: pathlib.Path, limit: int):
    cmd = [sys.executable, "-m", "babyjax.score", f"--run={RUN}=hf:{series}", f"--kind={kind}"]
    cmd += [f"--eval={e}" for e in evals] + [f"--out={out}"]
    return cmd + ([f"--limit={limit}"] if limit else [])


def run_babyjax(args, work: dict, out: pathlib.Path) -> dict:
    """Both commands' wall seconds and each job's own seconds (its summary line)."""
    result = {}
    for kind, evals, limit in (("pairs", work["pair_files"], args.pairs), ("text", [work["text_file"]], 0)):
        t0 = time.perf_counter()
        done = subprocess.run(
            babyjax_command(work["series"], kind, evals, out / f"babyjax_{kind}", limit),
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        result[f"{kind}_s"] = time.perf_counter() - t0
        if done.returncode:
            raise SystemExit(f"babyjax.score --kind {kind} failed:\n{done.stderr[-3000:]}")
        found = re.findall(r"scored (\d+) checkpoints \(\d+ tokens each\) in ([0-9.]+)s", done.stdout)
        if not found or int(found[-1][0]) != args.revisions:
            raise SystemExit(f"babyjax.score --kind {kind} did not score {args.revisions} revisions:\n{done.stdout}")
        result[f"{kind}_job_s"] = float(found[-1][1])
    result["seconds"] = result["pairs_s"] + result["text_s"]
    return result


def babyjax_scores(out: pathlib.Path, n_sentences: int) -> dict:
    """steps, per-sentence sums of the pairs [revision, sentence] and the text's surprisal [revision, token], bits."""
    import numpy as np

    from babyjax.score import load_scores

    found = {}
    for kind in ("pairs", "text"):
        surprisal, checkpoints, tokens = load_scores(out / f"babyjax_{kind}", RUN)
        statuses = set(checkpoints["status"])
        if statuses != {"done"}:
            raise SystemExit(f"babyjax {kind}: revisions not all scored (statuses {sorted(statuses)})")
        found["steps"] = [int(s) for s in checkpoints["step"]]
        values = np.asarray(surprisal, np.float64)
        if kind == "pairs":
            seq = tokens["seq"].to_numpy()
            found["pairs"] = np.stack([np.bincount(seq, weights=v, minlength=n_sentences) for v in values])
        else:
            found["text"] = values
    return found


# -- the minicons side (its own process) ------------------------------------------------------------------------------
def minicons_main(args) -> None:
    """`--side minicons`: what a minicons user runs, timed from before its imports; scores and seconds to --result."""
    t_start = time.perf_counter()
    import numpy as np
    import torch
    import transformers
    from minicons import scorer

    torch.set_num_threads(args.threads)
    work = json.loads(pathlib.Path(args.work).read_text())
    sentences, lines, b = work["sentences"], work["lines"], args.peer_batch
    t_loop, seconds, pairs, text = time.perf_counter(), {"load": 0.0, "pairs": 0.0, "text": 0.0}, [], []
    for rev in work["revisions"]:
        t0 = time.perf_counter()
        model = transformers.AutoModelForCausalLM.from_pretrained(rev)
        lm = scorer.IncrementalLMScorer(model, "cpu", tokenizer=transformers.AutoTokenizer.from_pretrained(rev))
        t1 = time.perf_counter()
        sums = []
        for i in range(0, len(sentences), b):
            sums += lm.sequence_score(sentences[i : i + b], reduction=lambda x: x.sum(0).item(), bos_token=True)
        t2 = time.perf_counter()
        bits = []
        for i in range(0, len(lines), b):  # (token, surprisal) per token, the bos token first with 0
            scored = lm.token_score(lines[i : i + b], surprisal=True, base_two=True, bos_token=True)
            bits += [s for line in scored for _, s in line[1:]]
        t3 = time.perf_counter()
        for key, dt in zip(("load", "pairs", "text"), (t1 - t0, t2 - t1, t3 - t2), strict=True):
            seconds[key] += dt
        pairs.append(sums)
        text.append(bits)
    np.savez(args.result, pairs_nats=np.asarray(pairs), text_bits=np.asarray(text))
    seconds["imports_s"], seconds["loop_s"] = t_loop - t_start, time.perf_counter() - t_loop
    pathlib.Path(args.result).with_suffix(".json").write_text(json.dumps(seconds))


def run_minicons(args, work: dict, out: pathlib.Path) -> dict:
    """The peer process's wall seconds, its own split, and its scores."""
    import numpy as np

    spec = out / "minicons_work.json"
    revisions = [str(work["series"] / f"step_{1000 * i}") for i in range(args.revisions)]
    spec.write_text(json.dumps({"revisions": revisions, "sentences": work["sentences"], "lines": work["lines"]}))
    result = out / "minicons.npz"
    cmd = [sys.executable, __file__, "--side=minicons", f"--work={spec}", f"--result={result}"]
    cmd += [f"--threads={args.threads}", f"--peer_batch={args.peer_batch}"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"the minicons side failed:\n{done.stderr[-3000:]}")
    split = json.loads(result.with_suffix(".json").read_text())
    with np.load(result) as z:
        return {"seconds": wall, **split, "pairs_nats": z["pairs_nats"], "text_bits": z["text_bits"]}


# -- checks and the report --------------------------------------------------------------------------------------------
def check(ours: dict, peer: dict, tol: float) -> dict:
    """Stop unless the sides did the same work: sums, verdicts, token counts and token surprisals (bits)."""
    import numpy as np

    peer_sums = -peer["pairs_nats"] / math.log(2)
    if peer_sums.shape != ours["pairs"].shape:
        raise SystemExit(
            f"pairs: babyjax scored {ours['pairs'].shape}, minicons {peer_sums.shape} (revisions, sentences)"
        )
    sum_diff = float(np.abs(peer_sums - ours["pairs"]).max())
    ours_good = ours["pairs"][:, 0::2] < ours["pairs"][:, 1::2]
    peer_good = peer_sums[:, 0::2] < peer_sums[:, 1::2]
    margin = np.minimum(
        np.abs(ours["pairs"][:, 0::2] - ours["pairs"][:, 1::2]), np.abs(peer_sums[:, 0::2] - peer_sums[:, 1::2])
    )
    differ = ours_good != peer_good
    n_tokens, peer_tokens = ours["text"].shape[1], peer["text_bits"].shape[1]
    out = {
        "pairs_max_abs_diff_bits": sum_diff,
        "verdicts_differ": int(differ.sum()),
        "verdicts_differ_within_tol": int((differ & (margin <= tol)).sum()),
        "text_tokens_babyjax": int(n_tokens),
        "text_tokens_minicons": int(peer_tokens),
        "babyjax_accuracy": float(ours_good.mean()),
    }
    print(f"checks: {json.dumps(out)}", flush=True)
    if sum_diff > tol:
        raise SystemExit(f"CHECK FAILED: sentence sums differ by up to {sum_diff:.3g} bits (> {tol})")
    if (differ & (margin > tol)).any():
        raise SystemExit(f"CHECK FAILED: {int((differ & (margin > tol)).sum())} verdicts differ beyond ties")
    if n_tokens != peer_tokens or ours["text"].shape[0] != peer["text_bits"].shape[0]:
        raise SystemExit(f"CHECK FAILED: text tokens per revision: babyjax {n_tokens}, minicons {peer_tokens}")
    out["text_max_abs_diff_bits"] = float(np.abs(ours["text"] - peer["text_bits"]).max())
    if out["text_max_abs_diff_bits"] > tol:
        raise SystemExit(f"CHECK FAILED: token surprisals differ by up to {out['text_max_abs_diff_bits']:.3g} bits")
    return out


def one_round(args, work: dict, r: int) -> dict:
    """Both sides, in turn (babyjax first in even rounds), then the checks."""
    from benchmarks import common

    out = pathlib.Path(tempfile.mkdtemp(prefix=f"round{r}_", dir=args.workdir))
    try:
        t = common.in_turn(
            {"babyjax": lambda: run_babyjax(args, work, out), "minicons": lambda: run_minicons(args, work, out)}, r
        )
        ours = babyjax_scores(out, len(work["sentences"]))
        if ours["steps"] != [1000 * i for i in range(args.revisions)]:
            raise SystemExit(f"CHECK FAILED: babyjax scored steps {ours['steps']}")
        checks = check(ours, t["minicons"], args.tol)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    peer = {k: v for k, v in t["minicons"].items() if k not in ("pairs_nats", "text_bits")}
    row = {"babyjax": t["babyjax"], "minicons": peer, "checks": checks}
    row["ratio"] = peer["seconds"] / t["babyjax"]["seconds"]
    row["ratio_no_peer_imports"] = peer["loop_s"] / t["babyjax"]["seconds"]
    b = t["babyjax"]
    print(
        f"round {r}: babyjax {b['seconds']:.1f}s (pairs {b['pairs_s']:.1f}s, job {b['pairs_job_s']:.1f}s; text "
        f"{b['text_s']:.1f}s, job {b['text_job_s']:.1f}s); minicons {peer['seconds']:.1f}s (imports "
        f"{peer['imports_s']:.1f}s, loading {peer['load']:.1f}s, pairs {peer['pairs']:.1f}s, text "
        f"{peer['text']:.1f}s); "
        f"ratio {row['ratio']:.2f}x ({row['ratio_no_peer_imports']:.2f}x without minicons' imports)",
        flush=True,
    )
    return row


def summary(args, work: dict, rows: list[dict]) -> dict:
    med = statistics.median
    out = {
        "revisions": args.revisions,
        "pairs": len(work["sentences"]) // 2,
        "text_lines": len(work["lines"]),
        "text_tokens": rows[0]["checks"]["text_tokens_babyjax"],
        "babyjax_s": med(r["babyjax"]["seconds"] for r in rows),
        "babyjax_pairs_s": med(r["babyjax"]["pairs_s"] for r in rows),
        "babyjax_text_s": med(r["babyjax"]["text_s"] for r in rows),
        "minicons_s": med(r["minicons"]["seconds"] for r in rows),
        "minicons_loop_s": med(r["minicons"]["loop_s"] for r in rows),
    }
    for key in ("ratio", "ratio_no_peer_imports"):
        values = [r[key] for r in rows]
        out |= {f"{key}_median": med(values), f"{key}_min": min(values), f"{key}_max": max(values)}
    out["max_abs_diff_bits"] = max(
        max(r["checks"]["pairs_max_abs_diff_bits"], r["checks"]["text_max_abs_diff_bits"]) for r in rows
    )
    out["rounds"] = rows
    return out


def prepare(args) -> dict:
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    series = build_series(args, workdir)
    files = pair_files(args.paradigms)
    lines = text_sample(series, args.lines, workdir / "dev_sample.txt")
    work = {"series": series, "pair_files": files, "text_file": workdir / "dev_sample.txt", "lines": lines}
    work["sentences"] = pair_sentences(files, args.pairs)
    return work


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--revisions", type=int, default=10, help="revisions in the series: step_0, step_1000, ...")
    ap.add_argument("--paradigms", type=int, default=len(PARADIGMS), help=f"BLiMP paradigms (up to {len(PARADIGMS)})")
    ap.add_argument("--pairs", type=int, default=100, help="pairs per paradigm")
    ap.add_argument("--lines", type=int, default=300, help="dev text lines (tokens-in-context sample)")
    ap.add_argument("--peer_batch", type=int, default=64, help="sentences per minicons call")
    ap.add_argument("--threads", type=int, default=2, help="minicons: torch threads")
    ap.add_argument("--tol", type=float, default=1e-3, help="agreement: bits per sentence sum and per token")
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--mlp", type=int, default=1024)
    ap.add_argument("--max_len", type=int, default=128)
    ap.add_argument("--scale", type=float, default=0.05, help="noise between revisions")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "babyjax_bench_imported"))
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--side", choices=["minicons"], help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        return minicons_main(args)
    from benchmarks import common

    print(f"machine: {common.machine('torch', 'transformers', 'minicons')}", flush=True)
    work = prepare(args)
    rows = [one_round(args, work, r) for r in range(args.rounds)]
    results = summary(args, work, rows)
    print(
        f"{results['revisions']} revisions, {results['pairs']} pairs, {results['text_lines']} lines "
        f"({results['text_tokens']} tokens): babyjax {results['babyjax_s']:.1f}s, minicons "
        f"{results['minicons_s']:.1f}s; "
        f"ratio minicons / babyjax {common.spread([r['ratio'] for r in rows])}; without minicons' imports "
        f"{common.spread([r['ratio_no_peer_imports'] for r in rows])}"
    )
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    print(json.dumps({k: v for k, v in results.items() if k != "rounds"}, default=str))


if __name__ == "__main__":
    main()

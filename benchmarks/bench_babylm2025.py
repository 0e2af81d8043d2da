"""The BabyLM 2025 fast zero-shot suite on one checkpoint: babyjax against the official pipeline's own scripts, side by
side in one run, every prediction compared (docs/benchmarks.md, docs/validation.md).

    python benchmarks/bench_babylm2025.py --pipeline_python PIPE/bin/python --pipeline_src PIPELINE --rounds 3
    python benchmarks/bench_babylm2025.py ... --backends causal --tasks blimp_fast,reading --rounds 1 --limit 20
    python benchmarks/bench_babylm2025.py ... --backends mlm,mntp --limit entity_tracking_fast=100

Per backend, one run and its last checkpoint, exported with `python -m babyjax.export`:
  causal  configs/tiny.py            babyjax --scoring causal          the pipeline's --backend causal
  mlm     configs/roberta_tiny.py    babyjax --scoring pll_original    --backend mlm
  mntp    configs/gpt_bert_tiny.py   babyjax --scoring mntp            --backend mntp
A run is trained here (<workdir>/runs/<config>, with model.max_len 512) unless given as --run BACKEND=WORKDIR.
Each round times, for one backend:
  babyjax:  one `python -m babyjax.score --kind babylm2025` process on every chosen set (compiling included);
  pipeline: one process per set as its eval_zero_shot_fast.sh runs them (`evaluation_pipeline.sentence_zero_shot.run
            --save_predictions` per task folder, `evaluation_pipeline.reading.run` for reading), summed.
The sides alternate which goes first. After every round each predictions.json the pipeline wrote is compared item by
item with babyjax's (the same ids and choices; the wug probabilities and the reading surprisals within --tol) and
each report's lines must be the same, or the script stops. The ratio is the pipeline's seconds over babyjax's: median
and range over rounds, with the machine and both sides' library versions.

The sets are the organisers' fast ones, read from ../shared/data/babylm_eval_2025 (BABYJAX_SHARED_DATA overrides its
parent). Every entity-tracking item must fit the model: the pipeline cannot score a longer one (babyjax would score
it in windows and the predictions would differ); the tiny tokenizer makes them up to 361 tokens, hence the runs'
max_len 512 and babyjax's --seq_len (the run's model.max_len unless given). EWoK fast is the organisers'
ewok_fast.zip: babyjax reads the zip, the pipeline a copy unzipped into a temporary folder that is deleted at the end
(EWoK's terms: never store its text unzipped); the password from --ewok_password or BABYLM_EWOK_PASSWORD.
Under mlm and mntp both sides mask each completion token of a candidate alone (entity tracking: about 100,000 copies
of 87 to 362 tokens on the tiny tokenizer; the pipeline's side takes most of an hour per backend on 2 cores).
--limit N keeps the first N lines of every .jsonl file for both sides, --limit TASK=N,... those of the tasks named
(quick checks; reading stays whole; babyjax then reads a limited EWoK zip, unencrypted, in the same temporary
folder). Needs a Python environment with the
pipeline's requirements (transformers 4.51.3, torch, pandas, statsmodels, datasets) and its source (commit bf55c11,
docs/validation.md).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = pathlib.Path(os.environ.get("BABYJAX_SHARED_DATA", ROOT.parent / "shared" / "data")) / "babylm_eval_2025"

from benchmarks import common

# name: (the pipeline's --task, the release's folder or file), in eval_zero_shot_fast.sh's order
TASKS = {
    "blimp_fast": ("blimp", "blimp_fast"),
    "supplement_fast": ("blimp", "supplement_fast"),
    "ewok_fast": ("ewok", "ewok_fast.zip"),
    "wug_adj_nominalization": ("wug_adj", "wug_adj_nominalization"),
    "wug_past_tense": ("wug_past", "wug_past_tense"),
    "entity_tracking_fast": ("entity_tracking", "entity_tracking_fast"),
    "reading": ("reading", "reading"),
}
# backend: (config, babyjax's --scoring)
BACKENDS = {"causal": ("tiny", "causal"), "mlm": ("roberta_tiny", "pll_original"), "mntp": ("gpt_bert_tiny", "mntp")}
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def timed_process(cmd: list[str], log: pathlib.Path, **kwargs) -> float:
    """Wall seconds of one process, its output in `log`; a failure stops the benchmark with the log's tail."""
    t0 = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, **kwargs)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} exited with status {proc.returncode}:\n{log.read_text()[-3000:]}")
    return seconds


# -- the runs and their exports -----------------------------------------------------------------------------------


def run_config(workdir: pathlib.Path) -> dict:
    return json.loads((workdir / "config.json").read_text())


def last_step(workdir: pathlib.Path) -> int:
    """The last series step of a run (0 when it has none yet)."""
    from babyjax.checkpoints.run import load_series_index
    from babyjax.errors import CheckpointError

    try:
        return int(load_series_index(workdir)[-1]["step"])
    except (CheckpointError, FileNotFoundError):
        return 0


def ensure_run(backend: str, given: dict[str, str], args: argparse.Namespace) -> tuple[str, pathlib.Path]:
    """(run name, workdir): the one given, or the backend's config trained under --workdir unless done already."""
    config = BACKENDS[backend][0]
    if backend in given:
        workdir = pathlib.Path(given[backend]).resolve()
        return workdir.name, workdir
    workdir = pathlib.Path(args.workdir) / "runs" / config
    if not (workdir / "config.json").exists() or last_step(workdir) < run_config(workdir)["train"]["num_steps"]:
        print(f"{backend}: training configs/{config}.py into {workdir}", flush=True)
        workdir.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(ROOT / "launch" / "train.py"), f"--config={ROOT / 'configs' / config}.py"]
        cmd += [f"--workdir={workdir}", f"--config.model.max_len={args.max_len}"]
        timed_process(cmd, workdir.parent / f"train_{config}.log", cwd=ROOT)
    return config, workdir


def ensure_export(name: str, workdir: pathlib.Path, step: int, args: argparse.Namespace) -> pathlib.Path:
    """The exported folder of the run's `step`, named as the run so both sides write results/<name>/main/ (exported
    again when it came from another run or step)."""
    out = pathlib.Path(args.workdir) / "exports" / name
    source = {"workdir": str(workdir), "step": step}
    stamp = out.parent / f"{name}.json"
    if not (out / "config.json").exists() or not stamp.exists() or json.loads(stamp.read_text()) != source:
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "babyjax.export", f"--workdir={workdir}", f"--step={step}", f"--out={out}"]
        timed_process(cmd + ["--overwrite"], out.parent / f"export_{name}.log", cwd=ROOT)
        stamp.write_text(json.dumps(source))
    return out


# -- the evaluation sets ------------------------------------------------------------------------------------------


def copy_limited(src: pathlib.Path, dst: pathlib.Path, limit: int) -> None:
    """A task folder with the first `limit` lines of each .jsonl file (every file when limit is 0)."""
    dst.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        if f.suffix == ".jsonl":
            lines = f.read_text().splitlines(keepends=True)
            (dst / f.name).write_text("".join(lines[:limit] if limit else lines))


def ewok_sets(tmp: pathlib.Path, limit: int, password: str) -> tuple[pathlib.Path, pathlib.Path]:
    """(what babyjax reads: the organisers' zip, or a limited one under `tmp`; the unzipped folder the pipeline reads,
    under `tmp`)."""
    if not password:
        raise SystemExit("ewok_fast needs the zip's password: --ewok_password or BABYLM_EWOK_PASSWORD")
    source = DATA / "ewok_fast.zip"
    with zipfile.ZipFile(source) as z:
        members = [m for m in z.infolist() if m.filename.endswith(".jsonl")]
        folder = tmp / "pipeline" / "ewok_fast"
        folder.mkdir(parents=True)
        for m in members:
            lines = z.read(m, pwd=password.encode()).decode().splitlines(keepends=True)
            (folder / pathlib.Path(m.filename).name).write_text("".join(lines[:limit] if limit else lines))
    if not limit:
        return source, folder
    limited = tmp / "babyjax" / "ewok_fast.zip"  # unencrypted, deleted with `tmp` as the pipeline's copy
    limited.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(limited, "w", zipfile.ZIP_DEFLATED) as z:
        for m in members:  # the members' paths as in the organisers' zip
            z.write(folder / pathlib.Path(m.filename).name, m.filename)
    return limited, folder


def evaluation_sets(tasks: list[str], tmp: pathlib.Path, args: argparse.Namespace) -> dict[str, tuple[str, str]]:
    """{task: (babyjax's --eval, the pipeline's --data_path)}: the release's sets, or limited copies under `tmp`."""
    out = {}
    for task in tasks:
        source = DATA / TASKS[task][1]
        if task == "ewok_fast":
            ours, theirs = ewok_sets(tmp, args.limit.get(task, 0), args.ewok_password)
        elif task == "reading":
            ours, theirs = source, source / "reading_data.csv"
        elif args.limit.get(task):
            ours = theirs = tmp / "sets" / source.name
            copy_limited(source, ours, args.limit[task])
        else:
            ours = theirs = source
        out[task] = (str(ours), str(theirs))
    return out


# -- the two sides ------------------------------------------------------------------------------------------------


def babyjax_side(run: tuple[str, pathlib.Path, int], backend: str, sets: dict, out: pathlib.Path, args) -> float:
    """Seconds of one `python -m babyjax.score --kind babylm2025` process on every set."""
    name, workdir, step = run
    seq_len = args.seq_len or run_config(workdir)["model"]["max_len"]
    cmd = [sys.executable, "-m", "babyjax.score", f"--run={name}={workdir}", "--kind=babylm2025", f"--out={out}"]
    cmd += [f"--steps={step}", f"--scoring={BACKENDS[backend][1]}", f"--seq_len={seq_len}"]
    cmd += [f"--eval={ours}" for ours, _ in sets.values()]
    env = {**os.environ, "BABYLM_EWOK_PASSWORD": args.ewok_password}
    return timed_process(cmd, out.parent / "babyjax.log", cwd=ROOT, env=env)


def pipeline_side(export: pathlib.Path, backend: str, sets: dict, out: pathlib.Path, args) -> dict[str, float]:
    """{task: seconds} of the pipeline's processes, one per set, as eval_zero_shot_fast.sh runs them."""
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(args.pipeline_src)}
    env.pop("VIRTUAL_ENV", None)
    seconds = {}
    for task, (_, theirs) in sets.items():
        common_flags = [f"--model_path_or_name={export}", f"--backend={backend}", f"--output_dir={out}"]
        if task == "reading":
            cmd = [args.pipeline_python, "-m", "evaluation_pipeline.reading.run", *common_flags]
        else:
            cmd = [args.pipeline_python, "-m", "evaluation_pipeline.sentence_zero_shot.run", *common_flags]
            cmd += [f"--task={TASKS[task][0]}", "--save_predictions"]
        cmd.append(f"--data_path={theirs}")
        seconds[task] = timed_process(cmd, out.parent / f"pipeline_{task}.log", cwd=args.pipeline_src, env=env)
    return seconds


# -- the comparison -----------------------------------------------------------------------------------------------


def close(a: float, b: float, tol: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


def same_predictions(ours: dict, theirs: dict, where: str, tol: float) -> int:
    """How many predictions agree; the first that does not stops the benchmark, named."""
    if sorted(ours) != sorted(theirs):
        raise SystemExit(f"{where}: babyjax has groups {sorted(ours)[:5]}..., the pipeline {sorted(theirs)[:5]}...")
    n = 0
    for group, value in theirs.items():
        mine, other = ours[group]["predictions"], value["predictions"]
        if len(mine) != len(other):
            raise SystemExit(f"{where} {group}: babyjax has {len(mine)} predictions, the pipeline {len(other)}")
        for a, b in zip(mine, other):
            floats = [k for k in b if isinstance(b[k], float)]
            exact = {k: v for k, v in b.items() if k not in floats}
            if {k: a.get(k) for k in exact} != exact or not all(close(float(a[k]), b[k], tol) for k in floats):
                raise SystemExit(f"{where} {group}: babyjax {a} but the pipeline {b}")
            n += 1
    return n


def same_trees(ours: pathlib.Path, theirs: pathlib.Path, tol: float) -> tuple[int, int]:
    """(predictions, reports) that agree between babyjax's results tree and the pipeline's."""
    predictions = reports = 0
    for path in sorted(theirs.rglob("*")):
        rel = path.relative_to(theirs)
        if path.name == "predictions.json":
            if not (ours / rel).exists():
                raise SystemExit(f"babyjax wrote no {rel}")
            mine = json.loads((ours / rel).read_text())
            predictions += same_predictions(mine, json.loads(path.read_text()), str(rel.parent), tol)
        elif path.name in ("best_temperature_report.txt", "report.txt"):
            mine, other = (ours / rel).read_text().splitlines(), path.read_text().splitlines()
            if sorted(mine) != sorted(other):  # babyjax lists the files by name, the pipeline in directory order
                raise SystemExit(f"{rel}: the reports differ:\n{sorted(set(mine) ^ set(other))[:10]}")
            reports += 1
    if not predictions:
        raise SystemExit(f"the pipeline wrote no predictions under {theirs}")
    return predictions, reports


# -- one backend, every round -------------------------------------------------------------------------------------


def bench_backend(backend: str, run: tuple, export: pathlib.Path, sets: dict, tmp: pathlib.Path, args) -> dict:
    """Every round of one backend: both sides timed in turn, their results compared."""
    rows = []
    for r in range(args.rounds):
        folder = tmp / "rounds" / backend / str(r)
        for side in ("babyjax", "pipeline"):
            (folder / side).mkdir(parents=True)
        sides = {
            "babyjax": functools.partial(babyjax_side, run, backend, sets, folder / "babyjax" / "out", args),
            "pipeline": functools.partial(pipeline_side, export, backend, sets, folder / "pipeline" / "out", args),
        }
        t = common.in_turn(sides, r)
        n, reports = same_trees(folder / "babyjax" / "out" / "results", folder / "pipeline" / "out", args.tol)
        theirs = sum(t["pipeline"].values())
        rows.append((t["babyjax"], theirs))
        per_task = ", ".join(f"{k} {v:.1f}" for k, v in t["pipeline"].items())
        print(
            f"{backend} round {r}: babyjax {t['babyjax']:.1f} s, pipeline {theirs:.1f} s ({per_task}), ratio "
            f"{theirs / t['babyjax']:.2f}x; {n:,} predictions and {reports} reports equal",
            flush=True,
        )
        shutil.rmtree(folder)
    ratios = [p / b for b, p in rows]
    return {
        "predictions": n,
        "reports": reports,
        "babyjax_s": statistics.median(b for b, _ in rows),
        "pipeline_s": statistics.median(p for _, p in rows),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def pipeline_versions(args: argparse.Namespace) -> str:
    code = "import torch, transformers; print(f'torch {torch.__version__}, transformers {transformers.__version__}')"
    out = subprocess.run([args.pipeline_python, "-c", code], capture_output=True, text=True, check=True).stdout
    return f"{out.strip()} ({args.pipeline_python}), source {args.pipeline_src}"


def limits(spec: str, tasks: list[str], ap: argparse.ArgumentParser) -> dict[str, int]:
    """{task: lines kept} from --limit: 'N' (every .jsonl task) or 'TASK=N,TASK=N'."""
    try:
        if spec.isdigit():
            return {t: int(spec) for t in tasks if t != "reading" and int(spec)}
        pairs = dict(p.split("=", 1) for p in spec.split(",") if p)
        out = {t: int(n) for t, n in pairs.items()}
    except ValueError:
        ap.error(f"--limit takes N or TASK=N,TASK=N, not {spec!r}")
    if set(out) - (set(TASKS) - {"reading"}):
        ap.error(f"--limit names tasks of: {', '.join(t for t in TASKS if t != 'reading')}")
    return {t: n for t, n in out.items() if n}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline_python", required=True, help="the python of an environment with the pipeline's needs")
    ap.add_argument("--pipeline_src", required=True, type=pathlib.Path, help="the pipeline's source (its root)")
    ap.add_argument("--backends", default="causal,mlm,mntp", help="comma-separated: causal, mlm, mntp")
    ap.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of: {', '.join(TASKS)}")
    ap.add_argument("--run", action="append", default=[], help="BACKEND=WORKDIR: a trained run (default: train one)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--limit", default="", help="N: the first N lines of each .jsonl file; TASK=N,...: of those tasks")
    ap.add_argument("--max_len", type=int, default=512, help="model.max_len of the runs trained here")
    ap.add_argument("--seq_len", type=int, default=0, help="babyjax's --seq_len (0: the run's model.max_len)")
    ap.add_argument("--tol", type=float, default=1e-4, help="wug probabilities and reading surprisals (nats)")
    ap.add_argument("--ewok_password", default=os.environ.get("BABYLM_EWOK_PASSWORD", ""))
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "babyjax_bench_babylm2025"))
    args = ap.parse_args()
    args.pipeline_src = args.pipeline_src.resolve()
    for name, known in (("backends", BACKENDS), ("tasks", TASKS)):
        chosen = [x for x in getattr(args, name).split(",") if x]
        if not chosen or set(chosen) - set(known):
            ap.error(f"--{name} takes a comma-separated list of: {', '.join(known)}")
        setattr(args, name, chosen)
    args.limit = limits(args.limit, args.tasks, ap)
    return args


def main() -> None:
    args = parse_args()
    given = dict(r.split("=", 1) for r in args.run)
    print(f"machine: {common.machine()}; the pipeline: {pipeline_versions(args)}", flush=True)
    results = {}
    pathlib.Path(args.workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:  # the unzipped EWoK text lives here only
        t0 = time.perf_counter()
        sets = evaluation_sets(args.tasks, pathlib.Path(tmp), args)
        for backend in args.backends:
            name, workdir = ensure_run(backend, given, args)
            step = last_step(workdir)
            export = ensure_export(name, workdir, step, args)
            results[backend] = bench_backend(backend, (name, workdir, step), export, sets, pathlib.Path(tmp), args)
        elapsed = time.perf_counter() - t0
    limits = ", ".join(f"{t} {n}" for t, n in args.limit.items()) or "none"
    print(f"tasks: {', '.join(args.tasks)}; lines kept: {limits}; {args.rounds} rounds in {elapsed:.0f} s")
    for backend, r in results.items():
        print(
            f"{backend}: babyjax {r['babyjax_s']:.1f} s, the pipeline {r['pipeline_s']:.1f} s: ratio median "
            f"{r['ratio_median']:.2f}x (range {r['ratio_min']:.2f}-{r['ratio_max']:.2f}) over {args.rounds} rounds; "
            f"{r['predictions']:,} predictions and {r['reports']} reports equal in every round"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()

"""`python -m babyjax.finetune` as a user runs it: a run's checkpoints fine-tuned on real (Super)GLUE files, the
pipeline's results tree and finetune.csv written, a killed job continued to the same outputs, and bad input refused
in one line with nothing written that a later job would take for a result."""

from __future__ import annotations

import json
import pathlib

import pandas as pd
import pytest

from babyjax.commands import finetune as finetune_command
from babyjax.finetune import job as job_lib
from babyjax.finetune import train as train_lib
from tests.test_score import make_run, train_tiny_tokenizer


@pytest.fixture(scope="module")
def tok(tmp_path_factory, babylm_sample):
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok"), babylm_sample)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tok) -> pathlib.Path:
    workdir = tmp_path_factory.mktemp("runs") / "tiny"
    make_run(workdir, tok, steps=(0, 10, 20), max_len=64)
    return workdir


@pytest.fixture(scope="module")
def glue(shared_data) -> pathlib.Path:
    return shared_data / "babylm_eval_2025" / "glue_filtered"


def argv(run: pathlib.Path, glue: pathlib.Path, out: pathlib.Path, *more: str) -> list[str]:
    return [
        f"--run=tiny={run}", f"--data_dir={glue}", f"--out={out}", "--tasks=rte,wsc", "--limit=48",
        "--batch_size=16", "--num_epochs=2", "--seq_len=64", *more,
    ]  # fmt: skip


def outputs(out: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


JOB = ("--steps=10,20", "--seeds=42,7")


@pytest.fixture(scope="module")
def job(tmp_path_factory, run, glue) -> pathlib.Path:
    """One whole job: 2 checkpoints x 2 tasks x 2 seeds."""
    out = tmp_path_factory.mktemp("job") / "ft"
    assert finetune_command.main(argv(run, glue, out, *JOB)) == 0
    return out


def test_checkpoints_fine_tuned_into_the_pipelines_tree_and_a_table(job, glue):
    out = job
    table = pd.read_csv(out / "finetune.csv")
    assert len(table) == 2 * 2 * 2 * 2  # checkpoints x tasks x seeds x epochs
    assert set(table["step"]) == {10, 20} and set(table["seed"]) == {42, 7}
    assert table.groupby(["step", "task", "seed"])["best"].sum().eq(1).all()
    valid_rows = {t: len((glue / f"{t}.valid.jsonl").read_text().splitlines()) for t in ("rte", "wsc")}
    for revision, step in (("step_10", 10), ("main", 20)):
        for task, n in valid_rows.items():
            folder = out / "results" / "tiny" / revision / "finetune" / task
            preds = json.loads((folder / "predictions.json").read_text())[task]["predictions"]
            assert [p["id"] for p in preds] == [f"{task}_{i}" for i in range(n)]
            unit = json.loads((out / "units" / "tiny" / f"step_{step}" / task / "seed_42.json").read_text())
            assert [p["pred"] for p in preds] == unit["predictions"]  # the first seed's results fill the tree
            lines = (folder / "results.txt").read_text().split("\n")
            best = table[(table.step == step) & (table.task == task) & (table.seed == 42) & table.best].iloc[0]
            assert [line.split(": ")[0] for line in lines] == ["accuracy", "f1", "mcc"]
            assert float(lines[0].split(": ")[1]) == pytest.approx(best["accuracy"])
    # chance: predicting the 48 training rows' most frequent label for every validation row
    for task in ("rte", "wsc"):
        train = [json.loads(line)["label"] for line in (glue / f"{task}.train.jsonl").read_text().splitlines()[:48]]
        valid = [json.loads(line)["label"] for line in (glue / f"{task}.valid.jsonl").read_text().splitlines()]
        majority = max(sorted(set(train)), key=train.count)
        chance = table.loc[table.task == task, "chance"]
        assert chance.eq(chance.iloc[0]).all() and chance.iloc[0] == pytest.approx(valid.count(majority) / len(valid))


def test_a_killed_job_continues_to_the_outputs_of_one_never_stopped(tmp_path, job, run, glue, monkeypatch, capsys):
    calls, real = [], train_lib.run_recipe

    def dies_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed mid-job: two units written, the third not
        return real(*args, **kwargs)

    monkeypatch.setattr(job_lib, "run_recipe", dies_on_the_third)
    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        finetune_command.main(argv(run, glue, killed, *JOB))
    assert len(list((killed / "units").rglob("seed_*.json"))) == 2
    monkeypatch.setattr(job_lib, "run_recipe", real)
    capsys.readouterr()
    assert finetune_command.main(argv(run, glue, killed, *JOB)) == 0
    assert "fine-tuned 6 units" in capsys.readouterr().out
    assert outputs(killed) == outputs(job)


@pytest.mark.parametrize(
    "extra,line",
    [
        (["--tasks=rte,cola9"], "unknown task 'cola9': the recipe knows boolq, cola"),
        (["--steps=15"], "run tiny: no checkpoint at step 15 (the series has 3 steps, 0 to 20)"),
        (["--seq_len=128"], "--seq_len=128 is beyond run tiny's context (model.max_len 64): pass --seq_len at most 64"),
        (["--pool=middle"], "flag --pool=middle: value should be one of <auto|first|last>"),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(tmp_path, run, glue, capsys, extra, line):
    out = tmp_path / "ft"
    try:
        status = finetune_command.main(argv(run, glue, out, *extra))
    except SystemExit as e:  # a flag's value absl refuses while parsing
        status = e.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert line in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_a_task_file_with_an_unknown_label_is_one_line_and_writes_nothing(tmp_path, run, glue, capsys):
    data = tmp_path / "glue"
    data.mkdir()
    for task in ("rte", "wsc"):
        for split in ("train", "valid"):
            (data / f"{task}.{split}.jsonl").write_bytes((glue / f"{task}.{split}.jsonl").read_bytes())
    rows = (data / "rte.valid.jsonl").read_text().splitlines()
    rows[3] = rows[3].replace('"label": 1', '"label": "entailment"').replace('"label": 0', '"label": "entailment"')
    (data / "rte.valid.jsonl").write_text("\n".join(rows) + "\n")
    out = tmp_path / "ft"
    assert finetune_command.main(argv(run, data, out)) == 2
    err = capsys.readouterr().err.strip()
    assert "rte.valid.jsonl:4" in err and "entailment" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_the_checkpoints_chosen_by_marks_and_every(run):
    from babyjax.finetune.config import FinetuneConfig
    from babyjax.score.runs import open_runs

    opened = open_runs(FinetuneConfig(run=[f"tiny={run}"]).run)[0]
    steps = lambda **kw: [int(e["step"]) for e in job_lib.checkpoints_of(opened, FinetuneConfig(**kw))]
    assert steps() == [0, 10, 20]
    assert steps(every=2) == [0, 20]
    assert steps(steps=(10,), every=2) == [0, 10, 20]
    assert steps(words=(500,)) == [10]  # 50 words a step: step 10 is the first to reach 500


def test_the_report_draws_each_task_across_training_and_splits_the_seeds_variance(tmp_path, job):
    from babyjax.analysis import report

    path = report.write_report([job], tmp_path / "report", progress=False)
    text = path.read_text()
    assert "## Fine-tuning across training" in text and "finetune_tasks.png" in text
    assert (tmp_path / "report" / "finetune_tasks.png").stat().st_size > 10_000
    units = pd.read_csv(tmp_path / "report" / "finetune_units.csv")
    assert len(units) == 8 and set(units["metric"]) == {"accuracy"} and units["chance"].notna().all()
    assert "| task | metric | mean | std | count | chance |" in text
    parts = pd.read_csv(tmp_path / "report" / "finetune_robustness.csv")
    assert list(parts["task"]) == ["rte", "wsc"] and (parts["seeds"] == 2).all() and (parts["runs"] == 1).all()
    assert parts["sd_pretrain"].isna().all() and parts["sd_finetune"].notna().all()  # one run: no pre-training part


def test_the_submission_check_reads_the_fine_tuning_tree(job, capsys):
    """babyjax.submit, given the job's folder as a results tree: RTE's and WSC's predictions are there and complete
    (the organisers' sizes), the other five tasks named as missing."""
    from babyjax.commands import submit

    argv = ["--model_path_or_name=tiny", "--backend=causal", f"--results_dir={job}", "--check"]
    assert submit.main(argv) == 2
    out = capsys.readouterr().out
    for task in ("boolq", "multirc", "mrpc", "qqp", "mnli"):
        assert f"tiny/main/finetune/{task}/predictions.json: missing ({task} fine-tuning)" in out
    assert "finetune/rte" not in out and "finetune/wsc" not in out

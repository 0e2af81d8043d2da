"""Export and import are inverse: a babyjax series exported as a git repository (`babyjax.export --git --names
steps`, one branch per checkpoint) and imported back (`--run NAME=hf:REPO`) scores, and reports, as the run itself."""

import numpy as np
import pandas as pd
import pytest

from babyjax.analysis.report import write_report
from babyjax.imported.run import ImportedRun
from babyjax.interop.export import export_git
from babyjax.score import ScoreConfig, load_scores, score_job
from tests.test_score import make_run, train_tiny_tokenizer

pytestmark = pytest.mark.slow
STEPS = tuple(range(0, 120, 10))  # a dozen checkpoints
WORDS_PER_STEP = 12.34  # words seen that are not whole, as a run counting the release's nominal words records them


@pytest.fixture(scope="module")
def series(tmp_path_factory, babylm_sample):
    tmp = tmp_path_factory.mktemp("roundtrip")
    tok = train_tiny_tokenizer(tmp, babylm_sample)
    make_run(tmp / "run", tok, steps=STEPS, words_per_step=WORDS_PER_STEP)
    export_git(tmp / "run", tmp / "repo", names="steps")
    return tmp


def test_the_imported_series_is_the_run(series):
    imported = ImportedRun(series / "repo")
    assert [e["step"] for e in imported.series_index()] == list(STEPS)
    assert [e["words_seen"] for e in imported.series_index()] == [WORDS_PER_STEP * s for s in STEPS]
    assert imported.config().data.packing == "pack" and imported.config().objective.kind == "causal"
    assert imported.findings == {}


def test_report_of_the_imported_series_equals_the_runs(series, babylm_sample, tmp_path):
    text = tmp_path / "dev.txt"
    lines = [t for t in (babylm_sample / "babylm_dev" / "aochildes.dev").read_text().splitlines() if t.strip()]
    text.write_text("\n".join(lines[:120]) + "\n")
    out = tmp_path / "scores"
    runs = (f"run={series / 'run'}", f"imported=hf:{series / 'repo'}")
    score_job(ScoreConfig(run=runs, kind="text", eval=(str(text),), out=str(out)))
    own, own_ck, _ = load_scores(out, "run")
    imp, imp_ck, _ = load_scores(out, "imported")
    assert list(imp_ck["status"]) == ["done"] * len(STEPS)
    np.testing.assert_array_equal(np.asarray(own), np.asarray(imp))  # the same parameters: the same numbers
    cols = ["step", "tokens_seen", "words_seen", "params_hash"]
    pd.testing.assert_frame_equal(own_ck[cols], imp_ck[cols])
    report = write_report([out], tmp_path / "report", progress=False)
    assert f"imported from hf:{(series / 'repo').resolve()}" in report.read_text()  # the study table describes it
    measures = pd.read_csv(report.parent / f"{out.name}_measures_per_run.csv.gz")
    a = measures[measures.run == "run"].drop(columns="run").reset_index(drop=True)
    b = measures[measures.run == "imported"].drop(columns="run").reset_index(drop=True)
    assert a.notna().to_numpy().sum() > len(a)  # measures were computed, not all left out
    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), atol=1e-5, rtol=0, equal_nan=True)

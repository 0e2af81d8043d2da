"""Write the BabyLM 2025 submission file from the results of a model's evaluations, as the organisers'
collate_preds.py writes it, after checking that every piece they ask for is there (babyjax/analysis/submission.py;
docs/submission.md). Every missing or incomplete piece is named in one line, and nothing is written until none is.

    E=../shared/data/babylm_eval_2025
    python -m babyjax.submit --model_path_or_name tiny --backend causal --track strict-small \\
      --results_dir scores/full --results_dir scores/fast --fast --fast_eval_dir $E --check   # what is missing
    python -m babyjax.submit --model_path_or_name tiny --backend causal --track strict-small \\
      --results_dir scores/full --results_dir scores/fast --fast --fast_eval_dir $E        # write it

The results trees are babyjax score outputs (their `results/`) or the pipeline's own `results/` folders; each file is
taken from the first tree that holds it, and the submission file is written into the first:
`<results_dir>/<model>/all_full_preds_and_fast_scores_<backend>.json`.
"""

from __future__ import annotations

import pathlib

from absl import flags

from babyjax.analysis import submission
from babyjax.analysis.submission_rules import BACKENDS
from babyjax.commands import cli
from babyjax.data.ewok_comps import PASSWORD_ENV
from babyjax.errors import InputError


def define(fv: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "model_path_or_name", None, "the model; its stem names its folder in the results trees", flag_values=fv
    )
    flags.DEFINE_enum(
        "backend", None, list(BACKENDS), "the backend its zero-shot results were scored with", flag_values=fv
    )
    flags.DEFINE_multi_string(
        "results_dir",
        ["results"],
        "a results tree (a babyjax score output or its results/, or the pipeline's results/); repeat it for results "
        "in several trees: each file is taken from the first that holds it, the submission written into the first",
        flag_values=fv,
    )
    flags.DEFINE_string("revision_name", "main", "the revision whose full results are submitted", flag_values=fv)
    flags.DEFINE_bool("fast", False, "add the fast metrics of every revision the track asks for", flag_values=fv)
    flags.DEFINE_string(
        "fast_eval_dir",
        "evaluation_data/fast_eval",
        "the organisers' fast sets (blimp_fast/, supplement_fast/, ewok_fast/ or ewok_fast.zip, entity_tracking_fast/, "
        "wug_adj_nominalization/, wug_past_tense/, reading/)",
        flag_values=fv,
    )
    flags.DEFINE_enum(
        "track",
        "strict",
        ["strict-small", "multimodal", "strict", "interaction"],
        "the track, which decides the revisions the fast metrics and AoA need (multimodal: not babyjax's)",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "ewok_password",
        None,
        f"the password of ewok_fast.zip (default: ${PASSWORD_ENV}; it is in the pipeline's README)",
        flag_values=fv,
    )
    flags.DEFINE_bool("check", False, "only list what is missing; write nothing", flag_values=fv)


def run(f: flags.FlagValues, args: list[str]) -> None:
    del args
    if not f.model_path_or_name or not f.backend:
        raise InputError("--model_path_or_name and --backend are required")
    model = submission.model_name(f.model_path_or_name)
    request = submission.Request(
        model=model,
        backend=f.backend,
        results_dirs=tuple(submission.results_tree(d, model) for d in f.results_dir),
        track=f.track,
        revision=f.revision_name,
        fast=f.fast,
        fast_eval_dir=pathlib.Path(f.fast_eval_dir),
        ewok_password=f.ewok_password,
    )
    contents, missing = submission.collate(request)
    for line in missing:
        print(line, flush=True)
    if missing:
        raise InputError(
            f"the {f.track} submission of {model} ({f.backend}) is incomplete: {len(missing)} pieces missing or "
            "incomplete, listed above; nothing written"
        )
    if f.check:
        print(f"complete: every piece of the {f.track} submission of {model} ({f.backend}) is there; nothing written")
        return
    print(f"wrote {submission.write(request, contents)}")


main = cli.Command(
    usage="python -m babyjax.submit --model_path_or_name MODEL --backend causal|mlm|mntp [--fast] [--check]",
    doc=__doc__,
    define=define,
    main=run,
    prog="babyjax.submit",
    spellings={},
)

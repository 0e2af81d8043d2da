"""Generate text from fixed prompts at checkpoints of a run's series (babyjax/score/generate.py): written to
<workdir>/generations.json (or --out) and printed.

    python -m babyjax.generate --workdir runs/tiny                               # a handful of steps, default prompts
    python -m babyjax.generate --workdir runs/tiny --steps 0,100,600 --prompt "the little" --prompt "do you want"
"""

from __future__ import annotations

import json

from absl import flags

from babyjax.commands import cli
from babyjax.errors import InputError
from babyjax.score import generate


def define(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("workdir", None, "babyjax run directory", flag_values=fv)
    flags.mark_flag_as_required("workdir", flag_values=fv)
    flags.DEFINE_string("steps", "", "comma-separated series steps (default: ~6 spread over log-step)", flag_values=fv)
    flags.DEFINE_multi_string(
        "prompt",
        [],
        f"a prompt (repeatable; default: a few child-directed openings: {', '.join(generate.DEFAULT_PROMPTS)})",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "heldout_prompts",
        0,
        "N prompts from the run's own dev text instead (the first 3 words of N documents, seeded)",
        flag_values=fv,
    )
    flags.DEFINE_integer("max_new_tokens", 40, "tokens generated after each prompt at most", flag_values=fv)
    flags.DEFINE_float("temperature", 0.0, "0 = greedy", flag_values=fv)
    flags.DEFINE_integer("top_k", 0, "sample among the k most likely tokens (0 = all)", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "the sampling seed (and the held-out prompts')", flag_values=fv)
    flags.DEFINE_string("out", None, "output JSON (default: <workdir>/generations.json)", flag_values=fv)


def run(f: flags.FlagValues, args: list[str]) -> int:
    del args
    try:
        steps = [int(s) for s in f.steps.split(",") if s.strip()] or None
    except ValueError:
        raise InputError(f"--steps={f.steps!r}: give comma-separated integers") from None
    prompts = f.prompt or generate.DEFAULT_PROMPTS
    if f.heldout_prompts != 0:
        prompts = generate.heldout_prompts(f.workdir, f.heldout_prompts, seed=f.seed)
    path = generate.write_generations(
        f.workdir,
        steps,
        prompts,
        f.out,
        max_new_tokens=f.max_new_tokens,
        temperature=f.temperature,
        top_k=f.top_k,
        seed=f.seed,
    )
    for step, texts in json.loads(path.read_text()).items():
        print(f"step {step}")
        for prompt, text in texts.items():
            print(f"  {prompt!r} -> {text!r}")
    print(f"generations written to {path}")
    return 0


main = cli.Command(
    usage="python -m babyjax.generate --workdir RUN",
    doc=__doc__,
    define=define,
    main=run,
    prog="babyjax.generate",
    spellings={},
)

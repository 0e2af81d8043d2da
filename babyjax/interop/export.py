"""Export series checkpoints to Hugging Face transformers (PyTorch) folders, with a tokenizer HF loads offline.

    python -m babyjax.export --workdir runs/tiny --step 600 --out hf/tiny-600
    python -m babyjax.export --workdir runs/ss --series --out hf/ss            # chck_1M/, chck_2M/, ... by words seen
    python -m babyjax.export --workdir runs/tiny --series --names steps --out hf/tiny   # step_0/, step_1/, ...
    python -m babyjax.export --workdir runs/ss --git --out hf/ss-repo     # one git repo: branches chck_1M, ..., main

This module writes the folders (one checkpoint, a series, a git repository); what goes into them comes from
hf_config.py (the HF class, from the model's features, and its config), hf_params.py (the parameters in HF's names and
layouts, as a PyTorch model) and hf_tokenizer.py (the run's SentencePiece ids as a fast tokenizer; `</s>` starts a
document, babyjax.score's `eot_context`). torch and transformers (the `peers` extra) are imported lazily.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from typing import Any

from babyjax import paths
from babyjax.checkpoints import series as checkpoints
from babyjax.checkpoints.run import RunDir
from babyjax.checkpoints.schedules import words_checkpoint_names
from babyjax.errors import ExistsError, InputError
from babyjax.interop.hf_config import LTG, REMOTE_CODE, hf_class_name, require_peers
from babyjax.interop.hf_params import hf_model, numpy_params
from babyjax.interop.hf_tokenizer import hf_tokenizer, portable_tokenizer_class

log = logging.getLogger("babyjax")

EXPORT_INFO = "babyjax_export.json"


def export_checkpoint(
    workdir: str | os.PathLike, step: int, out: str | os.PathLike, *, overwrite: bool = False
) -> pathlib.Path:
    """Write series step `step` of the run in `workdir` as a HF folder `out` (model, config, tokenizer, provenance),
    written beside `out` and renamed into place when complete. The provenance, babyjax_export.json, says where the
    weights come from (source, step, tokens and words seen, params_hash, tokenizer_hash), how to score them
    (first_token) and how the run was trained (objective: objective.kind, packing: data.packing, seq_len:
    data.seq_len; exports written before these keys lack them)."""
    torch, _ = require_peers()
    run, out = RunDir.open(workdir), pathlib.Path(out)
    _refuse_inside_run(out, run.path)
    tok, index, config = run.tokenizer(), run.series_index(), run.config()
    cfg = run.model_config(tok.vocab_size)
    entry = next((e for e in index if int(e["step"]) == int(step)), None)
    if entry is None:
        raise InputError(
            f"no checkpoint at step {step} in {run.path} (the series has steps {index[0]['step']}..{index[-1]['step']})"
        )
    if out.exists() and not overwrite:
        raise ExistsError(f"{out} exists: choose another --out or pass --overwrite")
    model = hf_model(numpy_params(checkpoints.restore_params(run.path, int(step))), cfg)  # hash-verified parameters
    info = {
        "source": str(paths.absolute(run.path, resolve=True)),
        "step": int(step),
        "style": cfg.style,
        "tokens_seen": entry.get("tokens_seen"),
        "words_seen": entry.get("words_seen"),
        "params_hash": entry.get("params_hash"),
        "tokenizer_hash": tok.sha256,
        "first_token": "the tokenizer prepends '</s>' (id 3), as babyjax scores masked LMs"
        if cfg.encoder
        else "score after one EOS token '</s>' (id 3): babyjax.score's eot_context",
        "objective": str(config.objective.kind),
        "packing": str(config.data.packing),
        "seq_len": int(config.data.seq_len),
    }

    def fill(tmp: pathlib.Path) -> None:
        with torch.no_grad():
            model.save_pretrained(tmp)
        (tmp / "tokenizer.model").write_bytes(tok.path.read_bytes())  # the run may live on cloud storage
        hf_tokenizer(tmp / "tokenizer.model", cfg.max_len, masked=cfg.encoder).save_pretrained(tmp)
        portable_tokenizer_class(tmp / "tokenizer_config.json")
        (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=1))
        if hf_class_name(cfg) == LTG:  # the modelling code travels with the weights (trust_remote_code=True)
            (tmp / REMOTE_CODE).write_text(_modelling_code())

    return paths.write_folder(out, fill, overwrite=True)


def _refuse_inside_run(out: pathlib.Path, run_path: Any) -> None:
    """An export folder is replaced whole: never the run's own folder or one that holds it."""
    if paths.is_cloud(run_path):
        return
    src, dst = pathlib.Path(os.fspath(run_path)).resolve(), out.resolve()
    if dst == src or dst in src.parents:
        raise InputError(f"--out {out} is the run's folder or holds it: export to a folder outside {src}")


def _modelling_code() -> str:
    """The modelling code an LTG-BERT export ships (babyjax/interop/hf_ltg_bert.py)."""
    return pathlib.Path(__file__).with_name("hf_ltg_bert.py").read_text()


def _code_current(shipped: str | None) -> bool:
    """Whether an export's modelling code (None: it ships none) is this version's; an export of the same step with
    other code is written again, so that a resumed export gets every class this version registers (AutoModel)."""
    return shipped is None or shipped.strip() == _modelling_code().strip()


def _exported_here(target: pathlib.Path, source: str, step: int, overwrite: bool) -> bool:
    """Whether `target` already holds this run's export of `step` with this version's modelling code (kept); a folder
    holding anything else is refused unless `overwrite`."""
    if not target.exists() or overwrite:
        return False
    try:
        info = json.loads((target / EXPORT_INFO).read_text())
    except (OSError, ValueError):
        info = {}
    if info.get("step") == step and info.get("source") == source:
        code = target / REMOTE_CODE
        return _code_current(code.read_text() if code.is_file() else None)
    raise ExistsError(
        f"{target} exists and is not this run's export of step {step}: choose another --out or pass "
        "--overwrite to replace it"
    )


def series_names(index: Sequence[dict], names: str = "words") -> dict[str, int]:
    """Folder name -> step: 'words' = BabyLM 2025 chck_<N>M (first step reaching each mark), 'steps' = step_<n>."""
    if names == "steps":
        return {f"step_{int(e['step'])}": int(e["step"]) for e in index}
    if names != "words":
        raise InputError(f"unknown naming {names!r}: use 'words' or 'steps'")
    most = max(float(e.get("words_seen", 0)) for e in index)
    found = words_checkpoint_names(index, most)
    if not found:
        raise InputError(f"no checkpoint has seen 1M words (the last saw {most:,.0f}): use --names steps")
    return found


def export_series(
    workdir: str | os.PathLike, out: str | os.PathLike, *, names: str = "words", overwrite: bool = False
) -> dict[str, pathlib.Path]:
    """Export every checkpoint of the series (or one per words-seen mark) into `out/<name>/`; resumable: folders
    already exported are kept."""
    require_peers()
    run = RunDir.open(workdir)
    index, done, source = run.series_index(), {}, str(paths.absolute(run.path, resolve=True))
    for name, step in series_names(index, names).items():
        target = pathlib.Path(out) / name
        _refuse_inside_run(target, run.path)
        if _exported_here(target, source, step, overwrite):
            done[name] = target
            continue
        done[name] = export_checkpoint(workdir, step, target, overwrite=True)
        log.info("exported step %d -> %s", step, target)
    return done


GITATTRIBUTES = "".join(f"*.{ext} filter=lfs diff=lfs merge=lfs -text\n" for ext in ("safetensors", "bin", "model"))
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "babyjax",
    "GIT_AUTHOR_EMAIL": "babyjax@localhost",
    "GIT_COMMITTER_NAME": "babyjax",
    "GIT_COMMITTER_EMAIL": "babyjax@localhost",
}


def _clean_env() -> dict[str, str]:
    """The environment without the user's GIT_* variables (a GIT_DIR set in a shell must not redirect the export)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}


def _git(repo: pathlib.Path, *args: str, env: dict | None = None) -> str:
    env = {**_clean_env(), **_GIT_ENV, **(env or {})}
    done = subprocess.run(
        ["git", "--git-dir", str(repo.resolve() / ".git"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=env.get("GIT_WORK_TREE"),
    )
    if done.returncode:
        why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise InputError(f"git {args[0]} in {repo} failed: {why}")
    return done.stdout.strip()


def _branch_step(repo: pathlib.Path, branch: str) -> int | None:
    """The series step a branch of an exported repository holds (its babyjax_export.json), None if it has none or
    ships other modelling code than this version's."""
    try:
        step = int(json.loads(_git(repo, "show", f"{branch}:{EXPORT_INFO}"))["step"])
    except (InputError, ValueError, KeyError):
        return None
    try:
        code = _git(repo, "show", f"{branch}:{REMOTE_CODE}")
    except InputError:  # not an LTG-BERT export
        code = None
    return step if _code_current(code) else None


def _commit_folder(repo: pathlib.Path, folder: pathlib.Path, message: str) -> str:
    """A new root commit holding exactly the files of `folder` (plumbing: no checkout); returns its id."""
    (folder / ".gitattributes").write_text(GITATTRIBUTES)  # the Hub keeps weights in LFS (when git-lfs is set up)
    env = {"GIT_INDEX_FILE": str(folder.parent.resolve() / "index"), "GIT_WORK_TREE": str(folder.resolve())}
    _git(repo, "add", "-A", ".", env=env)
    return _git(repo, "commit-tree", _git(repo, "write-tree", env=env), "-m", message)


def export_git(workdir: str | os.PathLike, out: str | os.PathLike, *, names: str = "words") -> dict[str, int]:
    """The series as one git repository `out`: a branch per checkpoint (chck_<N>M or step_<n>) and `main` at the
    series' last checkpoint, checked out; what the BabyLM 2025 pipeline's --revision_name reads once the repository
    is pushed to the Hugging Face Hub (git push --all). Resumable: branches already holding their step are kept.
    Returns branch -> step."""
    require_peers()
    if shutil.which("git") is None:
        raise InputError("git not found: install git to export a series as a repository")
    out, index = pathlib.Path(out).resolve(), RunDir.open(workdir).series_index()
    chosen = {**series_names(index, names), "main": int(index[-1]["step"])}
    if not (out / ".git").is_dir():
        if out.exists() and any(out.iterdir()):
            raise ExistsError(f"{out} exists and is not a git repository: choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", str(out)], check=True, capture_output=True, env=_clean_env())
        _git(out, "symbolic-ref", "HEAD", "refs/heads/main")
    commits = {
        step: _git(out, "rev-parse", branch) for branch, step in chosen.items() if _branch_step(out, branch) == step
    }  # kept from an earlier export
    for branch, step in chosen.items():
        if step not in commits:  # each step exported once, main shares its last checkpoint's commit
            with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
                folder = export_checkpoint(workdir, step, pathlib.Path(tmp) / "hf")
                commits[step] = _commit_folder(out, folder, f"series step {step}")
            log.info("exported step %d -> branch %s of %s", step, branch, out)
        _git(out, "update-ref", f"refs/heads/{branch}", commits[step])
    subprocess.run(
        ["git", "-C", str(out), "checkout", "-q", "-f", "main"], check=True, capture_output=True, env=_clean_env()
    )
    return chosen

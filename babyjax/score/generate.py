"""Text from fixed prompts at checkpoints of a series: `<workdir>/generations.json` ({step: {prompt: prompt +
continuation}}), the report's "Generated text at checkpoints" (as Chang, Tu & Bergen 2023 show along pre-training).

    python -m babyjax.generate --workdir runs/tiny                               # a handful of steps, default prompts
    python -m babyjax.generate --workdir runs/tiny --steps 0,100,600 --prompt "the little" --prompt "do you want"

A prompt follows one EOS (id 3), like every training document; generation stops at EOS (not in the text) or after
`max_new_tokens`; the model reads the latest `max_len` tokens, at positions 0..max_len-1. `temperature=0` is greedy,
else tokens are sampled from softmax(logits / temperature) among the `top_k` most likely (0 = all), from a random
stream per prompt that depends only on `seed` and the prompt text (one prompt's texts at two steps differ only by what
the model learned). One jitted loop (no KV cache), compiled once per run, runs all prompts at every checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
import zlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx

from babyjax import paths
from babyjax.checkpoints import series as checkpoints
from babyjax.checkpoints.run import RunDir
from babyjax.data.tokenizer import EOS_ID, PAD_ID
from babyjax.errors import InputError
from babyjax.model import objectives
from babyjax.model.transformer import Transformer

# Openings of child-directed speech and children's stories, the genres of BabyLM's data (CHILDES, CBT, stories).
DEFAULT_PROMPTS: tuple[str, ...] = ("the little", "once upon a time", "do you want", "look at the", "where is the")


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How the next token is chosen (see module docstring)."""

    max_new_tokens: int = 40
    temperature: float = 0.0
    top_k: int = 0
    seed: int = 0

    def check(self, vocab_size: int) -> None:
        if self.max_new_tokens < 1:
            raise InputError(f"max_new_tokens={self.max_new_tokens}: generate at least 1 token")
        if not (self.temperature >= 0.0 and math.isfinite(self.temperature)):
            raise InputError(f"temperature={self.temperature}: use 0 (greedy) or a positive number")
        if not 0 <= self.top_k <= vocab_size:
            raise InputError(f"top_k={self.top_k}: use 0 (no restriction) up to the vocabulary size {vocab_size}")


def _sample_loop(
    graphdef: nnx.GraphDef,
    rest: nnx.State,
    params: nnx.State,
    tokens_BxN: jax.Array,
    lengths_B: jax.Array,
    keys_B: jax.Array,
    *,
    max_len: int,
    max_new_tokens: int,
    temperature: float,
    top_k: int,
) -> tuple[jax.Array, jax.Array]:
    """Extend each row of `tokens_BxN` (its first `lengths_B` tokens are the prompt) by up to `max_new_tokens`, in one
    lax.while_loop; a row stops after writing EOS. Returns the buffer and the new lengths."""
    model = nnx.merge(graphdef, params, rest)
    b, n = tokens_BxN.shape
    w = min(max_len, n)  # the window the model reads
    rows_B = jnp.arange(b)
    window_of = jax.vmap(lambda row_N, start: jax.lax.dynamic_slice(row_N, (start,), (w,)))

    def next_token(i: jax.Array, tokens_BxN: jax.Array, lengths_B: jax.Array) -> jax.Array:
        start_B = jnp.clip(lengths_B - w, 0, n - w)
        last_Bx1 = (lengths_B - 1 - start_B)[:, None]  # the last token's column in the window
        last_Bx1xD = model.features(window_of(tokens_BxN, start_B), causal=True, cols=last_Bx1)  # positions 0..w-1
        logits_BxV = model.logits(last_Bx1xD)[:, 0]
        if temperature == 0.0:
            return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
        logits_BxV = logits_BxV / temperature
        if 0 < top_k < logits_BxV.shape[-1]:
            kth_Bx1 = jax.lax.top_k(logits_BxV, top_k)[0][:, -1:]
            logits_BxV = jnp.where(logits_BxV < kth_Bx1, -jnp.inf, logits_BxV)
        step_keys_B = jax.vmap(lambda k: jax.random.fold_in(k, i))(keys_B)
        return jax.vmap(jax.random.categorical)(step_keys_B, logits_BxV).astype(jnp.int32)

    def cond(carry: tuple) -> jax.Array:
        i, _, _, done_B = carry
        return (i < max_new_tokens) & ~jnp.all(done_B)

    def body(carry: tuple) -> tuple:
        i, tokens_BxN, lengths_B, done_B = carry
        new_B = next_token(i, tokens_BxN, lengths_B)
        at_B = jnp.minimum(lengths_B, n - 1)  # a finished row writes its last token again
        tokens_BxN = tokens_BxN.at[rows_B, at_B].set(jnp.where(done_B, tokens_BxN[rows_B, at_B], new_B))
        lengths_B = lengths_B + (~done_B).astype(jnp.int32)
        return i + 1, tokens_BxN, lengths_B, done_B | (new_B == EOS_ID)

    done_B = jnp.zeros((b,), jnp.bool_)
    _, tokens_BxN, lengths_B, _ = jax.lax.while_loop(cond, body, (jnp.int32(0), tokens_BxN, lengths_B, done_B))
    return tokens_BxN, lengths_B


class Generator:
    """A run's model, tokenizer and jitted sampler (compiled once per run and sampling setting, reused per step)."""

    def __init__(self, workdir: str | os.PathLike):
        self.run = RunDir.open(workdir)
        self.workdir, self.tokenizer = self.run.path, self.run.tokenizer()
        self.steps = [int(e["step"]) for e in self.run.series_index()]
        self.model_cfg = dataclasses.replace(self.run.model_config(self.tokenizer.vocab_size), dropout=0.0, remat=False)
        objective = objectives.features(self.run.config())
        if not objective.causal_capable:
            raise InputError(
                f"run {self.run.name} is a masked LM (objective {objective.kind!r}): it does not generate text; "
                "babyjax.generate needs a causal or hybrid run"
            )
        abstract_model = nnx.eval_shape(lambda: Transformer(self.model_cfg, rngs=nnx.Rngs(0)))
        self.graphdef, abstract, self._rest = nnx.split(abstract_model, nnx.Param, ...)
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        self.abstract_params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), abstract)
        self._fn = jax.jit(
            functools.partial(_sample_loop, self.graphdef, self._rest),
            static_argnames=("max_len", "max_new_tokens", "temperature", "top_k"),
        )

    def check_steps(self, steps: Sequence[int]) -> list[int]:
        """`steps` as ints, each a step of the series (an InputError names the steps there are otherwise)."""
        bad = [s for s in steps if int(s) != s or int(s) not in self.steps]
        if bad:
            have = (
                ", ".join(map(str, self.steps))
                if len(self.steps) <= 12
                else f"{', '.join(map(str, self.steps[:6]))}, ..., {', '.join(map(str, self.steps[-3:]))}"
            )
            raise InputError(
                f"no checkpoint at step {bad[0]} in {self.workdir}: the series has {len(self.steps)} steps ({have})"
            )
        return [int(s) for s in steps]

    def restore(self, step: int) -> nnx.State:
        """The parameters of series step `step` (hash-verified), on one device."""
        return checkpoints.restore_params(self.workdir, self.check_steps([step])[0], self.abstract_params)

    def prompt_ids(self, prompt: str) -> list[int]:
        """EOS followed by the prompt's tokens (the start of a document in the training stream)."""
        return [EOS_ID, *self.tokenizer.encode(prompt)]

    def generate_ids(self, params: nnx.State, prompts: Sequence[str], sampling: Sampling) -> list[list[int]]:
        """The new token ids of each prompt (EOS, if generated, ends the list and is kept)."""
        sampling.check(self.tokenizer.vocab_size)
        if not prompts:
            return []
        max_len = self.model_cfg.max_len
        tails = [self.prompt_ids(p)[-max_len:] for p in prompts]  # the model never reads more than max_len
        lengths_B = np.array([len(t) for t in tails], np.int32)
        tokens_BxN = np.full((len(prompts), lengths_B.max() + sampling.max_new_tokens), PAD_ID, np.int32)
        for row, tail in enumerate(tails):
            tokens_BxN[row, : len(tail)] = tail
        seed_key = jax.random.key(sampling.seed)  # a prompt's random key depends only on the seed and its text
        keys_B = jnp.stack([jax.random.fold_in(seed_key, zlib.crc32(p.encode("utf-8")) & 0x7FFFFFFF) for p in prompts])
        out_BxN, new_lengths_B = map(
            np.asarray,
            self._fn(
                params,
                tokens_BxN,
                lengths_B,
                keys_B,
                max_len=max_len,
                max_new_tokens=sampling.max_new_tokens,
                temperature=float(sampling.temperature),
                top_k=int(sampling.top_k),
            ),
        )
        return [out_BxN[r, lengths_B[r] : new_lengths_B[r]].tolist() for r in range(len(prompts))]

    def generate(self, step: int, prompts: Sequence[str], sampling: Sampling) -> dict[str, str]:
        """{prompt: the prompt and its continuation (up to, not including, EOS) as text} at one series step."""
        ids = self.generate_ids(self.restore(step), prompts, sampling)
        ids = [list(itertools.takewhile(lambda t: t != EOS_ID, new)) for new in ids]
        return {p: self.tokenizer.decode(self.prompt_ids(p)[1:] + new) for p, new in zip(prompts, ids)}


def generate(
    workdir: str | os.PathLike,
    steps: Sequence[int],
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 40,
    temperature: float = 0.0,
    top_k: int = 0,
    seed: int = 0,
) -> dict[int, dict[str, str]]:
    """{step: {prompt: prompt + continuation}} for series `steps` of the run in `workdir` (see module docstring)."""
    gen = Generator(workdir)
    sampling = Sampling(max_new_tokens, temperature, top_k, seed)
    sampling.check(gen.tokenizer.vocab_size)
    prompts = list(dict.fromkeys(prompts))
    return {step: gen.generate(step, prompts, sampling) for step in gen.check_steps(steps)}


def heldout_prompts(workdir: str | os.PathLike, n: int, words: int = 3, seed: int = 0) -> list[str]:
    """`n` prompts from the run's own held-out text: the first `words` words of documents of its dev split (drawn
    with `seed` among those with at least `words` + 5 words). Never prepares the dataset."""
    from babyjax.data.pipeline import load_split_tokens

    if n < 1:
        raise InputError(f"--heldout_prompts={n}: ask for at least one prompt (0: the default prompts)")
    run = RunDir.open(workdir)
    cfg, tok = run.config(), run.tokenizer()
    split = load_split_tokens(cfg.data, tok, cfg.data.get("dev_split", "dev"), prepare=False)
    long_enough = np.flatnonzero(np.diff(np.asarray(split.words_cum)) >= words + 5)  # words counted when prepared
    if len(long_enough) < n:
        raise InputError(
            f"the dev split holds {len(long_enough)} documents of {words + 5}+ words; ask for at most "
            "that many held-out prompts"
        )
    starts = np.asarray(split.doc_starts)
    pick = np.sort(np.random.default_rng(seed).choice(long_enough, n, replace=False))  # only these are decoded
    return [
        " ".join(tok.decode(np.asarray(split.tokens[starts[d] + 1 : starts[d + 1]]).tolist()).split()[:words])
        for d in pick
    ]


def spread_steps(steps: Sequence[int], n: int = 6) -> list[int]:
    """About `n` of `steps` spread evenly over log10(step + 1), always with the first and the last."""
    steps = sorted({int(s) for s in steps})
    if len(steps) <= n:
        return steps
    x = np.log10(np.asarray(steps, np.float64) + 1.0)
    return sorted({steps[int(np.argmin(np.abs(x - t)))] for t in np.linspace(x[0], x[-1], n)})


def write_generations(
    workdir: str | os.PathLike,
    steps: Sequence[int] | None = None,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    out: str | os.PathLike | None = None,
    *,
    max_new_tokens: int = 40,
    temperature: float = 0.0,
    top_k: int = 0,
    seed: int = 0,
) -> epath.Path:
    """Generate at `steps` (None: about 6 series steps spread over log-step) and write {step: {prompt: text}} to
    `out` (None: <workdir>/generations.json), atomically: the file is replaced only once everything is generated."""
    if not prompts:
        raise InputError("no prompts: pass at least one --prompt")
    run = RunDir.open(workdir)
    path = paths.absolute(out) if out is not None else run.generations_path
    _refuse_other_file(path)
    steps = spread_steps([int(e["step"]) for e in run.series_index()]) if steps is None else steps
    gens = generate(
        run.path, steps, prompts, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, seed=seed
    )
    paths.write_atomic(path, json.dumps({str(s): texts for s, texts in gens.items()}, indent=1, ensure_ascii=False))
    return path


def _refuse_other_file(path: epath.Path) -> None:
    """--out may be new or an earlier generations file ({step: {prompt: text}}), never a folder or another file."""
    if path.is_dir():
        raise InputError(f"--out {path} is a folder: give a file, e.g. {path / 'generations.json'}")
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text())
        ours = isinstance(old, dict) and all(k.isdigit() and isinstance(v, dict) for k, v in old.items())
    except (ValueError, UnicodeDecodeError):
        ours = False
    if not ours:
        raise InputError(
            f"--out {path} exists and is not a generations file: choose another path (it is not overwritten)"
        )

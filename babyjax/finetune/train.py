"""One fine-tuning by the BabyLM 2025 pipeline's recipe (evaluation_pipeline/finetune/trainer.py, eval_finetuning.sh):
AdamW on every parameter, the learning rate from 0 up over the warm-up share of the steps then down a cosine to
`min_factor` of the peak, shuffled batches with the last partial one dropped, an evaluation on the validation rows
after every epoch, the best epoch's parameters kept (the first of equal scores) and their predictions returned.

Batches are padded to a width of BUCKET tokens' multiples (the pipeline pads to each batch's longest row: the same
numbers, as padding is masked and the pooled column is a real token), so that few shapes compile. A training batch is
packed: its rows placed several to a row of that width, each in its own segment with positions from 0, so that the
step computes little padding; the numbers are the same again (attention stays within a segment)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from babyjax.data.tokenizer import PAD_ID
from babyjax.errors import InputError
from babyjax.finetune.model import Classifier
from babyjax.model.sharding import logical_to_spec, tree_shardings

BUCKET = 32
PACK_ROWS = 4  # a packed batch's rows and examples per row are counted in multiples of this (few shapes compile)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The pipeline's fine-tuning hyperparameters (run.py's defaults as eval_finetuning.sh passes them); the batch
    size and epochs of each task are in babyjax.finetune.tasks."""

    learning_rate: float = 3e-5
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.01
    warmup_proportion: float = 0.06
    min_factor: float = 0.1
    classifier_dropout: float = 0.1
    valid_batch_size: int = 64
    batch_size: int = 32
    num_epochs: int = 10


def lr_schedule(recipe: Recipe, total_steps: int) -> optax.Schedule:
    """The pipeline's cosine_schedule_with_warmup as torch's LambdaLR applies it: update k (from 0) uses
    peak * k / warmup during the int(warmup_proportion * total) warm-up steps (0 at the first), then
    peak * max(m, m + (1 - m) (1 + cos(pi p)) / 2), p the share of the remaining steps done, m = min_factor."""
    warmup, m, peak = int(recipe.warmup_proportion * total_steps), recipe.min_factor, recipe.learning_rate

    def schedule(count: jax.Array) -> jax.Array:
        k = jnp.asarray(count, jnp.float32)
        up = k / max(1, warmup)
        progress = (k - warmup) / max(1, total_steps - warmup)
        down = jnp.maximum(m, m + (1.0 - m) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress)))
        return peak * jnp.where(k < warmup, up, down)

    return schedule


def optimizer(recipe: Recipe, total_steps: int) -> optax.GradientTransformation:
    """torch.optim.AdamW(lr=schedule, betas, eps, weight_decay) on every parameter (decoupled decay, scaled by the
    learning rate, as torch applies it)."""
    return optax.adamw(
        lr_schedule(recipe, total_steps), recipe.beta1, recipe.beta2, recipe.eps, weight_decay=recipe.weight_decay
    )


def padded(rows: Sequence[Sequence[int]], labels: np.ndarray | None = None, multiple: int = 1) -> dict[str, np.ndarray]:
    """One batch: inputs int32 [B, W] right-padded with PAD_ID to W, the longest row rounded up to BUCKET; lengths
    int32 [B]; labels int32 [B] when given. Rows of one PAD_ID are appended up to a multiple of `multiple` (the
    data-parallel devices); their outputs are dropped."""
    rows = list(rows) + [[PAD_ID]] * (-len(rows) % multiple)
    width = -(-max(len(r) for r in rows) // BUCKET) * BUCKET
    inputs = np.full((len(rows), width), PAD_ID, np.int32)
    for i, r in enumerate(rows):
        inputs[i, : len(r)] = r
    out = {"inputs": inputs, "lengths": np.array([len(r) for r in rows], np.int32)}
    if labels is not None:
        out |= _labels_and_weights(labels, len(rows))
    return out


def _labels_and_weights(labels: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """labels int32 [size] and weights float32 [size] (1 for the batch's examples, 0 for the rows added to fill
    the devices), so that the loss is the mean over the batch's own examples."""
    n = len(labels)
    return {
        "labels": np.concatenate([np.asarray(labels, np.int32), np.zeros(size - n, np.int32)]),
        "weights": np.concatenate([np.ones(n, np.float32), np.zeros(size - n, np.float32)]),
    }


def packed(rows: Sequence[Sequence[int]], labels: np.ndarray, multiple: int = 1) -> dict[str, np.ndarray]:
    """One training batch of B rows packed into R rows of width W (the longest row rounded up to BUCKET), longest
    first, each into the first packed row it fits: inputs, segments (1, 2, ... an example, 0 padding) and positions
    (from 0 in each example) int32 [R, W]; starts and lengths int32 [R, K] (each packed row's examples, K slots,
    empty ones of length 0); take int32 [B] (example b's slot in the flattened [R * K]), labels and weights, as
    `padded` gives them, B rounded up to a multiple of `multiple`. R is a multiple of PACK_ROWS and `multiple`, K of
    PACK_ROWS."""
    width = -(-max(len(r) for r in rows) // BUCKET) * BUCKET
    placed: list[list[int]] = []  # the examples of each packed row
    free: list[int] = []
    for b in sorted(range(len(rows)), key=lambda i: -len(rows[i])):
        j = next((j for j, room in enumerate(free) if room >= len(rows[b])), len(placed))
        if j == len(placed):
            placed.append([])
            free.append(width)
        placed[j].append(b)
        free[j] -= len(rows[b])
    n_rows = -(-len(placed) // (PACK_ROWS * multiple)) * PACK_ROWS * multiple
    slots = -(-max(len(p) for p in placed) // PACK_ROWS) * PACK_ROWS
    out = {k: np.zeros((n_rows, width), np.int32) for k in ("inputs", "segments", "positions")}
    out["inputs"][:] = PAD_ID
    out |= {k: np.zeros((n_rows, slots), np.int32) for k in ("starts", "lengths")}
    size = -(-len(rows) // multiple) * multiple
    out |= {"take": np.zeros(size, np.int32)} | _labels_and_weights(labels, size)
    for j, examples in enumerate(placed):
        at = 0
        for k, b in enumerate(examples):
            n = len(rows[b])
            out["inputs"][j, at : at + n], out["segments"][j, at : at + n] = rows[b], k + 1
            out["positions"][j, at : at + n] = np.arange(n)
            out["starts"][j, k], out["lengths"][j, k], out["take"][b] = at, n, j * slots + k
            at += n
    return out


def train_batches(
    ids: Sequence[Sequence[int]],
    labels: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    pack: bool = True,
    multiple: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """One epoch: the rows shuffled, in batches of `batch_size` (packed, or padded when not `pack`), the last
    partial batch dropped."""
    order = rng.permutation(len(ids))
    for b in range(len(ids) // batch_size):
        pick = order[b * batch_size : (b + 1) * batch_size]
        rows = [ids[i] for i in pick]
        yield packed(rows, labels[pick], multiple) if pack else padded(rows, labels[pick], multiple)


def eval_logits(
    logits_fn: Callable, params: Any, ids: Sequence[Sequence[int]], batch_size: int, multiple: int
) -> np.ndarray:
    """float32 [N, labels]: the logits of every row, in file order, in batches of `batch_size`."""
    out = []
    for b in range(0, len(ids), batch_size):
        rows = ids[b : b + batch_size]
        out.append(np.asarray(logits_fn(params, padded(rows, multiple=multiple)))[: len(rows)])
    return np.concatenate(out)


def make_steps(
    graphdef: nnx.GraphDef, tx: optax.GradientTransformation, mesh: Mesh | None = None, params: Any = None
) -> tuple[Callable, Callable]:
    """(train_step(params, opt_state, batch, key) -> (params, opt_state, mean loss), logits(params, batch)), jitted;
    the loss is the batch's mean cross-entropy, dropout drawn from `key`. With a `mesh` (and the `params` whose
    layout to follow), parameters and optimizer state are laid out by their logical axes as in pre-training and
    each batch is split over ('data', 'fsdp')."""

    def loss_fn(params: nnx.State, batch: dict[str, jax.Array], key: jax.Array) -> jax.Array:
        model, rngs = nnx.merge(graphdef, params), nnx.Rngs(dropout=key)
        if "segments" in batch:  # packed (train_batches)
            logits_BxN = model.packed(batch, False, rngs)
        else:
            logits_BxN = model(batch["inputs"], batch["lengths"], False, rngs)
        loss_B = optax.softmax_cross_entropy_with_integer_labels(logits_BxN, batch["labels"])
        return (loss_B * batch["weights"]).sum() / batch["weights"].sum()

    def train_step(params, opt_state, batch, key):
        with _abstract_mesh(mesh):
            loss, grads = jax.value_and_grad(loss_fn)(params, batch, key)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

    def logits(params, batch):
        with _abstract_mesh(mesh):
            return nnx.merge(graphdef, params)(batch["inputs"], batch["lengths"], True, None)

    if mesh is None:
        return jax.jit(train_step), jax.jit(logits)
    p_shard = tree_shardings(params, mesh)
    o_shard = tree_shardings(jax.eval_shape(tx.init, params), mesh)
    rows, same = NamedSharding(mesh, logical_to_spec(("batch",))), NamedSharding(mesh, PartitionSpec())
    step = jax.jit(train_step, in_shardings=(p_shard, o_shard, rows, same), out_shardings=(p_shard, o_shard, same))
    return step, jax.jit(logits, in_shardings=(p_shard, rows), out_shardings=same)


_COMPILED: dict[tuple, tuple[optax.GradientTransformation, Callable, Callable]] = {}


def compiled_steps(
    graphdef: nnx.GraphDef, recipe: Recipe, steps: int, mesh: Mesh | None, params: Any
) -> tuple[optax.GradientTransformation, Callable, Callable]:
    """(optimizer, train_step, logits) of `make_steps`, made once per classifier shape, recipe, step count and mesh,
    so that every checkpoint and seed of a task reuses the compiled programs."""
    key = (graphdef, recipe, steps, mesh)
    if key not in _COMPILED:
        tx = optimizer(recipe, steps)
        _COMPILED[key] = (tx, *make_steps(graphdef, tx, mesh, params))
    return _COMPILED[key]


def _abstract_mesh(mesh: Mesh | None) -> Any:
    return contextlib.nullcontext() if mesh is None else jax.sharding.use_abstract_mesh(mesh.abstract_mesh)


def metrics(logits_NxC: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """scikit-learn's accuracy_score, f1_score (binary, label 1 positive; 0 when undefined) and matthews_corrcoef
    (0 when undefined) of the argmax predictions, as trainer.py's calculate_metrics reports them."""
    pred, y = np.argmax(logits_NxC, axis=-1), np.asarray(labels)
    tp, fp = float(np.sum((pred == 1) & (y == 1))), float(np.sum((pred == 1) & (y != 1)))
    fn, tn = float(np.sum((pred != 1) & (y == 1))), float(np.sum((pred != 1) & (y != 1)))
    out = {}
    for name in names:
        if name == "accuracy":
            out[name] = float(np.mean(pred == y))
        elif name == "f1":
            out[name] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        elif name == "mcc":
            den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
            out[name] = (tp * tn - fp * fn) / den if den else 0.0
    return out


def majority_metrics(train_labels: np.ndarray, valid_labels: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """The metrics of a classifier that predicts the training file's most frequent label (the smallest of equals)
    for every validation row: the level a fine-tuned model must pass to have learned anything."""
    majority = int(np.bincount(np.asarray(train_labels)).argmax())
    width = max(int(np.max(valid_labels)), majority) + 1
    return metrics(np.eye(width, dtype=np.float32)[np.full(len(valid_labels), majority)], valid_labels, names)


@dataclasses.dataclass
class Outcome:
    """One fine-tuning: per epoch the mean train loss, the validation loss and metrics; the best epoch (by the task's
    validation metric, the first of equals) and its validation logits."""

    epochs: list[dict[str, float]]
    best_epoch: int
    logits: np.ndarray


def run_recipe(
    classifier: Classifier,
    train: tuple[Sequence[Sequence[int]], np.ndarray],
    valid: tuple[Sequence[Sequence[int]], np.ndarray],
    recipe: Recipe,
    *,
    metric_names: Sequence[str],
    metric_for_valid: str,
    seed: int,
    mesh: Mesh | None = None,
) -> Outcome:
    """Fine-tune `classifier` (its head freshly drawn) on `train` (token ids, labels) by `recipe`, evaluating on
    `valid` after every epoch; the shuffles from `seed`, dropout from `seed` folded with the step."""
    steps = (len(train[0]) // recipe.batch_size) * recipe.num_epochs
    if steps == 0:
        raise InputError(
            f"{len(train[0])} training rows make no whole batch of {recipe.batch_size}: pass a smaller --batch_size"
        )
    graphdef, params = nnx.split(classifier, nnx.Param)
    tx, train_step, logits_fn = compiled_steps(graphdef, recipe, steps, mesh, params)
    multiple = 1 if mesh is None else mesh.shape["data"] * mesh.shape["fsdp"]
    if mesh is not None:
        params = jax.device_put(params, tree_shardings(params, mesh))
    opt_state = tx.init(params)
    rng, key, step = np.random.default_rng(seed), jax.random.PRNGKey(seed), 0
    epochs, best, best_logits = [], -1, np.zeros((0,))
    pack = not classifier.first_token_only  # a decoder read at its first token runs one column: nothing to pack
    for epoch in range(recipe.num_epochs):
        losses = []
        for batch in train_batches(*train, recipe.batch_size, rng, pack, multiple):
            params, opt_state, loss = train_step(params, opt_state, batch, jax.random.fold_in(key, step))
            losses.append(loss)
            step += 1
        logits = eval_logits(logits_fn, params, valid[0], recipe.valid_batch_size, multiple)
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(jax.device_get(losses)))}
        row["valid_loss"] = float(optax.softmax_cross_entropy_with_integer_labels(logits, valid[1]).mean())
        row.update(metrics(logits, valid[1], metric_names))
        epochs.append(row)
        if best < 0 or row[metric_for_valid] > epochs[best][metric_for_valid]:
            best, best_logits = epoch, logits
    return Outcome(epochs, best + 1, best_logits)

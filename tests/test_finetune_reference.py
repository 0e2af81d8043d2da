"""babyjax.finetune against a PyTorch reference written from the BabyLM 2025 pipeline's fine-tuning code
(evaluation_pipeline/finetune/classifier_model.py, trainer.py, utils.py, dataset.py; eval_finetuning.sh): an exported
tiny checkpoint fine-tuned for a few steps on real RTE rows, dropout off, the same initial head and the same batches,
gives the same loss at every step and the same validation logits after every step (1e-4), for a causal, a masked and
a hybrid (GPT-BERT) model. The learning-rate schedule and the metrics are checked against the pipeline's function
(as torch's LambdaLR applies it) and scikit-learn."""

from __future__ import annotations

import itertools
import json
import math
import warnings

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from torch import nn
from torch.nn import functional as F

from babyjax.finetune import model as ft_model
from babyjax.finetune import tasks
from babyjax.finetune import train as ft_train
from babyjax.interop import export
from babyjax.model import sharding
from tests.test_score import make_run, train_tiny_tokenizer

FAMILIES = [  # (style, objective, babyjax pool, whether the reference takes the last real token)
    ("gpt2", "causal", "first", False),  # the pipeline's default column, position 0, for every model
    ("gpt2", "causal", "auto", True),  # babyjax's default for decoders: the last real token
    ("roberta", "mlm", "auto", False),
    ("ltg_bert", "hybrid", "auto", False),  # GPT-BERT
]
CONTEXT = 128  # the tiny models' max_len: RTE pairs are cut to it, a quarter of them are shorter (padded rows)
TRAIN_ROWS, VALID_ROWS, STEPS, BATCH, NUM_LABELS = 100, 40, 6, 8, 2
# total = STEPS: int(0.34 * 6) = 2 warm-up updates (the first at learning rate 0), then the cosine down to 0.23 of peak
RECIPE = ft_train.Recipe(learning_rate=1e-3, warmup_proportion=0.34, classifier_dropout=0.0)
TOL = 1e-4


@pytest.fixture(scope="module")
def tok(tmp_path_factory, babylm_sample):
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok"), babylm_sample)


@pytest.fixture(scope="module")
def rte(shared_data):
    return shared_data / "babylm_eval_2025" / "glue_filtered"


def pipeline_rows(path, limit):
    """dataset.py's rte examples: (sentence1, sentence2) pairs and the labels, the first `limit` lines."""
    with path.open() as f:
        records = [json.loads(line) for line in itertools.islice(f, limit)]
    return [(r["sentence1"], r["sentence2"]) for r in records], [r["label"] for r in records]


def pipeline_factor(warmup: int, total: int, min_factor: float = 0.1):
    """utils.py's cosine_schedule_with_warmup's lambda: the factor of the peak learning rate at scheduler step k."""

    def factor(k: int) -> float:
        if k < warmup:
            return float(k) / float(max(1, warmup))
        progress = float(k - warmup) / float(max(1, total - warmup))
        return max(min_factor, min_factor + (1 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress)))

    return factor


class PipelineClassifier(nn.Module):
    """classifier_model.py's ModelForSequenceClassification without --enc_dec: AutoModel with trust_remote_code, then
    its ClassifierHead (parameter-free LayerNorm, Linear, GELU, parameter-free LayerNorm, Dropout, Linear) on the
    output's `.logits` if it has them, else `.last_hidden_state`, at position 0 (`take_final`: the last real token of
    each right-padded row, what the pipeline's --take_final means to take)."""

    def __init__(self, folder, num_labels: int, take_final: bool, eps: float = 1e-5, dropout: float = 0.0):
        super().__init__()
        self.transformer = transformers.AutoModel.from_pretrained(folder, trust_remote_code=True)
        hidden = transformers.AutoConfig.from_pretrained(folder, trust_remote_code=True).hidden_size
        self.classifier = nn.Sequential(
            nn.LayerNorm(hidden, eps, elementwise_affine=False),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.LayerNorm(hidden, eps, elementwise_affine=False),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_labels),
        )
        self.take_final = take_final

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        encoding = pipeline_encoding(self.transformer(input_ids=input_ids, attention_mask=attention_mask))
        if self.take_final:
            pooled = encoding[torch.arange(len(encoding)), attention_mask.sum(-1) - 1]
        else:
            pooled = encoding[:, 0]
        return self.classifier(pooled)


def pipeline_encoding(out) -> torch.Tensor:
    """What the pipeline's classifier reads of the transformer's output: a tuple's first item, else the output's
    `.logits` if it has them, else its `.last_hidden_state`."""
    if isinstance(out, tuple):
        return out[0]
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def pipeline_batch(hf_tok, pairs, labels=None):
    """dataset.py's collate_function without --causal: right-padded to the longest row, a [B, T] 0/1 mask."""
    enc = hf_tok(pairs, return_tensors="pt", padding=True, truncation=True, max_length=CONTEXT)
    return enc.input_ids, enc.attention_mask, None if labels is None else torch.tensor(labels, dtype=torch.long)


def reference_run(ref: PipelineClassifier, hf_tok, train, order, valid, total: int):
    """trainer.py's train_epoch on the batches `order` picks (model(ids, mask), F.cross_entropy, backward, AdamW
    step, scheduler step, zero_grad), and evaluate's logits on `valid` after every step: [(loss, logits)]."""
    opt = torch.optim.AdamW(
        ref.parameters(),
        lr=RECIPE.learning_rate,
        betas=(RECIPE.beta1, RECIPE.beta2),
        eps=RECIPE.eps,
        weight_decay=RECIPE.weight_decay,
    )
    warmup = int(RECIPE.warmup_proportion * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, pipeline_factor(warmup, total, RECIPE.min_factor))
    valid_ids, valid_mask, _ = pipeline_batch(hf_tok, valid[0])
    out = []
    for pick in order:
        ids, mask, labels = pipeline_batch(hf_tok, [train[0][i] for i in pick], [train[1][i] for i in pick])
        ref.train()
        loss = F.cross_entropy(ref(ids, mask), labels)
        loss.backward()
        opt.step()
        scheduler.step()
        opt.zero_grad()
        ref.eval()
        with torch.no_grad():
            out.append((float(loss), ref(valid_ids, valid_mask).numpy()))
    return out


def babyjax_run(clf: ft_model.Classifier, train_ids, labels, order, valid_ids, total: int):
    """The same steps through babyjax.finetune.train's optimizer and make_steps, each batch packed as run_recipe
    packs it (padded for a decoder read at its first token): [(loss, logits)]."""
    graphdef, params = nnx.split(clf, nnx.Param)
    tx = ft_train.optimizer(RECIPE, total)
    opt_state = tx.init(params)
    train_step, logits_fn = ft_train.make_steps(graphdef, tx)
    valid = ft_train.padded(valid_ids)
    out = []
    for step, pick in enumerate(order):
        rows = [train_ids[i] for i in pick]
        batch = (ft_train.padded if clf.first_token_only else ft_train.packed)(rows, labels[pick])
        params, opt_state, loss = train_step(params, opt_state, batch, jax.random.PRNGKey(step))
        out.append((float(loss), np.asarray(logits_fn(params, valid))))
    return out


def copy_head(clf: ft_model.Classifier, head: nn.Sequential) -> None:
    """The reference head's weights into babyjax's head (torch's Linear weights are [out, in])."""
    first, last = head[1], head[5]
    clf.head.kernel_in[...] = jnp.asarray(first.weight.detach().numpy().T)
    clf.head.bias_in[...] = jnp.asarray(first.bias.detach().numpy())
    clf.head.kernel_out[...] = jnp.asarray(last.weight.detach().numpy().T)
    clf.head.bias_out[...] = jnp.asarray(last.bias.detach().numpy())


def encoded(tok, path, limit: int, masked: bool) -> tuple[list[list[int]], np.ndarray]:
    """babyjax.finetune.tasks' token ids and labels of a file's first `limit` rte examples."""
    ex = tasks.read_examples(path, "rte")
    ex = tasks.Examples(ex.task, ex.path, ex.texts_a[:limit], ex.texts_b[:limit], ex.labels[:limit])
    return tasks.encode(tok, ex, CONTEXT, masked), ex.labels


@pytest.mark.parametrize("style,objective,pool,take_final", FAMILIES, ids=lambda x: str(x))
def test_fine_tuning_matches_the_pipeline_reference_at_every_step(
    tmp_path, tok, rte, style, objective, pool, take_final
):
    cfg = make_run(tmp_path / "run", tok, style=style, steps=(0, 10), objective=objective, max_len=CONTEXT)
    folder = export.export_checkpoint(tmp_path / "run", 10, tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder, padding_side="right")
    train = pipeline_rows(rte / "rte.train.jsonl", TRAIN_ROWS)
    valid = pipeline_rows(rte / "rte.valid.jsonl", VALID_ROWS)
    train_ids, labels = encoded(tok, rte / "rte.train.jsonl", TRAIN_ROWS, cfg.encoder)
    valid_ids, _ = encoded(tok, rte / "rte.valid.jsonl", VALID_ROWS, cfg.encoder)
    assert train_ids == hf_tok(train[0], truncation=True, max_length=CONTEXT).input_ids  # the same rows both sides
    assert valid_ids == hf_tok(valid[0], truncation=True, max_length=CONTEXT).input_ids
    assert labels.tolist() == train[1]
    lengths = [len(r) for r in valid_ids]
    assert min(lengths) < CONTEXT == max(lengths)  # padded rows and cut rows are both in the batches

    torch.manual_seed(0)
    ref = PipelineClassifier(folder, NUM_LABELS, take_final)
    assert all(m.p == 0.0 for m in ref.modules() if isinstance(m, nn.Dropout))  # dropout off everywhere
    clf = ft_model.classifier_at(tmp_path / "run", 10, NUM_LABELS, pool=pool, rate=0.0, dropout_rate=0.0)
    copy_head(clf, ref.classifier)

    order = np.random.default_rng(0).permutation(TRAIN_ROWS)[: STEPS * BATCH].reshape(STEPS, BATCH)
    want = reference_run(ref, hf_tok, train, order, valid, total=STEPS)
    got = babyjax_run(clf, train_ids, labels, order, valid_ids, total=STEPS)
    for step, ((want_loss, want_logits), (got_loss, got_logits)) in enumerate(zip(want, got, strict=True)):
        assert abs(got_loss - want_loss) <= TOL, (step, got_loss, want_loss)
        assert float(np.abs(got_logits - want_logits).max()) <= TOL, (step, np.abs(got_logits - want_logits).max())
    # the parameters really moved: the validation logits changed by far more than the tolerance
    assert float(np.abs(want[-1][1] - want[0][1]).max()) > 100 * TOL


@pytest.mark.parametrize("total,warmup_proportion", [(6, 0.34), (40, 0.06), (100, 0.06), (3, 0.5), (10, 0.0)])
def test_lr_schedule_is_the_pipeline_cosine_schedule_under_lambdalr(total, warmup_proportion):
    recipe = ft_train.Recipe(learning_rate=3e-5, warmup_proportion=warmup_proportion)
    schedule = ft_train.lr_schedule(recipe, total)
    opt = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=recipe.learning_rate)
    warmup = int(warmup_proportion * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, pipeline_factor(warmup, total, recipe.min_factor))
    for k in range(total + 3):  # the learning rate update k uses (past the end too: the floor)
        want = opt.param_groups[0]["lr"]
        assert float(schedule(k)) == pytest.approx(want, rel=1e-6, abs=1e-12), (k, want)
        opt.step()
        scheduler.step()


@pytest.mark.parametrize("case", ["random", "all_zero", "all_one", "perfect", "one_label_only"])
def test_metrics_are_sklearns(case):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 57)
    logits = rng.standard_normal((57, 2)).astype(np.float32)
    if case == "all_zero":
        logits[:, 0] += 10
    elif case == "all_one":
        logits[:, 1] += 10
    elif case == "perfect":
        logits = np.eye(2, dtype=np.float32)[labels]
    elif case == "one_label_only":  # no positive label and no positive prediction: f1 and mcc undefined
        labels, logits[:, 0] = np.zeros_like(labels), 10.0
    pred = logits.argmax(-1)
    got = ft_train.metrics(logits, labels, ["accuracy", "f1", "mcc"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns of undefined f1 and mcc (and returns 0) and of one label
        want = {
            "accuracy": accuracy_score(labels, pred),
            "f1": f1_score(labels, pred),
            "mcc": matthews_corrcoef(labels, pred),
        }
    assert got == pytest.approx(want, abs=1e-12)


def test_metrics_accuracy_of_three_labels_is_sklearns():
    rng = np.random.default_rng(2)
    labels, logits = rng.integers(0, 3, 41), rng.standard_normal((41, 3))
    got = ft_train.metrics(logits, labels, ["accuracy"])
    assert got == {"accuracy": pytest.approx(accuracy_score(labels, logits.argmax(-1)))}


@pytest.mark.parametrize("style,objective,pool", [("gpt2", "causal", "auto"), ("ltg_bert", "hybrid", "last")])
def test_a_packed_batch_trains_as_its_padded_rows(tmp_path, tok, rte, style, objective, pool):
    """run_recipe packs each training batch several examples to a row: the loss, the gradient step and the logits
    equal those of the padded rows (1e-5), with rows of one, two and more examples and empty slots."""
    cfg = make_run(tmp_path / "run", tok, style=style, steps=(0, 10), objective=objective, max_len=CONTEXT)
    ex = tasks.read_examples(rte / "wsc.train.jsonl", "wsc")
    cut = np.random.default_rng(0).integers(8, CONTEXT, 24)  # the tiny tokenizer's rows are long: cut them short
    ids = [r[: cut[i]] for i, r in enumerate(tasks.encode(tok, ex, CONTEXT, cfg.encoder)[:24])]
    labels = ex.labels[:24]
    batch = ft_train.packed(ids, labels, multiple=3)  # rows up to a multiple of 12: some rows stay empty
    per_row = (batch["lengths"] > 0).sum(1)
    assert per_row.max() >= 3 and (per_row == 0).any() and batch["inputs"].shape[0] % (3 * ft_train.PACK_ROWS) == 0
    assert sorted(batch["take"].tolist()) == sorted(set(batch["take"].tolist()))  # one slot per example
    clf = ft_model.classifier_at(tmp_path / "run", 10, NUM_LABELS, pool=pool, rate=0.0, dropout_rate=0.0)
    graphdef, params = nnx.split(clf, nnx.Param)
    tx = ft_train.optimizer(RECIPE, 4)
    train_step, logits_fn = ft_train.make_steps(graphdef, tx)
    model = nnx.merge(graphdef, params)
    want = np.asarray(model(*(jnp.asarray(v) for v in ft_train.padded(ids).values())))
    np.testing.assert_allclose(np.asarray(model.packed({k: jnp.asarray(v) for k, v in batch.items()})), want, atol=1e-5)
    opt_state = tx.init(params)
    after = []
    for b in (batch, ft_train.padded(ids, labels)):
        p, _, loss = train_step(params, opt_state, b, jax.random.PRNGKey(0))
        p, _, loss = train_step(p, _, b, jax.random.PRNGKey(1))  # the second step moves the parameters
        after.append((float(loss), np.asarray(logits_fn(p, ft_train.padded(ids)))))
    assert abs(after[0][0] - after[1][0]) <= 1e-5
    np.testing.assert_allclose(after[0][1], after[1][1], atol=1e-5)
    assert float(np.abs(after[0][1] - want).max()) > 1e-3  # the parameters moved


def test_a_batch_that_does_not_divide_over_the_devices_trains_as_on_one(tmp_path, tok, rte):
    """15 examples on an 8-device mesh: the batch is filled with weightless rows, and two steps' loss and parameters
    equal the single-device steps'."""
    make_run(tmp_path / "run", tok, steps=(0, 10), max_len=CONTEXT)
    ids, labels = encoded(tok, rte / "rte.train.jsonl", 15, False)
    clf = ft_model.classifier_at(tmp_path / "run", 10, NUM_LABELS, rate=0.0, dropout_rate=0.0)
    graphdef, params = nnx.split(clf, nnx.Param)
    tx = ft_train.optimizer(RECIPE, 4)
    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1}))
    batch = ft_train.packed(ids, labels, multiple=mesh.devices.size)
    assert len(batch["labels"]) == 16 and batch["weights"].sum() == 15
    got, want = [], []
    for out, (m, b) in zip((got, want), ((mesh, batch), (None, ft_train.packed(ids, labels))), strict=True):
        step, _ = ft_train.make_steps(graphdef, tx, m, params)
        p, opt_state, _ = step(params, tx.init(params), b, jax.random.PRNGKey(0))  # the warm-up's first: rate 0
        p, _, loss = step(p, opt_state, b, jax.random.PRNGKey(1))
        out += [float(loss), *jax.tree.leaves(jax.device_get(p))]
    assert abs(got[0] - want[0]) <= 1e-6
    moved = jax.tree.leaves(jax.device_get(params))
    assert max(float(np.abs(a - b).max()) for a, b in zip(want[1:], moved, strict=True)) > 1e-4
    for g, w in zip(got[1:], want[1:], strict=True):  # the learning rate is 1e-3: a tenth of one update
        np.testing.assert_allclose(g, w, atol=1e-4)

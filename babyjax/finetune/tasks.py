"""The BabyLM 2025 (Super)GLUE fine-tuning tasks as the official pipeline runs them (evaluation-pipeline-2025:
`evaluation_pipeline/finetune/dataset.py` builds each example's text or text pair from its JSONL fields;
`eval_finetuning.sh` is the recipe: which tasks, batch size, epochs, the metrics). `read_examples` reads a task's
file as dataset.py does; `encode` gives each example's token ids exactly as the run's exported Hugging Face tokenizer
(babyjax.interop.hf_tokenizer) does under the pipeline's `tokenizer(texts, truncation=True, max_length=L)`: masked
models get `</s>` first (`</s> A B`, no separator), causal ones nothing (`A B`), and a pair too long for L is cut by
Hugging Face tokenizers' `longest_first` strategy."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re

import numpy as np

from babyjax.data.tokenizer import BOS, BOS_ID, EOS, EOS_ID, MASK, MASK_ID, PAD, PAD_ID, UNK, UNK_ID, Tokenizer
from babyjax.errors import InputError, MissingError

# The recipe-wide settings of eval_finetuning.sh (its defaults): learning rate, --sequence_length, seed.
LEARNING_RATE = 3e-5
SEQUENCE_LENGTH = 512
SEED = 42
ALL_METRICS = ("accuracy", "f1", "mcc")


@dataclasses.dataclass(frozen=True)
class Task:
    """One task: how dataset.py builds its texts and how eval_finetuning.sh fine-tunes on it. Text A is
    `a_template.format(*fields a_keys)`, or the fields joined by spaces without a template; text B (pair tasks) the
    b_keys fields joined by spaces. cola, qnli and sst2 are not in the recipe: they get the script's defaults."""

    name: str
    a_keys: tuple[str, ...]
    b_keys: tuple[str, ...] | None
    a_template: str | None
    num_labels: int
    batch_size: int  # --batch_size: BIG_BSZ (16) for boolq and multirc, BSZ (32) otherwise
    epochs: int  # --num_epochs: WSC_EPOCHS (30) for wsc, MAX_EPOCHS (10) otherwise
    metric_for_valid: str  # --metric_for_valid: which metric picks the best epoch
    metrics: tuple[str, ...]  # --metrics: what is reported

    def text_a(self, record: dict) -> str:
        values = [record[k] for k in self.a_keys]
        return self.a_template.format(*values) if self.a_template is not None else " ".join(values)

    def text_b(self, record: dict) -> str | None:
        return None if self.b_keys is None else " ".join(record[k] for k in self.b_keys)


def _task(name, a_keys, b_keys=None, a_template=None, *, labels=2, batch=32, epochs=10, valid="accuracy", metrics=None):
    """A Task with eval_finetuning.sh's defaults (BSZ 32, MAX_EPOCHS 10, accuracy; metrics accuracy, f1, mcc)."""
    return Task(
        name=name,
        a_keys=tuple(a_keys),
        b_keys=None if b_keys is None else tuple(b_keys),
        a_template=a_template,
        num_labels=labels,
        batch_size=batch,
        epochs=epochs,
        metric_for_valid=valid,
        metrics=tuple(metrics or ALL_METRICS),
    )


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        _task("boolq", ["question"], ["passage"], batch=16),
        _task("cola", ["sentence"]),
        _task("mnli", ["premise"], ["hypothesis"], labels=3, metrics=["accuracy"]),
        _task("mrpc", ["sentence1"], ["sentence2"], valid="f1"),
        _task("multirc", ["question", "answer"], ["paragraph"], "Question: {} Answer: {}", batch=16),
        _task("qnli", ["question"], ["sentence"]),
        _task("qqp", ["question1"], ["question2"], valid="f1"),
        _task("rte", ["sentence1"], ["sentence2"]),
        _task("sst2", ["sentence"]),
        _task("wsc", ["span2_text", "span1_text"], ["text"], 'Does "{}" refer to "{}" in this passage?', epochs=30),
    )
}
# The tasks a submission fine-tunes on, in eval_finetuning.sh's order.
RECIPE_TASKS = ("boolq", "multirc", "rte", "wsc", "mrpc", "qqp", "mnli")


def get_task(name: str) -> Task:
    """The task called `name`, or an InputError listing the known ones."""
    if name not in TASKS:
        raise InputError(f"unknown fine-tuning task {name!r}: use one of {', '.join(TASKS)}")
    return TASKS[name]


@dataclasses.dataclass
class Examples:
    """A task file's examples in file order: text A, text B (None for single-text tasks) and the label of each."""

    task: Task
    path: pathlib.Path
    texts_a: list[str]
    texts_b: list[str] | None
    labels: np.ndarray  # int64[N], each in [0, task.num_labels)

    def __len__(self) -> int:
        return len(self.texts_a)


def read_examples(path: str | os.PathLike, task_name: str) -> Examples:
    """The examples of a task's JSONL file (one JSON object a line), texts built as dataset.py builds them. Raises
    a one-line InputError (MissingError for a missing file) naming the file and line of anything it cannot read."""
    task = get_task(task_name)
    path = pathlib.Path(path)
    if not path.is_file():
        raise MissingError(
            f"{path} not found: the {task.name} files are {task.name}.train.jsonl and {task.name}.valid.jsonl in "
            "glue_filtered/ of the BabyLM 2025 evaluation data (osf.io/ryjfm)"
        )
    texts_a: list[str] = []
    texts_b: list[str] | None = None if task.b_keys is None else []
    labels: list[int] = []
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):  # file lines, as dataset.py iterates (not str.splitlines)
                record = _record(line, f"{path}:{number}", task)
                texts_a.append(task.text_a(record))
                if texts_b is not None:
                    texts_b.append(task.text_b(record))
                labels.append(record["label"])
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}): save it as UTF-8") from None
    if not texts_a:
        raise InputError(f"{path} has no examples: a {task.name} file holds one JSON object a line")
    return Examples(task, path, texts_a, texts_b, np.asarray(labels, dtype=np.int64))


def _record(line: str, where: str, task: Task) -> dict:
    """One line's JSON object, checked: every field the task reads is there, texts are strings, the label an
    integer in [0, num_labels)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: not JSON ({e.msg}): a {task.name} file holds one JSON object a line") from None
    if not isinstance(record, dict):
        raise InputError(f"{where}: a JSON {type(record).__name__}, not an object: write one JSON object a line")
    for key in (*task.a_keys, *(task.b_keys or ()), "label"):
        if key not in record:
            raise InputError(f"{where}: no field {key!r}: every {task.name} example needs {_fields(task)}")
    for key in (*task.a_keys, *(task.b_keys or ())):
        if not isinstance(record[key], str):
            raise InputError(
                f"{where}: field {key!r} is {record[key]!r}, not a string: write the text as a JSON string"
            )
    label = record["label"]
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < task.num_labels:
        raise InputError(
            f"{where}: label {label!r} is not a class of {task.name}: the labels must be integers "
            f"0..{task.num_labels - 1}"
        )
    return record


def _fields(task: Task) -> str:
    return ", ".join(repr(k) for k in (*task.a_keys, *(task.b_keys or ()), "label"))


# The exported tokenizer's special tokens: Hugging Face cuts a text at each of them (whole strings, leftmost first,
# no stripping) and tokenizes the pieces in between on their own, each as a text of its own.
_SPECIALS = {PAD: PAD_ID, UNK: UNK_ID, BOS: BOS_ID, EOS: EOS_ID, MASK: MASK_ID}
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(s) for s in sorted(_SPECIALS, key=len, reverse=True)) + ")")


def encode(tok: Tokenizer, ex: Examples, max_length: int, masked: bool) -> list[list[int]]:
    """Each example's token ids as the exported tokenizer (`hf_tokenizer(tok.path, ..., masked)`) gives them under
    `tokenizer(texts, truncation=True, max_length=max_length)`: `</s>` first for masked models; a single text cut
    from the right; a pair cut by `longest_first_lengths` (the `</s>` counts toward max_length). An imported
    Hugging Face tokenizer encodes them itself, with its own special tokens (`HfTokenizer.encode_examples`)."""
    if hasattr(tok, "encode_examples"):
        return tok.encode_examples(ex.texts_a, ex.texts_b, max_length)
    prefix = [EOS_ID] if masked else []
    if max_length <= len(prefix):
        raise InputError(f"max_length {max_length} leaves no room for text: use at least {len(prefix) + 1}")
    budget = max_length - len(prefix)
    ids_a = _encode_texts(tok, ex.texts_a)
    if ex.texts_b is None:
        return [prefix + a[:budget] for a in ids_a]
    rows = []
    for a, b in zip(ids_a, _encode_texts(tok, ex.texts_b), strict=True):
        keep_a, keep_b = longest_first_lengths(len(a), len(b), budget)
        rows.append(prefix + a[:keep_a] + b[:keep_b])
    return rows


def longest_first_lengths(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """How many tokens of A and of B Hugging Face tokenizers' `longest_first` keeps (tokenizers/src/utils/
    truncation.rs) when the pair may hold `budget` tokens (max_length less the special tokens): nothing is cut if
    both fit; else the shorter is kept whole if it takes at most half the budget and the longer gets the rest; else
    the longer gets the budget's larger half and the shorter its smaller half (A counts as the shorter on a tie)."""
    if len_a + len_b <= budget:
        return len_a, len_b
    short = min(len_a, len_b)
    if 2 * short <= budget:
        keep_short, keep_long = short, budget - short
    else:
        keep_short, keep_long = budget // 2, budget - budget // 2
    keep_a, keep_b = (keep_long, keep_short) if len_a > len_b else (keep_short, keep_long)
    return min(len_a, keep_a), min(len_b, keep_b)


def _encode_texts(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    """`tok.encode` of each text (SentencePiece in one thread); a text holding a special token's string is
    encoded piece by piece around it, as Hugging Face does."""
    ids = tok.encode_batch(texts, num_threads=1)
    for i, text in enumerate(texts):
        if "<" in text and _SPECIAL_RE.search(text):
            parts = _SPECIAL_RE.split(text)  # text, special, text, ...
            ids[i] = [t for k, p in enumerate(parts) for t in ([_SPECIALS[p]] if k % 2 else tok.encode(p))]
    return ids

"""babyjax.finetune.tasks against the official pipeline's rules: the texts evaluation_pipeline/finetune/dataset.py
builds from the release's glue_filtered files, the token ids the exported Hugging Face tokenizer gives them under the
pipeline's `tokenizer(texts, truncation=True, max_length=L)` (transformers, run here), and eval_finetuning.sh's
recipe."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from babyjax.data.tokenizer import EOS_ID
from babyjax.errors import InputError, MissingError
from babyjax.finetune import tasks
from babyjax.interop.hf_tokenizer import hf_tokenizer
from tests.test_score import train_tiny_tokenizer

QQP_VALID_ROWS = 3000  # qqp.valid (20,215 rows) is checked on its first rows, to keep the test short
SMALL_L = 48  # cuts most pairs
# Hugging Face cuts multirc's long paragraphs slowly at SMALL_L (it builds their overflowing pieces): its first rows
MULTIRC_SMALL_L_ROWS = 600


@pytest.fixture(scope="module")
def tok(tmp_path_factory, babylm_sample):
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok"), babylm_sample)


@pytest.fixture(scope="module")
def hf(tok):
    return {masked: hf_tokenizer(tok.path, 512, masked) for masked in (False, True)}


@pytest.fixture(scope="module")
def glue(shared_data):
    return shared_data / "babylm_eval_2025" / "glue_filtered"


def task_files(glue):
    files = sorted(glue.glob("*.jsonl"))
    assert len(files) == 12, files  # 7 tasks: train and valid, boolq and multirc valid only
    return [(f, f.name.split(".")[0]) for f in files]


def reference_texts(path, task, limit=None):
    """dataset.py's load_file, written from its code: A from its keys (template or spaces), B likewise, the label."""
    a_keys, b_keys, template = {
        "boolq": (["question"], ["passage"], None),
        "mnli": (["premise"], ["hypothesis"], None),
        "mrpc": (["sentence1"], ["sentence2"], None),
        "multirc": (["question", "answer"], ["paragraph"], "Question: {} Answer: {}"),
        "qqp": (["question1"], ["question2"], None),
        "rte": (["sentence1"], ["sentence2"], None),
        "wsc": (["span2_text", "span1_text"], ["text"], 'Does "{}" refer to "{}" in this passage?'),
    }[task]
    texts, labels = [], []
    with path.open() as f:
        for line in itertools.islice(f, limit):
            data = json.loads(line)
            a = [data[k] for k in a_keys]
            a = template.format(*a) if template else " ".join(a)
            texts.append((a, " ".join(data[k] for k in b_keys)))
            labels.append(data["label"])
    return texts, labels


def test_reads_and_encodes_every_file_as_the_pipeline_does(tok, hf, glue):
    cut = {"one": 0, "both": 0}
    for path, name in task_files(glue):
        ex = tasks.read_examples(path, name)
        texts, labels = reference_texts(path, name, QQP_VALID_ROWS if path.name == "qqp.valid.jsonl" else None)
        n = len(texts)
        assert list(zip(ex.texts_a[:n], ex.texts_b[:n], strict=True)) == texts, path
        assert ex.labels.dtype == np.int64 and ex.labels[:n].tolist() == labels
        assert set(labels) == set(range(ex.task.num_labels)), path
        for masked, length in itertools.product((False, True), (512, SMALL_L)):
            k = min(n, MULTIRC_SMALL_L_ROWS) if name == "multirc" and length == SMALL_L else n
            part = tasks.Examples(ex.task, path, ex.texts_a[:k], ex.texts_b[:k], ex.labels[:k])
            want = hf[masked](texts[:k], truncation=True, max_length=length)["input_ids"]
            assert tasks.encode(tok, part, length, masked) == want, (path.name, masked, length)
        for a, b in zip(tok.encode_batch(part.texts_a), tok.encode_batch(part.texts_b), strict=True):
            if len(a) + len(b) > SMALL_L:
                cut["both" if 2 * min(len(a), len(b)) > SMALL_L else "one"] += 1
    assert cut["one"] > 1000 and cut["both"] > 1000, cut  # both branches of longest_first were taken, many times


def test_plain_sentencepiece_equals_the_exported_tokenizer(tok, hf, glue):
    """tok.encode of a text alone is what Hugging Face gives it: every distinct text with leading, trailing or double
    spaces (multirc, mnli, rte, qqp have them) and every text of boolq and multirc, whose long passages the test
    above sees cut (the other texts it sees whole at 512)."""
    texts = set()
    for path, name in task_files(glue):
        pairs, _ = reference_texts(path, name)
        every = name in ("boolq", "multirc")
        texts.update(t for pair in pairs for t in pair if every or t != t.strip() or "  " in t)
    texts = sorted(texts)
    assert sum(t != t.strip() or "  " in t for t in texts) > 3000
    assert hf[False](texts)["input_ids"] == tok.encode_batch(texts, num_threads=1)


def test_longest_first_on_every_small_pair(tok, hf):
    """Every pair of ten texts of different lengths (0 to about 10 tokens), every max_length from the least up to
    past their sum: babyjax's ids are Hugging Face's (ties, odd budgets, one side empty, a side longer than
    max_length)."""
    texts = [" ".join(["x"] * k) for k in range(10)]
    sizes = [len(tok.encode(t)) for t in texts]
    assert sizes == sorted(set(sizes)), sizes  # each a different length
    ex = tasks.Examples(
        tasks.TASKS["rte"], None, [a for a in texts for _ in texts], [b for _ in texts for b in texts], None
    )
    pairs = list(zip(ex.texts_a, ex.texts_b, strict=True))
    for masked in (False, True):
        for length in range(1 + masked, 2 * max(sizes) + 3):
            assert (
                tasks.encode(tok, ex, length, masked)
                == hf[masked](pairs, truncation=True, max_length=length)["input_ids"]
            ), (masked, length)
    assert tasks.longest_first_lengths(5, 5, 7) == (3, 4)  # the tie: A takes the smaller half
    assert tasks.longest_first_lengths(6, 5, 7) == (4, 3)
    assert tasks.longest_first_lengths(2, 9, 7) == (2, 5)
    assert tasks.longest_first_lengths(9, 2, 7) == (5, 2)
    assert tasks.longest_first_lengths(3, 4, 7) == (3, 4)


def test_special_token_strings_in_a_text(tok, hf):
    """Hugging Face cuts a text at `</s>`, `<mask>`, ... and tokenizes the pieces alone; so does babyjax."""
    texts = ["a </s> b", "</s>x", "<s>hi</s>", " x <mask> y", "<mask>", "a<pad>b<unk>", "<</s>>", "plain < text >"]
    ex = tasks.Examples(tasks.TASKS["sst2"], None, texts, None, None)
    for masked in (False, True):
        assert tasks.encode(tok, ex, 512, masked) == hf[masked](texts, truncation=True, max_length=512)["input_ids"]
    ex = tasks.Examples(tasks.TASKS["rte"], None, texts, texts[::-1], None)
    want = hf[True](list(zip(texts, texts[::-1], strict=True)), truncation=True, max_length=6)["input_ids"]
    assert tasks.encode(tok, ex, 6, True) == want


def test_hand_checked_rows(glue, tok):
    wsc = tasks.read_examples(glue / "wsc.valid.jsonl", "wsc")
    assert wsc.texts_a[0] == 'Does "he" refer to "Joe" in this passage?'
    assert wsc.texts_b[0] == "Joe Joe's uncle can still beat him at tennis, even though he is 30 years older."
    assert wsc.labels[0] == 0 and len(wsc) == 52
    multirc = tasks.read_examples(glue / "multirc.valid.jsonl", "multirc")
    first = json.loads((glue / "multirc.valid.jsonl").open().readline())
    assert multirc.texts_a[0] == f"Question: {first['question']} Answer: {first['answer']}"
    assert multirc.texts_b[0].startswith("He read the telegram again.  In desperation")
    mnli = tasks.read_examples(glue / "mnli.valid.jsonl", "mnli")
    assert mnli.texts_a[1] == "in Asia yeah i spent" and mnli.texts_b[1] == "I've never been to Asia"
    assert mnli.labels[:3].tolist() == [2, 2, 2] and len(mnli) == 4908
    rows = tasks.encode(tok, mnli, 512, masked=True)
    assert rows[1] == [EOS_ID] + tok.encode("in Asia yeah i spent") + tok.encode("I've never been to Asia")
    assert tasks.encode(tok, mnli, 512, masked=False)[1] == rows[1][1:]


def test_the_recipe_of_eval_finetuning_sh():
    # eval_finetuning.sh (evaluation-pipeline-2025 @ bf55c11), in its order:
    # task: (--num_labels, --batch_size, --num_epochs, --metric_for_valid, --metrics)
    want = {
        "boolq": (2, 16, 10, "accuracy", ("accuracy", "f1", "mcc")),
        "multirc": (2, 16, 10, "accuracy", ("accuracy", "f1", "mcc")),
        "rte": (2, 32, 10, "accuracy", ("accuracy", "f1", "mcc")),
        "wsc": (2, 32, 30, "accuracy", ("accuracy", "f1", "mcc")),
        "mrpc": (2, 32, 10, "f1", ("accuracy", "f1", "mcc")),
        "qqp": (2, 32, 10, "f1", ("accuracy", "f1", "mcc")),
        "mnli": (3, 32, 10, "accuracy", ("accuracy",)),
    }
    assert tuple(want) == tasks.RECIPE_TASKS
    for name, row in want.items():
        t = tasks.TASKS[name]
        assert (t.num_labels, t.batch_size, t.epochs, t.metric_for_valid, t.metrics) == row, name
    assert (tasks.LEARNING_RATE, tasks.SEQUENCE_LENGTH, tasks.SEED) == (3e-5, 512, 42)
    assert set(tasks.TASKS) == {"boolq", "cola", "mnli", "mrpc", "multirc", "qnli", "qqp", "rte", "sst2", "wsc"}
    assert tasks.TASKS["cola"].b_keys is None and tasks.TASKS["sst2"].a_keys == ("sentence",)
    assert tasks.TASKS["qnli"].a_keys == ("question",) and tasks.TASKS["qnli"].b_keys == ("sentence",)


RTE_OK = {"sentence1": "A dog runs.", "sentence2": "An animal moves.", "label": 0}


@pytest.mark.parametrize(
    "lines, task, error",
    [
        ([RTE_OK], "glue", r"^unknown fine-tuning task 'glue': use one of boolq, cola, mnli, .*, wsc$"),
        ([RTE_OK, "{not json"], "rte", r"bad\.jsonl:2: not JSON \(.*\): a rte file holds one JSON object a line$"),
        ([[1, 2]], "rte", r"bad\.jsonl:1: a JSON list, not an object: write one JSON object a line$"),
        (
            [RTE_OK, {**RTE_OK, "label": 1}, {"sentence1": "x", "label": 0}],
            "rte",
            r"bad\.jsonl:3: no field 'sentence2'",
        ),
        ([{**RTE_OK, "sentence1": 5}], "rte", r"bad\.jsonl:1: field 'sentence1' is 5, not a string"),
        ([{**RTE_OK, "label": "entailment"}], "mnli", r"no field 'premise'"),
        (
            [{"premise": "p", "hypothesis": "h", "label": "entailment"}],
            "mnli",
            r"bad\.jsonl:1: label 'entailment' is not a class of mnli: the labels must be integers 0\.\.2$",
        ),
        ([{**RTE_OK, "label": 2}], "rte", r"bad\.jsonl:1: label 2 .* integers 0\.\.1$"),
        ([{**RTE_OK, "label": -1}], "rte", r"label -1 is not a class of rte"),
        ([{**RTE_OK, "label": 1.0}], "rte", r"label 1\.0 is not a class of rte"),
        ([{**RTE_OK, "label": True}], "rte", r"label True is not a class of rte"),
        ([], "rte", r"bad\.jsonl has no examples: a rte file holds one JSON object a line$"),
        ([RTE_OK, ""], "rte", r"bad\.jsonl:2: not JSON"),
    ],
)
def test_bad_input_says_what_to_do_in_one_line(tmp_path, lines, task, error):
    path = tmp_path / "bad.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    with pytest.raises(InputError, match=error) as e:
        tasks.read_examples(path, task)
    assert "\n" not in str(e.value)


def test_a_missing_file_and_a_bad_length(tmp_path, tok, hf, glue):
    with pytest.raises(MissingError, match=r"boolq\.train\.jsonl not found: the boolq files are .* \(osf\.io/ryjfm\)$"):
        tasks.read_examples(tmp_path / "boolq.train.jsonl", "boolq")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"sentence1": "caf\xe9", "sentence2": "b", "label": 0}\n')
    with pytest.raises(InputError, match=r"latin1\.jsonl is not UTF-8 text .*: save it as UTF-8$"):
        tasks.read_examples(tmp_path / "latin1.jsonl", "rte")
    ex = tasks.read_examples(glue / "rte.valid.jsonl", "rte")
    with pytest.raises(InputError, match=r"^max_length 1 leaves no room for text: use at least 2$"):
        tasks.encode(tok, ex, 1, masked=True)
    pairs = list(zip(ex.texts_a, ex.texts_b, strict=True))
    want = hf[False](pairs, truncation=True, max_length=1)["input_ids"]
    assert tasks.encode(tok, ex, 1, masked=False) == want and {len(row) for row in want} == {1}


def test_encodes_the_largest_file_fast(tok, glue):
    import time

    ex = tasks.read_examples(glue / "qqp.valid.jsonl", "qqp")
    start = time.perf_counter()
    rows = tasks.encode(tok, ex, 512, masked=True)
    assert time.perf_counter() - start < 5 and len(rows) == len(ex) == 20215


def test_the_majority_class_baseline():
    """majority_metrics: the training labels' most frequent (the smallest of equals) predicted for every row."""
    from babyjax.finetune.train import majority_metrics

    valid = np.array([0, 1, 1, 0, 1])
    got = majority_metrics(np.array([1, 1, 0]), valid, ("accuracy", "f1", "mcc"))
    assert got == {"accuracy": 0.6, "f1": pytest.approx(2 * 3 / (2 * 3 + 2)), "mcc": 0.0}
    assert majority_metrics(np.array([0, 1]), valid, ("accuracy",)) == {"accuracy": 0.4}  # a tie: label 0
    assert majority_metrics(np.array([2, 2, 0]), np.array([0, 1, 2, 2]), ("accuracy",)) == {"accuracy": 0.5}

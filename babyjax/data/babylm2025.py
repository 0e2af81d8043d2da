"""The BabyLM 2025 zero-shot sentence tasks in the release's own layout (github.com/babylm/evaluation-pipeline-2025,
`evaluation_pipeline/sentence_zero_shot/read_files.py`): BLiMP filtered, the BLiMP supplement, EWoK, entity tracking,
the two wug tasks and COMPS (EWoK and COMPS: data/ewok_comps.py), full or fast sets. Every item is a list of
candidate texts whose first is the right one (label 0), each with the character where its scored completion starts
(docs/science.md, "BabyLM 2025 zero-shot tasks")."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from babyjax.data import ewok_comps
from babyjax.data.evalsets import EvalSet, limited_hash
from babyjax.data.tokenizer import Tokenizer
from babyjax.errors import InputError

# task -> (the pipeline's --task, folder names of the release: full set, fast set)
TASKS = {
    "blimp": ("blimp", "blimp_filtered", "blimp_fast"),
    "supplement": ("blimp", "supplement_filtered", "supplement_fast"),
    "ewok": ("ewok", "ewok_filtered", "ewok_fast"),
    "entity_tracking": ("entity_tracking", "entity_tracking", "entity_tracking_fast"),
    "wug_adj": ("wug_adj", "wug_adj_nominalization", "wug_adj_nominalization"),
    "wug_past": ("wug_past", "wug_past_tense", "wug_past_tense"),
    "comps": ("comps", "comps", "comps"),
    "reading": ("reading", "reading", "reading"),
    "aoa": ("AoA_word", "aoa", "aoa"),
}
AOA_CONTEXTS, AOA_CHILDREN = "cdi_childes.json", "cdi_human.csv"
READING_FILE = "reading_data.csv"
READING_COLUMNS = (
    "item",
    "word",
    "prev_item",
    "prev_word",
    "Subtlex_log10",
    "length",
    "context_length",
    "prev_length",
    "RTfirstfix",
    "RTfirstpass",
    "RTgopast",
    "RTrightbound",
    "self_paced_reading_time",
)
_NEEDS = {
    "blimp": ("sentence_good", "sentence_bad"),
    "supplement": ("sentence_good", "sentence_bad"),
    "entity_tracking": ("input_prefix", "options", "numops"),
    "wug_adj": ("sentences", "ratio"),
    "wug_past": ("sentences", "ratio"),
    "ewok": ewok_comps.EWOK_NEEDS,
    "comps": ewok_comps.COMPS_NEEDS,
}


@dataclasses.dataclass(frozen=True)
class Item:
    """One item: candidate texts (the first is right), where each one's completion starts (a character index), and
    the pipeline's metadata: UID, field, linguistics term; `ratio`, the human preference for the first (wug); `meta`,
    further (key, value) metadata in the pipeline's order (EWoK: context type, context and target contrast)."""

    task: str
    subset: str  # the task folder's name, as in the pipeline's results path
    uid: str
    field: str
    term: str
    texts: tuple[str, ...]
    starts: tuple[int, ...]
    ratio: float = float("nan")
    meta: tuple[tuple[str, str], ...] = ()


def subset_of(folder: str | os.PathLike) -> str:
    """The name of a task folder, or of the folder a zip holds (ewok_fast.zip: ewok_fast): the pipeline's results
    path ends with it."""
    name = pathlib.Path(folder).name
    return name.removesuffix(".zip") if ewok_comps.is_zip(folder) else name


def task_of(folder: str | os.PathLike) -> str:
    """The task of a release folder or zip, from its name (blimp_filtered, supplement_fast, ewok_fast.zip, ...)."""
    name = subset_of(folder)
    for task, (_, full, fast) in TASKS.items():
        if name in (full, fast):
            return task
    names = sorted({n for _, full, fast in TASKS.values() for n in (full, fast)})
    raise InputError(
        f"unknown BabyLM 2025 task folder {str(folder)!r}: pass a folder of the release (or its zip) named one of "
        f"{', '.join(names)}"
    )


def _records(file: ewok_comps.TaskFile, task: str) -> list[dict[str, Any]]:
    """The JSON lines of one task file, each checked for the fields the task reads."""
    rows, path = [], file.where
    for i, line in enumerate(file.text.splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{i + 1} is not valid JSON ({e.msg})") from None
        missing = [k for k in _NEEDS[task] if k not in row]
        if missing:
            raise InputError(
                f"{path}:{i + 1} lacks {', '.join(missing)}, which the {task} task reads: is it a file "
                "of the BabyLM 2025 release?"
            )
        rows.append(row)
    return rows


def _item(task: str, subset: str, file: ewok_comps.TaskFile, row: dict[str, Any]) -> Item:
    """read_files.py's decode_blimp / decode_ewok / decode_entity_tracking / decode_wug / decode_comps for one
    record."""
    stem = file.stem
    if task in ("ewok", "comps"):
        fields = ewok_comps.decode_ewok(row) if task == "ewok" else ewok_comps.decode_comps(stem, file.where, row)
        return Item(task, subset, field="", term="", **fields)
    if task in ("blimp", "supplement"):
        texts = (row["sentence_good"], row["sentence_bad"])
        field = row.get("field", "supplement")
        field = "syntax/semantics" if field == "syntax_semantics" else field
        uid = row["UID"] if "field" in row else stem
        return Item(
            task,
            subset,
            uid,
            field,
            row.get("linguistics_term", "supplement") if "field" in row else "supplement",
            texts,
            (0, 0),
        )
    if task == "entity_tracking":
        prefix = row["input_prefix"]
        return Item(
            task,
            subset,
            f"{stem}_{row['numops']}_ops",
            "",
            "",
            tuple(prefix + o for o in row["options"]),
            (len(prefix),) * len(row["options"]),
        )
    texts = tuple(row["sentences"].split("\t"))
    return Item(task, subset, task, "", "", texts, (0,) * len(texts), float(row["ratio"]))


def load_items(folder: str | os.PathLike, limit: int = 0, password: str = "") -> list[Item]:
    """Every item of a task folder (or zip: `password` for an encrypted one, ewok_comps.password_of), files in name
    order, lines in file order; `limit` > 0 keeps the first items of each UID (a quick run, not the pipeline's fast
    sets)."""
    folder = pathlib.Path(folder)
    task = task_of(folder)
    files = ewok_comps.task_files(folder, password)
    if not files:
        raise InputError(f"{folder} holds no .jsonl task files: pass a task folder of the BabyLM 2025 release")
    items = [_item(task, subset_of(folder), f, r) for f in files for r in _records(f, task)]
    if limit:
        uids = pd.Series([it.uid for it in items])
        items = [it for it, r in zip(items, uids.groupby(uids).cumcount()) if r < limit]
    return items


def completion_start(tok: Tokenizer, text: str, start_char: int) -> tuple[list[int], int]:
    """(token ids of `text`, index of its first token that reaches past `start_char`): the pipeline scores the tokens
    whose character span ends after the completion's start (its phrase mask, from the tokenizer's offsets). An
    imported Hugging Face tokenizer gives its own character offsets (`char_ends`)."""
    if hasattr(tok, "char_ends"):
        ids, char_ends = tok.char_ends(text)
        return ids, next((i for i, end in enumerate(char_ends) if end > start_char), len(ids))
    try:
        proto = tok.sp.encode(text, out_type="proto")  # sentencepiece 0.2.1+
    except (ValueError, TypeError, RuntimeError):
        proto = tok.sp.encode(text, out_type="immutable_proto")  # 0.2.0
    ids = [p.id for p in proto.pieces]
    start_byte = len(text[:start_char].encode("utf-8"))  # SentencePiece offsets count UTF-8 bytes
    # a lone dummy-prefix piece '▁' spans no character for SentencePiece but the first one for the HF tokenizer (0, 1)
    ends = [p.end if i or p.end or not text else 1 for i, p in enumerate(proto.pieces)]
    first = next((i for i, end in enumerate(ends) if end > start_byte), len(ids))
    return ids, first


def sequences(items: Sequence[Item], tok: Tokenizer) -> tuple[list[list[int]], pd.DataFrame]:
    """One sequence per candidate: (token ids, sequences.csv rows: seq, item, cand, task, subset, uid, field, term,
    start (first scored token), start_char (where the completion starts), ratio, meta (the item's further metadata
    as a JSON object, or empty), text)."""
    ids, rows = [], []
    for i, it in enumerate(items):
        for c, (text, start) in enumerate(zip(it.texts, it.starts)):
            seq_ids, first = completion_start(tok, text, start)
            rows.append(
                {
                    "seq": len(ids),
                    "item": i,
                    "cand": c,
                    "task": it.task,
                    "subset": it.subset,
                    "uid": it.uid,
                    "field": it.field,
                    "term": it.term,
                    "start": first,
                    "start_char": start,
                    "ratio": it.ratio,
                    "meta": json.dumps(dict(it.meta)) if it.meta else "",
                    "text": text,
                }
            )
            ids.append(seq_ids)
    df = pd.DataFrame(
        rows,
        columns=[
            "seq",
            "item",
            "cand",
            "task",
            "subset",
            "uid",
            "field",
            "term",
            "start",
            "start_char",
            "ratio",
            "meta",
            "text",
        ],
    )
    df["ratio"] = df["ratio"].astype(np.float64)
    return ids, df


def read_reading(folder: str | os.PathLike, limit: int = 0) -> pd.DataFrame:
    """reading/reading_data.csv as the pipeline reads it (`item` as text, a missing one read as "None")."""
    path = pathlib.Path(folder) / READING_FILE
    if not path.is_file():
        raise InputError(f"{path} not found: pass the release's reading folder (it holds {READING_FILE})")
    df = pd.read_csv(path, dtype={"item": str})
    missing = [c for c in READING_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{path} lacks the columns {', '.join(missing)}, which the reading task reads")
    df["item"] = df["item"].fillna("None")
    return df.head(limit) if limit else df


def _word_queries(tok: Tokenizer, sentence: str, word: str) -> list[tuple[list[int], str]]:
    """The pipeline's get_p2 as token queries (context ids + the one id scored): the word tokenized alone, its first
    piece after the context; each further piece's text decoded and appended to the context (no space), and the
    first id of that text tokenized alone scored after the re-tokenized context."""
    target = tok.encode(word)
    queries = [(tok.encode(sentence) + target[:1], sentence)]
    sentence += tok.decode(target[:1])
    for piece in target[1:]:
        text = tok.decode([piece])
        queries.append((tok.encode(sentence) + tok.encode(text)[:1], sentence))
        sentence += text
    return queries


def reading_sequences(
    folder: str | os.PathLike, tok: Tokenizer, first_item: int, limit: int = 0
) -> tuple[list[list[int]], list[dict]]:
    """One sequence per query of the reading task, its last token scored; an item per csv `row` and `which` (pred:
    the word after its context, prev_pred: the previous word after its own)."""
    df = read_reading(folder, limit)
    ids, rows = [], []
    for row, r in df.iterrows():
        for k, (which, item, word) in enumerate(
            [("pred", r["item"], r["word"]), ("prev_pred", r["prev_item"], r["prev_word"])]
        ):
            if not isinstance(item, str):
                continue  # no previous word: prev_pred is NaN, as in the pipeline
            for c, (q, context) in enumerate(_word_queries(tok, item, str(word))):
                rows.append(
                    {
                        "seq": -1,
                        "item": first_item + 2 * row + k,
                        "cand": c,
                        "task": "reading",
                        "subset": "reading",
                        "uid": "reading",
                        "field": "",
                        "term": "",
                        "start": len(q) - 1,
                        "start_char": 0,
                        "ratio": float("nan"),
                        "text": f"{context}|{q[-1]}",
                        "row": row,
                        "which": which,
                    }
                )
                ids.append(q)
    return ids, rows


def aoa_sequences(
    folder: str | os.PathLike, tok: Tokenizer, first_item: int, limit: int = 0
) -> tuple[list[list[int]], list[dict]]:
    """The AoA task's contexts (cdi_childes.json: words longer than one character, their C4 contexts in order):
    one sequence `context.strip() + " " + word.strip()` each, the word's tokens scored (AoA_word/evaluation_functions.py
    compute_surprisal); `limit` > 0 keeps the first contexts of each word."""
    path = pathlib.Path(folder) / AOA_CONTEXTS
    if not path.is_file() or not (pathlib.Path(folder) / AOA_CHILDREN).is_file():
        raise InputError(f"{folder} lacks {AOA_CONTEXTS} or {AOA_CHILDREN}: pass the release's aoa folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        contexts = {w: [c["context"] for c in cs] for w, cs in data.items() if len(w) > 1}
    except (json.JSONDecodeError, TypeError, KeyError, AttributeError):
        raise InputError(f"{path} is not the release's {AOA_CONTEXTS} (word -> list of {{context: ...}})") from None
    ids, rows = [], []
    for word, cs in contexts.items():
        for k, context in enumerate(cs[:limit] if limit else cs):
            prefix = context.strip() + " "
            q, first = completion_start(tok, prefix + word.strip(), len(prefix))
            rows.append(
                {
                    "seq": -1,
                    "item": first_item + len(rows),
                    "cand": 0,
                    "task": "aoa",
                    "subset": "AoA_word",
                    "uid": word,
                    "field": "",
                    "term": "",
                    "start": first,
                    "start_char": len(prefix),
                    "ratio": float("nan"),
                    "text": prefix + word.strip(),
                    "context_id": k,
                    "context": context,
                }
            )
            ids.append(q)
    return ids, rows


def load_suite(sources: Sequence[str], tok: Tokenizer, *, limit: int = 0, ewok_password: str = "") -> EvalSet:
    """The task folders (or zips: EWoK fast's, opened with `ewok_password` or BABYLM_EWOK_PASSWORD) `sources` as one
    evaluation set (kind 'babylm2025'): one sequence per candidate (reading: per query); its hash covers the bytes
    of every file read, a zip's whole."""
    special = {"reading": (reading_sequences, [READING_FILE]), "aoa": (aoa_sequences, [AOA_CONTEXTS, AOA_CHILDREN])}
    items, files = [], []
    for folder in [s for s in sources if task_of(s) not in special]:
        items += load_items(folder, limit, ewok_password)
        files += ewok_comps.source_files(folder)
    ids, df = sequences(items, tok)
    for folder in [s for s in sources if task_of(s) in special]:
        build, names = special[task_of(folder)]
        more_ids, more = build(folder, tok, int(df["item"].max()) + 1 if len(df) else 0, limit)
        files += [pathlib.Path(folder) / n for n in names]
        df = pd.concat([df, pd.DataFrame(more).assign(seq=np.arange(len(ids), len(ids) + len(more_ids)))])
        ids += more_ids
    return EvalSet(
        "babylm2025", ",".join(map(str, sources)), limited_hash(files, limit), ids, df.reset_index(drop=True)
    )

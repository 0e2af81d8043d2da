"""An imported series (`--run NAME=hf:PATH`) read as a babyjax run: the interface of `checkpoints.run.RunDir` that
scoring, fine-tuning and the report use (config, tokenizer, series index, model config) and the parameters of each
revision, converted once as they are read (families.py), with the series' integrity checked first (revisions.py).

The config it reports holds what scoring needs: the objective the model was trained with (causal for GPT-2, OPT,
GPT-NeoX and Llama, mlm for RoBERTa, and what a babyjax export records), the sequence length (the model's context,
or what a babyjax export records) and how documents were laid out (a babyjax export's packing; 'chunk' otherwise:
the rows of a foreign model are read as windows, never split at its end-of-text token)."""

from __future__ import annotations

import functools
import json
import logging
import pathlib
from typing import Any

import ml_collections

from babyjax.errors import CheckpointError, InputError
from babyjax.imported import families, revisions, weights
from babyjax.imported.tokenizer import open_tokenizer
from babyjax.model.transformer import ModelConfig

log = logging.getLogger("babyjax")

EXPORT_INFO = "babyjax_export.json"


class ImportedRun:
    """The revisions under `path` (a model folder, a folder of revision folders, or a git repository with one
    branch per revision), ordered by step; `table`: a revision table (default PATH/revisions.csv when present)."""

    def __init__(self, path: str | pathlib.Path, table: str | pathlib.Path | None = None):
        self.path = pathlib.Path(path)
        self.name = self.path.name
        if not self.path.exists():
            raise CheckpointError(
                f"{self.path} not found: --run NAME=hf:PATH takes a model folder, a folder of revision folders "
                "or a git repository"
            )
        self.revisions = revisions.find(self.path, table)
        if not self.revisions:
            raise CheckpointError(f"{self.path} holds no model revision (no config.json with weights)")
        self._by_step = {int(r.step): r for r in self.revisions}
        final = self.revisions.final or self.revisions[-1]  # the config and tokenizer of the last revision
        self.hf = json.loads(self._read(final, "config.json", required=True))
        info = self._read(final, EXPORT_INFO)
        self.export = json.loads(info) if info else {}
        self._tokenizer = open_tokenizer(final.files)
        self._model, kind = families.model_config(self.hf, self._max_len(final))
        self.objective = str(self.export.get("objective", kind))

    @staticmethod
    def _read(rev: revisions.Revision, name: str, required: bool = False) -> bytes | None:
        data = rev.files.read_bytes(name)
        if data is None and required:
            raise CheckpointError(f"revision {rev.name} has no {name}")
        return data

    def _max_len(self, rev: revisions.Revision) -> int | None:
        """The tokenizer's model_max_length where the model config has no context length (babyjax's LTG exports)."""
        data = self._read(rev, "tokenizer_config.json")
        length = json.loads(data).get("model_max_length") if data else None
        return int(length) if isinstance(length, (int, float)) and length < 1e9 else None

    def config(self) -> ml_collections.ConfigDict:
        """What scoring reads of a run's config: objective.kind, data.seq_len and data.packing."""
        seq_len = int(self.export.get("seq_len") or self._model.max_len)
        packing = str(self.export.get("packing") or "chunk")
        return ml_collections.ConfigDict(
            {"objective": {"kind": self.objective}, "data": {"seq_len": seq_len, "packing": packing}}
        )

    def tokenizer(self) -> Any:
        return self._tokenizer

    def model_config(self, vocab_size: int | None = None) -> ModelConfig:
        """The model (its vocabulary: the embedding rows, which may exceed the tokenizer's, as Pythia's)."""
        return self._model

    def series_index(self) -> list[dict]:
        """One entry per revision: step, revision, and tokens_seen, words_seen and params_hash where known."""
        out = []
        for r in self.revisions:
            entry = {"step": int(r.step), "revision": r.name}
            for key in ("tokens_seen", "words_seen", "params_hash"):
                if getattr(r, key, None) is not None:
                    entry[key] = getattr(r, key)
            out.append(entry)
        return out

    @functools.cached_property
    def findings(self) -> dict[int, tuple[str, str]]:
        """step -> (status, one-line message) for every revision the integrity check flags (revisions.check): each
        revision's tensors hashed, duplicates, partial duplicates, copies of the final weights, gaps in a regular
        schedule (steps absent from the series) and unreadable revisions."""
        digests, unreadable = revisions.scan(self.revisions)
        found = revisions.check(self.revisions, digests, unreadable)
        by_name = {r.name: int(r.step) for r in self.revisions}
        out = {}
        for f in found:
            step = by_name.get(f.revision, f.step)
            if step is not None:
                out[int(step)] = (f.status, f.message)
            log.warning("series %s: %s", self.path, f.message)
        return out

    def restore(self, step: int, abstract: Any) -> Any:
        """The parameters of the revision at `step` as numpy float32 arrays in the structure of `abstract` (the
        model's abstract nnx.State); weights.Unreadable when its files cannot be read."""
        rev = self._by_step.get(int(step))
        if rev is None:
            raise InputError(f"{self.path} has no revision at step {step}")
        tensors = weights.read(rev.files)
        return families.fill(families.params(tensors, self.hf, self._model), abstract)

"""Run the BabyLM 2025 pipeline's `evaluation_pipeline.finetune.run` unchanged, recording what it computes but does
not keep: each epoch's mean training loss (over its batches) and validation loss. Used by bench_finetune.py with
the pipeline's Python and source on PYTHONPATH:

    python benchmarks/pipeline_finetune_losses.py LOSSES.json -- <the pipeline's run.py flags>

The pipeline's Trainer passes every training batch's logits and labels, and the whole validation set's after each
epoch, to its `calculate_metrics`; this wraps that static method to also take the cross-entropy there."""

from __future__ import annotations

import json
import runpy
import sys


def main() -> None:
    out, argv = sys.argv[1], sys.argv[sys.argv.index("--") + 1 :]
    from evaluation_pipeline.finetune import trainer as pipeline_trainer
    from torch.nn import functional as F  # the pipeline's environment

    cls = pipeline_trainer.Trainer
    epochs: list[dict[str, float]] = []
    batch_losses: list[float] = []
    metrics, evaluate = cls.calculate_metrics, cls.evaluate
    state = {"evaluating": False, "final": False}

    def calculate_metrics(logits, labels, names):
        loss = float(F.cross_entropy(logits.float(), labels))
        if not state["evaluating"]:
            batch_losses.append(loss)
        elif not state["final"]:
            epochs.append({"train_loss": sum(batch_losses) / max(1, len(batch_losses)), "valid_loss": loss})
            batch_losses.clear()
        return metrics(logits, labels, names)

    def evaluate_recorded(self, evaluate_best_model: bool = False):
        state["evaluating"], state["final"] = True, evaluate_best_model
        try:
            return evaluate(self, evaluate_best_model)
        finally:
            state["evaluating"] = False

    cls.calculate_metrics = staticmethod(calculate_metrics)
    cls.evaluate = evaluate_recorded
    sys.argv = ["evaluation_pipeline.finetune.run", *argv]
    runpy.run_module("evaluation_pipeline.finetune.run", run_name="__main__")
    with open(out, "w") as f:
        json.dump(epochs, f)


if __name__ == "__main__":
    main()

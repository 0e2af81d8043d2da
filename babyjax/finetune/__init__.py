"""Fine-tuning evaluation: the BabyLM (Super)GLUE tasks by the official recipe (evaluation-pipeline-2025's
`eval_finetuning.sh` and `evaluation_pipeline/finetune/`)."""

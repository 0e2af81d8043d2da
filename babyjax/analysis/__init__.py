"""Learning-curve analysis of babyjax score outputs (python -m babyjax.analyze), read through babyjax.score.store.
Modules: docs/architecture.md ("analysis/"); definitions: docs/science.md."""

"""The model: Flax NNX transformers (transformer.py), their layers, the objectives, sharding rules and the loss."""

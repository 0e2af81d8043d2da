"""Training: the loop (loop.py), its hooks, the jitted step, the optimizer and the metrics."""

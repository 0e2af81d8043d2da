"""The run directory (run.py), its Orbax checkpoint series (series.py) and when to save them (schedules.py)."""

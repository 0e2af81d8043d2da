"""The command layer: every entry point (`launch/train.py`, `python -m babyjax.<command>`), above the library."""

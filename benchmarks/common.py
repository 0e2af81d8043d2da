"""What every benchmark prints and how it summarises rounds: the machine (CPU model, cores, library versions) and a
ratio's median and range over rounds (docs/benchmarks.md)."""
from __future__ import annotations

import importlib
import os
import platform
import statistics
from collections.abc import Sequence


def machine(*libraries: str) -> str:
    """'CPU model, N cores; python X, numpy Y, jax Z, ...' for the given library names (those importable)."""
    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    versions = []
    for name in ("numpy", "jax", *libraries):
        try:
            versions.append(f"{name} {importlib.import_module(name).__version__}")
        except ImportError:
            versions.append(f"{name} (not installed)")
    return f"{cpu}, {os.cpu_count()} cores; python {platform.python_version()}, {', '.join(versions)}"


def spread(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """'median (min-max over N rounds)'."""
    return (f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))} over "
            f"{len(values)} rounds)")

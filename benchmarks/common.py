"""What every benchmark prints and how it summarises rounds: the machine (CPU model, cores, library versions) and a
ratio's median and range over rounds (docs/benchmarks.md); each side of a comparison in its own process (`Side`)."""

from __future__ import annotations

import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any


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
    return (
        f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))} over "
        f"{len(values)} rounds)"
    )


def in_turn(calls: dict[str, Callable[[], Any]], round_index: int) -> dict[str, Any]:
    """{name: call()} for every side of a round, in the given order in even rounds and reversed in odd ones, so no side
    always goes first; the result keeps the given order."""
    names = list(calls) if round_index % 2 == 0 else list(calls)[::-1]
    results = {name: calls[name]() for name in names}
    return {name: results[name] for name in calls}


# -- each side of a benchmark in its own process ------------------------------------------------------------------
# A process that ran JAX keeps XLA's CPU thread pool, and torch keeps its own: a peer that shares a process with
# babyjax runs slower than alone (docs/benchmarks.md, "Method"). So each side lives in its own process, built and
# warmed up once, and the parent asks the sides for their timed calls in turn, so only one side works at a time.
_REPLY = "@@bench "  # the prefix of the side's answers on stdout (anything else a library prints is skipped)


def serve(functions: dict[str, Callable[..., Any]]) -> None:
    """A side's process: answer each request line on stdin, {"call": name, "args": [...]}, with one line of JSON on
    stdout, until stdin closes. Call it once the side's work is built and warmed up."""
    print(_REPLY + json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        print(_REPLY + json.dumps({"result": functions[request["call"]](*request.get("args", []))}), flush=True)


class Side:
    """One side of a benchmark in its own process: `python script --side name *extra`, whose main builds the side's
    work and calls `serve`. `side.call(name, *args)` runs one of its functions there and returns the JSON result."""

    def __init__(self, script: str, name: str, *extra: str):
        self.name, self._log = name, tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - open while the side lives
        self._proc = subprocess.Popen(
            [sys.executable, script, "--side", name, *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self._read()

    def call(self, function: str, *args: Any) -> Any:
        self._proc.stdin.write(json.dumps({"call": function, "args": list(args)}) + "\n")
        self._proc.stdin.flush()
        return self._read()["result"]

    def _read(self) -> dict:
        for line in self._proc.stdout:
            if line.startswith(_REPLY):
                return json.loads(line[len(_REPLY) :])
        self._log.seek(0)
        raise SystemExit(
            f"benchmark side {self.name!r} exited with status {self._proc.wait()}:\n{self._log.read()[-3000:]}"
        )

    def close(self) -> None:
        self._proc.stdin.close()
        self._proc.wait()

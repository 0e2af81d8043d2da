"""A full disk, said once. When the disk fills, each library that was writing reports it its own way before the
command's main thread learns of it: Orbax logs the failed background save with its traceback, TensorBoard's writer
thread dies with one, and its exit handler flushes again and prints another. The command runner (cli.run) reports the
full disk in one line (babyjax.errors.disk_full); these hooks keep its echoes, and nothing else, out of the output.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from babyjax.errors import disk_full

_installed = False


def install() -> None:
    """Drop the full disk's echoes from library log records, background threads and exit handlers (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    for name in ("", "absl"):  # absl's handler sits on the root logger; absl's own logger holds Orbax's records
        logging.getLogger(name).addFilter(_not_disk_full)
    thread_hook, unraisable_hook = threading.excepthook, sys.unraisablehook

    def on_thread_error(args: Any) -> None:
        if args.exc_value is None or disk_full(args.exc_value) is None:
            thread_hook(args)

    def on_unraisable(args: Any) -> None:
        if args.exc_value is None or disk_full(args.exc_value) is None:
            unraisable_hook(args)

    threading.excepthook, sys.unraisablehook = on_thread_error, on_unraisable


def _not_disk_full(record: logging.LogRecord) -> bool:
    """False for a record of a full disk (its exception, or its message alone): the runner says it."""
    error = record.exc_info[1] if record.exc_info else None
    if error is None:
        try:
            error = Exception(record.getMessage())
        except Exception:  # a record whose arguments do not fit its message: logging reports it as it does
            return True
    return disk_full(error) is None

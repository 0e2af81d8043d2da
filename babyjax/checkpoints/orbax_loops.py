"""Orbax runs each of its coroutines (a restore, a save's commit) in an event loop of its own and closes that loop as
soon as the coroutine returns. When one TensorStore read or write fails (a corrupt checkpoint, a full disk), the
coroutine raises while its sibling operations are still in flight; each of them then completes into the closed loop,
and TensorStore's thread prints an "Event loop is closed" traceback for it, often while the interpreter exits.
`install()` makes a failing Orbax coroutine wait for its siblings before it raises, so that the loop is closed only
once nothing can call it any more; a sibling that still completes after that (a race seen about once in a few
hundred full-disk runs) has its "Event loop is closed" left unprinted (`quiet_closed_loop`), as it follows an error
babyjax reports in its own line.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from orbax.checkpoint._src import asyncio_utils

# How long a failed coroutine waits for its siblings: a read or write that hangs (an unreachable bucket) must not
# hang the command too.
SETTLE_S = 60.0


def install() -> None:
    """Wrap Orbax's `run_sync`, through which it runs every coroutine, once (idempotent)."""
    run_sync = asyncio_utils.run_sync
    if getattr(run_sync, "settles", False):
        return

    def settled_run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
        return run_sync(settled(coro))

    settled_run_sync.settles = True  # type: ignore[attr-defined]
    asyncio_utils.run_sync = settled_run_sync
    sys.excepthook = quiet_closed_loop(sys.excepthook)


def quiet_closed_loop(hook: Callable[..., Any]) -> Callable[..., Any]:
    """`hook` (sys.excepthook) that prints nothing for RuntimeError('Event loop is closed'), what TensorStore's
    thread raises when a write completes into the loop of a coroutine that has already failed; every other error as
    `hook` prints it."""

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if issubclass(kind, RuntimeError) and str(value) == "Event loop is closed":
            return
        hook(kind, value, tb)

    return excepthook


async def settled(coro: Coroutine[Any, Any, Any]) -> Any:
    """`await coro`; if it fails, first wait (at most SETTLE_S) for the other tasks of the loop it started."""
    try:
        return await coro
    except Exception:
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if others:
            await asyncio.wait(others, timeout=SETTLE_S)
        raise

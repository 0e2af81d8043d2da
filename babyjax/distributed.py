"""Multi-process JAX set-up shared by training and scoring (imports nothing above it; the flags are in
babyjax/commands/multiprocess.py):
`jax.distributed` detects TPU pods and SLURM jobs itself; elsewhere pass the coordinator address, process count and
id. On CPU, collectives go over gloo (how the multi-process tests run on 127.0.0.1).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import sys
import threading
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from babyjax.errors import DistributedError

log = logging.getLogger("babyjax")


def cluster_detected() -> bool:
    """A multi-process SLURM job or TPU pod slice, by its environment."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ:
        return True
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return "," in hosts


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    mode: str = "auto",
    timeout_s: int = 120,
) -> bool:
    """Initialises jax.distributed when asked or detected; returns whether it did. Call before any other JAX use."""
    explicit = coordinator_address is not None
    if mode == "off" or (mode == "auto" and not explicit and not cluster_detected()):
        return False
    if explicit and (num_processes is None or process_id is None):
        raise DistributedError("--coordinator_address needs --num_processes and --process_id too")
    if explicit and process_id != 0:
        # JAX aborts the whole process (a C++ fatal error) when it cannot register with the coordinator: probe the
        # address first, so that an unreachable coordinator is one clear error after a bounded wait.
        _wait_for_coordinator(coordinator_address, timeout_s)
    if jax.config.jax_cpu_collectives_implementation is None:  # CPU collectives over gloo (JAX's default since 0.5);
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # a user's mpi stays; no backend starts here

    # When not every process arrives, JAX ends the process with a C++ fatal error and a stack dump. A watchdog
    # that fires just before JAX's own timeout turns that into one clear line and exit status 2.
    def give_up() -> None:
        print(
            f"error: not every process joined the distributed job at {coordinator_address or 'the coordinator'} "
            f"within {timeout_s}s (expected {num_processes or 'all'} processes); start all of them with the same "
            "coordinator address",
            file=sys.stderr,
            flush=True,
        )
        os._exit(2)  # a user error (exit status 2, babyjax/commands/cli.py), raised where no exception can be caught

    watchdog = threading.Timer(timeout_s, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=int(timeout_s) + 10,
        )
    except Exception as e:
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise _join_error(coordinator_address or "the auto-detected coordinator", timeout_s, why) from e
    finally:
        watchdog.cancel()
    log.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())
    return True


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Waits until something listens at `address` (host:port); raises DistributedError after `timeout_s`."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise DistributedError(f"--coordinator_address={address!r} is not host:port")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise _join_error(address, timeout_s, str(e.strerror or e)) from None
            time.sleep(0.5)


def _join_error(where: str, timeout_s: float, why: str) -> DistributedError:
    return DistributedError(
        f"could not join the distributed job at {where} within {timeout_s}s ({why}); check that "
        "every process runs with the same coordinator address and that process 0 is up"
    )


def check_same_everywhere(text: str, what: str) -> None:
    """Raises DistributedError on every process unless all processes hold the same `text` (e.g. the config)."""
    if jax.process_count() == 1:
        return
    digest = np.frombuffer(hashlib.sha256(text.encode()).digest()[:8], dtype=np.int64)
    all_digests = np.asarray(multihost_utils.process_allgather(digest)).reshape(-1)
    if len(set(all_digests.tolist())) > 1:
        bad = [i for i, d in enumerate(all_digests.tolist()) if d != all_digests[0]]
        raise DistributedError(
            f"processes disagree on the {what} (process 0 differs from processes {bad}); "
            "launch every process with the same command"
        )

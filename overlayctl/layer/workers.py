"""Forked worker processes that unpack layers side by side.

Unpacking is Python work (tar headers, file creation) that threads would
only take turns at, so pull and load give each layer its own process, up to
one per CPU and no more than three, as Docker's max-concurrent-downloads.
The workers are forked, so they start with the parent's modules and need
nothing pickled but their arguments and results.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

MAX_WORKERS = 3


def worker_count(layers: int) -> int:
    """How many workers for ``layers`` layers on this machine."""
    return max(1, min(layers, MAX_WORKERS, os.cpu_count() or 1))


def unpack_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` forked processes ready to unpack layers."""
    # What the workers need, imported once here rather than in each of them.
    import overlayctl.layer.du  # noqa: F401
    import overlayctl.layer.extract  # noqa: F401

    fork = multiprocessing.get_context("fork")
    return ProcessPoolExecutor(workers, mp_context=fork, initializer=_worker_init)


def shared_counters(n: int) -> Any:
    """``n`` integers that forked workers add to and the parent reads (for
    progress): created before the pool's workers are forked."""
    return multiprocessing.get_context("fork").Array("q", max(n, 1), lock=False)


def _worker_init() -> None:
    quiet_sibling_waits()


def quiet_sibling_waits() -> None:
    """In a forked worker: drop the store locks' "waiting for another
    overlayctl process" notice, which would be about a sibling worker (they
    share the layer store's lock with each other)."""
    sys.stderr = _QuietWaits(sys.stderr)


class _QuietWaits:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    dropped = False

    def write(self, text: str) -> int:
        # print() writes the message and its newline separately: drop both.
        if "waiting for another overlayctl process" in text or (self.dropped and text == "\n"):
            self.dropped = text != "\n"
            return len(text)
        self.dropped = False
        return self.inner.write(text)

    def flush(self) -> None:
        self.inner.flush()

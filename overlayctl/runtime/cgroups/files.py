"""Reading and writing cgroupfs files, and the error that names one.

A cgroup file may vanish (its cgroup removed) or hold "max" for no limit;
the readers say None or nothing rather than fail, because every caller
reads best effort.
"""

from __future__ import annotations

import os

from overlayctl.errors import KernelError


def read_words(path: str) -> list[str]:
    """The whitespace-separated words of a file (cgroup.controllers), or none."""
    try:
        with open(path) as f:
            return f.read().split()
    except OSError:
        return []


def read_int(path: str) -> int | None:
    """The number a file holds; None when it is missing, unreadable or "max"."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def read_keyed(path: str) -> dict[str, int]:
    """A "key value" per line file (memory.events, cpu.stat, memory.oom_control)."""
    out: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if value.strip().lstrip("-").isdigit():
                    out[key] = int(value)
    except OSError:
        pass
    return out


def write_quietly(path: str, value: str) -> None:
    """Write, ignoring failure (a best-effort step before a checked one)."""
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError:
        pass


def kernel_error(what: str, path: str, exc: OSError) -> KernelError:
    """The error for a failed cgroupfs operation: what, on which file, why."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return KernelError(f"cannot {what}: {path}: {reason}")

"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 60.0, what: str = "condition") -> T:
    """Poll `predicate` until it returns something true, and return that;
    fail the test after `timeout` seconds naming `what` it waited for."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def write_file(path: Path, text: str, mode: int = 0o644) -> Path:
    """Write `text` at `path` (its parents made) with `mode`; the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def du_bytes(path: Path) -> int:
    """`du -s --block-size=1 path`: the allocated bytes the tests compare with."""
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)], capture_output=True, check=True).stdout
    return int(out.split()[0])

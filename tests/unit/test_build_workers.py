"""The build's stage workers: forked processes whose output comes back
line by line with their name, and whose result or error comes back whole."""

from __future__ import annotations

import os
import sys
import time

from overlayctl.builder import workers
from overlayctl.errors import InvalidArgumentError


def _collect(running: list[workers.Worker]) -> tuple[dict[str, dict], list[str], list[str]]:
    out: list[str] = []
    err: list[str] = []
    reports = {}
    while running:
        worker, report = workers.wait_any(running, out.append, err.append)
        workers.finish(worker, out.append, err.append)
        running.remove(worker)
        reports[worker.label] = report
    return reports, out, err


def _sleeper(name: str) -> dict:
    start = time.monotonic()
    print(f"begin {name}")
    sys.stdout.flush()
    os.write(2, f"note {name}\n".encode())
    time.sleep(0.5)
    os.write(1, b"no newline at the end")
    return {"name": name, "start": start, "end": time.monotonic()}


def test_workers_run_at_once_and_their_lines_carry_their_names():
    running = [workers.start(name, lambda name=name: _sleeper(name)) for name in ("a", "b")]
    reports, out, err = _collect(running)
    a, b = reports["a"]["ok"], reports["b"]["ok"]
    assert a["start"] < b["end"] and b["start"] < a["end"]  # they overlapped
    assert sorted(out) == sorted(
        ["[a] begin a", "[a] no newline at the end", "[b] begin b", "[b] no newline at the end"]
    )
    assert sorted(err) == ["[a] note a", "[b] note b"]
    assert not workers._PARENT_FDS  # every pipe closed


def test_an_error_comes_back_with_its_message_and_code_and_a_death_is_reported():
    def fails() -> dict:
        raise InvalidArgumentError("Dockerfile:3: COPY: nothing here")

    def dies() -> dict:
        os._exit(9)

    reports, _, _ = _collect([workers.start("f", fails), workers.start("d", dies)])
    assert reports["f"] == {"error": "Dockerfile:3: COPY: nothing here", "code": 125}
    assert reports["d"]["error"] == "the stage's process died"


def test_a_worker_waits_for_the_parent_before_it_exits():
    worker = workers.start("w", lambda: {"done": True})
    worker_, report = workers.wait_any([worker], lambda _: None, lambda _: None)
    assert report == {"ok": {"done": True}}
    time.sleep(0.2)
    # Reported, but still there until acknowledged (the parent leases its
    # layers meanwhile).
    assert os.waitpid(worker.pid, os.WNOHANG) == (0, 0)
    workers.finish(worker_, lambda _: None, lambda _: None)

"""Fault points: named places in the store's work where a test can stop or
kill overlayctl, deterministically.

Off unless OVERLAYCTL_FAULTS is set; then it is a comma-separated list of
``NAME[#N]=ACTION``, N counting the times this process reaches NAME (1
when left out):

- ``kill``: SIGKILL this process's whole process group at the point (a
  crash of the command, workers included, exactly there; the test starts
  the command in a session of its own);
- ``pause:PATH``: create ``PATH.reached`` and wait until ``PATH`` exists
  (a test runs another command meanwhile, then lets this one go on).

Each point is reached in one place only, after a step has been made
durable and before the next begins, so that a kill there leaves exactly
the state a power cut at that moment would.
"""

from __future__ import annotations

import os

_reached: dict[str, int] = {}


def point(name: str) -> None:
    """Reached ``name``: do what OVERLAYCTL_FAULTS asks for it, if anything."""
    spec = os.environ.get("OVERLAYCTL_FAULTS")
    if not spec:
        return
    _reached[name] = count = _reached.get(name, 0) + 1
    for item in spec.split(","):
        key, _, action = item.partition("=")
        key, _, nth = key.strip().partition("#")
        if key != name or int(nth or 1) != count:
            continue
        if action == "kill":
            os.killpg(0, 9)
        elif action.startswith("pause:"):
            _pause(action[len("pause:") :])


def _pause(path: str) -> None:
    import time

    with open(path + ".reached", "w"):
        pass
    while not os.path.exists(path):
        time.sleep(0.01)

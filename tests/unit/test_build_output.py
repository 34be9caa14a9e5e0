"""The builder's relay of a RUN command's output to a BuildOutput (what the
Engine API streams): both pipes, in the pieces written, and an end that is
the command's, not the pipes' EOF."""

from __future__ import annotations

import os
import subprocess
import time

from overlayctl.builder.builder import BuildOutput, _relay_output


class _Collected(BuildOutput):
    def __init__(self) -> None:
        self.pieces: list[tuple[str, bool]] = []

    def text(self, text: str, stderr: bool = False) -> None:
        self.pieces.append((text, stderr))

    def joined(self, stderr: bool) -> str:
        return "".join(text for text, err in self.pieces if err == stderr)


def _relay(script: str, holder: bool = False) -> tuple[_Collected, float]:
    """Run script with its output on two pipes and relay them; with holder,
    a process that is not the command (as one forked meanwhile by another
    thread) holds the write ends open for 5 s."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    proc = subprocess.Popen(["sh", "-c", script], stdout=out_w, stderr=err_w)
    other = subprocess.Popen(["sleep", "5"], pass_fds=(out_w, err_w)) if holder else None
    os.close(out_w)
    os.close(err_w)
    collected = _Collected()
    start = time.monotonic()
    try:
        _relay_output(proc.pid, {out_r: False, err_r: True}, collected)
        took = time.monotonic() - start
    finally:
        proc.wait()
        if other is not None:
            other.kill()
            other.wait()
        os.close(out_r)
        os.close(err_r)
    return collected, took


def test_both_streams_are_handed_on_with_what_each_is() -> None:
    collected, _ = _relay("echo one; echo two >&2; printf 'caf\\303'; printf '\\251\\n'")
    assert collected.joined(stderr=False) == "one\ncafé\n"  # a character split between writes stays whole
    assert collected.joined(stderr=True) == "two\n"


def test_the_end_is_the_commands_even_if_another_process_holds_the_pipes() -> None:
    collected, took = _relay("echo before; sleep 0.2; echo after", holder=True)
    assert collected.joined(stderr=False) == "before\nafter\n"
    assert took < 4  # not the holder's 5 s


def test_without_an_output_the_pipes_are_drained() -> None:
    out_r, out_w = os.pipe()
    proc = subprocess.Popen(["sh", "-c", "head -c 300000 /dev/zero"], stdout=out_w)
    os.close(out_w)
    try:
        _relay_output(proc.pid, {out_r: False}, None)  # more than a pipe holds: read, or it would block
    finally:
        assert proc.wait(timeout=10) == 0
        os.close(out_r)

"""Progress output: plain lines for logs, redrawn rows on a terminal, nothing when quiet."""

from __future__ import annotations

import io
import threading

from overlayctl.oci import progress as progress_mod
from overlayctl.oci.progress import Progress, human_bytes, short_digest


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_short_digest_and_units() -> None:
    assert short_digest("sha256:0123456789abcdef") == "0123456789ab"
    assert human_bytes(999) == "999B"
    assert human_bytes(1500) == "1.5kB"
    assert human_bytes(104_857_600) == "105MB"


def test_lines_mode_prints_docker_like_lines() -> None:
    out = io.StringIO()
    p = Progress("auto", out)
    assert p.mode == "lines"
    p.add("aaaaaaaaaaaa", "Pulling fs layer", 100)
    p.add("bbbbbbbbbbbb", "Already exists")
    p.status("aaaaaaaaaaaa", "Downloading", line=False)
    p.advance("aaaaaaaaaaaa", 50)
    p.status("aaaaaaaaaaaa", "Pull complete")
    p.message("Digest: sha256:00")
    p.close()
    assert out.getvalue() == (
        "aaaaaaaaaaaa: Pulling fs layer\nbbbbbbbbbbbb: Already exists\naaaaaaaaaaaa: Pull complete\nDigest: sha256:00\n"
    )


def test_quiet_prints_nothing() -> None:
    out = io.StringIO()
    p = Progress("quiet", out)
    p.add("a", "Pulling fs layer", 10)
    p.status("a", "Pull complete")
    p.message("Digest: x")
    p.close()
    assert out.getvalue() == ""


def test_terminal_rows_are_redrawn_in_place(monkeypatch) -> None:
    monkeypatch.setattr(progress_mod, "REDRAW_EVERY", 0)
    out = Terminal()
    p = Progress("auto", out)
    assert p.mode == "tty"
    p.add("aaaaaaaaaaaa", "Pulling fs layer", 1000)
    p.add("bbbbbbbbbbbb", "Pulling fs layer", 1000)
    p.status("aaaaaaaaaaaa", "Downloading", line=False)
    p.advance("aaaaaaaaaaaa", 500)
    text = out.getvalue()
    assert "\x1b[2A" in text  # back up over the two rows
    last = text.rsplit("\x1b[2A", 1)[1]
    assert "aaaaaaaaaaaa: Downloading [===============>" in last and "500B/1kB" in last
    p.status("aaaaaaaaaaaa", "Pull complete")
    p.message("Digest: sha256:00")
    p.close()
    assert out.getvalue().endswith("Digest: sha256:00\n")


def test_threads_can_report_at_once() -> None:
    out = io.StringIO()
    p = Progress("lines", out)
    keys = [f"{i:012d}" for i in range(8)]
    for key in keys:
        p.add(key, "Pulling fs layer", 1000)

    def work(key: str) -> None:
        for _ in range(100):
            p.advance(key, 10)
        p.status(key, "Pull complete")

    threads = [threading.Thread(target=work, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(line for line in out.getvalue().splitlines() if "complete" in line) == [
        f"{k}: Pull complete" for k in keys
    ]

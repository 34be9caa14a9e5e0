"""`du` and `du --watch` on real containers: the series grows with what the
container writes and ends at what GNU du says; copy-ups, new files and
whiteouts are told apart; volume writes do not grow the upper dir and are
counted as the volumes' growth; each copy-up is credited to the process
that wrote it, and each process's writes are listed; the CSV, JSON and SVG
files parse.

The containers wait for a file in a control volume before they write, so
the first sample is taken before any growth however slow the host is."""

from __future__ import annotations

import csv
import json
import os
import re
import select
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from overlayctl.measure.growth import COLUMNS
from tests.helpers import wait_for

NONE = ("--network", "none")
MiB = 1 << 20
WAIT_FOR_GO = "while [ ! -e /ctl/go ]; do sleep 0.1; done; "
SVG = "{http://www.w3.org/2000/svg}"


def _upper(cli, name: str) -> Path:
    return Path(json.loads(cli.ok("inspect", name))[0]["GraphDriver"]["Data"]["UpperDir"])


def _gnu_du(path: Path) -> int:
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)], capture_output=True, check=True)
    return int(out.stdout.split()[0])


def _on_tmpfs(path: Path) -> bool:
    # tmpfs has no writeback, so the kernel never counts write_bytes for it.
    out = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True)
    return out.stdout.strip() == "tmpfs"


class Watcher:
    """`du --watch` in the background, its output read as it comes."""

    def __init__(self, cli, *args: str) -> None:
        self.proc = subprocess.Popen(
            cli.argv("du", "--watch", *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli.env
        )
        self.out = b""

    def wait_for_lines(self, count: int, timeout: float = 180) -> None:
        """Until `count` lines are out (the header, then one per sample)."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while self.out.count(b"\n") < count:
            left = deadline - time.monotonic()
            assert left > 0, f"du --watch printed {self.out!r} in {timeout}s"
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                assert chunk, f"du --watch ended early: {self.out!r} {self.proc.stderr.read()!r}"
                self.out += chunk

    def finish(self, timeout: float = 180) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, (self.out + out).decode(), err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def watchers():
    """Starts watchers and kills any still running at the end, failed or not."""
    started: list[Watcher] = []

    def start(cli, *args: str) -> Watcher:
        started.append(Watcher(cli, *args))
        return started[-1]

    yield start
    for w in started:
        w.kill()


def test_series_grows_step_by_step_and_ends_at_du(cli, bb, watchers, tmp_path: Path):
    script = (
        WAIT_FOR_GO + "for i in 1 2 3 4 5; do dd if=/dev/urandom of=/f$i bs=1M count=2 2>/dev/null; sleep 0.4; done; "
        "echo x >> /etc/passwd; rm /etc/group; touch /ctl/done; exec sleep 100"
    )
    cli.ok("run", "-d", "--name", "grow", *NONE, "-v", "ctl:/ctl", "bb:1", "sh", "-c", script)
    ctl = cli.root / "volumes" / "ctl" / "_data"
    csv_path, svg_path = tmp_path / "series.csv", tmp_path / "growth.svg"
    w = watchers(cli, "--interval", "0.3", "--output", str(csv_path), "--plot", str(svg_path), "grow")
    w.wait_for_lines(2)  # the header and the first sample, taken before any write
    (ctl / "go").touch()
    wait_for((ctl / "done").exists, 60, "the container's writes")
    time.sleep(1.0)  # a few samples after the last write
    w.proc.send_signal(signal.SIGINT)  # Ctrl-C ends the watch with exit 0 and keeps the series
    code, out, err = w.finish()
    assert code == 0, (out, err)

    rows = list(csv.DictReader(csv_path.open()))
    assert list(rows[0]) == list(COLUMNS)
    sizes = [int(r["bytes"]) for r in rows]
    assert all(a <= b for a, b in zip(sizes, sizes[1:], strict=False)), sizes
    assert sizes[-1] - sizes[0] >= 8 * MiB, sizes
    assert len(set(sizes)) >= 4, f"growth should show in steps: {sizes}"
    times = [float(r["time"]) for r in rows]
    assert times == sorted(times) and times[0] < 0.5
    # The writes are over and the container idles: the last sample is du's figure now.
    assert sizes[-1] == _gnu_du(_upper(cli, "grow"))
    last = rows[-1]
    assert (int(last["copy_ups"]), int(last["new_files"]), int(last["whiteouts"])) == (1, 5, 1)
    assert int(rows[0]["new_files"]) == 0
    if not _on_tmpfs(cli.root):
        assert int(last["write_bytes"]) >= 10 * MiB  # the shell's total includes its reaped dd's

    # The terminal rendering: one line per sample (stdout is a pipe), a summary and a chart.
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["TIME", "UPPER", "APPARENT"]
    assert len([line for line in lines if re.match(r"\d+\.\ds ", line)]) == len(rows)
    assert any(line.startswith("upper dir: ") for line in lines)
    assert any("█" in line for line in lines)

    root = ET.parse(svg_path).getroot()
    assert root.tag == SVG + "svg"
    assert len(root.findall(f".//{SVG}polyline")) == 2  # no volume grew: no band
    texts = [t.text for t in root.iter(SVG + "text")]
    assert "1 copy-up" in texts and "1 whiteout" in texts
    assert "w whiteouts appear (deletions of image files)" in out


def test_once_classifies_copy_ups_new_files_and_whiteouts(cli, bb, tmp_path: Path):
    script = "echo x >> /etc/passwd; echo new > /new; mkdir -p /a/b && echo y > /a/b/c; rm /etc/group; ln -s x /l"
    cli.ok("run", "--name", "changes", *NONE, "bb:1", "sh", "-c", script)
    upper = _upper(cli, "changes")
    lines = cli.ok("du", "changes").splitlines()
    assert lines[0].split() == [
        "CONTAINER",
        "ID",
        "SIZE",
        "BYTES",
        "APPARENT",
        "INODES",
        "COPY-UPS",
        "NEW",
        "FILES",
        "WHITEOUTS",
    ]
    cells = lines[1].split()
    assert int(cells[2]) == _gnu_du(upper)
    assert cells[5:] == ["1", "3", "1"]
    doc = json.loads(cli.ok("du", "--format", "json", "changes"))
    assert (doc["CopyUps"], doc["NewFiles"], doc["Whiteouts"], doc["Bytes"]) == (1, 3, 1, _gnu_du(upper))
    cli.ok("du", "--output", str(tmp_path / "once.json"), "changes")
    [sample] = json.loads((tmp_path / "once.json").read_text())
    assert list(sample) == list(COLUMNS) and sample["bytes"] == doc["Bytes"]


def test_volume_writes_leave_the_upper_dir_alone(cli, bb, watchers, tmp_path: Path):
    # The shell lives on a little after the writes: I/O is read from live
    # processes (a shell's counters include its reaped dd's), and a
    # container that exits between two samples takes its last writes along.
    script = WAIT_FOR_GO + (
        "for i in 1 2 3 4 5; do dd if=/dev/urandom of=/data/f$i bs=1M count=2 2>/dev/null; done; sleep 1.5"
    )
    cli.ok("run", "-d", "--name", "vol", *NONE, "-v", "ctl:/ctl", "-v", "data:/data", "bb:1", "sh", "-c", script)
    json_path, svg_path = tmp_path / "series.json", tmp_path / "growth.svg"
    w = watchers(
        cli, "--interval", "0.25", "--duration", "120", "--output", str(json_path), "--plot", str(svg_path), "vol"
    )
    w.wait_for_lines(2)
    started = time.monotonic()
    (cli.root / "volumes" / "ctl" / "_data" / "go").touch()
    code, out, err = w.finish(timeout=180)  # the watch ends by itself when the container exits
    assert code == 0, (out, err)
    assert time.monotonic() - started < 60
    series = json.loads(json_path.read_text())
    assert all(list(s) == list(COLUMNS) for s in series)
    sizes = [s["bytes"] for s in series]
    assert max(sizes) - min(sizes) <= 16 * 1024, sizes
    assert sizes[-1] == _gnu_du(_upper(cli, "vol"))
    data = cli.root / "volumes" / "data" / "_data"
    assert sum(f.stat().st_size for f in data.iterdir()) == 10 * MiB
    # The volumes' growth: all of the data volume's files (its directory was there before).
    files = sum(_gnu_du(f) for f in data.iterdir())
    assert series[0]["volume_bytes"] == 0
    assert files <= series[-1]["volume_bytes"] <= files + 16 * 1024, (files, series[-1])
    assert "volumes grew 10.5MB" in out
    root = ET.parse(svg_path).getroot()
    assert len(root.findall(f".//{SVG}polygon")) == 1
    assert "10.5MB to volumes" in [t.text for t in root.iter(SVG + "text")]
    if not _on_tmpfs(cli.root):
        assert series[-1]["write_bytes"] >= 10 * MiB  # the I/O happened, just not in the upper dir
    assert "exited" in cli.ok("ps", "-a", "--format", "json")


def test_copy_ups_are_credited_to_the_process_that_wrote_them(cli, bb, watchers, tmp_path: Path):
    # /bin/bc, /bin/ar are hard links to busybox (about 2 MB each when
    # copied up). /bin/bc is copied up before the watch: nobody to name. Then
    # a dd (kept alive by its input) copies up /bin/ar and another shell
    # /etc/passwd, at the same time. busybox's sh runs its dd applet
    # without exec: the process is called dd (comm) but keeps the shell's
    # command line, so the credit reads "[dd] sh -c ...".
    script = (
        "printf x | dd of=/bin/bc conv=notrunc 2>/dev/null; "
        + WAIT_FOR_GO
        + "(echo a; sleep 3) | dd of=/bin/ar conv=notrunc 2>/dev/null & "
        "sh -c 'echo b >> /etc/passwd; sleep 3; true' & wait; touch /ctl/done; exec sleep 100"
    )
    cli.ok("run", "-d", "--name", "cred", *NONE, "-v", "ctl:/ctl", "bb:1", "sh", "-c", script)
    ctl = cli.root / "volumes" / "ctl" / "_data"
    upper = _upper(cli, "cred")
    wait_for((upper / "bin" / "bc").exists, 60, "the copy-up before the watch")
    json_path, csv_path = tmp_path / "series.json", tmp_path / "series.csv"
    w = watchers(cli, "--interval", "0.3", "--output", str(json_path), "cred")
    w.wait_for_lines(2)
    (ctl / "go").touch()
    wait_for((ctl / "done").exists, 60, "the container's writes")
    time.sleep(0.8)
    w.proc.send_signal(signal.SIGINT)
    code, out, err = w.finish()
    assert code == 0, (out, err)
    assert "copy-up" not in err  # fanotify works here: no notice

    series = json.loads(json_path.read_text())
    credited = {c["path"]: c for s in series for c in s["copy_up_writers"]}
    assert set(credited) == {"/bin/ar", "/etc/passwd"}, credited  # /bin/bc was there before
    dd, sh = credited["/bin/ar"], credited["/etc/passwd"]
    assert dd["command"] == "[dd] sh -c " + script
    assert sh["command"] == "sh -c echo b >> /etc/passwd; sleep 3; true"
    assert dd["pid"] != sh["pid"] and 0 not in (dd["pid"], sh["pid"])
    assert dd["lower_size"] == os.lstat(upper / "bin" / "bc").st_size > 1_000_000
    assert series[-1]["copy_ups"] == 3
    assert f"copy-up /bin/ar (1.98MB copied) by {dd['pid']} [dd] sh -c printf x" in out

    # Each process with its own writes: the dd was sampled while it waited for its input.
    seen = {p["pid"]: p for s in series for p in s["processes"]}
    assert seen[dd["pid"]]["command"] == dd["command"]
    assert seen[sh["pid"]]["command"].startswith("sh -c echo b")
    if not _on_tmpfs(cli.root):
        # The copy-up is charged to the process whose open made it.
        assert seen[dd["pid"]]["write_bytes"] >= dd["lower_size"]
        assert re.search(rf"^{dd['pid']}\s+\S+\s+\S+\s+\[dd\] sh -c printf x", out, re.M), out

    # The CSV keeps the same lists as JSON text.
    cli.ok("du", "--output", str(csv_path), "cred")
    [row] = list(csv.DictReader(csv_path.open()))
    assert list(row) == list(COLUMNS)
    assert json.loads(row["copy_up_writers"]) == [] and int(row["volume_bytes"]) == 0


def test_where_the_kernel_refuses_fanotify_one_line_says_so(cli, bb):
    # In a new user namespace the watch keeps its root uid but loses
    # CAP_SYS_ADMIN in the initial one, which fanotify_init needs.
    import shutil

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) (util-linux)")
    cli.ok("run", "-d", "--name", "refused", *NONE, "bb:1", "sleep", "100")
    argv = ["unshare", "-U", "-r", *cli.argv("du", "--watch", "--duration", "0.5", "--format", "json", "refused")]
    result = subprocess.run(argv, capture_output=True, env=cli.env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode() == (
        "overlayctl: cannot tell which process triggers each copy-up: fanotify_init(0x3): Operation not permitted\n"
    )
    samples = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert len(samples) >= 2 and all(s["copy_up_writers"] == [] for s in samples)


def test_duration_ends_the_watch(cli, bb):
    cli.ok("run", "-d", "--name", "idle", *NONE, "bb:1", "sleep", "100")
    result = cli("du", "--watch", "--interval", "0.2", "--duration", "1", "--format", "json", "idle", timeout=180)
    assert result.returncode == 0, result.stderr
    samples = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert 3 <= len(samples) <= 7
    assert samples[-1]["time"] <= 1.5
    assert len({s["bytes"] for s in samples}) == 1  # an idle container does not grow


def test_errors_are_one_line(cli, bb, tmp_path: Path):
    result = cli("du", "nosuch")
    assert result.returncode == 125
    assert result.stderr.decode() == 'overlayctl: container "nosuch" not found; see "overlayctl ps -a"\n'
    cli.ok("run", "--name", "stopped", *NONE, "bb:1", "true")
    result = cli("du", "--watch", "stopped")
    assert result.returncode == 125 and b"is not running" in result.stderr
    result = cli("du", "--output", str(tmp_path / "s.txt"), "stopped")
    assert result.returncode == 125 and b".csv or a .json" in result.stderr
    result = cli("du", "--interval", "2", "stopped")
    assert result.returncode == 125 and b"need --watch" in result.stderr
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        result = cli("du", "--plot", str(tmp_path / "g.png"), "stopped")
        assert result.returncode == 125
        assert result.stderr.decode().count("\n") == 1 and b"pip install 'overlayctl[plot]'" in result.stderr
        assert not (tmp_path / "g.png").exists()

"""The pure parts of `du --watch`: classifying an upper dir against its
lower layers, the sampling loop (with a fake clock), the CSV/JSON series and
the charts."""

from __future__ import annotations

import csv
import io
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from overlayctl.errors import InvalidArgumentError, OverlayctlError
from overlayctl.layer.du import disk_usage
from overlayctl.layer.extract import OPAQUE_XATTR
from overlayctl.measure import chart, growth
from overlayctl.measure.growth import COPY_UP, NEW, WHITEOUT, Classification, Sample
from overlayctl.runtime.overlay import OverlayLayout

SVG = "{http://www.w3.org/2000/svg}"


def _file(path: Path, text: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _whiteout(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, 0o600 | 0o020000, os.makedev(0, 0))  # S_IFCHR 0:0, as overlayfs makes them


def _opaque(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.setxattr(path, OPAQUE_XATTR, b"y")


@pytest.fixture
def stack(tmp_path: Path) -> tuple[str, tuple[str, ...]]:
    """An upper dir over two layers (top first) with one entry of each case."""
    top, bottom, upper = tmp_path / "top", tmp_path / "bottom", tmp_path / "upper"
    for d in (top, bottom, upper):
        d.mkdir()
    # The image: bottom has the base files, top deletes /gone and replaces /opt.
    for name in ("etc/passwd", "etc/group", "gone", "opt/old", "var/log/x", "usr/bin/tool", "lib"):
        _file(bottom / name)
    (bottom / "bin").mkdir()
    os.symlink("busybox", bottom / "bin" / "sh")
    _file(top / "etc" / "hosts")
    _whiteout(top / "gone")
    _opaque(top / "opt")
    _file(top / "opt" / "fresh")
    # The container: what it changed.
    _file(upper / "etc" / "passwd", "changed")  # copy-up from bottom
    _file(upper / "etc" / "hosts", "changed")  # copy-up from top
    _file(upper / "etc" / "new.conf")  # new
    _whiteout(upper / "etc" / "group")  # deleted
    _file(upper / "gone")  # hidden below by top's whiteout: new
    _file(upper / "opt" / "old")  # hidden below by top's opaque /opt: new
    _file(upper / "opt" / "fresh")  # copy-up from top's /opt
    _opaque(upper / "var")  # the container replaced /var: nothing under it is a copy-up
    _file(upper / "var" / "log" / "x")
    _file(upper / "lib" / "mod")  # /lib is a file below: new
    (upper / "bin").mkdir()
    os.symlink("other", upper / "bin" / "sh")  # a replaced symlink: copy-up
    (upper / "usr" / "bin").mkdir(parents=True)  # a copied-up directory alone counts as nothing
    return str(upper), (str(top), str(bottom))


@pytest.mark.root
def test_upper_entries_follow_whiteouts_and_opaque_dirs(stack: tuple[str, tuple[str, ...]]) -> None:
    upper, lowers = stack
    assert {e.path: e.kind for e in growth.upper_entries(upper, lowers)} == {
        "/bin/sh": COPY_UP,
        "/etc/group": WHITEOUT,
        "/etc/hosts": COPY_UP,
        "/etc/new.conf": NEW,
        "/etc/passwd": COPY_UP,
        "/gone": NEW,
        "/lib/mod": NEW,
        "/opt/fresh": COPY_UP,
        "/opt/old": NEW,
        "/var/log/x": NEW,
    }
    assert growth.classify(upper, lowers) == Classification(copy_ups=4, new_files=5, whiteouts=1)


@pytest.mark.root
def test_layer_order_matters(stack: tuple[str, tuple[str, ...]]) -> None:
    upper, (top, bottom) = stack
    # Bottom first, top's whiteout of /gone and opaque /opt no longer hide bottom's files.
    kinds = {e.path: e.kind for e in growth.upper_entries(upper, (bottom, top))}
    assert kinds["/gone"] == COPY_UP and kinds["/opt/old"] == COPY_UP


@pytest.mark.root
def test_entries_say_what_they_copied_or_hide(stack: tuple[str, tuple[str, ...]], tmp_path: Path) -> None:
    upper, lowers = stack
    entries = {e.path: e for e in growth.upper_entries(upper, lowers)}
    passwd = entries["/etc/passwd"]
    assert (passwd.lower_type, passwd.lower_size) == ("file", 1)  # bottom's "x"
    assert (passwd.apparent, passwd.bytes) == (7, os.lstat(Path(upper) / "etc" / "passwd").st_blocks * 512)
    assert (entries["/bin/sh"].lower_type, entries["/bin/sh"].lower_size) == ("symlink", len("busybox"))
    assert (entries["/etc/group"].kind, entries["/etc/group"].lower_type) == (WHITEOUT, "file")
    assert (entries["/etc/new.conf"].lower_type, entries["/etc/new.conf"].lower_size) == ("", 0)
    # Shown by both layers: the size is the topmost one's, the file overlayfs copied.
    _file(Path(lowers[1]) / "etc" / "hosts", "a longer bottom file")
    assert next(e for e in growth.upper_entries(upper, lowers) if e.path == "/etc/hosts").lower_size == 1
    # A whiteout of a directory hides a directory; one of nothing hides nothing.
    _whiteout(Path(upper) / "var" / "gone")  # under the opaque /var: nothing below
    _whiteout(Path(upper) / "usr" / "bin" / "tool2")
    (Path(lowers[1]) / "usr" / "bin" / "tool2").mkdir()
    entries = {e.path: e for e in growth.upper_entries(upper, lowers)}
    assert entries["/var/gone"].lower_type == "" and entries["/usr/bin/tool2"].lower_type == "directory"


def test_top_entries_are_the_largest_first(tmp_path: Path) -> None:
    _file(tmp_path / "lower" / "big", "x" * 100_000)
    _file(tmp_path / "upper" / "big", "y" * 200_000)  # a copy-up of a 100 kB file
    _file(tmp_path / "upper" / "a" / "mid", "z" * 50_000)
    _file(tmp_path / "upper" / "small", "s")
    _file(tmp_path / "upper" / "tiny", "")
    upper, lowers = str(tmp_path / "upper"), (str(tmp_path / "lower"),)
    top = growth.top_entries(upper, lowers, 3)
    assert [(e.path, e.kind) for e in top] == [("/big", COPY_UP), ("/a/mid", NEW), ("/small", NEW)]
    assert top[0].lower_size == 100_000 and top[0].bytes >= 200_000
    assert top[0].bytes == os.lstat(tmp_path / "upper" / "big").st_blocks * 512
    assert len(growth.top_entries(upper, lowers, 100)) == 4
    with pytest.raises(InvalidArgumentError, match="1 or more"):
        growth.top_entries(upper, lowers, 0)


def test_no_lowers_means_everything_is_new(tmp_path: Path) -> None:
    _file(tmp_path / "a" / "b")
    _file(tmp_path / "c")
    assert growth.classify(str(tmp_path), ()) == Classification(new_files=2)
    assert growth.classify(str(tmp_path / "missing"), ()) == Classification()


# --- the sampling loop ------------------------------------------------------------------


def _sample(t: float, size: int = 4096, copy_ups: int = 0, written: int = 0) -> Sample:
    return Sample(t, 1e9 + t, size, size, 1, copy_ups, 0, 0, 0, written)


class FakeTime:
    """A clock that only moves when slept on (and by `cost` per measurement)."""

    def __init__(self, cost: float = 0.0) -> None:
        self.now = 0.0
        self.cost = cost
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds

    def measure(self) -> Sample:
        self.now += self.cost
        return _sample(round(self.now, 6))


def test_watch_samples_on_ticks_until_duration() -> None:
    t = FakeTime()
    seen: list[Sample] = []
    series = growth.watch(t.measure, lambda: True, 0.5, 2.0, seen.append, t.clock, t.sleep)
    assert [s.time for s in series] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert seen == series


def test_watch_skips_ticks_a_slow_measurement_overran() -> None:
    t = FakeTime(cost=1.2)
    series = growth.watch(t.measure, lambda: True, 0.5, 5.0, None, t.clock, t.sleep)
    assert [s.time for s in series] == [1.2, 2.7, 4.2, 5.7]


def test_watch_takes_a_last_sample_after_the_container_stopped() -> None:
    t = FakeTime()
    states = iter([True, True, False])
    series = growth.watch(t.measure, lambda: next(states), 1.0, None, None, t.clock, t.sleep)
    assert [s.time for s in series] == [0.0, 1.0, 2.0]


def test_watch_ends_when_the_upper_dir_is_gone() -> None:
    answers = iter([_sample(0), None])
    t = FakeTime()
    assert len(growth.watch(lambda: next(answers), lambda: True, 1.0, None, None, t.clock, t.sleep)) == 1


def test_ctrl_c_keeps_the_series() -> None:
    t = FakeTime()

    def sleep(seconds: float) -> None:
        if t.now >= 2:
            raise KeyboardInterrupt
        t.sleep(seconds)

    series = growth.watch(t.measure, lambda: True, 1.0, None, None, t.clock, sleep)
    assert [s.time for s in series] == [0.0, 1.0, 2.0]


def test_watch_refuses_a_zero_interval() -> None:
    with pytest.raises(InvalidArgumentError, match="--interval"):
        growth.watch(lambda: None, lambda: True, 0)


# --- the sampler ------------------------------------------------------------------------


def test_sampler_measures_with_du_and_keeps_the_last_io(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    _file(upper / "a", "hello")
    pid_lists = iter([[os.getpid()], []])
    sampler = growth.Sampler(OverlayLayout((), str(upper), str(tmp_path / "work")), lambda: next(pid_lists))
    first = sampler()
    usage = disk_usage(str(upper))
    assert first is not None
    assert (first.bytes, first.apparent, first.inodes) == (usage.bytes, usage.apparent, usage.inodes)
    assert (first.copy_ups, first.new_files, first.whiteouts) == (0, 1, 0)
    second = sampler()  # the processes are gone: their last totals stand
    assert second is not None and (second.read_bytes, second.write_bytes) == (first.read_bytes, first.write_bytes)
    assert second.time >= first.time >= 0
    (upper / "a").unlink()
    upper.rmdir()
    assert sampler() is None


class _Writers:
    """A stand-in for growth.Writers: who wrote what, set by the test."""

    def __init__(self) -> None:
        self.first: dict[str, tuple[int, str]] = {}

    def who(self, path: str) -> tuple[int, str] | None:
        return self.first.get(path)


def test_sampler_measures_volume_growth_from_the_first_sample(tmp_path: Path) -> None:
    upper, vol = tmp_path / "upper", tmp_path / "vol"
    _file(upper / "a")
    _file(vol / "old", "o" * 10_000)
    sampler = growth.Sampler(OverlayLayout((), str(upper), str(tmp_path / "w")), list, volumes=[str(vol)])
    assert sampler().volume_bytes == 0  # what was there before is not growth
    _file(vol / "new", "n" * 100_000)
    assert sampler().volume_bytes == disk_usage(str(vol / "new")).bytes
    (vol / "old").unlink()
    (vol / "new").unlink()
    assert sampler().volume_bytes < 0  # a volume can shrink too


def test_sampler_names_the_writer_of_each_new_copy_up(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for name in ("before", "one", "two", "three"):
        _file(lower / name, "l" * 10)
    _file(upper / "before")  # copied up before the watch: never reported
    writers = _Writers()
    alive = iter([[os.getpid()]] * 4 + [[]])
    sampler = growth.Sampler(OverlayLayout((str(lower),), str(upper), str(tmp_path / "w")), lambda: next(alive),
                             writers=writers)  # fmt: skip
    assert sampler().copy_up_writers == ()
    _file(upper / "one")
    _file(upper / "two")
    writers.first["/one"] = (41, "dd of=/one")
    first = sampler()
    assert first.copy_up_writers == (growth.CopyUp("/one", 10, 41, "dd of=/one"),)  # /two waits a sample
    mine = [p for p in first.processes if p.pid == os.getpid()]
    assert mine and mine[0].command and first.write_bytes == sum(p.write_bytes for p in first.processes)
    assert sampler().copy_up_writers == (growth.CopyUp("/two", 10, 0, ""),)  # waited: not seen
    writers.first["/two"] = (42, "late")
    _file(upper / "three")
    assert sampler().copy_up_writers == ()  # /two is done; /three waits
    # The container stopped: what waits is reported at once.
    assert sampler().copy_up_writers == (growth.CopyUp("/three", 10, 0, ""),)


def test_process_writes_has_command_lines() -> None:
    [me] = growth.process_writes([os.getpid(), 2**22 + 1])
    assert me.pid == os.getpid() and "pytest" in me.command
    assert me.write_bytes >= 0


def test_process_io_skips_processes_that_ended() -> None:
    read, written = growth.process_io([os.getpid(), 2**22 + 1])
    assert read >= 0 and written >= 0
    assert growth.process_io([]) == (0, 0)


# --- series files -----------------------------------------------------------------------

SERIES = [_sample(0.0), _sample(1.0, 2 << 20, 0, 2 << 20), _sample(2.0, 5 << 20, 1, 5 << 20)]
WRITERS = (growth.ProcessIO(7, 'sh -c "dd, then more"', 0, 5 << 20),)
FULL = [
    SERIES[0],
    Sample(1.0, 1e9 + 1, 2 << 20, 2 << 20, 3, 1, 1, 1, 0, 5 << 20, 3 << 20, WRITERS,
           (growth.CopyUp("/etc/passwd", 82, 7, 'sh -c "dd, then more"'),)),
]  # fmt: skip


def test_csv_has_a_header_and_one_row_per_sample() -> None:
    rows = list(csv.DictReader(io.StringIO(growth.series_csv(SERIES))))
    assert list(rows[0]) == list(growth.COLUMNS)
    assert [int(r["bytes"]) for r in rows] == [4096, 2 << 20, 5 << 20]
    assert [float(r["time"]) for r in rows] == [0.0, 1.0, 2.0]


def test_json_is_a_list_of_objects() -> None:
    items = json.loads(growth.series_json(SERIES))
    assert [list(item) for item in items] == [list(growth.COLUMNS)] * 3
    assert items[2]["copy_ups"] == 1 and items[2]["write_bytes"] == 5 << 20


def test_nested_columns_round_trip_through_csv_and_json() -> None:
    rows = list(csv.DictReader(io.StringIO(growth.series_csv(FULL))))
    assert list(rows[1]) == list(growth.COLUMNS)
    assert int(rows[1]["volume_bytes"]) == 3 << 20
    assert json.loads(rows[1]["processes"]) == [
        {"pid": 7, "command": 'sh -c "dd, then more"', "read_bytes": 0, "write_bytes": 5 << 20}
    ]
    assert json.loads(rows[1]["copy_up_writers"])[0]["path"] == "/etc/passwd"
    assert json.loads(rows[0]["processes"]) == []
    items = json.loads(growth.series_json(FULL))
    assert items[1]["processes"][0]["command"] == 'sh -c "dd, then more"'
    assert items[1]["copy_up_writers"][0] == {"path": "/etc/passwd", "lower_size": 82, "pid": 7,
                                              "command": 'sh -c "dd, then more"'}  # fmt: skip


def test_write_series_by_extension(tmp_path: Path) -> None:
    growth.write_series(SERIES, str(tmp_path / "s.CSV"))
    assert (tmp_path / "s.CSV").read_text().startswith("time,timestamp,bytes,")
    growth.write_series(SERIES, str(tmp_path / "s.json"))
    assert len(json.loads((tmp_path / "s.json").read_text())) == 3
    with pytest.raises(InvalidArgumentError, match=r"\.csv or a \.json"):
        growth.write_series(SERIES, str(tmp_path / "s.txt"))
    with pytest.raises(OverlayctlError, match="cannot write"):
        growth.write_series(SERIES, str(tmp_path / "no" / "dir.csv"))


# --- charts -------------------------------------------------------------------------------


def test_nice_ticks() -> None:
    assert chart.nice_ticks(10) == [0, 2, 4, 6, 8, 10]
    assert chart.nice_ticks(52_400_000)[-1] >= 52_400_000
    assert chart.nice_ticks(52_400_000)[1] == 20_000_000
    assert chart.nice_ticks(0) == [0.0, 1.0]


def test_resample_holds_each_value_until_the_next_sample() -> None:
    assert chart.resample([0, 1, 2], [1, 5, 9], 4) == [1, 5, 5, 9]
    assert chart.resample([0], [7], 3) == [7, 7, 7]
    assert chart.resample([], [], 3) == []


def test_sparkline_scales_to_the_top() -> None:
    assert chart.sparkline([0, 4, 8]) == " ▄█"
    assert chart.sparkline([1, 1], top=8) == "▁▁"
    assert chart.sparkline([]) == ""


@pytest.mark.parametrize("width", [20, 60, 133])
def test_terminal_chart_fits_its_width(width: int) -> None:
    times = [i * 0.5 for i in range(40)]
    values = [min(i, 30) * 1_000_000 for i in range(40)]
    lines = chart.terminal_chart(times, values, width, height=6)
    assert len(lines) == 7  # six rows of bars, then the time axis
    assert all(len(line) <= max(width, 18) for line in lines)
    assert lines[0].lstrip().startswith("30MB ┤") and lines[0].endswith("█")
    assert lines[5].lstrip().startswith("0B ┼")
    assert lines[-1].split() == ["0s", "19.5s"]
    assert chart.terminal_chart([], [], 80) == []


def test_terminal_chart_in_ascii() -> None:
    lines = chart.terminal_chart([0, 1], [0, 10], 30, height=2, blocks=chart.ASCII_BLOCKS)
    assert all(line.isascii() for line in lines)


def test_terminal_chart_stacks_volumes_and_marks_whiteouts() -> None:
    times = [0, 1, 2, 3]
    lines = chart.terminal_chart(times, [0, 4, 4, 4], 28, height=4, stacked=[0, 0, 4, 4], marks=[2])
    bars = lines[:4]
    assert "░" in bars[0] and "░" not in bars[-1] and "█" in bars[-1]  # volumes on top of the upper dir
    [mark_row] = [line for line in lines if line.strip() == "w" * line.strip().count("w") and "w" in line]
    column = mark_row.index("w")
    assert bars[0][column] == "░" and bars[0][column - 1] == " "  # where the volume bytes start
    assert "written to volumes: 4B at most" in lines[-1] and "whiteouts appear" in lines[-1]
    assert chart.terminal_chart(times, [0, 4, 4, 4], 28, height=4)[-1].split() == ["0s", "3s"]  # no legend
    ascii_lines = chart.terminal_chart(times, [0, 4, 4, 4], 28, 4, blocks=chart.ASCII_BLOCKS, stacked=[0, 0, 4, 4])
    assert all(line.isascii() for line in ascii_lines) and ":" in ascii_lines[0]


def test_svg_shows_volumes_and_whiteouts() -> None:
    series = [
        _sample(0.0),
        Sample(1.0, 1e9 + 1, 2 << 20, 2 << 20, 3, 0, 1, 1, 0, 5 << 20, 3 << 20),
        Sample(2.0, 1e9 + 2, 2 << 20, 2 << 20, 3, 0, 1, 2, 0, 5 << 20, 3 << 20),
    ]
    root = ET.fromstring(chart.svg_chart(series))
    texts = [t.text or "" for t in root.iter(SVG + "text")]
    assert "3.15MB to volumes" in texts
    assert "1 whiteout" in texts and "2 whiteouts" in texts
    assert any("written to volumes" in t for t in texts) and any("whiteout count" in t for t in texts)
    assert len(root.findall(f".//{SVG}polygon")) == 1 and len(root.findall(f".//{SVG}polyline")) == 3
    assert chart.whiteout_marks(series) == [1, 2]
    plain = ET.fromstring(chart.svg_chart(SERIES))
    assert not plain.findall(f".//{SVG}polygon")  # no volumes, no band


def test_svg_is_well_formed_with_lines_labels_and_copy_up_marks() -> None:
    root = ET.fromstring(chart.svg_chart(SERIES, 'Upper dir of <web> & "co"'))
    assert root.tag == SVG + "svg"
    polylines = root.findall(f".//{SVG}polyline")
    assert len(polylines) == 2 and all(len(p.get("points", "").split()) == 3 for p in polylines)
    texts = [t.text or "" for t in root.iter(SVG + "text")]
    assert 'Upper dir of <web> & "co"' in texts
    assert "time (seconds)" in texts and "bytes (decimal units)" in texts
    assert "6MB" in texts  # the top tick above 5 MiB, in the units ps -s uses
    assert "1 copy-up" in texts  # the one change of the copy-up count
    assert len(chart.copy_up_marks(SERIES)) == 1
    with pytest.raises(OverlayctlError):
        chart.svg_chart([])


def test_plot_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chart.write_plot(SERIES, str(tmp_path / "g.svg"))
    ET.parse(tmp_path / "g.svg")
    with pytest.raises(InvalidArgumentError, match=r"\.svg or a \.png"):
        chart.check_plot_target("g.jpeg")
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(OverlayctlError, match=r"pip install 'overlayctl\[plot\]'"):
        chart.check_plot_target(str(tmp_path / "g.png"))

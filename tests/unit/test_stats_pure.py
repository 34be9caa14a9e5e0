"""`stats` without root: the arithmetic from two readings to the figures
shown, the parsing of /proc/<pid>/net/dev and memory.stat, the table cells
and JSON fields, and the sampling loop driven by a fake clock."""

from __future__ import annotations

import dataclasses
import json

import pytest

from overlayctl.cli import stats as cli_stats
from overlayctl.engine import measure as engine_measure
from overlayctl.measure import stats
from overlayctl.measure.stats import Sample, derive

MiB = 1 << 20

NET_DEV = """\
Inter-|   Receive                                       |  Transmit
 face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed
    lo:  123456   10 0 0 0 0 0 0   123456   10 0 0 0 0 0 0
  eth0:    1500    5 0 0 0 0 0 0      700    3 0 0 0 0 0 0
 veth1: 20000000 9000 0 0 0 0 0 0 30000000 9000 0 0 0 0 0 0
"""


def reading(at: float, **kw) -> Sample:
    return Sample("a" * 64, "web", True, at, **kw)


def test_net_dev_sums_every_interface_but_lo():
    assert stats.parse_net_dev(NET_DEV) == (20_001_500, 30_000_700)


def test_net_dev_with_only_lo_or_nothing_is_zero():
    only_lo = "\n".join(NET_DEV.splitlines()[:3])
    assert stats.parse_net_dev(only_lo) == (0, 0)
    assert stats.parse_net_dev("") == (0, 0)


def test_cpu_percent_is_cpu_time_over_wall_time_100_per_cpu():
    assert stats.cpu_percent(0, 500_000_000, 0.5) == pytest.approx(100.0)
    assert stats.cpu_percent(10**9, 2 * 10**9, 0.5) == pytest.approx(200.0)  # two CPUs busy
    assert stats.cpu_percent(0, 0, 1.0) == 0.0


def test_cpu_percent_never_negative_and_zero_over_no_time():
    # A process that ended unreaped takes its CPU time out of the sum.
    assert stats.cpu_percent(5 * 10**9, 4 * 10**9, 1.0) == 0.0
    assert stats.cpu_percent(0, 10**9, 0.0) == 0.0


def test_rate_is_signed_and_zero_over_no_time():
    assert stats.rate(1000, 3000, 2.0) == 1000.0
    assert stats.rate(3000, 1000, 0.5) == -4000.0
    assert stats.rate(0, 10, 0.0) == 0.0


def test_percent():
    assert stats.percent(32 * MiB, 64 * MiB) == 50.0
    assert stats.percent(5, 0) == 0.0


def test_memory_usage_less_inactive_file_as_docker():
    stat = stats.parse_memory_stat("cache 100\ntotal_inactive_file 300\ninactive_file 200\nbogus x\n")
    assert stat == {"cache": 100, "total_inactive_file": 300, "inactive_file": 200}
    assert stats.without_inactive_file(1000, stat, version=1) == 700
    assert stats.without_inactive_file(1000, stat, version=2) == 800
    # Never below zero: the kernel's figures are not read atomically.
    assert stats.without_inactive_file(250, stat, version=1) == 250
    assert stats.without_inactive_file(1000, {}, version=2) == 1000


def test_derive_rates_between_two_readings():
    before = reading(10.0, cpu_ns=1_000_000_000, upper_size=4096, mem_usage=MiB, mem_limit=4 * MiB)
    after = reading(12.0, cpu_ns=2_000_000_000, upper_size=4096 + 2_000_000, mem_usage=MiB, mem_limit=4 * MiB)
    shown = derive(before, after)
    assert shown.sample is after
    assert shown.cpu_percent == pytest.approx(50.0)
    assert shown.upper_rate == 1_000_000
    assert shown.mem_percent == 25.0


def test_derive_without_a_previous_reading_has_no_rates():
    shown = derive(None, reading(1.0, cpu_ns=10**9, upper_size=10**6, mem_usage=1, mem_limit=4))
    assert (shown.cpu_percent, shown.upper_rate, shown.mem_percent) == (0.0, 0, 25.0)


def test_derive_no_cpu_across_a_start():
    stopped = Sample("a" * 64, "web", False, 1.0)
    assert derive(stopped, reading(2.0, cpu_ns=10**9)).cpu_percent == 0.0


@pytest.mark.parametrize(
    "size, text",
    [
        (0, "0B"),
        (1023, "1023B"),
        (1024, "1KiB"),
        (1536, "1.5KiB"),
        (64 * MiB, "64MiB"),
        (1_253_000, "1.195MiB"),
        (int(23.54 * (1 << 30)), "23.54GiB"),
    ],
)
def test_binary_size_as_docker_mem_usage(size, text):
    assert cli_stats.binary_size(size) == text


@pytest.mark.parametrize(
    "rate, text",
    [(1_200_000, "+1.2MB/s"), (-4096, "-4.1kB/s"), (0, "0B/s"), (512_000, "+512kB/s")],
)
def test_rate_text_is_signed(rate, text):
    assert cli_stats.rate_text(rate) == text


def test_table_row_and_json_item_agree():
    before = reading(0.0, upper_size=4096)
    after = reading(
        0.5,
        cpu_ns=250_000_000,
        mem_usage=20 * MiB,
        mem_limit=64 * MiB,
        net_rx=1500,
        net_tx=700,
        block_read=0,
        block_write=31_461_376,
        pids=3,
        upper_size=4096 + 500_000,
        proc_write=200_000_000,
    )
    row = derive(before, after)
    assert cli_stats.table_row(row) == [
        "aaaaaaaaaaaa",
        "web",
        "50.00%",
        "20MiB / 64MiB",
        "31.25%",
        "1.5kB / 700B",
        "0B / 31.5MB",
        "3",
        "504kB",
        "+1MB/s",
        "0B / 200MB",
    ]
    item = json.loads(json.dumps(cli_stats.json_item(row, no_trunc=True)))
    assert item["ID"] == "a" * 64 and item["Name"] == "web" and item["Running"] is True
    assert item["CPUPerc"] == 50.0 and item["MemPerc"] == 31.25
    assert (item["MemUsage"], item["MemLimit"]) == (20 * MiB, 64 * MiB)
    assert (item["NetInput"], item["NetOutput"], item["BlockInput"], item["BlockOutput"]) == (1500, 700, 0, 31_461_376)
    assert (item["PIDs"], item["UpperSize"], item["UpperRate"]) == (3, 504_096, 1_000_000)
    assert item["MemUsageText"] == "20MiB / 64MiB" and item["UpperRateText"] == "+1MB/s"
    assert item["NetIO"] == "1.5kB / 700B" and item["BlockIO"] == "0B / 31.5MB"
    assert (item["ProcessRead"], item["ProcessWritten"], item["ProcessIO"]) == (0, 200_000_000, "0B / 200MB")
    # Without a cgroup figure BLOCK I/O says so; process I/O stays.
    bare = derive(before, dataclasses.replace(after, block_read=None, block_write=None))
    assert cli_stats.table_row(bare)[6] == "--" and cli_stats.table_row(bare)[10] == "0B / 200MB"
    item = cli_stats.json_item(bare)
    assert (item["BlockInput"], item["BlockOutput"], item["BlockIO"]) == (None, None, "--")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeContainer:
    def __init__(self, id: str, name: str) -> None:
        self.id, self.name = id, name


def test_watch_reads_twice_before_the_first_figures_then_every_interval(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(engine_measure.time, "sleep", clock.sleep)
    monkeypatch.setattr(engine_measure.time, "monotonic", clock.monotonic)
    upper = {"x": 0}

    def fake_sample(store, container):
        upper["x"] += 1000  # grows 1000 bytes per reading
        half_a_cpu = int(clock.now * 1e9 / 2)
        return Sample(container.id, container.name, True, clock.now, cpu_ns=half_a_cpu, upper_size=upper["x"])

    monkeypatch.setattr(stats, "sample", fake_sample)
    emitted: list[list] = []

    class Stop(Exception):
        pass

    def emit(rows):
        emitted.append(rows)
        if len(emitted) == 3:
            raise Stop

    with pytest.raises(Stop):
        engine_measure.watch(None, lambda: [FakeContainer("c" * 64, "one")], emit)
    assert clock.sleeps == [engine_measure.FIRST_GAP, engine_measure.INTERVAL, engine_measure.INTERVAL]
    first, second, _ = emitted
    assert first[0].cpu_percent == pytest.approx(50.0) and first[0].upper_rate == 2000  # 1000 B over 0.5 s
    assert second[0].upper_rate == 1000


def test_watch_no_stream_emits_once_and_skips_the_gap_without_containers(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(engine_measure.time, "sleep", clock.sleep)
    emitted: list[list] = []
    engine_measure.watch(None, lambda: [], emitted.append, stream=False)
    assert emitted == [[]] and clock.sleeps == []

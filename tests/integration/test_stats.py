"""`stats` against the real kernel: memory held by a process and charged to
a cgroup, the cgroup's limit, CPU burnt by a busy loop, processes counted
in the PID namespace, network counters of the container's namespace, the
upper dir's size (equal to `du`) and its growth rate, live output on a
pipe and on a terminal, Ctrl-C, and an unknown container."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time

import psutil

from tests.conftest import TEST_BRIDGE_SUBNET

NONE = ("--network", "none")
MiB = 1 << 20
CLEAR = b"\x1b[2J\x1b[H"


def stats_json(cli, *args: str) -> dict[str, dict]:
    """One --no-stream sample, as {name: object}."""
    out = cli.ok("stats", "--no-stream", "--format", "json", *args)
    return {item["Name"]: item for item in map(json.loads, out.splitlines())}


def poll(read, good, timeout: float = 30.0, what: str = "condition"):
    """read() until good(value); that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if good(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {value}")
        time.sleep(0.2)


def du_bytes(path) -> int:
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)], capture_output=True, check=True).stdout
    return int(out.split()[0])


def upper_of(cli, name: str):
    cid = json.loads(cli.ok("inspect", name))[0]["Id"]
    return cli.root / "containers" / cid / "upper"


def stop_quietly(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


def test_memory_a_process_holds_is_its_rss_under_the_host_limit(cli, bb):
    # 20 MiB held in a shell variable; the `echo` after sleep keeps ash from
    # exec'ing sleep in the shell's place (that would free the variable).
    hold = 'x=$(dd if=/dev/zero bs=1M count=20 2>/dev/null | tr "\\0" x); sleep 100; echo ${#x}'
    cli.ok("run", "-d", "--name", "hog", *NONE, "bb:1", "sh", "-c", hold)
    # (Until the dd | tr pipeline is done: on a slow machine the memory is
    # there before its processes are gone.)
    item = poll(
        lambda: stats_json(cli, "hog")["hog"],
        lambda s: s["MemUsage"] >= 20 * MiB and s["PIDs"] == 2,
        timeout=120,
        what="20 MiB resident, held by sh while it sleeps",
    )
    assert item["MemLimit"] == psutil.virtual_memory().total
    assert item["MemPerc"] == round(100 * item["MemUsage"] / item["MemLimit"], 2)
    assert item["MemUsage"] < 64 * MiB


def test_memory_limit_and_usage_come_from_the_cgroup(cli, bb):
    # /dev/shm is a tmpfs: its pages are charged to the writer's memory
    # cgroup although no process maps them.
    script = "dd if=/dev/zero of=/dev/shm/x bs=1M count=20 2>/dev/null; sleep 100 & sleep 200 & wait"
    cli.ok("run", "-d", "--name", "capped", "--memory", "64m", *NONE, "bb:1", "sh", "-c", script)
    item = poll(
        lambda: stats_json(cli, "capped")["capped"],
        lambda s: s["MemUsage"] >= 20 * MiB and s["PIDs"] == 3,
        what="20 MiB charged and three processes",
    )
    assert item["MemLimit"] == 64 * MiB
    assert item["MemUsageText"].endswith(" / 64MiB")
    assert 20 * MiB <= item["MemUsage"] <= 64 * MiB
    assert item["MemPerc"] == round(100 * item["MemUsage"] / (64 * MiB), 2)


def test_a_busy_loop_shows_cpu_and_an_idle_container_does_not(cli, bb):
    cli.ok("run", "-d", "--name", "busy", *NONE, "bb:1", "sh", "-c", "while :; do :; done")
    cli.ok("run", "-d", "--name", "idle", *NONE, "bb:1", "sleep", "100")
    # The machine is shared (a VM runs beside the tests): a sample may catch
    # the loop descheduled, so several get a chance.
    both = poll(lambda: stats_json(cli), lambda s: s["busy"]["CPUPerc"] > 20, what="CPU % over 20")
    assert both["idle"]["CPUPerc"] < 5
    assert both["busy"]["CPUPercText"].endswith("%")


def test_pids_counts_every_process_of_the_namespace(cli, bb):
    cli.ok("run", "-d", "--name", "three", *NONE, "bb:1", "sh", "-c", "sleep 100 & sleep 200 & wait")
    item = poll(lambda: stats_json(cli, "three")["three"], lambda s: s["PIDs"] == 3, what="3 processes")
    assert item["Running"] is True


def test_upper_size_is_du_of_the_upper_dir_running_or_not(cli, bb):
    script = "dd if=/dev/zero of=/data bs=1M count=5 2>/dev/null; mkdir /d; echo x > /d/f; touch /done; sleep 100"
    cli.ok("run", "-d", "--name", "writer", *NONE, "bb:1", "sh", "-c", script)
    cli.ok("run", "--name", "done", *NONE, "bb:1", "dd", "if=/dev/zero", "of=/data", "bs=1M", "count=3")
    writer_upper = upper_of(cli, "writer")
    poll(lambda: (writer_upper / "done").exists(), bool, what="the writes")
    running = stats_json(cli)
    assert set(running) == {"writer"}  # a stopped container only with -a
    assert running["writer"]["UpperSize"] == du_bytes(writer_upper)
    assert running["writer"]["UpperSize"] >= 5 * MiB
    assert running["writer"]["ProcessWritten"] >= 5 * MiB  # dd's writes, counted in its reaped parent
    assert running["writer"]["BlockOutput"] is None  # no limits, no cgroup: no device figure
    every = stats_json(cli, "-a")
    stopped = every["done"]
    assert stopped["UpperSize"] == du_bytes(upper_of(cli, "done")) >= 3 * MiB
    assert not stopped["Running"] and stopped["UpperRate"] == 0
    assert (stopped["CPUPerc"], stopped["MemUsage"], stopped["MemLimit"], stopped["PIDs"]) == (0, 0, 0, 0)
    assert (stopped["NetInput"], stopped["NetOutput"], stopped["BlockInput"], stopped["BlockOutput"]) == (0, 0, 0, 0)


GROW = "i=0; while :; do dd if=/dev/zero of=/f$i bs=64k count=1 2>/dev/null; i=$((i+1)); sleep 0.1; done"


def test_a_growing_upper_dir_has_a_positive_rate(cli, bb):
    cli.ok("run", "-d", "--name", "grow", *NONE, "bb:1", "sh", "-c", GROW)
    item = poll(lambda: stats_json(cli, "grow")["grow"], lambda s: s["UpperRate"] > 0, what="a positive rate")
    assert item["UpperRateText"].startswith("+") and item["UpperRateText"].endswith("/s")


def test_streaming_json_on_a_pipe_then_ctrl_c_exits_0(cli, bb):
    cli.ok("run", "-d", "--name", "grow", *NONE, "bb:1", "sh", "-c", GROW)
    stream = subprocess.Popen(
        cli.argv("stats", "--format", "json", "grow"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli.env,
    )
    try:
        samples = []
        deadline = time.monotonic() + 60
        while len(samples) < 3 and time.monotonic() < deadline:
            line = stream.stdout.readline()
            assert line, stream.stderr.read()
            samples.append(json.loads(line))
        assert [s["Name"] for s in samples] == ["grow"] * 3
        sizes = [s["UpperSize"] for s in samples]
        assert sizes == sorted(sizes) and sizes[-1] > sizes[0]
        assert all(s["UpperRate"] > 0 for s in samples)
        stream.send_signal(signal.SIGINT)
        assert stream.wait(timeout=20) == 0
        assert stream.stderr.read() == b""
    finally:
        stop_quietly(stream)


def test_on_a_terminal_the_table_is_redrawn_until_ctrl_c(cli, bb):
    cli.ok("run", "-d", "--name", "idle", *NONE, "bb:1", "sleep", "100")
    controller, terminal = pty.openpty()
    stream = subprocess.Popen(
        cli.argv("stats"),
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=subprocess.PIPE,
        env=cli.env,
    )
    os.close(terminal)
    try:
        seen = b""
        deadline = time.monotonic() + 60
        while seen.count(CLEAR) < 2 and time.monotonic() < deadline:
            if select.select([controller], [], [], 1)[0]:
                seen += os.read(controller, 65536)
        assert seen.count(CLEAR) >= 2, seen
        # Between the first two clears: one whole table (the last may be half read).
        first = seen.split(CLEAR)[1].decode()
        lines = [line for line in first.replace("\r", "").splitlines() if line]
        assert lines[0].split("   ")[:2] == ["CONTAINER ID", "NAME"]
        assert "UPPER RATE" in lines[0] and "idle" in lines[1]
        stream.send_signal(signal.SIGINT)
        assert stream.wait(timeout=20) == 0
    finally:
        stop_quietly(stream)
        os.close(controller)


def test_no_stream_table_has_docker_columns_and_ours(cli, bb):
    cli.ok("run", "-d", "--name", "idle", *NONE, "bb:1", "sleep", "100")
    start = time.monotonic()
    lines = cli.ok("stats", "--no-stream").splitlines()
    assert time.monotonic() - start >= 0.5  # two readings, half a second apart
    assert [c.strip() for c in lines[0].split("   ") if c.strip()] == [
        "CONTAINER ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
        "PIDS",
        "UPPER",
        "UPPER RATE",
        "PROCESS I/O",
    ]
    assert len(lines) == 2 and lines[1].split()[1] == "idle"
    assert "\x1b" not in "".join(lines)


def test_network_io_is_the_containers_namespace(cli, bb):
    gateway = TEST_BRIDGE_SUBNET.rsplit(".", 1)[0] + ".1"
    cli.ok("run", "-d", "--name", "pinger", "bb:1", "sh", "-c", f"ping -c 2 {gateway}; sleep 100; echo")
    cli.ok("run", "-d", "--name", "alone", *NONE, "bb:1", "sleep", "100")
    cli.ok("run", "-d", "--name", "onhost", "--network", "host", "bb:1", "sleep", "100")
    # Two echo requests and two replies, 98 bytes each on the wire (64 of
    # ICMP, 20 of IP, 14 of Ethernet), plus ARP.
    every = poll(
        lambda: stats_json(cli),
        lambda s: s["pinger"]["NetInput"] >= 196 and s["pinger"]["NetOutput"] >= 196,
        what="the pings",
    )
    assert every["pinger"]["NetIO"].count(" / ") == 1
    # Only lo in its namespace; the host's counters are not the container's.
    for name in ("alone", "onhost"):
        assert (every[name]["NetInput"], every[name]["NetOutput"]) == (0, 0), name


def test_unknown_container_is_one_line_and_125(cli, bb):
    result = cli("stats", "--no-stream", "no-such-container")
    assert result.returncode == 125
    assert result.stdout == b""
    assert result.stderr.decode().count("\n") == 1 and "no-such-container" in result.stderr.decode()


def test_container_stats_is_the_same_command(cli, bb):
    assert "UPPER RATE" in cli.ok("container", "stats", "--no-stream").splitlines()[0]

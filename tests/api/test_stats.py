"""GET /containers/{id}/stats: dockerd's stats documents, one-shot or one a
second, read by Debian's docker client as `docker stats` and raw."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

from tests.api.conftest import Api
from tests.helpers import wait_for


def cpu_percent(doc: dict) -> float:
    """docker's client's CPU % of a stats document (calculateCPUPercentUnix)."""
    cpu, pre = doc["cpu_stats"], doc["precpu_stats"]
    cpu_delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    if cpu_delta <= 0 or system_delta <= 0:
        return 0.0
    return cpu_delta / system_delta * cpu["online_cpus"] * 100.0


def table_cells(output: str) -> dict[str, str]:
    """The first row of `overlayctl stats`' table, by header."""
    header, row = output.splitlines()[:2]
    names = re.split(r"\s{2,}", header.strip())
    return dict(zip(names, re.split(r"\s{2,}", row.strip()), strict=False))


def test_raw_stats_document_has_dockerds_fields(api: Api, bb: str) -> None:
    cid = api.cli.ok("run", "-d", "--name", "st", "bb:1", "sleep", "600").strip()
    status, headers, body = api.request("GET", "/v1.41/containers/st/stats?stream=0")
    assert status == 200 and headers["content-type"] == "application/json"
    docs = body.decode().splitlines()
    assert len(docs) == 1
    doc = json.loads(docs[0])
    assert doc["name"] == "/st" and doc["id"] == cid
    assert doc["read"].endswith("Z") and doc["preread"] != "0001-01-01T00:00:00Z"
    assert doc["pids_stats"]["current"] >= 1
    usage = doc["cpu_stats"]["cpu_usage"]
    # (A sleeping process may not have used a clock tick yet: >= 0.)
    assert usage["total_usage"] >= doc["precpu_stats"]["cpu_usage"]["total_usage"] >= 0
    assert doc["cpu_stats"]["online_cpus"] >= 1
    assert doc["cpu_stats"]["system_cpu_usage"] > doc["precpu_stats"]["system_cpu_usage"] > 0
    assert set(doc["cpu_stats"]["throttling_data"]) == {"periods", "throttled_periods", "throttled_time"}
    assert 0 < doc["memory_stats"]["usage"] < doc["memory_stats"]["limit"]
    assert isinstance(doc["memory_stats"]["stats"], dict)
    assert set(doc["networks"]["eth0"]) >= {"rx_bytes", "tx_bytes", "rx_packets", "tx_packets"}
    # No limits, no cgroup: no device figure, as dockerd without one.
    assert doc["blkio_stats"]["io_service_bytes_recursive"] is None


def test_one_shot_and_bad_requests(api: Api, bb: str) -> None:
    api.cli.ok("run", "-d", "--name", "st", "bb:1", "sleep", "600")
    doc = api.json("GET", "/containers/st/stats?stream=false&one-shot=true", expect=200)
    # One reading, none before it, as dockerd's one-shot.
    assert doc["precpu_stats"]["cpu_usage"]["total_usage"] == 0 and doc["preread"] == "0001-01-01T00:00:00Z"
    assert doc["read"] != "0001-01-01T00:00:00Z" and doc["memory_stats"]["usage"] > 0
    status, _, body = api.request("GET", "/containers/st/stats?stream=1&one-shot=1")
    assert status == 400 and b"one-shot" in body
    status, _, body = api.request("GET", "/containers/nothere/stats?stream=0")
    assert status == 404 and body.startswith(b'{"message":')


def test_a_stopped_container_reads_as_zeros(api: Api, bb: str) -> None:
    cid = api.cli.ok("run", "-d", "--name", "done", "bb:1", "true").strip()
    api.cli.ok("wait", "done")
    doc = api.json("GET", "/containers/done/stats?stream=1", expect=200)
    assert (doc["name"], doc["id"], doc["read"]) == ("/done", cid, "0001-01-01T00:00:00Z")
    assert doc["memory_stats"] == {} and doc["cpu_stats"]["cpu_usage"]["total_usage"] == 0


@pytest.mark.slow
def test_a_busy_container_shows_its_cpu(api: Api, bb: str) -> None:
    api.cli.ok("run", "-d", "--name", "busy", "bb:1", "sh", "-c", "while :; do :; done")
    doc = api.json("GET", "/containers/busy/stats?stream=0", expect=200)
    assert 20.0 < cpu_percent(doc) < 100.0 * doc["cpu_stats"]["online_cpus"] + 5, doc["cpu_stats"]
    out = api.docker_ok("stats", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}}", "busy")
    name, perc = out.split()
    assert name == "busy" and 20.0 < float(perc.rstrip("%")) <= 205.0, out


def test_docker_stats_shows_what_overlayctl_stats_shows(api: Api, bb: str) -> None:
    api.cli.ok("run", "-d", "--name", "st", "bb:1", "sleep", "600")

    def same() -> tuple[str, str] | None:
        ours = table_cells(api.cli.ok("stats", "--no-stream", "st"))
        out = api.docker_ok("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", "st")
        theirs = out.strip()
        expected = f"st {ours['MEM USAGE / LIMIT']}"
        # A sleeping shell's memory holds still; a page or two between the
        # readings changes nothing once rounded, so a few tries settle it.
        return (theirs, expected) if theirs == expected else None

    theirs, expected = wait_for(same, 20, "docker stats and overlayctl stats to agree")
    assert re.fullmatch(r"st [0-9.]+[KMG]?i?B / [0-9.]+[KMG]iB", theirs), theirs


def _threads(api: Api) -> int:
    with open(f"/proc/{api.proc.pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


@pytest.mark.slow
def test_streamed_stats_come_once_a_second_until_the_client_leaves(api: Api, bb: str) -> None:
    cid = api.cli.ok("run", "-d", "--name", "st", "bb:1", "sleep", "600").strip()
    threads = _threads(api)
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(api.sock))
    sock.sendall(f"GET /v1.41/containers/{cid}/stats HTTP/1.1\r\nHost: docker\r\n\r\n".encode())
    started = time.monotonic()
    received = b""
    while received.count(b'"name":"/st"') < 3:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    took = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 200")
    # The first after two readings FIRST_GAP apart, then one a second.
    assert 2.0 < took < 6.0, took
    assert _threads(api) == threads + 1  # the stream's own
    sock.close()
    wait_for(lambda: _threads(api) == threads, 10, "the stream's thread to end")
    assert api.request("GET", "/_ping")[0] == 200


@pytest.mark.slow
def test_streamed_stats_end_with_the_container(api: Api, bb: str) -> None:
    api.cli.ok("run", "-d", "--name", "brief", "bb:1", "sleep", "2")
    started = time.monotonic()
    status, _, body = api.request("GET", "/containers/brief/stats", timeout=30)
    assert status == 200
    docs = [json.loads(line) for line in body.decode().splitlines()]
    # Documents while it ran, then one that reads it stopped, and the end.
    assert docs[0]["read"] != "0001-01-01T00:00:00Z"
    assert docs[-1]["read"] == "0001-01-01T00:00:00Z"
    assert time.monotonic() - started < 15


def test_docker_stats_shows_the_cgroups_block_io(api: Api, bb: str) -> None:
    from tests.helpers import block_io_counted, store_device, upper_dir

    device = store_device(api.cli.root)
    if device is None:
        pytest.skip(f"{api.cli.root} is on no block device: no device I/O to count")
    # 4 MB with O_DIRECT: it reaches the device from the container's own
    # process, counted in its cgroup (--memory gives it one) on v1 and v2.
    script = "dd if=/dev/zero of=/d bs=1M count=4 oflag=direct 2>/dev/null; touch /done; sleep 100"
    with block_io_counted(device):
        api.cli.ok("run", "-d", "--name", "io", "--memory", "256m", "--network", "none", "bb:1", "sh", "-c", script)
        wait_for(lambda: (upper_dir(api.cli, "io") / "done").exists(), what="the direct write")
        doc = api.json("GET", "/containers/io/stats?stream=false&one-shot=true", expect=200)
        theirs = api.docker_ok("stats", "--no-stream", "--format", "{{.BlockIO}}", "io").strip()
        ours = api.cli.ok("stats", "--no-stream", "--format", "{{.BlockIO}}", "io").strip()
    entries = doc["blkio_stats"]["io_service_bytes_recursive"]
    assert entries and all(set(e) == {"major", "minor", "op", "value"} for e in entries)
    major, minor = map(int, device.split(":"))
    written = sum(
        e["value"] for e in entries if e["op"].lower() == "write" and (e["major"], e["minor"]) == (major, minor)
    )
    assert written >= 4 << 20
    # The client adds the entries up as `overlayctl stats` does.
    assert theirs == ours and theirs.split(" / ")[1] != "0B", (theirs, ours)

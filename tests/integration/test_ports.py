"""Published ports on the real kernel: DNAT in our table, from the host,
from the outside world (tests/networld.py) through the host's address,
from another container through the host's address (hairpin), on
127.0.0.1, -P, ranges, conflicts, and nothing left after stop, rm and a
killed supervisor.

Every test has its own default-bridge device and subnet, and host ports
picked at random from 20000-29999 (below the ephemeral range) that are free
when the test starts. Traffic goes only between the host, the test's
containers and the test's outside-world namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from overlayctl.network import firewall
from tests.conftest import delete_bridge, image_with_program, static_program
from tests.integration.test_network import _free_subnets, _wait_gone

PROBES = Path(__file__).resolve().parent / "probes"
SERVE_TCP = "while true; do echo hello-from-$0 | nc -l -p 80; done"


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` consecutive host ports nothing holds now, from 20000-29999."""
    for _ in range(200):
        start = random.randrange(20000, 29999 - count)
        ports = list(range(start, start + count))
        if all(_bindable(p) for p in ports) and not any(_published(p) for p in ports):
            return ports
    pytest.skip("no free host ports in 20000-29999")


def _published(port: int) -> bool:
    return any(_elements_for(port))


def _elements_for(port: int) -> list:
    elements = firewall.published_elements()
    return [e for name in elements for e in elements[name] if e[0]["concat"][-1] == port]


class Ports:
    """The test's store, bridge and helpers."""

    def __init__(self, cli) -> None:
        self.cli = cli
        self.bridge = "octlt" + os.urandom(3).hex()
        (self.subnet,) = _free_subnets(1)
        cli.env["OVERLAYCTL_BRIDGE_NAME"] = self.bridge
        cli.env["OVERLAYCTL_BRIDGE_SUBNET"] = self.subnet

    def rows(self) -> list[tuple]:
        conn = sqlite3.connect(self.cli.root / "catalog.db")
        try:
            return conn.execute(
                "SELECT container, protocol, host_ip, host_port, container_port FROM ports ORDER BY host_port"
            ).fetchall()
        finally:
            conn.close()

    def leases(self) -> list[tuple]:
        conn = sqlite3.connect(self.cli.root / "catalog.db")
        try:
            return conn.execute("SELECT address, container FROM leases").fetchall()
        finally:
            conn.close()

    def inspect(self, name: str) -> dict:
        return json.loads(self.cli.ok("inspect", name))[0]

    def address(self, name: str) -> str:
        return self.inspect(name)["NetworkSettings"]["IPAddress"]

    def serve_tcp(self, name: str, *publish: str, image: str = "bb:1") -> str:
        args = [a for p in publish for a in ("-p", p)]
        return self.cli.ok("run", "-d", "--name", name, *args, image, "sh", "-c", SERVE_TCP, name).strip()


@pytest.fixture
def ports(cli, bb):
    p = Ports(cli)
    try:
        yield p
    finally:
        ids = cli("ps", "-aq", "--no-trunc").stdout.decode().split()
        if ids:
            cli("rm", "-f", *ids)
        for line in cli("network", "ls", "--no-trunc", "--format", "json").stdout.decode().splitlines():
            row = json.loads(line)
            if row["Name"] not in ("bridge", "host", "none"):
                cli("network", "rm", row["Name"])
        left = _wait_gone({"veth" + i[:11] for i in ids})
        if p.bridge in os.listdir("/sys/class/net"):
            delete_bridge(p.bridge)
        assert not left, f"devices left behind: {left}"
        assert not p.rows(), "published ports left in the catalog"


def tcp_get(host: str, port: int, runner=None, timeout: float = 5.0) -> str:
    """What a TCP server says to busybox nc (retried while the server is
    starting); "" if nothing answered."""
    argv = ["busybox", "nc", "-w", "2", host, str(port)]
    deadline = time.monotonic() + timeout
    while True:
        if runner is None:
            out = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10).stdout
        else:
            out = runner(argv)
        if out.strip() or time.monotonic() > deadline:
            return out.strip()
        time.sleep(0.1)


UDP_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
for _ in range(10):
    s.sendto(b"ping", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recvfrom(100)[0].decode())
        break
    except OSError:
        pass
"""


def udp_ask(host: str, port: int, world=None) -> str:
    argv = [sys.executable, "-c", UDP_CLIENT, host, str(port)]
    if world is None:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip()
    return world.run(argv, timeout=20).stdout.strip()


@pytest.fixture
def udp_image(cli, bb, tmp_path):
    return image_with_program(cli, static_program(PROBES / "udp_echo.c", tmp_path), tmp_path)


def test_tcp_and_udp_from_the_host_and_from_outside(ports, outside_world, udp_image):
    cli, world = ports.cli, outside_world
    tcp_port, udp_port = free_ports(2)
    ports.serve_tcp("web", f"{tcp_port}:80")
    cli.ok("run", "-d", "--name", "echo", "-p", f"{udp_port}:7/udp", udp_image, "/udp_echo", "7")

    assert tcp_get("127.0.0.1", tcp_port) == "hello-from-web"
    assert tcp_get(world.host_address, tcp_port) == "hello-from-web"  # the host, to one of its own addresses
    from_outside = tcp_get(world.host_address, tcp_port, runner=lambda a: world.run(a, stdin=subprocess.DEVNULL).stdout)
    assert from_outside == "hello-from-web"
    assert udp_ask("127.0.0.1", udp_port) == "echo:ping"
    assert udp_ask(world.host_address, udp_port, world) == "echo:ping"

    # Where it shows.
    assert cli.ok("port", "web").splitlines() == [f"80/tcp -> 0.0.0.0:{tcp_port}"]
    assert cli.ok("port", "echo", "7/udp").split() == [f"0.0.0.0:{udp_port}"]
    missing = cli("port", "web", "81")
    assert missing.returncode == 1 and b"No public port '81/tcp' published for web" in missing.stderr
    info = ports.inspect("web")
    assert info["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(tcp_port)}]}
    assert info["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": str(tcp_port)}]}
    assert info["Config"]["ExposedPorts"] == {"80/tcp": {}}
    table = cli.ok("ps").splitlines()
    assert f"0.0.0.0:{tcp_port}->80/tcp" in next(line for line in table if line.endswith(" web"))
    rows = [json.loads(line) for line in cli.ok("ps", "--format", "json").splitlines()]
    assert next(r for r in rows if r["Names"] == "echo")["Ports"] == f"0.0.0.0:{udp_port}->7/udp"

    # Gone at stop, back at start, gone at rm.
    cli.ok("stop", "-t", "1", "web")
    assert not _elements_for(tcp_port) and [r[3] for r in ports.rows()] == [udp_port]
    assert cli.ok("port", "web") == "" and ports.inspect("web")["NetworkSettings"]["Ports"] == {}
    assert tcp_get("127.0.0.1", tcp_port, timeout=0) == ""
    cli.ok("start", "web")
    assert tcp_get("127.0.0.1", tcp_port) == "hello-from-web"
    cli.ok("rm", "-f", "web", "echo")
    assert not _elements_for(tcp_port) and not _elements_for(udp_port) and not ports.rows()
    assert not os.path.exists(f"/run/overlayctl-ports/tcp/{tcp_port}")


def test_hairpin_from_containers_through_the_hosts_address(ports, outside_world):
    cli, world = ports.cli, outside_world
    (port,) = free_ports(1)
    ports.serve_tcp("web", f"{port}:80")
    assert tcp_get("127.0.0.1", port) == "hello-from-web"
    # Another container on the same bridge, and the container itself.
    out = cli.ok("run", "--rm", "bb:1", "nc", "-w", "3", world.host_address, str(port), input=b"")
    assert out.strip() == "hello-from-web"
    out = cli.ok("exec", "web", "nc", "-w", "3", world.host_address, str(port), input=b"")
    assert out.strip() == "hello-from-web"
    # A container on another network, through the host's address as well.
    (spare,) = [s for s in _free_subnets(2) if s != ports.subnet][:1]
    cli.ok("network", "create", "--subnet", spare, "other")
    out = cli.ok("run", "--rm", "--network", "other", "bb:1", "nc", "-w", "3", world.host_address, str(port), input=b"")
    assert out.strip() == "hello-from-web"


def test_loopback_only_publishing(ports, outside_world):
    cli, world = ports.cli, outside_world
    (port,) = free_ports(1)
    ports.serve_tcp("web", f"127.0.0.1:{port}:80")
    assert tcp_get("127.0.0.1", port) == "hello-from-web"
    assert cli.ok("port", "web").strip() == f"80/tcp -> 127.0.0.1:{port}"
    # Not on the host's other addresses, and not from outside.
    assert tcp_get(world.host_address, port, timeout=0) == ""
    out = world.run(["busybox", "nc", "-w", "2", world.host_address, str(port)], stdin=subprocess.DEVNULL)
    assert out.stdout.strip() == ""


def test_publish_all_and_ranges(ports):
    cli = ports.cli
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    expose = ("--expose", "80", "--expose", "81/udp", "-P")
    cli.ok("run", "-d", "--name", "all", *expose, "bb:1", "sh", "-c", SERVE_TCP, "all")
    mapped = dict(line.split(" -> ") for line in cli.ok("port", "all").splitlines())
    assert set(mapped) == {"80/tcp", "81/udp"}
    host_port = int(mapped["80/tcp"].rpartition(":")[2])
    assert low <= host_port <= high and mapped["80/tcp"].startswith("0.0.0.0:")
    assert tcp_get("127.0.0.1", host_port) == "hello-from-all"
    assert ports.inspect("all")["HostConfig"]["PublishAllPorts"] is True

    # A range to a range: one host port each.
    a, b, c = free_ports(3)
    cli.ok("run", "-d", "--name", "pair", "-p", f"{a}-{b}:80-81", "bb:1", "sh", "-c", SERVE_TCP, "pair")
    assert cli.ok("port", "pair").splitlines() == [f"80/tcp -> 0.0.0.0:{a}", f"81/tcp -> 0.0.0.0:{b}"]
    line = next(x for x in cli.ok("ps").splitlines() if x.endswith(" pair"))
    assert f"0.0.0.0:{a}-{b}->80-81/tcp" in line
    assert tcp_get("127.0.0.1", a) == "hello-from-pair"
    # A range for one container port: the first free one (a and b are taken).
    cli.ok("run", "-d", "--name", "pick", "-p", f"{a}-{c}:80", "bb:1", "sh", "-c", SERVE_TCP, "pick")
    assert cli.ok("port", "pick", "80").split() == [f"0.0.0.0:{c}"]
    assert tcp_get("127.0.0.1", c) == "hello-from-pick"


def test_conflicts_are_refused_with_one_line_and_nothing_left(ports):
    cli = ports.cli
    (port,) = free_ports(1)
    ports.serve_tcp("first", f"{port}:80")
    before_rows, before_leases = ports.rows(), ports.leases()

    second = cli("run", "-d", "--name", "second", "-p", f"{port}:80", "bb:1", "sleep", "60")
    assert second.returncode == 125
    err = second.stderr.decode()
    assert err.count("\n") == 1 and f"Bind for 0.0.0.0:{port} failed: port is already allocated" in err
    assert '"first"' in err
    assert ports.rows() == before_rows and ports.leases() == before_leases
    assert len(_elements_for(port)) == 1
    # One address of the host overlaps every address.
    third = cli("run", "-d", "--name", "third", "-p", f"127.0.0.1:{port}:80", "bb:1", "sleep", "60")
    assert third.returncode == 125 and b"port is already allocated" in third.stderr
    assert ports.rows() == before_rows

    # A port another program has bound.
    (bound,) = free_ports(1)
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", bound))
        sock.listen()
        taken = cli("run", "-d", "--name", "fourth", "-p", f"{bound}:80", "bb:1", "sleep", "60")
    assert taken.returncode == 125
    assert f"failed to bind host port for 0.0.0.0:{bound}:" in taken.stderr.decode()
    assert b"address already in use" in taken.stderr and taken.stderr.count(b"\n") == 1
    assert ports.rows() == before_rows and ports.leases() == before_leases and not _elements_for(bound)

    # Bad input at create: Docker's words, no container made.
    for spec, words in (("99999", "invalid containerPort: 99999"), ("80/foo", "invalid proto: foo")):
        bad = cli("create", "-p", spec, "bb:1", "true")
        assert bad.returncode == 125 and words in bad.stderr.decode()
    assert len(cli.ok("ps", "-aq").split()) == 4  # first, and the three whose start failed


def test_a_killed_supervisor_leaves_rules_that_reconcile_removes(ports):
    cli = ports.cli
    (port,) = free_ports(1)
    ports.serve_tcp("web", f"{port}:80")
    assert tcp_get("127.0.0.1", port) == "hello-from-web"
    supervisor = ports.inspect("web")["State"]["SupervisorPid"]
    os.kill(supervisor, 9)
    deadline = time.monotonic() + 5
    while ports.inspect("web")["State"]["Running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _elements_for(port) and ports.rows()  # nobody was left to remove them
    cli.ok("system", "reconcile")
    assert not _elements_for(port) and not ports.rows()
    assert not os.path.exists(f"/run/overlayctl-ports/tcp/{port}")
    # The port is free again, for this store and the next start.
    ports.serve_tcp("again", f"{port}:80")
    assert tcp_get("127.0.0.1", port) == "hello-from-again"


def test_attack_a_published_port_exposes_no_other_port(ports, outside_world):
    """The outside routes the containers' subnet through the host (as a
    neighbour on the LAN may): only the published port gets through, not
    the container's other listening ports."""
    cli, world = ports.cli, outside_world
    (port,) = free_ports(1)
    script = "(while true; do echo secret | nc -l -p 81; done) & " + SERVE_TCP
    cli.ok("run", "-d", "--name", "web", "-p", f"{port}:80", "bb:1", "sh", "-c", script, "web")
    address = ports.address("web")
    world.run(["ip", "route", "add", ports.subnet, "via", world.host_address], check=True)
    outside = lambda a: world.run(a, stdin=subprocess.DEVNULL).stdout  # noqa: E731
    assert tcp_get(world.host_address, port, runner=outside) == "hello-from-web"
    assert tcp_get("127.0.0.1", port) == "hello-from-web"
    # The unpublished port answers the host itself...
    assert "secret" in tcp_get(address, 81)
    # ...but not the outside, neither directly nor by the container's own port number.
    assert tcp_get(address, 81, runner=outside, timeout=1) == ""
    assert tcp_get(address, 80, runner=outside, timeout=1) == ""
    assert tcp_get(world.host_address, 81, runner=outside, timeout=0) == ""


def test_attack_route_localnet_opens_no_loopback_service_of_the_host(ports):
    """Publishing sets route_localnet on the bridge (for the host's own
    connections to 127.0.0.1). A neighbour on that bridge that routes
    127.0.0.1 to the gateway (here a namespace of the test's, as a
    container with NET_ADMIN could) must still not reach a service the host
    keeps on its loopback: ports_guard drops it."""
    import threading

    publish_port, secret_port = free_ports(2)
    ports.serve_tcp("web", f"127.0.0.1:{publish_port}:80")
    assert tcp_get("127.0.0.1", publish_port) == "hello-from-web"
    assert Path(f"/proc/sys/net/ipv4/conf/{ports.bridge}/route_localnet").read_text().strip() == "1"
    gateway = ports.inspect("web")["NetworkSettings"]["Gateway"]
    neighbour = ".".join(gateway.split(".")[:3] + ["200"])
    netns, veth = "octest-lo-" + os.urandom(3).hex(), "octlo" + os.urandom(3).hex()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", secret_port))
    listener.listen()
    listener.settimeout(8)
    reached: list[str] = []

    def serve() -> None:
        try:
            conn, peer = listener.accept()
        except OSError:
            return
        with conn:
            reached.append(peer[0])
            conn.sendall(b"host-loopback-secret\n")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        for argv in (
            ["ip", "netns", "add", netns],
            ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns],
            ["ip", "link", "set", veth, "master", ports.bridge, "up"],
            ["ip", "-n", netns, "addr", "add", f"{neighbour}/24", "dev", "eth0"],
            ["ip", "-n", netns, "link", "set", "eth0", "up"],
            ["ip", "-n", netns, "route", "add", "127.0.0.1/32", "via", gateway],
            ["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"],
            ["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1"],
        ):
            subprocess.run(argv, check=True, capture_output=True)
        out = subprocess.run(
            ["ip", "netns", "exec", netns, "busybox", "nc", "-w", "3", "127.0.0.1", str(secret_port)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert "secret" not in out.stdout and not reached
    finally:
        # shutdown wakes the accept still waiting (close alone leaves it to
        # its 8 s timeout): the neighbour's try is over, reached or not.
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join()
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


def test_another_store_is_refused_until_the_publisher_is_gone(ports, tmp_path, busybox_tar):
    """Two stores on one host (two --root's): a port one publishes is
    refused to the other (the claim under /run); once the publisher's
    supervisor is killed, the claim is stale and the other store takes the
    port over, without waiting for the first store's reconcile."""
    from tests.conftest import CLI

    (port,) = free_ports(1)
    ports.serve_tcp("first", f"{port}:80")
    other = CLI(tmp_path / "root2", tmp_path / "run2")
    other.env["OVERLAYCTL_BRIDGE_NAME"] = bridge = "octlt" + os.urandom(3).hex()
    other.env["OVERLAYCTL_BRIDGE_SUBNET"] = next(s for s in _free_subnets(3) if s != ports.subnet)
    try:
        other.ok("import", str(busybox_tar), "bb:1")
        refused = other("run", "-d", "--name", "second", "-p", f"{port}:80", "bb:1", "sleep", "60")
        assert refused.returncode == 125
        assert b"port is already allocated (by a container of another overlayctl store)" in refused.stderr
        assert not other("ps", "-q").stdout.split()

        os.kill(ports.inspect("first")["State"]["SupervisorPid"], 9)
        deadline = time.monotonic() + 5
        while ports.inspect("first")["State"]["Running"] and time.monotonic() < deadline:
            time.sleep(0.05)
        other.ok("run", "-d", "--name", "third", "-p", f"{port}:80", "bb:1", "sh", "-c", SERVE_TCP, "third")
        assert tcp_get("127.0.0.1", port) == "hello-from-third"
        ports.cli.ok("system", "reconcile")  # the first store's sweep leaves the new owner's rule alone
        assert tcp_get("127.0.0.1", port) == "hello-from-third"
        assert len(_elements_for(port)) == 1
    finally:
        ids = other("ps", "-aq", "--no-trunc").stdout.decode().split()
        if ids:
            other("rm", "-f", *ids)
        _wait_gone({"veth" + i[:11] for i in ids})
        if bridge in os.listdir("/sys/class/net"):
            delete_bridge(bridge)
    assert not _elements_for(port)

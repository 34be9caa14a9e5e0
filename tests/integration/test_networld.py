"""The outside world itself (tests/networld.py): it comes up, serves HTTP,
DNS and UDP echo to the host, and leaves nothing behind."""

from __future__ import annotations

import socket
import subprocess

import pytest
from dnslib import DNSRecord

from tests.networld import OutsideWorld, world_netns_names


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def test_world_serves_and_is_gone_afterwards() -> None:
    with OutsideWorld() as world:
        assert world.netns in world_netns_names()
        assert world.host_veth in _links()
        http = world.serve_http(80)
        out = subprocess.run(
            ["busybox", "nc", world.address, "80"],
            input=b"GET / HTTP/1.0\r\n\r\n",
            capture_output=True,
            timeout=10,
            check=True,
        ).stdout.decode()
        assert http.body in out
        assert http.sources() == [world.host_address]

        echo = world.serve_udp_echo(7)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(b"ping", (world.address, 7))
            assert s.recvfrom(100)[0] == b"ping"
        assert echo.sources() == [world.host_address]

        dns = world.serve_dns(53, {"example.test": "198.51.100.77"})
        answer = DNSRecord.parse(DNSRecord.question("example.test").send(world.address, 53, timeout=5))
        assert [str(rr.rdata) for rr in answer.rr] == ["198.51.100.77"]
        missing = DNSRecord.parse(DNSRecord.question("nowhere.test").send(world.address, 53, timeout=5))
        assert missing.header.rcode == 3  # NXDOMAIN
        assert [e["name"] for e in dns.events()] == ["example.test", "nowhere.test"]

        # No way back to anything but its own /30: replies to a container
        # subnet can only come back if the host masqueraded them.
        routes = world.run(["ip", "-4", "route"], check=True).stdout
        assert "default" not in routes and len(routes.strip().splitlines()) == 1
        pids = [s.proc.pid for s in world.servers]
    assert world.netns not in world_netns_names()
    assert world.host_veth not in _links()
    for pid in pids:
        assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0


def test_world_is_removed_when_the_test_fails() -> None:
    world = OutsideWorld()
    with pytest.raises(RuntimeError, match="on purpose"), world:
        world.serve_udp_echo(9)
        # A stray process of the test's own, left running in the namespace.
        subprocess.Popen(["ip", "netns", "exec", world.netns, "sleep", "300"])
        raise RuntimeError("a test failing on purpose")
    assert world.netns not in world_netns_names()
    assert world.host_veth not in _links()


def test_two_worlds_at_once_take_different_subnets() -> None:
    with OutsideWorld() as a, OutsideWorld() as b:
        assert a.address != b.address and a.network != b.network


def test_fixture(outside_world: OutsideWorld) -> None:
    assert outside_world.run(["ip", "-o", "addr", "show", "eth0"]).stdout.count(outside_world.address) == 1

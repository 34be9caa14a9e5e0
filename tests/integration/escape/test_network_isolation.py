"""Attack: reach a container of another network through the host's routing.

On a host that forwards (net.ipv4.ip_forward=1, as on any host running
Docker or podman) the host routes between all of its bridges: without
overlayctl's nftables table, a container on network A connects to one on
network B through its gateway. The table's forward chain drops what goes
from one of our bridges to another; traffic inside one network passes.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.test_network import net  # noqa: F401 - the per-test networks fixture

PORT = "7777"
# Answers every connection with "pong"; busybox nc serves one connection at a time.
SERVER = f"while true; do echo pong | nc -l -p {PORT}; done"


@pytest.fixture
def forwarding():
    """net.ipv4.ip_forward=1 for the test, the host's value restored after."""
    path = "/proc/sys/net/ipv4/ip_forward"
    with open(path) as f:
        old = f.read().strip()
    with open(path, "w") as f:
        f.write("1")
    try:
        yield
    finally:
        with open(path, "w") as f:
            f.write(old)


def _address(net, name: str, network: str) -> str:  # noqa: F811 - `net` is the fixture's value
    return net.inspect(name)["NetworkSettings"]["Networks"][network]["IPAddress"]


def _connect(cli, network: str, address: str) -> str:
    """Try to connect from a new container on `network`: what it printed."""
    script = f"nc -w 2 {address} {PORT} </dev/null && echo connected || echo refused-or-dropped"
    return cli.ok("run", "--rm", "--network", network, "bb:1", "sh", "-c", script, timeout=30)


def _wait_listening(cli, network: str, address: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if "pong" in _connect(cli, network, address):
            return
    pytest.fail(f"the server at {address} never answered from its own network")


@pytest.mark.slow
def test_a_container_cannot_reach_another_network(net, forwarding):  # noqa: F811
    cli = net.cli
    cli.ok("network", "create", "--subnet", net.spare, "neta")
    cli.ok("network", "create", "netb")
    cli.ok("run", "-d", "--name", "srvb", "--network", "netb", "bb:1", "sh", "-c", SERVER)
    cli.ok("run", "-d", "--name", "srva", "--network", "neta", "bb:1", "sh", "-c", SERVER)
    b_address, a_address = _address(net, "srvb", "netb"), _address(net, "srva", "neta")
    # Both servers listen: each answers its own network.
    _wait_listening(cli, "netb", b_address)
    _wait_listening(cli, "neta", a_address)

    across = _connect(cli, "neta", b_address)
    print(f"neta -> netb ({b_address}): {across.strip()}")
    assert "pong" not in across and "refused-or-dropped" in across

    within = _connect(cli, "neta", a_address)
    print(f"neta -> neta ({a_address}): {within.strip()}")
    assert "pong" in within

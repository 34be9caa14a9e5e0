"""Attack: configure the host's bridge and a neighbour with a forged IPv6
router advertisement (Docker's CVE-2020-13401).

A container has CAP_NET_RAW by default, enough to send any Ethernet frame
on its eth0 (escape/ra.c). An interface on the same bridge that has IPv6
and accepts router advertisements gives itself an address in the
advertised prefix: the bridge on the host, the other containers. So
overlayctl disables IPv6 on its bridges, its host veth ends and the
containers' interfaces, but on networks made with --ipv6, and refuses
advertisements everywhere.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import image_with_program, static_program
from tests.integration.test_network import net  # noqa: F401 - the per-test networks fixture

RA_SOURCE = Path(__file__).parent / "ra.c"
PREFIX_ADDR = "2001:db8:77:"  # as `ip -6 addr` prints an address in 2001:db8:77::/64
PREFIX_PROC = "20010db8007700"  # as /proc/net/if_inet6 prints one


@pytest.fixture(scope="session")
def ra_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return static_program(RA_SOURCE, tmp_path_factory.mktemp("ra"))


@pytest.fixture
def ra_image(net, ra_binary, tmp_path) -> str:  # noqa: F811
    return image_with_program(net.cli, ra_binary, tmp_path)


def _host_v6(device: str) -> str:
    return subprocess.run(["ip", "-6", "addr", "show", "dev", device], capture_output=True, text=True).stdout


@pytest.mark.slow
def test_a_forged_router_advertisement_configures_nobody(net, ra_image):  # noqa: F811
    cli = net.cli
    cli.ok("run", "-d", "--name", "neighbour", "bb:1", "sleep", "60")
    sent = cli.ok("run", "--rm", ra_image, "/ra", timeout=30)
    assert sent.strip() == "sent 3", sent
    # SLAAC configures a tentative address as soon as the advertisement is
    # processed; a second is ample.
    time.sleep(1.5)

    host = _host_v6(net.bridge)
    neighbour = cli.ok("exec", "neighbour", "cat", "/proc/net/if_inet6")
    print(f"host bridge {net.bridge}:\n{host}neighbour's /proc/net/if_inet6:\n{neighbour}")
    configured = [
        who for who, got in (("host bridge", PREFIX_ADDR in host), ("neighbour", PREFIX_PROC in neighbour)) if got
    ]
    assert not configured, f"the forged advertisement configured: {', '.join(configured)}"
    # No IPv6 at all on the bridge or the neighbour's eth0 (lo keeps ::1).
    assert "inet6" not in host
    assert not [line for line in neighbour.splitlines() if line.split()[-1] != "lo"]


@pytest.mark.slow
def test_a_forged_router_advertisement_on_an_ipv6_network_configures_nobody(net, ra_image):  # noqa: F811
    """On a network made with --ipv6 the bridge and the containers have
    IPv6, with the addresses overlayctl gives them: advertisements are
    still refused, so the forged prefix configures nobody there either."""
    from overlayctl.network import ipam

    cli = net.cli
    v6 = ipam.random_ula_subnet()
    cli.ok("network", "create", "--ipv6", "--subnet", net.spare, "--subnet", str(v6), "six")
    bridge = json.loads(cli.ok("network", "inspect", "six"))[0]["Options"]["com.docker.network.bridge.name"]
    cli.ok("run", "-d", "--name", "neighbour", "--network", "six", "bb:1", "sleep", "60")
    sent = cli.ok("run", "--rm", "--network", "six", ra_image, "/ra", timeout=30)
    assert sent.strip() == "sent 3", sent
    time.sleep(1.5)
    host = _host_v6(bridge)
    neighbour = cli.ok("exec", "neighbour", "cat", "/proc/net/if_inet6")
    print(f"host bridge {bridge}:\n{host}neighbour's /proc/net/if_inet6:\n{neighbour}")
    assert str(v6.network_address + 1) in host  # IPv6 is on, with our address only
    configured = [
        who for who, got in (("host bridge", PREFIX_ADDR in host), ("neighbour", PREFIX_PROC in neighbour)) if got
    ]
    assert not configured, f"the forged advertisement configured: {', '.join(configured)}"

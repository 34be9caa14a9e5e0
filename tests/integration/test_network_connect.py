"""Joining and leaving networks on the real kernel: `network connect` and
`disconnect` on running and stopped containers, aliases, --mac-address,
IPv6 networks and `network prune`.

The containers' own network namespaces are looked into with `exec`;
traffic only goes between the test's containers and its bridges. The `net`
fixture (tests/integration/test_network.py) gives each test its own
default bridge and subnets and removes what it made.
"""

# The tests take test_network's `net` fixture as their argument of that name.
# ruff: noqa: F811

from __future__ import annotations

import ipaddress
import json
import os
import sqlite3

from overlayctl.network import attach, leases
from tests.integration.test_network import _free_subnets, _links, _wait_gone, net  # noqa: F401  (a fixture)


def _fails(cli, *args) -> str:
    result = cli(*args)
    assert result.returncode != 0, (args, result.stdout)
    err = result.stderr.decode()
    assert err.count("\n") == 1, err  # one line
    return err


def _veths(container_id: str) -> set[str]:
    """The host ends of every interface a container may have."""
    return {attach.veth_name(container_id, slot) for slot in range(attach.MAX_INTERFACES)}


def _config(cli, container_id: str) -> str:
    conn = sqlite3.connect(cli.root / "catalog.db")
    try:
        return conn.execute("SELECT config FROM containers WHERE id = ?", (container_id,)).fetchone()[0]
    finally:
        conn.close()


def _claims(net) -> set[str]:
    """The host-wide address claims on this test's bridges (other tests on
    the host make theirs meanwhile)."""
    lines = net.cli.ok("network", "ls", "--no-trunc", "--format", "json").splitlines()
    bridges = {"br-" + json.loads(line)["ID"][:12] for line in lines} | {net.bridge}
    found = set()
    for bridge in bridges:
        directory = os.path.join(leases.CLAIM_DIR, bridge)
        found |= {os.path.join(directory, f) for f in (os.listdir(directory) if os.path.isdir(directory) else [])}
    return found


def _third_subnet(net) -> str:
    """A free /24 that is neither the test's default bridge nor its spare."""
    return next(s for s in _free_subnets(8) if s not in (net.subnet, net.spare))


def _two_networks(net) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]:
    front, back = (ipaddress.IPv4Network(s) for s in (net.spare, _third_subnet(net)))
    net.cli.ok("network", "create", "--subnet", str(front), "front")
    net.cli.ok("network", "create", "--subnet", str(back), "back")
    return front, back


def test_connect_and_disconnect_a_running_container(net):
    cli = net.cli
    front, back = _two_networks(net)
    claims_before = _claims(net)
    db = cli.ok("run", "-d", "--name", "db", "--network", "back", "bb:1", "sleep", "60").strip()
    app = cli.ok("run", "-d", "--name", "app", "--network", "front", "bb:1", "sleep", "60").strip()
    db_ip = net.inspect("db")["NetworkSettings"]["IPAddress"]
    assert ipaddress.IPv4Address(db_ip) in back

    cli.ok("network", "connect", "--alias", "web", "--alias", "www", "back", "app")
    out = cli.ok("exec", "app", "ip", "-4", "-o", "addr", "show", "eth1")
    wanted = str(back.network_address + 3)  # after the gateway and db
    assert f"inet {wanted}/24" in out
    assert cli.ok("exec", "app", "sh", "-c", f"ping -c1 -W2 {db_ip} >/dev/null && echo reached") == "reached\n"
    # The default route stays with the first network.
    assert f"default via {front.network_address + 1} dev eth0" in cli.ok("exec", "app", "ip", "route")
    settings = net.inspect("app")["NetworkSettings"]
    assert list(settings["Networks"]) == ["front", "back"]
    assert settings["IPAddress"] == str(front.network_address + 2)  # the primary's, at the top
    entry = settings["Networks"]["back"]
    assert entry["IPAddress"] == wanted and entry["Aliases"] == ["web", "www"] and entry["IPPrefixLen"] == 24
    containers = net.network("back")["Containers"]
    assert containers[app]["Name"] == "app" and containers[app]["IPv4Address"] == f"{wanted}/24"
    assert containers[db]["IPv4Address"] == f"{db_ip}/24"
    hosts = cli.ok("exec", "app", "cat", "/etc/hosts")
    assert f"{wanted}\t{app[:12]} app\n" in hosts and f"{front.network_address + 2}\t" in hosts
    lease_aliases = [lease.aliases for lease in _leases(cli) if lease.container == app and lease.network == "back"]
    assert lease_aliases == [["web", "www"]]
    assert attach.veth_name(app, 1) in _links()

    cli.ok("network", "disconnect", "back", "app")
    assert cli("exec", "app", "ip", "link", "show", "eth1").returncode != 0
    # Cut off for real: db is out of reach (routed through front's gateway,
    # the firewall's isolation between networks drops it).
    assert cli("exec", "app", "ping", "-c1", "-W1", db_ip).returncode != 0
    assert attach.veth_name(app, 1) not in _links()
    assert wanted not in cli.ok("exec", "app", "cat", "/etc/hosts")
    assert [n for n, _, c in net.leases() if c == app] == ["front"]
    assert list(net.inspect("app")["NetworkSettings"]["Networks"]) == ["front"]
    assert app not in net.network("back")["Containers"]
    # Again, then rm: nothing is left (leases, claims, veths).
    cli.ok("network", "connect", "back", "app")
    assert "eth1" in cli.ok("exec", "app", "ip", "link", "show", "eth1")
    # Off its primary network too, as Docker allows: eth0 goes, eth1 stays.
    cli.ok("network", "disconnect", "front", "app")
    assert cli("exec", "app", "ip", "link", "show", "eth0").returncode != 0
    assert list(net.inspect("app")["NetworkSettings"]["Networks"]) == ["back"]
    assert [n for n, _, c in net.leases() if c == app] == ["back"]
    cli.ok("rm", "-f", "app", "db")
    assert not _wait_gone(_veths(app) | _veths(db))
    assert net.leases() == []
    assert _claims(net) == claims_before


def _leases(cli):
    from overlayctl.paths import Paths
    from overlayctl.store import Store

    store = Store(Paths(str(cli.root), str(cli.runroot)))
    try:
        return store.networks.leases()
    finally:
        store.close()


def test_a_stopped_container_is_connected_at_its_next_start(net):
    cli = net.cli
    front, back = _two_networks(net)
    fixed = str(back.network_address + 50)
    cid = cli.ok("create", "--name", "cc", "--network", "front", "bb:1", "sleep", "60").strip()
    cli.ok("network", "connect", "--ip", fixed, "--alias", "db", "back", "cc")
    assert net.leases() == []  # stored only
    entry = net.inspect("cc")["NetworkSettings"]["Networks"]["back"]
    assert entry["IPAMConfig"] == {"IPv4Address": fixed} and entry["Aliases"] == ["db"] and entry["IPAddress"] == ""
    cli.ok("start", "cc")
    assert f"inet {fixed}/24" in cli.ok("exec", "cc", "ip", "-4", "-o", "addr", "show", "eth1")
    assert sorted((n, a) for n, a, _ in net.leases()) == [("back", fixed), ("front", str(front.network_address + 2))]
    assert [lease.aliases for lease in _leases(cli) if lease.network == "back"] == [["db"]]
    cli.ok("stop", "-t", "1", "cc")
    assert net.leases() == []
    # Disconnected while stopped: the next start has eth0 only.
    cli.ok("network", "disconnect", "back", "cc")
    cli.ok("start", "cc")
    assert cli("exec", "cc", "ip", "link", "show", "eth1").returncode != 0
    assert [n for n, _, _ in net.leases()] == ["front"]
    cli.ok("rm", "-f", "cc")
    assert not _wait_gone(_veths(cid))


def test_bad_input_is_refused_with_one_line_and_nothing_made(net):
    cli = net.cli
    front, back = _two_networks(net)
    app = cli.ok("run", "-d", "--name", "app", "--network", "front", "bb:1", "sleep", "60").strip()
    cli.ok("create", "--name", "stopped", "--network", "front", "bb:1", "true")
    links, config, claims = _links(), _config(cli, app), _claims(net)
    cases = [
        (("network", "connect", "front", "app"), "endpoint with name app already exists in network front"),
        (("network", "disconnect", "back", "app"), "container app is not connected to network back"),
        (("network", "connect", "nope", "app"), 'network "nope" not found'),
        (("network", "connect", "back", "nobody"), 'container "nobody" not found'),
        (("network", "connect", "--alias", "x", "bridge", "app"), attach.ALIAS_ON_DEFAULT_BRIDGE),
        (("network", "connect", "--ip", "10.0.0.5", "back", "app"), "is not a host address of network"),
        (("network", "connect", "--ip", "bad", "back", "app"), 'invalid IP address "bad"'),
        (("network", "connect", "host", "app"), "connected to host network"),
        (("network", "disconnect", "front", "nobody"), 'container "nobody" not found'),
        (("run", "--rm", "--network-alias", "x", "bb:1", "true"), attach.ALIAS_ON_DEFAULT_BRIDGE),
        (("create", "--network", "front", "--mac-address", "zz", "bb:1", "true"), "zz is not a valid mac address"),
        (("create", "--network", "front", "--mac-address", "01:00:5e:00:00:01", "bb:1", "true"), "multicast"),
    ]
    for args, message in cases:
        assert message in _fails(cli, *args), args
    # (Only our own devices are compared: other tests may be making theirs.)
    assert _links() & _veths(app) == links & _veths(app) == {attach.veth_name(app)}
    assert _config(cli, app) == config and _claims(net) == claims
    # Taken by another container on the network: refused at connect, nothing left of the try.
    taken = str(back.network_address + 9)
    cli.ok("run", "-d", "--name", "holder", "--network", "back", "--ip", taken, "bb:1", "sleep", "60")
    leased = net.leases()
    assert "already in use" in _fails(cli, "network", "connect", "--ip", taken, "back", "app")
    assert net.leases() == leased
    assert _config(cli, app) == config
    assert not {name for name in _links() - links if name.endswith(app[:11])}
    holder_claim = leases.claim_path("br-" + net.network("back")["Id"][:12], str(back.network_address + 9))
    assert _claims(net) - claims == {holder_claim}
    assert len(cli.ok("ps", "-aq").split()) == 3  # app, stopped, holder: no refused create made one


def test_mac_address_and_aliases_at_run(net):
    cli = net.cli
    front, _ = _two_networks(net)
    cid = cli.ok(
        "run", "-d", "--name", "mac", "--network", "front", "--network-alias", "api",
        "--mac-address", "02:AB:cd:00:00:09", "bb:1", "sleep", "60",
    ).strip()  # fmt: skip
    assert "02:ab:cd:00:00:09" in cli.ok("exec", "mac", "ip", "link", "show", "eth0")
    entry = net.inspect("mac")["NetworkSettings"]["Networks"]["front"]
    assert entry["MacAddress"] == "02:ab:cd:00:00:09" and entry["Aliases"] == ["api"]
    assert [lease.aliases for lease in _leases(cli)] == [["api"]]
    cli.ok("rm", "-f", cid)
    assert not _wait_gone(_veths(cid))


def test_network_prune(net):
    cli = net.cli
    spare = ipaddress.IPv4Network(net.spare)
    halves = [str(s) for s in spare.subnets(new_prefix=25)]
    cli.ok("network", "create", "--subnet", halves[0], "joined")
    idle_id = cli.ok("network", "create", "--subnet", halves[1], "idle").strip()
    cli.ok("create", "--name", "later", "--network", "none", "bb:1", "true")
    cli.ok("create", "--name", "other", "bb:1", "true")
    cli.ok("network", "connect", "joined", "other")  # a stopped container connected to it keeps it
    assert "invalid filter 'label2'" in _fails(cli, "network", "prune", "-f", "--filter", "label2=x")
    assert "failed to parse value as time or duration" in _fails(cli, "network", "prune", "-f", "--filter", "until=x")
    # Made within the last hour: not "until 1h ago".
    assert cli.ok("network", "prune", "-f", "--filter", "until=1h") == ""
    out = cli.ok("network", "prune", "--filter", "until=2999-01-01T00:00:00Z", input=b"y\n")
    assert out.startswith("WARNING! This will remove all custom networks not used by at least one container.\n")
    assert out.endswith("Deleted Networks:\nidle\n\n")
    names = {json.loads(line)["Name"] for line in cli.ok("network", "ls", "--format", "json").splitlines()}
    assert names == {"bridge", "host", "none", "joined"}
    assert not _wait_gone({"br-" + idle_id[:12]})
    cli.ok("network", "disconnect", "joined", "other")
    assert cli.ok("network", "prune", "-f") == "Deleted Networks:\njoined\n\n"


def test_an_ipv6_network_and_only_it_gives_ipv6(net):
    from overlayctl.network import ipam

    cli = net.cli
    v4 = ipaddress.IPv4Network(net.spare)
    v6 = ipam.random_ula_subnet()
    assert "add --ipv6" in _fails(cli, "network", "create", "--subnet", str(v6), "nosix")
    with_host_bits = f"{v6.network_address + 1}/64"
    assert "host bits set" in _fails(cli, "network", "create", "--ipv6", "--subnet", with_host_bits, "x6")
    cli.ok("network", "create", "--ipv6", "--subnet", str(v4), "--subnet", str(v6), "six")
    info = net.network("six")
    assert info["EnableIPv6"] is True
    gateway6 = str(v6.network_address + 1)
    assert info["IPAM"]["Config"][1] == {"Subnet": str(v6), "Gateway": gateway6}
    cli.ok("run", "-d", "--name", "sixa", "--network", "six", "bb:1", "sleep", "60")
    cli.ok("run", "-d", "--name", "sixb", "--network", "six", "bb:1", "sleep", "60")
    a6, b6 = str(v6.network_address + 2), str(v6.network_address + 3)
    settings = net.inspect("sixa")["NetworkSettings"]
    assert (settings["GlobalIPv6Address"], settings["GlobalIPv6PrefixLen"], settings["IPv6Gateway"]) == (
        a6,
        64,
        gateway6,
    )
    assert f"inet6 {a6}/64" in cli.ok("exec", "sixa", "ip", "-6", "addr", "show", "eth0")
    assert f"default via {gateway6} dev eth0" in cli.ok("exec", "sixa", "ip", "-6", "route")
    assert cli.ok("exec", "sixa", "sh", "-c", f"ping -6 -c1 -W2 {b6} >/dev/null && echo reached") == "reached\n"
    assert cli.ok("exec", "sixa", "sh", "-c", f"ping -6 -c1 -W2 {gateway6} >/dev/null && echo reached") == "reached\n"
    assert f"{a6}\t" in cli.ok("exec", "sixa", "cat", "/etc/hosts")  # a line for each address, as Docker
    containers = net.network("six")["Containers"]
    assert sorted(c["IPv6Address"] for c in containers.values()) == [f"{a6}/64", f"{b6}/64"]
    # Router advertisements stay refused on an IPv6 network.
    assert cli.ok("exec", "sixa", "cat", "/proc/sys/net/ipv6/conf/eth0/accept_ra") == "0\n"
    # A network without --ipv6 (here joined as eth1) has none: IPv6 by choice only.
    cli.ok("network", "create", "--subnet", _third_subnet(net), "four")
    cli.ok("network", "connect", "four", "sixa")
    assert cli.ok("exec", "sixa", "cat", "/proc/sys/net/ipv6/conf/eth1/disable_ipv6") == "1\n"
    assert "inet6" not in cli.ok("exec", "sixa", "ip", "-6", "addr", "show", "eth1")
    # Leaving the IPv6 network takes both of its /etc/hosts lines away.
    cli.ok("network", "disconnect", "six", "sixa")
    hosts = cli.ok("exec", "sixa", "cat", "/etc/hosts")
    assert f"{a6}\t" not in hosts and f"{v4.network_address + 2}\t" not in hosts


def test_a_sigkilled_supervisor_leaves_no_connected_lease_behind(net):
    cli = net.cli
    front, back = _two_networks(net)
    cid = cli.ok("run", "-d", "--name", "victim", "--network", "front", "bb:1", "sleep", "60").strip()
    cli.ok("network", "connect", "back", "victim")
    claims = _claims(net)
    assert len(claims) == 2 and len(net.leases()) == 2
    pid1 = net.inspect("victim")["State"]["Pid"]
    with open(f"/proc/{pid1}/stat") as f:
        supervisor = int(f.read().rsplit(")", 1)[1].split()[1])
    os.kill(supervisor, 9)
    assert not _wait_gone(_veths(cid))
    assert net.network("back")["Containers"] == {}  # the next command frees both leases and claims
    assert net.leases() == [] and _claims(net) == set()
    # Both addresses are free again, for another store too.
    out = cli.ok("run", "--rm", "--network", "back", "bb:1", "ip", "-4", "-o", "addr", "show", "eth0")
    assert f"inet {back.network_address + 2}/24" in out

"""Networks on the real kernel: bridges, veth pairs, addresses, leases.

Every test gets its own default-bridge device and subnet (through
OVERLAYCTL_BRIDGE_NAME / OVERLAYCTL_BRIDGE_SUBNET) and deletes every
device it made, even when it fails. Traffic only ever goes between the
test's containers and the test's bridge.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from overlayctl.network import firewall, ipam, leases
from tests.conftest import CLI, delete_bridge


def _links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def _free_subnets(count: int) -> list[str]:
    """/24s in 10.250.0.0/16 that no host route touches, picked at random."""
    routes = [r for _, r in ipam.host_routes()]
    candidates = list(ipaddress.IPv4Network("10.250.0.0/16").subnets(new_prefix=24))
    start = int.from_bytes(os.urandom(1), "big")
    picked = []
    for i in range(len(candidates)):
        subnet = candidates[(start + i) % len(candidates)]
        if not any(subnet.overlaps(r) for r in routes):
            picked.append(str(subnet))
            if len(picked) == count:
                return picked
    pytest.skip("no free /24 in 10.250.0.0/16 on this host")


class Net:
    """The test's network environment: a private default bridge and the
    subnets the test may use."""

    def __init__(self, cli) -> None:
        self.cli = cli
        self.bridge = "octlt" + os.urandom(3).hex()
        self.subnet, self.spare = _free_subnets(2)
        cli.env["OVERLAYCTL_BRIDGE_NAME"] = self.bridge
        cli.env["OVERLAYCTL_BRIDGE_SUBNET"] = self.subnet

    def leases(self) -> list[tuple[str, str, str]]:
        conn = sqlite3.connect(self.cli.root / "catalog.db")
        try:
            return conn.execute("SELECT network, address, container FROM leases ORDER BY address").fetchall()
        finally:
            conn.close()

    def inspect(self, name: str) -> dict:
        return json.loads(self.cli.ok("inspect", name))[0]

    def network(self, name: str) -> dict:
        return json.loads(self.cli.ok("network", "inspect", name))[0]


def _wait_gone(names: set[str], timeout: float = 3.0) -> set[str]:
    """The kernel deletes a veth pair shortly after its namespace dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = names & _links()
        if not left:
            return set()
        time.sleep(0.02)
    return names & _links()


@pytest.fixture
def net(cli, bb):
    n = Net(cli)
    try:
        yield n
    finally:
        # Only what this test made: other tests and tools may be making
        # devices on this host at the same time.
        ids = cli("ps", "-aq", "--no-trunc").stdout.decode().split()
        if ids:
            cli("rm", "-f", *ids)
        ours = {_veth(i) for i in ids}
        for line in cli("network", "ls", "--no-trunc", "--format", "json").stdout.decode().splitlines():
            row = json.loads(line)
            if row["Name"] not in ("bridge", "host", "none"):
                ours.add("br-" + row["ID"][:12])
                cli("network", "rm", row["Name"])
        left = _wait_gone(ours)
        for name in left | {n.bridge}:
            if name in _links():
                # overlayctl's own deletion: the bridge leaves the firewall's table too.
                delete_bridge(name)
        assert not left, f"devices left behind: {left}"


def _veth(container_id: str) -> str:
    return "veth" + container_id[:11]


def test_network_create_ls_inspect_rm(net):
    cli = net.cli
    gateway = str(ipaddress.IPv4Network(net.spare).network_address + 254)
    network_id = cli.ok("network", "create", "--subnet", net.spare, "--gateway", gateway, "front").strip()
    assert len(network_id) == 64
    device = "br-" + network_id[:12]
    addr = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", device], capture_output=True, text=True).stdout
    assert f"{gateway}/24" in addr

    table = cli.ok("network", "ls").splitlines()
    assert table[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    names = {line.split()[1]: line.split() for line in table[1:]}
    assert names["front"] == [network_id[:12], "front", "bridge", "local"]
    assert names["host"][2] == "host" and names["none"][2] == "null" and names["bridge"][2] == "bridge"
    assert network_id[:12] in cli.ok("network", "ls", "-q").split()
    rows = [json.loads(line) for line in cli.ok("network", "ls", "--format", "json").splitlines()]
    assert {"ID": network_id[:12], "Name": "front", "Driver": "bridge", "Scope": "local"}.items() <= next(
        r for r in rows if r["Name"] == "front"
    ).items()

    info = net.network("front")
    assert info["Id"] == network_id and info["Driver"] == "bridge"
    assert info["IPAM"]["Config"] == [{"Subnet": net.spare, "Gateway": gateway}]
    assert info["Containers"] == {} and info["Options"]["com.docker.network.bridge.name"] == device
    assert net.network(network_id[:8])["Name"] == "front"

    assert cli.ok("network", "rm", "front").strip() == "front"
    assert device not in _links()
    assert "front" not in cli.ok("network", "ls")

    # Without --subnet: a free /24 of the pool.
    auto_id = cli.ok("network", "create", "auto").strip()
    subnet = ipaddress.IPv4Network(net.network("auto")["IPAM"]["Config"][0]["Subnet"])
    assert subnet.prefixlen == 24 and subnet.subnet_of(ipaddress.IPv4Network(ipam.USER_SUBNET_POOL))
    assert "br-" + auto_id[:12] in _links()
    cli.ok("network", "rm", auto_id[:12])
    assert "br-" + auto_id[:12] not in _links()


def _fails(cli, *args: str) -> str:
    result = cli(*args)
    assert result.returncode == 125, (args, result.stdout, result.stderr)
    err = result.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("overlayctl: "), err
    return err


def test_network_create_bad_input_changes_nothing(net):
    cli = net.cli
    cli.ok("network", "create", "--subnet", net.spare, "taken")
    before_ls, before_links = cli.ok("network", "ls", "-q"), _links()
    host_route = next((str(r) for dev, r in ipam.host_routes() if not dev.startswith(("octl", "br-"))), None)
    spare = ipaddress.IPv4Network(net.spare)
    cases = [
        (["--subnet", "nonsense", "n1"], "CIDR"),
        (["--subnet", "10.250.0.0/33", "n1"], "CIDR"),
        (["--subnet", str(spare.network_address + 7) + "/24", "n1"], "host bits"),
        (["--subnet", "fd00:1::/64", "n1"], "IPv6"),
        (["--subnet", str(spare.supernet(new_prefix=23)), "n1"], 'overlaps network "taken"'),
        (["--subnet", net.subnet, "--gateway", str(spare.network_address + 1), "n1"], "not a host address"),
        (["--gateway", "10.250.0.1", "n1"], "--gateway needs --subnet"),
        (["--subnet", net.subnet, "taken"], "already exists"),
        (["--subnet", net.subnet, "bridge"], "pre-defined"),
        (["--subnet", net.subnet, "host"], "pre-defined"),
        (["--subnet", net.subnet, "bad/name"], "invalid network name"),
        (["--subnet", net.subnet, "-d", "overlay", "n1"], "not supported"),
    ]
    if host_route is not None:
        cases.append((["--subnet", host_route, "n1"], "the host's route"))
    for args, message in cases:
        assert message in _fails(cli, "network", "create", *args), args
        assert cli.ok("network", "ls", "-q") == before_ls
        # No device made and left (other sessions' devices come and go meanwhile).
        assert not [name for name in _links() - before_links if name.startswith("br-")]
    assert "not found" in _fails(cli, "network", "rm", "nope")
    assert "pre-defined" in _fails(cli, "network", "rm", "bridge")
    assert "not found" in _fails(cli, "network", "inspect", "nope")


def test_two_containers_on_a_network_reach_each_other(net):
    cli = net.cli
    cli.ok("network", "create", "--subnet", net.spare, "back")
    spare = ipaddress.IPv4Network(net.spare)
    fixed, gateway = str(spare.network_address + 10), str(spare.network_address + 1)
    a = cli.ok("run", "-d", "--name", "ca", "--network", "back", "--ip", fixed, "bb:1", "sleep", "60").strip()
    b = cli.ok("run", "-d", "--name", "cb", "--network", "back", "bb:1", "sleep", "60").strip()

    ia, ib = net.inspect("ca")["NetworkSettings"], net.inspect("cb")["NetworkSettings"]
    assert ia["IPAddress"] == fixed and ia["IPPrefixLen"] == 24 and ia["Gateway"] == gateway
    assert ia["Networks"]["back"]["IPAddress"] == fixed
    assert ia["Networks"]["back"]["IPAMConfig"] == {"IPv4Address": fixed}
    assert ia["MacAddress"] == ipam.mac_for(fixed)
    other = ib["IPAddress"]
    assert other == str(spare.network_address + 2)
    containers = net.network("back")["Containers"]
    assert containers[a]["Name"] == "ca" and containers[a]["IPv4Address"] == f"{fixed}/24"
    assert containers[b]["IPv4Address"] == f"{other}/24"
    assert {_veth(a), _veth(b)} <= _links()

    script = f"ping -c1 -W2 {fixed} >/dev/null && ping -c1 -W2 {gateway} >/dev/null && echo reached"
    out = cli.ok("run", "--rm", "--network", "back", "bb:1", "sh", "-c", f"{script}; ip -4 -o addr show eth0; ip route")
    assert out.startswith("reached\n")
    assert f"inet {spare.network_address + 3}/24" in out
    assert f"default via {gateway} dev eth0" in out

    # The same address twice is refused, and nothing is left of the attempt.
    err = _fails(cli, "run", "--rm", "--network", "back", "--ip", fixed, "bb:1", "true")
    assert "already in use" in err
    assert len(net.leases()) == 2

    cli.ok("rm", "-f", "ca", "cb")
    assert not _wait_gone({_veth(a), _veth(b)})
    assert net.leases() == []
    assert net.network("back")["Containers"] == {}


def test_default_bridge_and_the_etc_files(net):
    cli = net.cli
    subnet = ipaddress.IPv4Network(net.subnet)
    script = "ip -4 -o addr show eth0; ip route; cat /etc/hosts /etc/hostname /etc/resolv.conf"
    out = cli.ok("run", "--name", "dflt", "--hostname", "box", "--network", "bridge", "bb:1", "sh", "-c", script)
    ip = str(subnet.network_address + 2)
    assert f"inet {ip}/24" in out and f"default via {subnet.network_address + 1} dev eth0" in out
    assert "127.0.0.1\tlocalhost\n" in out and f"{ip}\tbox dflt\n" in out and "\nbox\n" in out
    nameservers = [line.split()[1] for line in out.splitlines() if line.startswith("nameserver ")]
    assert nameservers and not any(ns.startswith("127.") for ns in nameservers)
    info = net.network("bridge")
    assert info["IPAM"]["Config"] == [{"Subnet": net.subnet, "Gateway": str(subnet.network_address + 1)}]
    assert info["Options"]["com.docker.network.bridge.name"] == net.bridge
    # The container ended: its lease and files are gone; the default bridge stays, as docker0 does.
    c = net.inspect("dflt")
    assert c["NetworkSettings"]["IPAddress"] == "" and "bridge" in c["NetworkSettings"]["Networks"]
    assert net.leases() == []
    assert not (cli.runroot / "containers" / c["Id"]).exists()
    assert not _wait_gone({_veth(c["Id"])})
    assert net.bridge in _links()


def test_concurrent_starts_get_distinct_addresses(net):
    """The default bridge does not exist yet: six starts race to make it,
    and to lease an address; all six run at the end."""
    cli = net.cli
    names = [f"par{i}" for i in range(6)]
    procs = [
        subprocess.Popen(
            cli.argv("run", "-d", "--name", name, "--network", "bridge", "bb:1", "sleep", "60"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli.env,
        )
        for name in names
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    addresses = {net.inspect(name)["NetworkSettings"]["IPAddress"] for name in names}
    assert len(addresses) == 6
    assert all(ipaddress.IPv4Address(a) in ipaddress.IPv4Network(net.subnet) for a in addresses)
    assert sorted(address for _, address, _ in net.leases()) == sorted(addresses)
    pings = "; ".join(f"ping -c1 -W2 {a}" for a in sorted(addresses))
    out = cli.ok("run", "--rm", "--network", "bridge", "bb:1", "sh", "-c", pings)
    assert out.count("1 packets received") == 6
    cli.ok("rm", "-f", *names)
    assert net.leases() == []


def test_ip_and_network_errors(net):
    cli = net.cli
    cli.ok("network", "create", "--subnet", net.spare, "mine")
    outside = str(ipaddress.IPv4Network(net.subnet).network_address + 5)
    cases = [
        (["--network", "nope"], "not found"),
        (["--network", "mine", "--ip", outside], "not a host address"),
        (["--network", "mine", "--ip", "bogus"], "invalid IP address"),
        (["--network", "bridge", "--ip", outside], "user-defined networks only"),
        (["--network", "none", "--ip", outside], "--ip"),
    ]
    for args, message in cases:
        assert message in _fails(cli, "run", "--rm", *args, "bb:1", "true"), args
        assert net.leases() == []
    assert cli.ok("ps", "-aq") == ""


def test_network_rm_refused_while_in_use(net):
    cli = net.cli
    cli.ok("network", "create", "--subnet", net.spare, "busy")
    cli.ok("run", "-d", "--name", "user", "--network", "busy", "bb:1", "sleep", "60")
    assert 'in use by container "user"' in _fails(cli, "network", "rm", "busy")
    assert "busy" in cli.ok("network", "ls")
    cli.ok("rm", "-f", "user")
    cli.ok("network", "rm", "busy")


def test_sigkilled_supervisor_leaves_nothing_after_the_next_command(net):
    cli = net.cli
    cli.ok("network", "create", "--subnet", net.spare, "kill")
    cid = cli.ok("run", "-d", "--name", "victim", "--network", "kill", "bb:1", "sleep", "60").strip()
    pid1 = net.inspect("victim")["State"]["Pid"]
    with open(f"/proc/{pid1}/stat") as f:
        supervisor = int(f.read().rsplit(")", 1)[1].split()[1])
    assert _veth(cid) in _links() and len(net.leases()) == 1
    os.kill(supervisor, 9)
    # The container dies with it (PR_SET_PDEATHSIG), its namespace with it,
    # and the kernel deletes the veth pair.
    assert not _wait_gone({_veth(cid)})
    assert len(net.leases()) == 1  # nobody has looked yet
    assert net.network("kill")["Containers"] == {}  # the next command frees it
    assert net.leases() == []
    assert not (cli.runroot / "containers" / cid).exists()
    # The address is free again.
    out = cli.ok("run", "--rm", "--network", "kill", "bb:1", "ip", "-4", "-o", "addr", "show", "eth0")
    assert f"inet {ipaddress.IPv4Network(net.spare).network_address + 2}/24" in out
    assert not any(name.startswith("veth") and name[4:] == cid[:11] for name in _links())
    assert "ns/net" not in subprocess.run(["findmnt", "-rn"], capture_output=True, text=True).stdout


def test_none_never_imports_pyroute2_and_bridge_only_its_messages(net):
    cli = net.cli
    argv = cli.argv("run", "--rm", "--network", "none", "bb:1", "true")
    result = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True, env=cli.env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert b"pyroute2" not in result.stderr and b"nftables" not in result.stderr
    argv = cli.argv("run", "--rm", "--network", "bridge", "bb:1", "true")
    result = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True, env=cli.env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert b"pyroute2.netlink.rtnl.ifinfmsg" in result.stderr
    modules = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.decode().splitlines()}
    assert "pyroute2.iproute" not in modules and "asyncio" not in modules
    # The bridge exists now: a start that finds it leaves nftables alone.
    result = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True, env=cli.env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert b"pyroute2.netlink.rtnl.ifinfmsg" in result.stderr and b"nftables" not in result.stderr


def test_a_device_that_is_not_a_bridge_is_never_touched(net):
    cli = net.cli
    dummy = "octld" + os.urandom(3).hex()
    # A veth pair of the test's own (this kernel has no dummy module).
    subprocess.run(["ip", "link", "add", dummy, "type", "veth", "peer", "name", dummy + "p"], check=True)
    try:
        cli.env["OVERLAYCTL_BRIDGE_NAME"] = dummy
        err = _fails(cli, "run", "--rm", "--network", "bridge", "bb:1", "true")
        assert f'device "{dummy}" exists and is not a bridge (veth)' in err
        addr = subprocess.run(["ip", "-o", "addr", "show", "dev", dummy], capture_output=True, text=True).stdout
        assert "inet " not in addr
        assert net.leases() == [] and cli.ok("ps", "-aq") == ""
    finally:
        subprocess.run(["ip", "link", "del", dummy], capture_output=True)
        cli.env["OVERLAYCTL_BRIDGE_NAME"] = net.bridge


NETLINK_SCRIPT = """
import os, subprocess, sys
sys.path.insert(0, sys.argv[1])
from overlayctl.network import netlink
from overlayctl.runtime.netdev import link_exists
child = subprocess.Popen(["unshare", "-n", "sleep", "30"])
try:
    for _ in range(100):
        if os.readlink(f"/proc/{child.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
            break
        __import__("time").sleep(0.01)
    with netlink.Rtnl() as rtnl:
        br = netlink.ensure_bridge(rtnl, "brt", "10.9.0.1", 24, "10.9.0.255", "02:00:00:00:00:09")
        assert netlink.ensure_bridge(rtnl, "brt", "10.9.0.1", 24, "10.9.0.255", "02:00:00:00:00:09") == br
        netlink.attach_container(rtnl, child.pid, br, "vetht", "10.9.0.2", 24, "10.9.0.255", "10.9.0.1",
                                 "02:42:0a:09:00:02")
    inside = subprocess.run(["nsenter", "-t", str(child.pid), "-n", "sh", "-c",
                             "ip -o link show eth0; ip -4 -o addr show eth0; ip route"],
                            capture_output=True, text=True, check=True).stdout
    print(inside)
    print("master", open("/sys/class/net/vetht/master/uevent").read().count("INTERFACE=brt"))
    print("wrong kind", netlink.delete_link("brt", "veth"), link_exists("brt"))
    print("deleted", netlink.delete_link("vetht", "veth"), link_exists("vetht"),
          netlink.delete_link("vetht", "veth"))
finally:
    child.kill()
    child.wait()
"""


def test_netlink_in_a_private_namespace():
    """The netlink layer alone, in a throwaway network namespace: nothing of
    it is ever on the host."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    before = _links()
    # /sys of the new namespace must be its own for the master check: mount one.
    script = NETLINK_SCRIPT.replace(
        'print("master"', 'subprocess.run(["mount", "-t", "sysfs", "sysfs", "/sys"], check=True)\n    print("master"'
    )
    result = subprocess.run(
        ["unshare", "-n", "-m", "--propagation", "private", sys.executable, "-c", script, repo],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "eth0" in out and "link/ether 02:42:0a:09:00:02" in out
    assert "inet 10.9.0.2/24" in out and "default via 10.9.0.1 dev eth0" in out
    assert "master 1" in out
    assert "wrong kind False True" in out
    assert "deleted True False False" in out
    assert _links() == before


def test_network_prune_keeps_networks_a_container_refers_to(net):
    cli = net.cli
    spare = ipaddress.IPv4Network(net.spare)
    halves = [str(s) for s in spare.subnets(new_prefix=25)]
    used_id = cli.ok("network", "create", "--subnet", halves[0], "used").strip()
    idle_id = cli.ok("network", "create", "--subnet", halves[1], "idle").strip()
    cli.ok("create", "--name", "later", "--network", "used", "bb:1", "true")  # not running: still refers to it
    assert "br-" + idle_id[:12] in _links()
    out = cli.ok("network", "prune", "-f")
    assert out == "Deleted Networks:\nidle\n\n"  # Docker's output, its blank line included
    names = [json.loads(line)["Name"] for line in cli.ok("network", "ls", "--format", "json").splitlines()]
    assert "used" in names and "idle" not in names and "bridge" in names
    assert "br-" + idle_id[:12] not in _links() and "br-" + used_id[:12] in _links()


def _nft(commands: list[dict]) -> dict:
    import nftables

    rc, output, error = nftables.Nftables().json_cmd({"nftables": commands})
    assert rc == 0, error
    return output


def _table_elements() -> list[str] | None:
    """The bridges in overlayctl's table; None when there is no table."""
    listed = firewall.table()
    if listed is None:
        return None
    sets = [item["set"] for item in listed["nftables"] if "set" in item]
    return next(found.get("elem", []) for found in sets if found["name"] == "bridges")


@pytest.fixture
def other_table():
    """A table of someone else's, `inet othertest<pid>`, with a chain and a rule."""
    name = f"othertest{os.getpid()}"
    where = {"family": "inet", "table": name}
    _nft(
        [
            {"add": {"table": {"family": "inet", "name": name}}},
            {"add": {"set": {**where, "name": "bridges", "type": "ifname", "elem": ["octlzz0"]}}},
            {"add": {"chain": {**where, "name": "forward", "type": "filter", "hook": "forward", "prio": 0}}},
            {"add": {"rule": {**where, "chain": "forward", "expr": [{"counter": None}]}}},
        ]
    )
    try:
        yield lambda: _nft([{"list": {"table": {"family": "inet", "name": name}}}])
    finally:
        _nft([{"delete": {"table": {"family": "inet", "name": name}}}])


def test_the_firewall_table_lives_with_our_bridges_and_touches_no_other(net, other_table):
    cli = net.cli
    before = other_table()
    cli.ok("network", "create", "--subnet", net.spare, "walled")
    device = net.network("walled")["Options"]["com.docker.network.bridge.name"]
    cli.ok("run", "--rm", "bb:1", "true")  # makes the default bridge
    elements = _table_elements()
    assert elements is not None and {device, net.bridge} <= set(elements)
    listed = json.dumps(firewall.table())
    assert f'{{"concat": ["{device}", "{device}"]}}' in listed and '"drop": null' in listed

    cli.ok("network", "rm", "walled")
    elements = _table_elements()
    assert elements is not None and device not in elements and net.bridge in elements
    delete_bridge(net.bridge)
    # The table goes with the last bridge of ours on the host (another
    # session's may still be there: then only existing ones are listed).
    elements = _table_elements()
    assert elements is None or (elements and all(name in _links() for name in elements))
    assert net.bridge not in (elements or [])
    assert other_table() == before


def test_two_stores_sharing_a_bridge_give_out_distinct_addresses(net, busybox_tar, tmp_path):
    first = net.cli
    second = CLI(tmp_path / "root2", tmp_path / "run2")
    second.env.update(OVERLAYCTL_BRIDGE_NAME=net.bridge, OVERLAYCTL_BRIDGE_SUBNET=net.subnet)
    second.ok("import", str(busybox_tar), "bb:1")
    try:
        first.ok("run", "-d", "--name", "one", "bb:1", "sleep", "60")
        two_id = second.ok("run", "-d", "--name", "two", "bb:1", "sleep", "60").strip()
        one = net.inspect("one")["NetworkSettings"]
        two = json.loads(second.ok("inspect", "two"))[0]["NetworkSettings"]
        print(f"store 1: {one['IPAddress']} {one['MacAddress']}; store 2: {two['IPAddress']} {two['MacAddress']}")
        assert one["IPAddress"] != two["IPAddress"] and one["MacAddress"] != two["MacAddress"]
        claims = os.path.join(leases.CLAIM_DIR, net.bridge)
        assert sorted(os.listdir(claims)) == sorted([one["IPAddress"], two["IPAddress"]])
        # They are neighbours on one bridge: each reaches the other.
        first.ok("exec", "one", "ping", "-c1", "-W2", two["IPAddress"])

        # A supervisor killed leaves a claim nobody holds: the next start
        # in the other store takes the address over.
        pid1 = json.loads(second.ok("inspect", "two"))[0]["State"]["Pid"]
        with open(f"/proc/{pid1}/stat") as f:
            os.kill(int(f.read().rsplit(")", 1)[1].split()[1]), 9)
        assert not _wait_gone({_veth(two_id)})
        three = first.ok("run", "--rm", "bb:1", "ip", "-4", "-o", "addr", "show", "eth0")
        assert f"inet {two['IPAddress']}/" in three
        first.ok("rm", "-f", "one")
        second.ok("network", "ls")  # frees the dead supervisor's lease in its store
        assert not os.path.exists(claims)
    finally:
        ids = second("ps", "-aq", "--no-trunc").stdout.decode().split()
        if ids:
            second("rm", "-f", *ids)

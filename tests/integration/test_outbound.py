"""The way out: containers on a bridge reach beyond the host through the
host's masquerade, and an --internal network's do not.

"Beyond the host" is the outside world of tests/networld.py: a namespace
with no route back to any container subnet, so an answer that arrives at
all proves the source was rewritten to the host's address.
"""

from __future__ import annotations

import json
import os
import subprocess

from overlayctl.network import firewall
from tests.helpers import wait_for
from tests.integration import test_network
from tests.networld import OutsideWorld

# The same fixture as there: a private default bridge and spare subnets,
# every device the test made deleted afterwards.
net = test_network.net


def fetch_argv(world: OutsideWorld, port: int = 80, wait: int = 5) -> list[str]:
    """A container command that GETs / from the outside world's HTTP server."""
    return ["sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w {wait} {world.address} {port}"]


def _outbound_elements() -> list[str]:
    listed = firewall.table() or {"nftables": []}
    for item in listed["nftables"]:
        if "set" in item and item["set"]["name"] == "outbound":
            return [json.dumps(e) for e in item["set"].get("elem", [])]
    return []


def test_containers_reach_the_outside_world_as_the_host(net, outside_world):
    cli = net.cli
    server = outside_world.serve_http(80)
    out = cli.ok("run", "--rm", "bb:1", *fetch_argv(outside_world))
    assert server.body in out
    cli.ok("network", "create", "--subnet", net.spare, "front")
    device = net.network("front")["Options"]["com.docker.network.bridge.name"]
    assert net.network("front")["Internal"] is False
    out = cli.ok("run", "--rm", "--network", "front", "bb:1", *fetch_argv(outside_world))
    assert server.body in out
    # The outside saw the host's own address, never a container's.
    assert server.sources() == [outside_world.host_address] * 2
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read().strip() == "1"
    # Each network's way out is one element (subnet . bridge), gone with it.
    addr, length = net.spare.split("/")
    mine = json.dumps({"concat": [{"prefix": {"addr": addr, "len": int(length)}}, device]})
    assert mine in _outbound_elements()
    cli.ok("network", "rm", "front")
    assert mine not in _outbound_elements()


def test_an_internal_network_has_no_way_out(net, outside_world):
    cli = net.cli
    server = outside_world.serve_http(80)
    cli.ok("network", "create", "--internal", "--subnet", net.spare, "walled")
    assert net.network("walled")["Internal"] is True
    inside = cli("run", "--rm", "--network", "walled", "bb:1", *fetch_argv(outside_world, wait=2))
    assert server.body.encode() not in inside.stdout
    # Nor with --network none, which has no interface but lo.
    none = cli("run", "--rm", "--network", "none", "bb:1", *fetch_argv(outside_world, wait=2))
    assert server.body.encode() not in none.stdout
    assert server.sources() == []
    # Its own containers still talk to each other.
    cli.ok("run", "-d", "--name", "peer", "--network", "walled", "bb:1", "sleep", "60")
    peer = net.inspect("peer")["NetworkSettings"]["Networks"]["walled"]["IPAddress"]
    cli.ok("run", "--rm", "--network", "walled", "bb:1", "ping", "-c1", "-W2", peer)
    # And the same container on an ordinary network gets out.
    out = cli.ok("run", "--rm", "bb:1", *fetch_argv(outside_world))
    assert server.body in out


def test_a_build_step_reaches_the_outside_world(net, outside_world, tmp_path):
    cli = net.cli
    server = outside_world.serve_http(80)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    fetch = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {outside_world.address} 80 > /fetched"
    (ctx / "Dockerfile").write_text(f"FROM bb:1\nRUN {fetch}\n")
    cli.ok("build", "-t", "fetched:1", str(ctx))
    out = cli.ok("run", "--rm", "fetched:1", "cat", "/fetched")
    assert server.body in out
    assert server.sources() == [outside_world.host_address]
    # The step's network is not its result: the layer holds what it wrote,
    # not the /etc files (or /etc) bound in for it.
    diff_id = json.loads(cli.ok("image", "inspect", "fetched:1"))[0]["RootFS"]["Layers"][-1]
    layer = cli.root / "layers" / diff_id.split(":")[1][:16] / "diff"
    assert sorted(os.listdir(layer)) == ["fetched"]
    # --network none still applies: no way out, so the same step fails.
    (ctx / "Dockerfile").write_text(f"FROM bb:1\nRUN {fetch} && grep -q outside /fetched\n")
    failed = cli("build", "--no-cache", "--network", "none", "-t", "cut:1", str(ctx))
    assert failed.returncode == 1, failed.stderr
    assert server.sources() == [outside_world.host_address]


def test_a_killed_build_leaves_no_lease_nor_device(net, tmp_path):
    cli = net.cli
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb:1\nRUN sleep 60\n")
    build = subprocess.Popen(cli.argv("build", str(ctx)), env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: net.leases(), timeout=30, what="the RUN step's lease")
        (lease,) = net.leases()
        step = lease[2]
        wait_for(lambda: f"veth{step[:11]}" in os.listdir("/sys/class/net"), timeout=30, what="the step's veth")
    finally:
        build.kill()
        build.wait()
        if build.stdout is not None:
            build.stdout.close()
    # The step's container dies with its supervisor; the next command frees
    # what it held, as for a container's killed supervisor.
    wait_for(lambda: f"veth{step[:11]}" not in os.listdir("/sys/class/net"), timeout=10, what="the veth to go")
    cli.ok("network", "ls")
    assert net.leases() == []
    assert not (cli.runroot / "containers" / step).exists()


def test_a_table_made_before_the_way_out_gets_it_once(monkeypatch):
    """A host whose table an older overlayctl made (isolation only) gets the
    way out with its next bridge, and only once. In a table of the test's
    own name: the host's is shared with every other store and session."""
    import nftables

    monkeypatch.setattr(firewall, "TABLE", f"octtest{os.getpid()}")
    nft = nftables.Nftables()
    nft.set_json_output(True)
    firewall._run(nft, firewall.table_commands() + firewall.element_commands("add", ["octtold0"]), "make")
    try:
        firewall.adding("octtnew0", lambda: None, "10.251.250.0/24", False)
        firewall.adding("octtnew1", lambda: None, "10.251.251.0/24", False)
        table = firewall.table(nft)
        assert table is not None
        listed = table["nftables"]
        chains = sorted(i["chain"]["name"] for i in listed if "chain" in i)
        assert chains == ["forward", "postrouting"]
        rules = [i["rule"]["chain"] for i in listed if "rule" in i]
        assert rules.count("forward") == 4 and rules.count("postrouting") == 2
        (outbound,) = [i["set"] for i in listed if "set" in i and i["set"]["name"] == "outbound"]
        assert [e["concat"][1] for e in outbound["elem"]] == ["octtnew0", "octtnew1"]
    finally:
        firewall._run(nft, [{"delete": {"table": {"family": "inet", "name": firewall.TABLE}}}], "delete")

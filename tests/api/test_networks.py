"""Networks through the Engine API: Debian's docker client's `network`
commands and raw requests, against the same store as the CLI.

Every network is made on a subnet the `net` fixture found free, with its
private default bridge; the fixture removes what the test made (devices
included). The service is started after it (`net` before `api` in each
test's arguments) so that it sees the same default bridge as the CLI.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from urllib.parse import quote

import pytest

from tests.integration.test_dns import _lookup, dns  # noqa: F401  (a fixture)
from tests.integration.test_network import _free_subnets, net  # noqa: F401  (a fixture)


def _filters(data: dict) -> str:
    return "filters=" + quote(json.dumps(data))


def _address(device: str) -> str:
    return subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", device], capture_output=True, text=True).stdout


def _device_exists(device: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", device], capture_output=True).returncode == 0


def test_network_create_ls_inspect_rm(net, api):  # noqa: F811
    gateway = str(ipaddress.IPv4Network(net.spare).network_address + 254)
    out = api.docker_ok(
        "network", "create", "--subnet", net.spare, "--gateway", gateway, "--label", "env=test", "--internal", "front"
    )
    network_id = out.strip()
    assert len(network_id) == 64, out
    device = "br-" + network_id[:12]
    assert f"{gateway}/24" in _address(device)

    # The predefined networks are listed, as dockerd's.
    table = api.docker_ok("network", "ls").splitlines()
    assert table[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    rows = {line.split()[1]: line.split() for line in table[1:]}
    assert sorted(rows) == ["bridge", "front", "host", "none"]
    assert rows["front"] == [network_id[:12], "front", "bridge", "local"]
    assert rows["host"][2] == "host" and rows["none"][2] == "null" and rows["bridge"][2] == "bridge"
    assert api.cli.ok("network", "ls", "-q").split() == api.docker_ok("network", "ls", "-q").split()

    # Filters, as dockerd's.
    names = lambda *f: api.docker_ok("network", "ls", "--format", "{{.Name}}", *f).split()  # noqa: E731
    assert names("--filter", "label=env=test") == ["front"]
    assert names("--filter", "driver=null") == ["none"]
    assert names("--filter", "type=custom") == ["front"]
    assert sorted(names("--filter", "type=builtin")) == ["bridge", "host", "none"]
    assert names("--filter", "id=" + network_id[:10]) == ["front"]
    bad = api.docker("network", "ls", "--filter", "colour=blue")
    assert bad.returncode != 0 and b"invalid filter 'colour'" in bad.stderr

    # Inspect is the CLI's document.
    docker = json.loads(api.docker_ok("network", "inspect", "front"))[0]
    ours = json.loads(api.cli.ok("network", "inspect", "front"))[0]
    # Options: only those given at creation, as dockerd (docker-compose compares them).
    assert ours["Options"] == {"com.docker.network.bridge.name": device} and docker["Options"] == {}
    assert docker == dict(ours, Options={})
    bridge = api.json("GET", "/networks/bridge", expect=200)
    assert bridge["Options"]["com.docker.network.bridge.default_bridge"] == "true"
    assert docker["Id"] == network_id and docker["Internal"] is True and docker["Labels"] == {"env": "test"}
    assert docker["IPAM"]["Config"] == [{"Subnet": net.spare, "Gateway": gateway}]
    fmt = "{{.Driver}} {{.Scope}} {{range .IPAM.Config}}{{.Subnet}}{{end}}"
    assert api.docker_ok("network", "inspect", "-f", fmt, network_id[:12]) == f"bridge local {net.spare}\n"
    listed = {n["Name"]: n for n in api.json("GET", "/networks", expect=200)}
    assert listed["front"] == dict(docker, Containers={})
    assert listed["none"]["Driver"] == "null" and listed["none"]["IPAM"]["Config"] == []

    # A name in use: dockerd's 409 (the client sends CheckDuplicate).
    again = api.docker("network", "create", "--subnet", net.spare, "front")
    assert again.returncode != 0 and b"already exists" in again.stderr

    assert api.docker_ok("network", "rm", "front").strip() == "front"
    assert not _device_exists(device)
    assert "front" not in api.cli.ok("network", "ls")


def test_connect_and_disconnect_a_running_container(net, api):  # noqa: F811
    since = f"{time.time():.9f}"
    api.docker_ok("network", "create", "--subnet", net.spare, "back")
    ip = str(ipaddress.IPv4Network(net.spare).network_address + 77)
    cid = api.cli.ok("run", "-d", "--name", "ca", "bb:1", "sleep", "60").strip()

    api.docker_ok("network", "connect", "--ip", ip, "--alias", "web", "back", "ca")
    attached = json.loads(api.docker_ok("network", "inspect", "back"))[0]["Containers"]
    assert list(attached) == [cid]
    assert attached[cid]["Name"] == "ca" and attached[cid]["IPv4Address"] == f"{ip}/24"
    # Lists leave Containers out from API 1.28 on, as dockerd's; older clients get them.
    assert [n["Containers"] for n in api.json("GET", "/v1.41/networks", expect=200) if n["Name"] == "back"] == [{}]
    assert [n["Containers"] for n in api.json("GET", "/v1.27/networks", expect=200) if n["Name"] == "back"] == [
        attached
    ]
    assert f"inet {ip}/24" in api.cli.ok("exec", "ca", "ip", "-4", "addr")
    aliases = api.cli.ok("inspect", "-f", "{{json .NetworkSettings.Networks.back.Aliases}}", "ca")
    assert "web" in json.loads(aliases)
    # Twice is refused; so is a container that does not exist.
    twice = api.docker("network", "connect", "back", "ca")
    assert twice.returncode != 0 and b"already exists in network back" in twice.stderr
    assert api.request("POST", "/networks/back/connect", {"Container": "ca"})[0] == 403
    status, _, body = api.request("POST", "/networks/back/connect", {"Container": "nosuch"})
    assert status == 404, body

    # In use: the network stays, with dockerd's 403.
    refused = api.docker("network", "rm", "back")
    assert refused.returncode != 0 and b"in use" in refused.stderr
    assert api.request("DELETE", "/networks/back")[0] == 403

    api.docker_ok("network", "disconnect", "back", "ca")
    assert json.loads(api.docker_ok("network", "inspect", "back"))[0]["Containers"] == {}
    assert f"inet {ip}/" not in api.cli.ok("exec", "ca", "ip", "-4", "addr")
    status, _, body = api.request("POST", "/networks/back/disconnect", {"Container": "ca"})
    assert status == 400 and b"not connected" in body
    api.docker_ok("network", "rm", "back")
    # What happened to it, as `docker events` shows it.
    window = ("--since", since, "--until", f"{time.time():.9f}", "--filter", "network=back")
    lines = api.docker_ok("events", *window, "--format", "{{.Action}} {{.Actor.Attributes.container}}").splitlines()
    assert [line.split()[0] for line in lines] == ["create", "connect", "disconnect", "destroy"]
    assert lines[1] == f"connect {cid}" and lines[2] == f"disconnect {cid}"


@pytest.mark.slow
def test_containers_connected_through_the_api_find_each_other_by_name(dns, api):  # noqa: F811
    api.docker_ok("network", "create", "--subnet", dns.spare, "app")
    api.cli.ok("run", "-d", "--name", "db", "--network", "app", "bb:1", "sleep", "60")
    api.cli.ok("run", "-d", "--name", "web", "bb:1", "sleep", "60")
    assert _lookup(api.cli, ["exec", "web"], "db") == []  # web is on the default bridge only
    api.docker_ok("network", "connect", "--alias", "front", "app", "web")
    db_ip = api.cli.ok("inspect", "-f", "{{.NetworkSettings.Networks.app.IPAddress}}", "db").strip()
    web_ip = api.cli.ok("inspect", "-f", "{{.NetworkSettings.Networks.app.IPAddress}}", "web").strip()
    assert db_ip and web_ip
    assert _lookup(api.cli, ["exec", "web"], "db") == [db_ip]
    assert _lookup(api.cli, ["exec", "db"], "web") == [web_ip]
    assert _lookup(api.cli, ["exec", "db"], "front") == [web_ip]


def test_network_prune_and_status_codes(net, api):  # noqa: F811
    halves = [str(s) for s in ipaddress.IPv4Network(net.spare).subnets(new_prefix=25)]
    created = api.json("POST", "/networks/create", {"Name": "joined", "IPAM": {"Config": [{"Subnet": halves[0]}]}})
    assert set(created) == {"Id", "Warning"} and created["Warning"] == ""
    api.json("POST", "/networks/create", {"Name": "idle", "IPAM": {"Config": [{"Subnet": halves[1]}]}}, expect=201)
    api.cli.ok("create", "--name", "cc", "--network", "joined", "bb:1", "true")

    # dockerd's codes: predefined 403, duplicates 409, unknown 404, bad bodies 400.
    for name in ("bridge", "host", "none"):
        status, _, body = api.request("DELETE", f"/networks/{name}")
        assert status == 403 and b"pre-defined network" in body, (name, body)
        status, _, body = api.request("POST", "/networks/create", {"Name": name})
        assert status == 403, (name, body)
    status, _, body = api.request("POST", "/networks/create", {"Name": "idle", "CheckDuplicate": True})
    assert status == 409 and b"already exists" in body
    assert api.request("GET", "/networks/nosuch")[0] == 404
    assert api.request("DELETE", "/networks/nosuch")[0] == 404
    assert api.request("GET", "/networks/idle?scope=swarm")[0] == 404
    spare = {"Subnet": halves[1], "IPRange": halves[1].replace("/25", "/26")}
    for body in (
        {"Name": "x", "Driver": "overlay"},
        {"Name": "x", "IPAM": {"Config": [spare]}},
        {"Name": "x", "Options": {"com.docker.network.bridge.name": "mine"}},
        {"Name": "x", "Labels": "a=b"},
        {"Name": "bad name!"},
    ):
        status, _, answer = api.request("POST", "/networks/create", body)
        assert status == 400 and json.loads(answer)["message"], (body, status, answer)
    assert api.request("POST", "/networks/idle/connect", b"[", {"Content-Type": "application/json"})[0] == 400
    assert api.request("POST", "/networks/idle/connect", {})[0] == 400

    # label! keeps a labelled network; joined has a container (stopped, but its own).
    third = next(s for s in _free_subnets(8) if s not in (net.subnet, net.spare))
    api.docker_ok("network", "create", "--label", "keep=1", "--subnet", third, "kept")
    report = api.json("POST", "/networks/prune?" + _filters({"label!": ["keep"]}), expect=200)
    assert report == {"NetworksDeleted": ["idle"]}
    out = api.docker_ok("network", "prune", "-f")
    assert out == "Deleted Networks:\nkept\n\n", out
    assert api.json("POST", "/networks/prune", expect=200) == {"NetworksDeleted": None}
    assert sorted(api.docker_ok("network", "ls", "--format", "{{.Name}}").split()) == [
        "bridge",
        "host",
        "joined",
        "none",
    ]


def test_an_ipv6_network_through_the_api(net, api):  # noqa: F811
    from overlayctl.network import ipam

    v6 = str(ipam.random_ula_subnet())
    # An IPv6 subnet without EnableIPv6 is refused, as `network create` without --ipv6.
    status, _, body = api.request("POST", "/networks/create", {"Name": "nosix", "IPAM": {"Config": [{"Subnet": v6}]}})
    assert status == 400 and b"EnableIPv6" in body
    api.docker_ok("network", "create", "--ipv6", "--subnet", net.spare, "--subnet", v6, "six")
    document = api.json("GET", "/networks/six", expect=200)
    assert document["EnableIPv6"] is True
    assert [c["Subnet"] for c in document["IPAM"]["Config"]] == [net.spare, v6]
    assert document == dict(json.loads(api.cli.ok("network", "inspect", "six"))[0], Options={})
    api.cli.ok("run", "-d", "--name", "sixa", "--network", "six", "bb:1", "sleep", "60")
    attached = api.json("GET", "/networks/six", expect=200)["Containers"]
    assert [c["IPv6Address"].split("/")[1] for c in attached.values()] == ["64"]


def test_docker_compose_finds_the_network_it_made_unchanged(net, api):  # noqa: F811
    # docker-compose's own code (Debian's 1.29): a second `up` inspects the
    # network the first made and compares its options with the file's.
    script = (
        "import sys, docker\n"
        "from compose.network import Network\n"
        "client = docker.APIClient(base_url=sys.argv[1], version='1.41')\n"
        "network = Network(client, 'proj', 'default')\n"
        "network.ensure()\n"
        "network.ensure()\n"
        "print(network.inspect()['Labels']['com.docker.compose.network'])\n"
    )
    result = subprocess.run(["/usr/bin/python3", "-c", script, api.host], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "default\n"
    assert "proj_default" in api.cli.ok("network", "ls")

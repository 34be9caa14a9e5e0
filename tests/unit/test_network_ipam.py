"""Pure network logic: subnets, gateways, addresses, MACs, overlaps, routes,
and the generated /etc files."""

from __future__ import annotations

import ipaddress

import pytest

from overlayctl.errors import ConflictError, InvalidArgumentError
from overlayctl.network import etcfiles, ipam


def test_parse_subnet_accepts_cidr():
    assert str(ipam.parse_subnet("10.78.5.0/24")) == "10.78.5.0/24"
    assert ipam.parse_subnet("172.30.0.0/16").prefixlen == 16


@pytest.mark.parametrize(
    "text, message",
    [
        ("nonsense", "CIDR notation"),
        ("10.78.5.0/33", "CIDR notation"),
        ("10.78.5.0", "CIDR notation"),
        ("10.78.5.7/24", "did you mean 10.78.5.0/24"),
        ("fd00::/64", "IPv6"),
        ("10.0.0.0/7", "between /8 and /30"),
        ("10.78.5.0/31", "between /8 and /30"),
    ],
)
def test_parse_subnet_refuses(text, message):
    with pytest.raises(InvalidArgumentError, match=message):
        ipam.parse_subnet(text)


def test_gateway_defaults_to_first_host_and_is_checked():
    subnet = ipam.parse_subnet("10.78.5.0/24")
    assert str(ipam.gateway_for(subnet, None)) == "10.78.5.1"
    assert str(ipam.gateway_for(subnet, "10.78.5.254")) == "10.78.5.254"
    for bad in ("10.78.6.1", "10.78.5.0", "10.78.5.255"):
        with pytest.raises(InvalidArgumentError, match="not a host address"):
            ipam.gateway_for(subnet, bad)
    with pytest.raises(InvalidArgumentError, match="invalid gateway"):
        ipam.gateway_for(subnet, "10.78.5")


def test_choose_address_lowest_free_skipping_gateway():
    assert ipam.choose_address("10.78.5.0/24", "10.78.5.1", set(), None, "n") == "10.78.5.2"
    taken = {"10.78.5.2", "10.78.5.3"}
    assert ipam.choose_address("10.78.5.0/24", "10.78.5.1", taken, None, "n") == "10.78.5.4"
    # A gateway elsewhere in the subnet frees the first address.
    assert ipam.choose_address("10.78.5.0/24", "10.78.5.254", set(), None, "n") == "10.78.5.1"


def test_choose_address_wanted():
    assert ipam.choose_address("10.78.5.0/24", "10.78.5.1", set(), "10.78.5.50", "n") == "10.78.5.50"
    with pytest.raises(ConflictError, match="already in use"):
        ipam.choose_address("10.78.5.0/24", "10.78.5.1", {"10.78.5.50"}, "10.78.5.50", "n")
    with pytest.raises(ConflictError, match="gateway"):
        ipam.choose_address("10.78.5.0/24", "10.78.5.1", set(), "10.78.5.1", "n")
    for outside in ("10.78.6.50", "10.78.5.0", "10.78.5.255"):
        with pytest.raises(InvalidArgumentError, match="not a host address"):
            ipam.choose_address("10.78.5.0/24", "10.78.5.1", set(), outside, "n")


def test_choose_address_full_subnet():
    taken = {"10.78.5.2"}
    with pytest.raises(ConflictError, match="no free address"):
        ipam.choose_address("10.78.5.0/30", "10.78.5.1", taken, None, "n")


def test_macs():
    assert ipam.mac_for("10.77.0.2") == "02:42:0a:4d:00:02"
    mac = ipam.bridge_mac("9d0be8b48d4d45ed")
    assert mac == "02:9d:0b:e8:b4:8d"
    assert int(mac.split(":")[0], 16) & 0x02  # locally administered, not multicast
    assert not int(mac.split(":")[0], 16) & 0x01


PROC_NET_ROUTE = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
    "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    "octl0\t00004D0A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
)


def test_parse_proc_route_skips_the_default_route():
    routes = ipam.parse_proc_route(PROC_NET_ROUTE)
    assert routes == [
        ("eth0", ipaddress.IPv4Network("192.0.2.0/24")),
        ("octl0", ipaddress.IPv4Network("10.77.0.0/16")),
    ]


def test_overlap_reason():
    routes = ipam.parse_proc_route(PROC_NET_ROUTE)
    nets = [("bridge", "10.77.0.0/16", "octl0"), ("web", "10.78.0.0/24", "br-1")]
    sub = ipaddress.IPv4Network
    assert ipam.overlap_reason(sub("10.78.1.0/24"), nets, routes) is None
    assert "network \"web\"" in ipam.overlap_reason(sub("10.78.0.128/25"), nets, routes)
    assert "network \"bridge\"" in ipam.overlap_reason(sub("10.0.0.0/8"), nets, routes)
    assert "host's route to 192.0.2.0/24 on eth0" in ipam.overlap_reason(sub("192.0.0.0/16"), nets, routes)
    # The default bridge's own route is judged as the network, not as a host route.
    assert ipam.overlap_reason(sub("10.77.0.0/16"), [], [r for r in routes if r[0] != "octl0"]) is None


def test_free_subnet_skips_what_is_taken():
    nets = [("a", "10.78.0.0/24", "br-a"), ("b", "10.78.1.0/24", "br-b")]
    routes = [("eth1", ipaddress.IPv4Network("10.78.2.0/23"))]
    assert str(ipam.free_subnet(nets, routes)) == "10.78.4.0/24"


def test_hosts_file_like_docker():
    text = etcfiles.hosts_content(["10.77.0.2"], "abc123", ["web"])
    assert text.startswith("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    assert text.endswith("10.77.0.2\tabc123 web\n")
    assert etcfiles.hosts_content(["10.77.0.2"], "web", ["web"]).endswith("10.77.0.2\tweb\n")
    assert etcfiles.hosts_content([], "abc", ["web"]) == etcfiles.HOSTS_PREAMBLE
    # One line per network the container is on.
    two = etcfiles.hosts_content(["10.77.0.2", "10.78.0.5"], "abc", ["web"])
    assert two.endswith("10.77.0.2\tabc web\n10.78.0.5\tabc web\n")


def test_hosts_file_edited_in_place_on_connect_and_disconnect(tmp_path):
    etcfiles.write_files(str(tmp_path), {"hosts": etcfiles.hosts_content(["10.77.0.2"], "abc", ["web"])})
    path = tmp_path / "hosts"
    inode = path.stat().st_ino
    with open(path, "a") as f:
        f.write("10.9.9.9\tmine")  # the container's own edit, without a newline
    etcfiles.edit_hosts(str(tmp_path), add=etcfiles.hosts_line("10.78.0.5", "abc", ["web"]))
    assert path.read_text().endswith("10.77.0.2\tabc web\n10.9.9.9\tmine\n10.78.0.5\tabc web\n")
    etcfiles.edit_hosts(str(tmp_path), drop_address="10.78.0.5")
    assert path.read_text().endswith("10.77.0.2\tabc web\n10.9.9.9\tmine\n")
    assert path.stat().st_ino == inode  # the bind mount inside sees it
    etcfiles.edit_hosts(str(tmp_path / "gone"), add="x")  # not running: nothing to edit


def test_ipv6_subnets_and_derived_addresses():
    v4 = ipaddress.IPv4Network("10.78.5.0/24")
    assert str(ipam.parse_subnet6("fd00:1::/64", v4)) == "fd00:1::/64"
    for bad, message in [
        ("fd00:1::1/64", "host bits"),
        ("fd00:1::", "CIDR"),
        ("10.0.0.0/8", "invalid IPv6 subnet"),
        ("fd00:1::/32", "prefix"),
        ("fd00:1::/124", "prefix"),
    ]:
        with pytest.raises(InvalidArgumentError, match=message):
            ipam.parse_subnet6(bad, v4)
    with pytest.raises(InvalidArgumentError, match="smaller"):
        ipam.parse_subnet6("fd00:1::/120", ipaddress.IPv4Network("10.0.0.0/16"))
    assert ipam.address6("fd00:1::/64", "10.78.5.0/24", "10.78.5.7") == "fd00:1::7"
    ula = ipam.random_ula_subnet()
    assert ula.prefixlen == 64 and str(ula).startswith("fd")


def test_resolv_conf_drops_unreachable_nameservers():
    host = (
        "# generated\nsearch example.org\n"
        "nameserver 127.0.0.53\nnameserver 10.1.1.1\nnameserver fd00::1\noptions edns0\n"
    )
    assert etcfiles.resolv_content(host) == "# generated\nsearch example.org\nnameserver 10.1.1.1\noptions edns0\n"
    only_local = "nameserver 127.0.0.1\nsearch x\n\n"
    assert etcfiles.resolv_content(only_local) == "search x\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    assert etcfiles.resolv_content("") == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"


def test_resolv_conf_behind_systemd_resolved_uses_upstream():
    files = {
        "/etc/resolv.conf": "nameserver 127.0.0.53\noptions edns0 trust-ad\n",
        etcfiles.SYSTEMD_RESOLVED_UPSTREAM: "nameserver 10.2.2.2\n",
    }
    assert etcfiles.host_resolv_conf(lambda p: files.get(p, "")) == "nameserver 10.2.2.2\n"
    files.pop(etcfiles.SYSTEMD_RESOLVED_UPSTREAM)
    assert etcfiles.host_resolv_conf(lambda p: files.get(p, "")).startswith("nameserver 127.0.0.53")


def test_write_and_remove_files(tmp_path):
    d = tmp_path / "c"
    etcfiles.write_files(str(d), {"hosts": "h\n", "hostname": "n\n", "resolv.conf": "r\n"})
    assert sorted(p.name for p in d.iterdir()) == ["hostname", "hosts", "resolv.conf"]
    assert (d / "hosts").stat().st_mode & 0o777 == 0o644
    etcfiles.remove_files(str(d))
    assert not d.exists()
    etcfiles.remove_files(str(d))  # idempotent


def test_prune_until_as_docker_reads_it():
    from overlayctl.util.filters import parse_until

    now = 1_800_000_000.0
    assert parse_until("10m", now) == now - 600 and parse_until("1h30m", now) == now - 5400
    assert parse_until("1700000000", now) == 1_700_000_000.0
    assert parse_until("2023-11-14T22:13:20Z", now) == 1_700_000_000.0
    assert parse_until("2023-11-14", now) == 1_699_920_000.0
    with pytest.raises(InvalidArgumentError, match="failed to parse value as time or duration"):
        parse_until("soon", now)


def test_mac_addresses_as_docker_takes_them():
    from overlayctl.network import attach

    assert attach.parse_mac("02:AB:cd:00:00:09") == "02:ab:cd:00:00:09"
    assert attach.parse_mac("02-ab-cd-00-00-09") == "02:ab:cd:00:00:09"
    for bad in ("zz", "02:ab:cd:00:00", "02:ab:cd:00:00:0g", "01:00:5e:00:00:01"):
        with pytest.raises(InvalidArgumentError, match="is not a valid mac address"):
            attach.parse_mac(bad)

"""The DNS options and the responder's pure parts, without root."""

from __future__ import annotations

import pytest

from overlayctl.errors import InvalidArgumentError
from overlayctl.network import resolvopts
from overlayctl.network.etcfiles import hosts_content


def test_add_host_forms() -> None:
    assert resolvopts.parse_extra_host("db:10.0.0.5") == ("db", "10.0.0.5")
    assert resolvopts.parse_extra_host("v6:2001:db8::1") == ("v6", "2001:db8::1")
    assert resolvopts.parse_extra_host("v6=[2001:db8::1]") == ("v6", "2001:db8::1")
    assert resolvopts.parse_extra_host("gw:host-gateway") == ("gw", "host-gateway")
    assert resolvopts.host_lines(["a:1.2.3.4", "gw:host-gateway"], "10.9.0.1") == [
        ("1.2.3.4", "a"),
        ("10.9.0.1", "gw"),
    ]


@pytest.mark.parametrize(
    "value, why",
    [
        ("nocolon", 'bad format for add-host: "nocolon"'),
        (":1.2.3.4", 'bad format for add-host: ":1.2.3.4"'),
        ("a b:1.2.3.4", 'bad format for add-host: "a b:1.2.3.4"'),
        ("x:1.2", 'invalid IP address in add-host: "1.2"'),
        ("x:", 'invalid IP address in add-host: ""'),
        ("x: 1.2.3.4", 'invalid IP address in add-host: " 1.2.3.4"'),
    ],
)
def test_add_host_errors_are_dockers(value: str, why: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        resolvopts.check_extra_hosts([value])
    assert str(info.value.message) == f'invalid argument "{value}" for "--add-host" flag: {why}'


def test_dns_checks() -> None:
    assert resolvopts.check_dns(["1.1.1.1", "2001:db8::53"]) == ["1.1.1.1", "2001:db8::53"]
    with pytest.raises(InvalidArgumentError, match="IP address is not correctly formatted: 1.1"):
        resolvopts.check_dns(["1.1"])
    assert resolvopts.check_dns_search(["corp.example", "a-b.c.", "."]) == ["corp.example", "a-b.c.", "."]
    for bad in ("-x", "a..b", "x-", "", "a_b", "é.example"):
        with pytest.raises(InvalidArgumentError, match="is not a valid domain"):
            resolvopts.check_dns_search([bad])
    with pytest.raises(InvalidArgumentError, match='for "--dns-option" flag'):
        resolvopts.check_dns_options(["ndots:1\nnameserver 6.6.6.6"])


HOST = "# host\nnameserver 10.1.1.1\nnameserver 10.1.1.2\nsearch home.example\noptions edns0\n"


def test_resolv_conf_as_docker_writes_it() -> None:
    assert resolvopts.resolv_conf(HOST, None, None, None) == HOST
    assert resolvopts.resolv_conf(HOST, ["192.0.2.1"], ["a.example"], ["ndots:2"]) == (
        "# host\nnameserver 192.0.2.1\nsearch a.example\noptions ndots:2\n"
    )
    assert "search" not in resolvopts.resolv_conf(HOST, None, ["."], None)
    # A user-defined network: the responder alone, the host's search, ndots:0 unless given.
    assert resolvopts.resolv_conf(HOST, ["192.0.2.1"], None, None, responder="10.9.0.1") == (
        "# host\nnameserver 10.9.0.1\nsearch home.example\noptions edns0 ndots:0\n"
    )
    assert resolvopts.resolv_conf(HOST, None, None, ["ndots:3"], responder="10.9.0.1").endswith("options ndots:3\n")
    assert resolvopts.resolv_conf(HOST, None, None, ["timeout:1"], responder="10.9.0.1").endswith(
        "options timeout:1 ndots:0\n"
    )


def test_extra_hosts_come_before_the_containers_own_line() -> None:
    text = hosts_content(["10.9.0.2"], "box", ["box", "web"], [("1.2.3.4", "svc")])
    assert text.splitlines()[-2:] == ["1.2.3.4\tsvc", "10.9.0.2\tbox web"]


def test_responder_helpers() -> None:
    pytest.importorskip("dnslib")
    from overlayctl.network import dnsserver

    assert dnsserver._reverse_address("2.9.251.10.in-addr.arpa") == "10.251.9.2"
    for bad in ("9.251.10.in-addr.arpa", "a.9.251.10.in-addr.arpa", "999.9.251.10.in-addr.arpa", "db"):
        assert dnsserver._reverse_address(bad) is None
    query = bytes.fromhex("abcd01000001000000000000")
    reply = dnsserver._error_reply(query, 2)
    assert reply[:2] == b"\xab\xcd" and reply[2] & 0x80 and reply[3] & 0x0F == 2 and reply[2] & 0x01
    assert len(reply) == 12
    assert not dnsserver._usable_upstream("10.9.0.1", {"10.9.0.1"})
    assert not dnsserver._usable_upstream("0.0.0.0", set())
    assert not dnsserver._usable_upstream("nonsense", set())
    assert dnsserver._usable_upstream("127.0.0.1", {"10.9.0.1"})
    records = dnsserver.Records(
        [
            ("10.9.0.2", "a" * 64, "db", ["database", "shared"], '{"HostConfig": {"Dns": ["192.0.2.1"]}}'),
            ("10.9.0.3", "b" * 64, "web", ["shared"], "{}"),
        ]
    )
    assert records.by_name["db"] == ["10.9.0.2"] and records.by_name["a" * 12] == ["10.9.0.2"]
    assert records.by_name["shared"] == ["10.9.0.2", "10.9.0.3"]
    assert records.by_address["10.9.0.3"] == ["web"]
    assert records.upstreams_of == {"10.9.0.2": ["192.0.2.1"]}

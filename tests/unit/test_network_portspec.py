"""-p, -P and --expose as Docker parses and stores them (pure: no root)."""

from __future__ import annotations

import pytest

from overlayctl.errors import InvalidArgumentError
from overlayctl.network.portspec import (
    Binding,
    exposed_ports,
    parse_expose,
    parse_publish,
    port_bindings,
    wanted_bindings,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("80", [Binding("tcp", 80, "", 0, 0)]),
        ("8080:80", [Binding("tcp", 80, "", 8080, 8080)]),
        ("127.0.0.1:8080:80/udp", [Binding("udp", 80, "127.0.0.1", 8080, 8080)]),
        ("127.0.0.1::80", [Binding("tcp", 80, "127.0.0.1", 0, 0)]),
        ("0.0.0.0:8080:80/SCTP", [Binding("sctp", 80, "", 8080, 8080)]),
        ("8000-8001:80-81", [Binding("tcp", 80, "", 8000, 8000), Binding("tcp", 81, "", 8001, 8001)]),
        ("8000-8010:80", [Binding("tcp", 80, "", 8000, 8010)]),
        ("80-81", [Binding("tcp", 80, "", 0, 0), Binding("tcp", 81, "", 0, 0)]),
        ("0:80", [Binding("tcp", 80, "", 0, 0)]),
    ],
)
def test_publish_forms(text, expected):
    assert parse_publish(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("99999", "invalid containerPort: 99999"),
        ("8080:0", "invalid containerPort: 0"),
        ("8080:http", "invalid containerPort: http"),
        ("70000:80", "invalid hostPort: 70000"),
        ("8080:80/foo", "invalid proto: foo"),
        ("8000:80-90", "invalid ranges specified for container and host Ports: 80-90 and 8000"),
        ("8000-8002:80-81", "invalid ranges specified for container and host Ports: 80-81 and 8000-8002"),
        ("90-80", "invalid range specified for port: 90-80"),
        ("1.2.3:8080:80", "invalid IP address: 1.2.3"),
        ("[::1]:8080:80", "IPv4 addresses only"),
        ("/tcp", "no port specified"),
    ],
)
def test_publish_refusals_use_dockers_words(text, message):
    with pytest.raises(InvalidArgumentError) as err:
        parse_publish(text)
    assert message in err.value.message


def test_stored_shapes_are_dockers():
    bindings = parse_publish("8080:80") + parse_publish("127.0.0.1::80") + parse_publish("9000-9010:53/udp")
    assert port_bindings(bindings) == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "127.0.0.1", "HostPort": ""}],
        "53/udp": [{"HostIp": "", "HostPort": "9000-9010"}],
    }
    assert exposed_ports({"443/tcp": {}, "7": {}}, ["5000-5001/udp"], bindings) == {
        "443/tcp": {},
        "7/tcp": {},
        "5000/udp": {},
        "5001/udp": {},
        "80/tcp": {},
        "53/udp": {},
    }
    assert parse_expose("22") == ["22/tcp"]
    with pytest.raises(InvalidArgumentError, match="invalid proto: icmp"):
        parse_expose("22/icmp")


def test_wanted_bindings_add_exposed_ports_with_publish_all_only():
    stored = port_bindings(parse_publish("8080:80"))
    exposed = {"80/tcp": {}, "443/tcp": {}}
    assert wanted_bindings(stored, exposed, False) == [Binding("tcp", 80, "", 8080, 8080)]
    assert wanted_bindings(stored, exposed, True) == [
        Binding("tcp", 80, "", 8080, 8080),
        Binding("tcp", 443, "", 0, 0),
    ]
    assert wanted_bindings(None, None, True) == []

"""Published ports as `ps` shows them, and the model's new keys (pure)."""

from __future__ import annotations

from overlayctl.container.model import Config, ContainerConfig, Endpoint, HostConfig
from overlayctl.engine.inspect import _port_groups


def test_ps_groups_consecutive_ports_as_docker_does():
    items = [
        ("tcp", "", 443, 0),
        ("tcp", "0.0.0.0", 80, 8000),
        ("tcp", "0.0.0.0", 81, 8001),
        ("tcp", "0.0.0.0", 90, 9000),
        ("udp", "127.0.0.1", 53, 5353),
    ]
    assert _port_groups(items) == [
        "443/tcp",
        "0.0.0.0:8000-8001->80-81/tcp",
        "0.0.0.0:9000->90/tcp",
        "127.0.0.1:5353->53/udp",
    ]
    assert _port_groups([("tcp", "", 80, 0), ("tcp", "", 81, 0)]) == ["80-81/tcp"]


def test_port_keys_round_trip_and_stay_absent_when_unset():
    config = ContainerConfig(
        Config(cmd=["true"], exposed_ports={"80/tcp": {}}),
        HostConfig(port_bindings={"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}, publish_all_ports=True),
    )
    doc = config.to_json()
    assert doc["Config"]["ExposedPorts"] == {"80/tcp": {}}
    assert doc["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert doc["HostConfig"]["PublishAllPorts"] is True
    assert ContainerConfig.from_json(doc).to_json() == doc
    plain = ContainerConfig(Config(cmd=["true"]), HostConfig()).to_json()
    assert "ExposedPorts" not in plain["Config"] and "PortBindings" not in plain["HostConfig"]


def test_network_settings_ports_are_dockers_shape():
    ports = {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "443/tcp": None}
    assert Endpoint("bridge", ports=ports).to_json()["Ports"] == ports
    assert Endpoint("bridge").to_json()["Ports"] == {}

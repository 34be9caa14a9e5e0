"""The catalog side of networks and leases, and the lock that says whether a
lease is still held. No devices are touched: prepare() only leases and
writes files; on_namespaces is not called."""

from __future__ import annotations

import os

import pytest

from overlayctl.container.model import ContainerConfig
from overlayctl.errors import ConflictError, InvalidArgumentError, NotFoundError
from overlayctl.network import attach, leases, manage
from overlayctl.paths import Paths
from overlayctl.store import Store
from overlayctl.store.networks import Network, NetworkStore

IMAGE_ID = "sha256:" + "ab" * 32


@pytest.fixture
def store(tmp_path, monkeypatch):
    # A subnet no host route can hold (TEST-NET-3 is documentation-only).
    monkeypatch.setenv("OVERLAYCTL_BRIDGE_SUBNET", "203.0.113.0/24")
    monkeypatch.setenv("OVERLAYCTL_BRIDGE_NAME", "octlunit0")
    # The host-wide claims of this test's own: a unit test needs no /run,
    # and two sessions at once must not see each other's.
    monkeypatch.setattr(leases, "CLAIM_DIR", str(tmp_path / "ipam"))
    s = Store(Paths(str(tmp_path / "root"), str(tmp_path / "run")))
    s.conn.execute("INSERT INTO images (id, config, created) VALUES (?, '{}', '')", (IMAGE_ID,))
    yield s
    s.close()


def container(store, name, mode="bridge", ip=None):
    hc = {"NetworkMode": mode}
    if ip:
        hc["IPAddress"] = ip
    return store.containers.create(IMAGE_ID, "bb:1", ContainerConfig.from_json({"Config": {}, "HostConfig": hc}), name)


def user_network(store, name="web", subnet="198.51.100.0/24"):
    net = Network(name, os.urandom(32).hex(), "bridge", "br-" + name, subnet, subnet.replace("0/24", "1"), "", {})
    NetworkStore(store.conn).add(net)
    return net


def test_networks_rows(store):
    nets = NetworkStore(store.conn)
    net = user_network(store)
    assert nets.get("web").subnet == "198.51.100.0/24"
    assert nets.get(net.id[:6]).name == "web"
    with pytest.raises(NotFoundError, match='network "nope" not found'):
        nets.get("nope")
    with pytest.raises(ConflictError, match="already exists"):
        user_network(store)
    with pytest.raises(InvalidArgumentError, match="clash"):
        nets.add(
            Network("other", os.urandom(32).hex(), "bridge", "br-o", "198.51.100.0/25", "198.51.100.1", "", {}),
            overlaps=lambda others: "clash" if others else None,
        )
    assert [n.name for n in nets.list()] == ["web"]


def test_default_network_recorded_once_from_the_environment(store):
    first = manage.default_network(store)
    assert (first.name, first.bridge, first.subnet) == ("bridge", "octlunit0", "203.0.113.0/24")
    assert first.gateway == "203.0.113.1"
    assert manage.default_network(store).id == first.id


def test_default_network_follows_the_environment_when_free(store, monkeypatch):
    first = manage.default_network(store)
    plan = attach.prepare(store, container(store, "c1"), "h")
    monkeypatch.setenv("OVERLAYCTL_BRIDGE_SUBNET", "198.51.100.0/24")
    # A container is attached: new ones join it on the old subnet.
    assert manage.default_network(store).subnet == "203.0.113.0/24"
    plan.release()
    moved = manage.default_network(store)
    assert (moved.id, moved.subnet, moved.gateway) == (first.id, "198.51.100.0/24", "198.51.100.1")
    monkeypatch.setenv("OVERLAYCTL_BRIDGE_SUBNET", "198.51.100.0/33")
    with pytest.raises(InvalidArgumentError, match="CIDR"):
        manage.default_network(store)


def test_prepare_leases_writes_files_and_release_frees(store):
    c = container(store, "c1")
    plan = attach.prepare(store, c, "host1")
    assert plan.lease.address == "203.0.113.2" and plan.lease.mac == "02:42:cb:00:71:02"
    assert [(m.kind, m.target) for m in plan.mounts] == [
        ("bind", "/etc/hosts"),
        ("bind", "/etc/hostname"),
        ("bind", "/etc/resolv.conf"),
    ]
    with open(plan.mounts[0].source) as f:
        assert f.read().endswith("203.0.113.2\thost1 c1\n")
    with open(plan.mounts[1].source) as f:
        assert f.read() == "host1\n"
    assert plan.settings.to_json()["IPAddress"] == "203.0.113.2" and plan.settings.to_json()["IPPrefixLen"] == 24
    assert plan.settings.to_json()["Networks"]["bridge"]["Gateway"] == "203.0.113.1"
    second = attach.prepare(store, container(store, "c2"), "host2")
    assert second.lease.address == "203.0.113.3"
    plan.release()
    plan.release()  # idempotent
    assert [lease.address for lease in NetworkStore(store.conn).leases()] == ["203.0.113.3"]
    assert not os.path.exists(leases.network_dir(store.paths, c.id))
    second.release()
    assert NetworkStore(store.conn).leases() == []


def test_prepare_errors_change_nothing(store):
    user_network(store)
    c = container(store, "c1")
    taken = attach.prepare(store, container(store, "c0", "web", "198.51.100.9"), "h")
    cases = [
        ("nope", None, NotFoundError, 'network "nope" not found'),
        ("web", "198.51.101.9", InvalidArgumentError, "not a host address"),
        ("web", "198.51.100.9", ConflictError, "already in use"),
        ("bridge", "203.0.113.9", InvalidArgumentError, "user-defined networks only"),
        ("none", "203.0.113.9", InvalidArgumentError, "conflicting options"),
        ("container:abc", None, InvalidArgumentError, "not supported"),
    ]
    for network, ip, error, message in cases:
        if error is not ConflictError:  # whether an address is free is known only at start
            with pytest.raises(error, match=message):
                attach.check(store, network, ip)
        with pytest.raises(error, match=message):
            attach.prepare(store, c, "h", {network: attach.endpoint_request(ip, None, None)})
        assert [lease.address for lease in NetworkStore(store.conn).leases()] == ["198.51.100.9"]
        assert not os.path.exists(leases.network_dir(store.paths, c.id))
    taken.release()


def test_release_stale_frees_only_leases_nobody_holds(store):
    live = attach.prepare(store, container(store, "alive"), "h")
    dead = container(store, "dead")
    pid = os.fork()
    if pid == 0:
        # A supervisor that dies without releasing (as after SIGKILL).
        try:
            own = Store(store.paths)
            attach.prepare(own, own.containers.get(dead.id), "h")
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    nets = NetworkStore(store.conn)
    assert len(nets.leases()) == 2
    leases.release_stale(store)
    assert [lease.container for lease in nets.leases()] == [live.container_id]
    assert not os.path.exists(leases.network_dir(store.paths, dead.id))
    live.release()


def test_release_stale_removes_files_of_removed_containers(store):
    c = container(store, "gone", mode="none")
    plan = attach.prepare(store, c, "h")
    assert plan.lease is None and len(plan.mounts) == 3
    store.containers.remove(store.containers.get(c.id))
    leases.release_stale(store)
    assert not os.path.exists(leases.network_dir(store.paths, c.id))


def test_network_rm_refused_while_leased(store):
    user_network(store)
    plan = attach.prepare(store, container(store, "c1", "web"), "h")
    with pytest.raises(ConflictError, match='in use by container "c1"'):
        NetworkStore(store.conn).remove("web")
    plan.release()
    NetworkStore(store.conn).remove("web")
    with pytest.raises(NotFoundError):
        NetworkStore(store.conn).remove("web")


def test_predefined_networks_cannot_be_created_or_removed(store):
    for name in ("bridge", "host", "none", "default"):
        with pytest.raises(ConflictError, match="pre-defined"):
            manage.validate_name(name)
    for name in ("bridge", "host", "none"):
        with pytest.raises(ConflictError, match="pre-defined"):
            manage.remove_network(store, name)
    for bad in ("", "-x", "a b", "a/b"):
        with pytest.raises(InvalidArgumentError, match="invalid network name"):
            manage.validate_name(bad)


def test_settings_for_stopped_and_host(store):
    c = container(store, "c1")
    settings = attach.settings_for(store, c).to_json()
    assert settings["IPAddress"] == "" and list(settings["Networks"]) == ["bridge"]
    h = container(store, "c2", mode="host")
    assert list(attach.settings_for(store, h).to_json()["Networks"]) == ["host"]


def _bridge_network() -> Network:
    return Network("shared", "ef" * 32, "bridge", "octlunit1", "198.51.100.0/29", "198.51.100.1", "", {})


def test_an_address_claimed_by_another_store_is_skipped(store, tmp_path):
    network = _bridge_network()
    other = str(tmp_path / "other.lock")  # the other store's container's network.lock, held
    held = leases.take_lock(other, block=True)
    assert leases.claim(leases.claim_path(network.bridge, "198.51.100.2"), other)
    mine = str(tmp_path / "mine.lock")
    claimed: list[str] = []
    try:
        assert attach._choose_and_claim(network, set(), None, mine, claimed) == "198.51.100.3"
        assert claimed == [leases.claim_path(network.bridge, "198.51.100.3")]
        with pytest.raises(ConflictError, match="another overlayctl store"):
            attach._choose_and_claim(network, set(), "198.51.100.2", mine, [])
    finally:
        leases.unlock_and_remove(other, held)


def test_a_claim_whose_holder_is_gone_is_taken_over_and_released(store, tmp_path):
    network = _bridge_network()
    path = leases.claim_path(network.bridge, "198.51.100.2")
    assert leases.claim(path, str(tmp_path / "dead.lock"))  # its supervisor was killed: nobody holds it
    mine = str(tmp_path / "mine.lock")
    held = leases.take_lock(mine, block=True)
    claimed: list[str] = []
    assert attach._choose_and_claim(network, {"198.51.100.3"}, None, mine, claimed) == "198.51.100.2"
    # Another holder's release leaves it; ours removes it.
    leases.unclaim(path, str(tmp_path / "dead.lock"))
    assert os.path.exists(path)
    leases.unclaim(path, mine)
    assert not os.path.exists(os.path.dirname(path))
    leases.unlock_and_remove(mine, held)


def test_a_container_holds_a_lease_on_each_of_its_networks(store):
    from overlayctl.container.model import EndpointConfig

    user_network(store)
    c = container(store, "c1")
    endpoints = {"bridge": EndpointConfig(), "web": attach.endpoint_request("198.51.100.7", ["db", "sql"], None)}
    plan = attach.prepare(store, c, "h", endpoints)
    nets = NetworkStore(store.conn)
    assert [(lease.network, lease.address, lease.aliases) for lease in nets.leases(container_id=c.id)] == [
        ("bridge", "203.0.113.2", []),
        ("web", "198.51.100.7", ["db", "sql"]),
    ]
    assert [a.slot for a in plan.attachments] == [0, 1]
    with open(plan.mounts[0].source) as f:
        assert f.read().endswith("203.0.113.2\th c1\n198.51.100.7\th c1\n")
    # Leasing again on one network leaves the other alone; so does releasing one.
    nets.lease(nets.get("web"), c.id, lambda taken: "198.51.100.8", lambda a: "02:00:00:00:00:08")
    assert [lease.address for lease in nets.leases(container_id=c.id)] == ["203.0.113.2", "198.51.100.8"]
    assert [lease.network for lease in nets.release(c.id, "web")] == ["web"]
    assert [lease.network for lease in nets.leases(container_id=c.id)] == ["bridge"]
    plan.release()
    assert nets.leases() == []


def test_aliases_are_for_user_defined_networks_only(store):
    with pytest.raises(InvalidArgumentError, match="network-scoped alias is supported only"):
        attach.check_endpoint(store, "bridge", attach.endpoint_request(None, ["x"], None))
    with pytest.raises(InvalidArgumentError, match="network-scoped alias is supported only"):
        attach.check_endpoint(store, "host", attach.endpoint_request(None, ["x"], None))
    user_network(store)
    assert attach.check_endpoint(store, "web", attach.endpoint_request(None, ["x"], None)).name == "web"


def test_a_claim_file_held_for_good_is_taken(store, tmp_path):
    # As an older overlayctl's supervisor held its claims: the file itself, locked.
    network = _bridge_network()
    path = leases.claim_path(network.bridge, "198.51.100.2")
    held = leases.take_lock(path, block=True)
    try:
        assert not leases.claim(path, str(tmp_path / "mine.lock"))
        claimed: list[str] = []
        assert attach._choose_and_claim(network, set(), None, str(tmp_path / "mine.lock"), claimed) == "198.51.100.3"
        leases.unclaim(claimed[0], str(tmp_path / "mine.lock"))
    finally:
        leases.unlock_and_remove(path, held)

"""The store's side of size limits that needs no quota-enabled kernel: what
the config records, which layouts are made without CAP_SYS_RESOURCE, and a
create refused before anything is made. (The kernel's side:
tests/integration/test_quota.py.)"""

from __future__ import annotations

import os

import pytest

from overlayctl.container.model import ContainerConfig
from overlayctl.errors import StoreError
from overlayctl.paths import Paths
from overlayctl.runtime import mountplan, quota
from overlayctl.runtime.overlay import OverlayLayout
from overlayctl.store import Store
from overlayctl.store.containers import has_size_limit, recorded_size

IMAGE_ID = "sha256:" + "cd" * 32


def config(storage_opt: dict | None = None) -> ContainerConfig:
    hc: dict = {"NetworkMode": "none"}
    if storage_opt is not None:
        hc["StorageOpt"] = storage_opt
    return ContainerConfig.from_json({"Config": {"Cmd": ["true"]}, "HostConfig": hc})


@pytest.fixture
def store(tmp_path):
    s = Store(Paths(str(tmp_path / "root"), str(tmp_path / "run")))
    s.conn.execute("INSERT INTO images (id, config, created) VALUES (?, '{}', '')", (IMAGE_ID,))
    yield s
    s.close()


def test_recorded_size_is_the_text_as_given():
    assert recorded_size(config({"size": "10m"})) == "10m"
    assert recorded_size(config({"size": "1.5GiB"})) == "1.5GiB"
    assert recorded_size(config({})) is None
    assert recorded_size(config()) is None
    # Kept through a round trip of the stored document.
    again = ContainerConfig.from_json(config({"size": "10m"}).to_json())
    assert again.to_json()["HostConfig"]["StorageOpt"] == {"size": "10m"}


def test_size_zero_is_no_limit():
    for text in ("10m", "1", "0.5g", "1e3", "100 MiB"):
        assert has_size_limit(config({"size": text})), text
    for text in ("0", "0m", "0.0g", "0 MiB", "00"):
        assert not has_size_limit(config({"size": text})), text
    assert not has_size_limit(config())


def test_only_a_sized_container_gets_a_limited_layout():
    plain = OverlayLayout(("/l",), "/u", "/w")
    limited = OverlayLayout(("/l",), "/u", "/w", limited=True)
    assert not plain.limited and limited.limited
    assert plain != limited
    assert "limited=True" in repr(limited) and "limited" not in repr(plain)


def test_a_limited_overlay_is_made_without_cap_sys_resource(monkeypatch):
    """The mount of a limited layout happens inside without_effective
    ("sys_resource"); an ordinary one never touches capabilities."""
    events: list[str] = []

    class Recorder:
        def __init__(self, name: str) -> None:
            events.append(f"drop {name}")

        def __enter__(self) -> None:
            events.append("dropped")

        def __exit__(self, *exc: object) -> None:
            events.append("restored")

    from overlayctl.runtime import capabilities

    monkeypatch.setattr(capabilities, "without_effective", Recorder)
    monkeypatch.setattr(mountplan.OverlayMount, "_mount", lambda self, root: events.append("mount"))
    mountplan.OverlayMount(OverlayLayout(("/l",), "/u", "/w"), "/").execute("/target")
    assert events == ["mount"]
    events.clear()
    mountplan.OverlayMount(OverlayLayout(("/l",), "/u", "/w", limited=True), "/").execute("/target")
    assert events == ["drop sys_resource", "dropped", "mount", "restored"]


def test_create_without_a_size_is_unchanged(store):
    container = store.containers.create(IMAGE_ID, "bb:1", config(), "plain")
    directory = store.paths.container_dir(container.id)
    assert sorted(os.listdir(directory)) == ["upper"]  # work/ is made at start
    assert os.listdir(store.paths.tmp) == []


def test_create_with_a_size_refused_first_where_quotas_cannot(store):
    reason = quota.why_not(store.paths.root)
    if reason is None:
        pytest.skip("the test's filesystem enforces project quotas")
    with pytest.raises(StoreError) as caught:
        store.containers.create(IMAGE_ID, "bb:1", config({"size": "10m"}), "sized", storage_size=10 << 20)
    assert caught.value.message == f"--storage-opt size=10m: {reason}"
    assert os.listdir(store.paths.containers) == []
    assert os.listdir(store.paths.tmp) == []
    assert store.containers.ids() == set()


def _effective() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))


def test_without_effective_drops_the_capability_and_gives_it_back():
    """What the kernel records of the caller lacks the capability inside
    the block (CAP_NET_RAW here: this host's bounding set may lack
    CAP_SYS_RESOURCE), and has it again after; one it lacked stays out."""
    from overlayctl.runtime.capabilities import without_effective

    net_raw = 1 << 13
    if not _effective() & net_raw:
        pytest.skip("needs CAP_NET_RAW in the effective set")
    before = _effective()
    with without_effective("net_raw"):
        assert _effective() == before & ~net_raw
    assert _effective() == before
    with without_effective("net_raw"), without_effective("net_raw"):
        assert _effective() == before & ~net_raw
    assert _effective() == before

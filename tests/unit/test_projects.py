"""The store's side of size limits that needs no quota-enabled kernel: what
the config records, and a create refused before anything is made. (The kernel's side:
tests/integration/test_quota.py.)"""

from __future__ import annotations

import os

import pytest

from overlayctl.container.model import ContainerConfig
from overlayctl.errors import StoreError
from overlayctl.paths import Paths
from overlayctl.runtime import quota
from overlayctl.store import Store
from overlayctl.store.containers import recorded_size

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

"""--storage-opt and the store's storage.json (store/storageopts.py), the
model's HostConfig.StorageOpt, and the arithmetic of a size read from the
quota accounting (measure/usage.py), without root or quotas."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from overlayctl.container.model import ContainerConfig, HostConfig
from overlayctl.errors import InvalidArgumentError, KernelError, StoreError
from overlayctl.paths import Paths
from overlayctl.store.storageopts import parse_config, parse_storage_opts, read_config, resolve, size_of


@pytest.mark.parametrize(
    ("items", "recorded", "size"),
    [
        (["size=10G"], {"size": "10G"}, 10 << 30),
        (["size=512m"], {"size": "512m"}, 512 << 20),
        (["SIZE=1.5g"], {"size": "1.5g"}, int(1.5 * (1 << 30))),  # Docker's driver reads the key in any case
        (["size=4096"], {"size": "4096"}, 4096),
        (["size=0"], {"size": "0"}, 0),
        (["size=1g", "size=2g"], {"size": "2g"}, 2 << 30),  # the last wins, as in Docker's map
        ([], {}, None),
    ],
)
def test_storage_opt_is_recorded_as_given_and_read_as_docker_reads_sizes(
    items: list[str], recorded: dict[str, str], size: int | None
) -> None:
    opts = parse_storage_opts(items)
    assert opts == recorded
    assert size_of(opts) == size


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("size", 'invalid storage option "size": give KEY=VALUE, e.g. --storage-opt size=10G'),
        ("10G", 'invalid storage option "10G": give KEY=VALUE, e.g. --storage-opt size=10G'),
        ("foo=1", "Unknown option foo for --storage-opt: the only one is size (e.g. --storage-opt size=10G)"),
        # The daemon's name is not a container's option (Docker refuses it too).
        ("overlay2.size=1G", "Unknown option overlay2.size for --storage-opt: the only one is size"),
        ("=1G", "Unknown option  for --storage-opt"),
        ("size=", 'invalid argument "" for "--storage-opt size" flag: invalid size: \'\''),
        ("size=abc", 'invalid argument "abc" for "--storage-opt size" flag: invalid size: \'abc\''),
        ("size=-1", 'invalid argument "-1" for "--storage-opt size" flag: invalid size: \'-1\''),
        ("size=10Q", 'invalid argument "10Q" for "--storage-opt size" flag: invalid suffix: \'q\''),
    ],
)
def test_bad_storage_opts_are_one_line(item: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        parse_storage_opts(["size=1g", item])
    assert message in caught.value.message and "\n" not in caught.value.message


def _paths(tmp_path: Path) -> Paths:
    (tmp_path / "root").mkdir(exist_ok=True)
    return Paths(str(tmp_path / "root"), str(tmp_path / "run"))


def test_no_storage_json_is_no_default(tmp_path: Path) -> None:
    config = read_config(_paths(tmp_path))
    assert (config.size, config.size_text) == (0, None)
    assert config.path == str(tmp_path / "root" / "storage.json")


@pytest.mark.parametrize(
    ("content", "size"),
    [
        ({"storage-opts": ["size=10G"]}, 10 << 30),
        ({"storage-opts": ["overlay2.size=10G"]}, 10 << 30),  # Docker's daemon's name for it
        ({"storage-opts": ["Overlay2.Size=1m"]}, 1 << 20),
        ({"storage-opts": ["size=1G", "overlay2.size=2G"]}, 2 << 30),
        ({"storage-opts": ["size=0"]}, 0),
        ({"storage-opts": []}, 0),
        ({}, 0),
    ],
)
def test_storage_json_gives_the_default(tmp_path: Path, content: dict, size: int) -> None:
    paths = _paths(tmp_path)
    Path(paths.storage_config).write_text(json.dumps(content))
    assert read_config(paths).size == size


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'["size=1G"]', 'must be a JSON object such as {"storage-opts": ["size=10G"]}'),
        (b'{"storage-opt": ["size=1G"]}', 'unknown key "storage-opt": the only one is "storage-opts"'),
        (b'{"storage-opts": "size=1G"}', '"storage-opts" must be a list of strings such as "size=10G"'),
        (b'{"storage-opts": [10]}', '"storage-opts" must be a list of strings'),
        (b'{"storage-opts": ["quota=1G"]}', 'unknown storage option "quota=1G": the only one is size=SIZE'),
        (b'{"storage-opts": ["size"]}', 'unknown storage option "size"'),
        (b'{"storage-opts": ["size=big"]}', 'invalid size "big" in "size=big" (e.g. size=10G)'),
        (b'{"storage-opts": ["overlay2.size=-5"]}', 'invalid size "-5" in "overlay2.size=-5"'),
    ],
)
def test_bad_storage_json_is_one_line_naming_the_file(raw: bytes, why: str) -> None:
    with pytest.raises(StoreError) as caught:
        parse_config(raw, "/store/storage.json")
    message = caught.value.message
    assert message.startswith("/store/storage.json: ") and why in message and "\n" not in message


def test_an_unreadable_storage_json_names_it(tmp_path: Path) -> None:
    paths = _paths(tmp_path)
    os.mkdir(paths.storage_config)  # a directory where the file should be
    with pytest.raises(StoreError, match="cannot read the store's configuration .*storage.json"):
        read_config(paths)


def test_a_container_size_overrides_the_default_and_0_is_no_limit(tmp_path: Path) -> None:
    paths = _paths(tmp_path)
    assert resolve(paths, None) == (None, None)
    assert resolve(paths, {}) == (None, None)
    assert resolve(paths, {"size": "1g"}) == ({"size": "1g"}, 1 << 30)
    assert resolve(paths, {"size": "0"}) == ({"size": "0"}, None)
    Path(paths.storage_config).write_text('{"storage-opts": ["overlay2.size=10G"]}')
    # The default is recorded with the container: its limit is fixed at create.
    assert resolve(paths, None) == ({"size": "10G"}, 10 << 30)
    assert resolve(paths, {}) == ({"size": "10G"}, 10 << 30)
    assert resolve(paths, {"size": "1g"}) == ({"size": "1g"}, 1 << 30)
    assert resolve(paths, {"size": "0"}) == ({"size": "0"}, None)
    # Read at each create: an edit applies to the next one.
    Path(paths.storage_config).write_text('{"storage-opts": ["size=0"]}')
    assert resolve(paths, None) == (None, None)
    Path(paths.storage_config).write_text('{"storage-opts": ["size=nope"]}')
    with pytest.raises(StoreError):
        resolve(paths, {"size": "1g"})  # a bad file is refused even when overridden


def test_storage_opt_round_trips_in_the_model() -> None:
    host = HostConfig(storage_opt={"size": "10G"})
    doc = ContainerConfig(host=host).to_json()
    assert doc["HostConfig"]["StorageOpt"] == {"size": "10G"}
    assert list(doc["HostConfig"])[-1] == "StorageOpt"
    back = ContainerConfig.from_json(json.loads(json.dumps(doc)))
    assert back.host.storage_opt == {"size": "10G"} and back == ContainerConfig(host=host)
    assert back.to_json() == doc
    # Not given: not written, and an older document without it reads as None.
    assert "StorageOpt" not in ContainerConfig().to_json()["HostConfig"]
    assert ContainerConfig.from_json({"HostConfig": {"AutoRemove": False}}).host.storage_opt is None
    # Docker's null is kept as null.
    assert ContainerConfig.from_json({"HostConfig": {"StorageOpt": None}}).to_json() == {
        "HostConfig": {"StorageOpt": None}
    }


# --- measure/usage.py: the quota's figure less the work dir's -------------------


class _Container:
    def __init__(self, container_id: str) -> None:
        self.id = container_id


class _Store:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths


def _tree(tmp_path: Path, with_work: bool) -> tuple[_Store, _Container, int, int]:
    """A container directory with an upper dir holding a file and, when
    asked, a work dir as overlayfs leaves it; (store, container, du of
    upper, du of work)."""
    from tests.helpers import du_bytes

    paths = _paths(tmp_path)
    container = _Container("c" * 64)
    upper, work = Path(paths.upper(container.id)), Path(paths.work(container.id))
    upper.mkdir(parents=True)
    (upper / "data").write_bytes(os.urandom(20000))
    if with_work:
        (work / "work").mkdir(parents=True)
    return _Store(paths), container, du_bytes(upper), du_bytes(work) if with_work else 0


@pytest.mark.parametrize("with_work", [True, False])
def test_a_container_with_a_project_is_its_quota_less_its_work_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_work: bool
) -> None:
    from overlayctl.measure import usage
    from overlayctl.runtime import quota

    store, container, upper_bytes, work_bytes = _tree(tmp_path, with_work)
    asked = []
    monkeypatch.setattr(quota, "project_of", lambda path: 7)

    def charged(path: str, project: int) -> quota.ProjectUsage:
        asked.append((path, project))
        # What the kernel would charge project 7: both dirs, plus 1 MiB to
        # tell this figure from a walk's.
        return quota.ProjectUsage(upper_bytes + work_bytes + (1 << 20), 3, 0)

    monkeypatch.setattr(quota, "usage", charged)
    assert usage.container_size(store, container) == upper_bytes + (1 << 20)  # type: ignore[arg-type]
    assert asked == [(store.paths.upper(container.id), 7)]
    assert usage.container_sizes(store, [container]) == {container.id: upper_bytes + (1 << 20)}  # type: ignore[arg-type]


def test_without_a_project_or_an_answer_the_upper_dir_is_walked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from overlayctl.measure import usage
    from overlayctl.runtime import quota

    store, container, upper_bytes, _ = _tree(tmp_path, True)
    # This host's filesystem: whatever project_of says, the walk is du's figure.
    assert usage.container_size(store, container) == upper_bytes  # type: ignore[arg-type]

    def never(path: str, project: int) -> quota.ProjectUsage:
        raise AssertionError("no project: quotactl is not asked")

    monkeypatch.setattr(quota, "project_of", lambda path: 0)
    monkeypatch.setattr(quota, "usage", never)
    assert usage.container_size(store, container) == upper_bytes  # type: ignore[arg-type]

    def refused(path: str, project: int) -> quota.ProjectUsage:
        raise KernelError(f'cannot read the usage of project {project} on the filesystem of "{path}": No such process')

    monkeypatch.setattr(quota, "project_of", lambda path: 7)
    monkeypatch.setattr(quota, "usage", refused)
    assert usage.container_size(store, container) == upper_bytes  # type: ignore[arg-type]

    def no_ioctl(path: str) -> int:
        raise KernelError(f'cannot read the project ID of "{path}" (FS_IOC_FSGETXATTR): Inappropriate ioctl')

    monkeypatch.setattr(quota, "project_of", no_ioctl)
    assert usage.container_size(store, container) == upper_bytes  # type: ignore[arg-type]

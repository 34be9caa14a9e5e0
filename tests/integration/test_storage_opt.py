"""`--storage-opt size=` and the store's default (storage.json) from the
CLI, on a store whose filesystem has no project quotas (this host's: its
kernel has none): a size limit is refused in one line naming what is
missing, anything else bad is refused in one line, and nothing is left
behind. The limit itself is tested where quotas exist
(test_quota_sizes.py and the quota engineer's tests, in the VM)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from overlayctl.runtime import quota
from tests.conftest import CLI


def _no_quotas(cli: CLI) -> str:
    cli.ok("info")  # makes the store
    if quota.enforced(str(cli.root)):
        pytest.skip(f"the store's filesystem ({quota.filesystem_of(str(cli.root)).mount_point}) enforces quotas")
    return quota.filesystem_of(str(cli.root)).mount_point


def _one_line(result) -> str:  # type: ignore[no-untyped-def]
    err = result.stderr.decode()
    assert result.returncode == 125, (result.returncode, result.stdout, err)
    assert err.startswith("overlayctl: ") and err.count("\n") == 1, err
    return err.strip()


def _nothing_left(cli: CLI, kept: list[str] | None = None) -> None:
    kept = kept or []
    assert cli.ok("ps", "-a", "-q", "--no-trunc").split() == kept
    assert sorted(os.listdir(cli.root / "containers")) == sorted(kept)
    assert [n for n in os.listdir(cli.root / "tmp") if n.startswith("container-")] == []


def test_a_size_limit_without_project_quotas_is_one_line_and_leaves_nothing(cli: CLI, bb: str) -> None:
    mount_point = _no_quotas(cli)
    for argv in (
        ("create", "--storage-opt", "size=10m", "--name", "limited", "bb:1", "true"),
        ("run", "--rm", "--storage-opt", "size=10m", "bb:1", "true"),
        ("run", "-d", "--storage-opt", "SIZE=10m", "bb:1", "true"),
    ):
        line = _one_line(cli(*argv))
        # The option as given, and what the store's filesystem lacks and how to turn it on.
        assert "--storage-opt size=10m: " in line, line
        assert f"mounted at {mount_point}" in line and "prjquota" in line, line
        _nothing_left(cli)
    # The store's default is refused the same way, at every create.
    (cli.root / "storage.json").write_text(json.dumps({"storage-opts": ["overlay2.size=10G"]}))
    line = _one_line(cli("create", "bb:1", "true"))
    assert "--storage-opt size=10G: " in line and "prjquota" in line, line
    _nothing_left(cli)
    # size=0 is no limit: it overrides the default, needs no quotas, and is recorded as given.
    cid = cli.ok("create", "--storage-opt", "size=0", "bb:1", "true").strip()
    assert json.loads(cli.ok("inspect", "-f", "{{json .HostConfig.StorageOpt}}", cid)) == {"size": "0"}
    assert cli.ok("start", "-a", cid) == ""
    _nothing_left(cli, [cid])


@pytest.mark.parametrize(
    ("opt", "message"),
    [
        (
            "foo=1",
            "overlayctl: Unknown option foo for --storage-opt: the only one is size (e.g. --storage-opt size=10G)",
        ),
        ("size", 'overlayctl: invalid storage option "size": give KEY=VALUE, e.g. --storage-opt size=10G'),
        ("size=ten", 'overlayctl: invalid argument "ten" for "--storage-opt size" flag: invalid size: \'ten\''),
    ],
)
def test_a_bad_storage_opt_is_one_line_and_leaves_nothing(cli: CLI, bb: str, opt: str, message: str) -> None:
    for command in ("create", "run"):
        assert _one_line(cli(command, "--storage-opt", opt, "bb:1", "true")) == message
    _nothing_left(cli)


def test_a_bad_storage_json_names_the_file_and_leaves_nothing(cli: CLI, bb: str) -> None:
    cli.ok("info")
    config = cli.root / "storage.json"
    config.write_text('{"storage-opts": ["size=lots"]}')
    expected = f'overlayctl: {config}: invalid size "lots" in "size=lots" (e.g. size=10G)'
    assert _one_line(cli("create", "bb:1", "true")) == expected
    # Even a container that brings its own size: the file is broken for every create.
    assert _one_line(cli("run", "--rm", "--storage-opt", "size=0", "bb:1", "true")) == expected
    assert _one_line(cli("info")) == expected
    _nothing_left(cli)
    config.write_text("{}")
    assert cli.ok("run", "--rm", "bb:1", "echo", "fine") == "fine\n"


def test_info_shows_the_default_and_whether_quotas_are_enforced(cli: CLI, bb: str) -> None:
    _no_quotas(cli)
    info = json.loads(cli.ok("info", "--format", "json"))
    status = dict(info["DriverStatus"])
    assert status["Project Quotas"] == "false"
    assert status["Backing Filesystem"] == quota.filesystem_of(str(cli.root)).fstype
    assert status["Default Size Limit"] == ""
    assert " Default Size Limit: none\n" in cli.ok("info")
    Path(cli.root / "storage.json").write_text('{"storage-opts": ["size=20G"]}')
    assert dict(json.loads(cli.ok("info", "--format", "json"))["DriverStatus"])["Default Size Limit"] == "20G"
    assert " Default Size Limit: 20G\n" in cli.ok("info")

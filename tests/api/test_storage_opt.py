"""HostConfig.StorageOpt through the Engine API: the same check as the
CLI's --storage-opt (one path, engine.containers), with the same message,
from a raw request and from the docker CLI; /info's DriverStatus."""

from __future__ import annotations

import json

import pytest

from overlayctl.runtime import quota
from tests.api.conftest import Api


def _create(api: Api, bb: str, storage_opt: object) -> tuple[int, dict]:
    body = {"Image": bb, "Cmd": ["true"], "HostConfig": {"StorageOpt": storage_opt}}
    status, _, answer = api.request("POST", "/containers/create", body)
    return status, json.loads(answer)


def test_storage_opt_reaches_the_clis_check(api: Api, bb: str) -> None:
    if quota.enforced(str(api.cli.root)):
        pytest.skip("the store's filesystem enforces project quotas")
    cases = [
        ({"size": "10m"}, ["--storage-opt", "size=10m"], 500),  # dockerd's status for its driver's refusal
        ({"foo": "1"}, ["--storage-opt", "foo=1"], 400),
        ({"size": "ten"}, ["--storage-opt", "size=ten"], 400),
    ]
    for storage_opt, flags, expected in cases:
        status, answer = _create(api, bb, storage_opt)
        cli = api.cli("create", *flags, bb, "true")
        assert cli.returncode == 125
        assert status == expected, (storage_opt, status, answer)
        assert cli.stderr.decode() == f"overlayctl: {answer['message']}\n"
    assert "prjquota" in _create(api, bb, {"size": "10m"})[1]["message"]
    # The docker CLI sends --storage-opt as HostConfig.StorageOpt.
    failed = api.docker("create", "--storage-opt", "size=10m", bb, "true")
    assert failed.returncode != 0 and b"--storage-opt size=10m: " in failed.stderr, failed.stderr
    assert api.cli.ok("ps", "-a", "-q") == ""


def test_storage_opt_is_recorded_and_inspected_as_docker_shows_it(api: Api, bb: str) -> None:
    status, answer = _create(api, bb, {"size": "0"})
    assert status == 201, answer
    shown = api.json("GET", f"/containers/{answer['Id']}/json", expect=200)
    assert shown["HostConfig"]["StorageOpt"] == {"size": "0"}
    # Docker's zero value is "not given".
    status, answer = _create(api, bb, {})
    assert status == 201, answer
    assert "StorageOpt" not in api.json("GET", f"/containers/{answer['Id']}/json", expect=200)["HostConfig"]
    status, answer = _create(api, bb, ["size=1g"])
    assert (status, answer) == (400, {"message": "StorageOpt must be a JSON object"})


def test_info_has_the_default_size_limit(api: Api, bb: str) -> None:
    (api.cli.root / "storage.json").write_text('{"storage-opts": ["size=20G"]}')
    info = api.json("GET", "/info", expect=200)
    status = dict(info["DriverStatus"])
    assert status["Default Size Limit"] == "20G"
    assert status["Project Quotas"] in ("true", "false")

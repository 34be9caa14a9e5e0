"""auth.json: where it is, and reading and writing it as podman and skopeo do."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from overlayctl.errors import InvalidArgumentError
from overlayctl.oci import auth


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_path_precedence(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert auth.auth_file_path() == f"/run/containers/{os.getuid()}/auth.json"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert auth.auth_file_path() == "/run/user/1000/containers/auth.json"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", "/etc/x.json")
    assert auth.auth_file_path() == "/etc/x.json"
    assert auth.auth_file_path("/given.json") == "/given.json"


def test_store_get_remove_keeps_the_rest(env: Path) -> None:
    path = env / "dir" / "auth.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"auths": {"other:5000": {"auth": "eDp5"}}, "credHelpers": {"h": "pass"}}))
    assert auth.store_credentials("reg:5000", "alice", "pa:ss", str(path)) == str(path)
    data = json.loads(path.read_text())
    assert base64.b64decode(data["auths"]["reg:5000"]["auth"]) == b"alice:pa:ss"
    assert data["auths"]["other:5000"] == {"auth": "eDp5"} and data["credHelpers"] == {"h": "pass"}
    assert path.stat().st_mode & 0o777 == 0o600
    assert auth.get_credentials("reg:5000", str(path)) == ("alice", "pa:ss")
    assert auth.get_credentials("other:5000", str(path)) == ("x", "y")
    assert auth.get_credentials("nowhere", str(path)) is None
    assert auth.remove_credentials("reg:5000", str(path)) is True
    assert auth.remove_credentials("reg:5000", str(path)) is False
    assert auth.get_credentials("reg:5000", str(path)) is None
    auth.remove_all_credentials(str(path))
    assert json.loads(path.read_text())["auths"] == {}
    assert sorted(os.listdir(path.parent)) == ["auth.json"]  # no temp file left


def test_missing_file_means_no_credentials(env: Path) -> None:
    assert auth.get_credentials("reg", str(env / "none.json")) is None
    assert auth.remove_credentials("reg", str(env / "none.json")) is False


def test_docker_hub_aliases_and_docker_config_fallback(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(env / "auth.json"))
    docker = env / "home" / ".docker"
    docker.mkdir(parents=True)
    token = base64.b64encode(b"hub:pw").decode()
    (docker / "config.json").write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": token}}}))
    assert auth.get_credentials("docker.io") == ("hub", "pw")
    # The file we write wins over Docker's.
    auth.store_credentials("docker.io", "mine", "x")
    assert auth.get_credentials("docker.io") == ("mine", "x")


@pytest.mark.parametrize("content", ["not json", "[1, 2]", json.dumps({"auths": {"r": {"auth": "bm9jb2xvbg=="}}})])
def test_malformed_files_are_clear_errors(env: Path, content: str) -> None:
    path = env / "auth.json"
    path.write_text(content)
    with pytest.raises(InvalidArgumentError, match="credentials file|auth"):
        auth.get_credentials("r", str(path))

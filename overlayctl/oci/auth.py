"""Registry credentials in the auth.json file podman, skopeo and buildah share.

The file is `{"auths": {"<registry>": {"auth": base64("user:password")}}}`.
Its place, as containers/image decides it: --authfile, else
$REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json, else
/run/containers/<uid>/auth.json (root: /run/containers/0/auth.json). Docker's
~/.docker/config.json (same "auths" layout) is read as a fallback, never
written, as podman does.
"""

from __future__ import annotations

import base64
import json
import os

from overlayctl.errors import InvalidArgumentError

DOCKER_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/")


def auth_file_path(authfile: str | None = None) -> str:
    """The auth.json to read and write, by the precedence containers/image uses."""
    if authfile:
        return authfile
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        return env
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "containers", "auth.json")
    return f"/run/containers/{os.getuid()}/auth.json"


def _keys_for(registry: str) -> tuple[str, ...]:
    # Docker Hub appears under several names in files written by different tools.
    return DOCKER_HUB_KEYS if registry in DOCKER_HUB_KEYS else (registry,)


def _read(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InvalidArgumentError(f"cannot read credentials file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"cannot read credentials file {path}: not a JSON object")
    return data


def decode_auth(value: str) -> tuple[str, str]:
    """("user", "password") from the base64 "user:password" of an auth entry."""
    try:
        user, sep, password = base64.b64decode(value).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        sep = ""
    if not sep:
        raise InvalidArgumentError('malformed "auth" entry in the credentials file (want base64 of user:password)')
    return user, password


def get_credentials(registry: str, authfile: str | None = None) -> tuple[str, str] | None:
    """The stored (user, password) for a registry host[:port], or None."""
    paths = [auth_file_path(authfile)]
    if not authfile:
        paths.append(os.path.join(os.path.expanduser("~"), ".docker", "config.json"))
    for path in paths:
        auths = _read(path).get("auths") or {}
        for key in _keys_for(registry):
            entry = auths.get(key)
            if isinstance(entry, dict) and entry.get("auth"):
                return decode_auth(entry["auth"])
    return None


def _write(path: str, data: dict) -> None:
    # Written to a temp file and renamed, 0600: the file holds passwords.
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def store_credentials(registry: str, user: str, password: str, authfile: str | None = None) -> str:
    """Record credentials for a registry; returns the file written. Other
    entries and keys of the file (credHelpers...) are kept as they were."""
    path = auth_file_path(authfile)
    data = _read(path)
    auths = data.setdefault("auths", {})
    auths[registry] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode("ascii")}
    _write(path, data)
    return path


def remove_credentials(registry: str, authfile: str | None = None) -> bool:
    """Forget a registry's credentials; False when none were stored."""
    path = auth_file_path(authfile)
    data = _read(path)
    auths = data.get("auths") or {}
    found = [key for key in _keys_for(registry) if key in auths]
    if not found:
        return False
    for key in found:
        del auths[key]
    _write(path, data)
    return True


def remove_all_credentials(authfile: str | None = None) -> None:
    """`logout --all`: empty the auths of the file."""
    path = auth_file_path(authfile)
    data = _read(path)
    if data.get("auths"):
        data["auths"] = {}
        _write(path, data)

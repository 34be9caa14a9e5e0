"""`RUN --mount=...` and `build --secret ...`, read as BuildKit's Dockerfile
frontend (1.x) reads them, into small typed objects. Pure: nothing here
touches the disk.

A mount option string is CSV (`type=cache,target=/root/.cache,id=pip`):
keys may repeat (the last wins, as BuildKit), boolean keys may stand
alone (`ro`, `rw`, `required`), and an unknown key is an error. Defaults
follow BuildKit: the type is `bind`, bind mounts are read-only, cache and
tmpfs mounts writable, a secret lands at /run/secrets/<id> with mode 0400,
and a cache is identified by its target unless given an `id`.
"""

from __future__ import annotations

import csv
import posixpath
from collections.abc import Callable

from overlayctl.errors import InvalidArgumentError
from overlayctl.util.sizes import parse_size

MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
SHARING_MODES = ("shared", "private", "locked")
SECRETS_DIR = "/run/secrets"

_BOOLEANS = {"readonly": True, "ro": True, "readwrite": False, "rw": False}
_TRUE = ("", "1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")
# Which keys each type takes (`type` and the readonly spellings are everyone's).
_KEYS = {
    "bind": frozenset({"target", "source", "from"}),
    "cache": frozenset({"target", "source", "from", "id", "sharing", "mode", "uid", "gid"}),
    "tmpfs": frozenset({"target", "size"}),
    "secret": frozenset({"target", "id", "required", "mode", "uid", "gid", "env"}),
    "ssh": frozenset({"target", "id", "required", "mode", "uid", "gid"}),
}
_ALIASES = {"dst": "target", "destination": "target", "src": "source"}


class RunMount:
    """One `--mount` of a RUN step, with BuildKit's defaults filled in.

    `target` is absolute (a relative one is joined to the step's WORKDIR by
    `parse_mount`). `readonly` is None only for a secret, which is always
    read-only. `id` is the cache's or the secret's name.
    """

    __slots__ = (
        "type",
        "target",
        "source",
        "from_",
        "id",
        "sharing",
        "mode",
        "uid",
        "gid",
        "readonly",
        "required",
        "size",
        "env",
    )

    def __init__(
        self,
        type: str,
        target: str = "",
        source: str = "",
        from_: str = "",
        id: str = "",
        sharing: str = "shared",
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        readonly: bool = False,
        required: bool = False,
        size: int = 0,
        env: str = "",
    ) -> None:
        self.type = type
        self.target = target
        self.source = source
        self.from_ = from_
        self.id = id
        self.sharing = sharing
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.readonly = readonly
        self.required = required
        self.size = size
        self.env = env

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"RunMount({fields})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunMount) and all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def cache_key(self) -> str:
        """The mount as the step's cache key sees it: its specification
        only, never a secret's value nor a cache directory's content (the
        content of a bind's source is added by the builder)."""
        parts = [f"type={self.type}", f"target={self.target}"]
        for name in ("source", "from_", "id", "sharing", "env"):
            value = getattr(self, name)
            if value and not (name == "sharing" and self.type != "cache"):
                parts.append(f"{name.rstrip('_')}={value}")
        for name in ("mode", "uid", "gid"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value:o}" if name == "mode" else f"{name}={value}")
        if self.size:
            parts.append(f"size={self.size}")
        parts.append("ro" if self.readonly else "rw")
        if self.required:
            parts.append("required")
        return ",".join(parts)


def parse_mount(text: str, workdir: str = "/", expand: Callable[[str], str] | None = None) -> RunMount:
    """One `--mount` value; InvalidArgumentError (one line) when it is wrong.
    `expand` does the build's variable expansion on each value, as BuildKit
    expands them after splitting the fields."""
    fields = _split_csv(text, "--mount")
    values: dict[str, str] = {}
    bools: dict[str, bool] = {}
    for field in fields:
        key, eq, value = field.partition("=")
        key = key.strip().lower()
        key = _ALIASES.get(key, key)
        if key in _BOOLEANS:
            flag = _bool(value if eq else "", field)
            bools["readonly"] = flag if _BOOLEANS[key] else not flag
            continue
        if key == "required":
            bools["required"] = _bool(value if eq else "", field)
            continue
        if not eq:
            raise InvalidArgumentError(f"--mount: unexpected key '{key}' in '{field}'")
        if key != "type" and key not in _KEYS["cache"] | _KEYS["tmpfs"] | _KEYS["secret"]:
            raise InvalidArgumentError(f"--mount: unexpected key '{key}' in '{field}'")
        values[key] = expand(value) if expand is not None else value
    kind = values.pop("type", "bind").lower()
    if kind not in MOUNT_TYPES:
        raise InvalidArgumentError(f'--mount: unsupported mount type "{kind}": use one of {", ".join(MOUNT_TYPES)}')
    for key in values:
        if key not in _KEYS[kind]:
            raise InvalidArgumentError(f"--mount: {key} is not an option of type={kind} mounts")
    if "required" in bools and kind not in ("secret", "ssh"):
        raise InvalidArgumentError(f"--mount: required is not an option of type={kind} mounts")
    mount = RunMount(kind)
    mount.source = values.get("source", "")
    mount.from_ = values.get("from", "")
    mount.id = values.get("id", "")
    mount.env = values.get("env", "")
    mount.required = bools.get("required", False)
    for name in ("mode", "uid", "gid"):
        if name in values:
            setattr(mount, name, _number(values[name], name, 8 if name == "mode" else 10))
    target = values.get("target", "")
    if kind == "secret":
        if not mount.id and target:
            mount.id = posixpath.basename(target.rstrip("/"))
        if not mount.id:
            raise InvalidArgumentError("--mount: a secret mount needs id= (or a target to name it)")
        if not target and not mount.env:
            target = posixpath.join(SECRETS_DIR, mount.id)
        if mount.mode is None:
            mount.mode = 0o400
        mount.readonly = True  # whatever ro/rw say, as BuildKit
    elif not target and kind != "ssh":
        raise InvalidArgumentError(f"--mount: type={kind} needs a target (target=/path)")
    if target:
        mount.target = posixpath.normpath(posixpath.join(workdir or "/", target))
        if mount.target == "/":
            raise InvalidArgumentError("--mount: cannot mount over / (the step's root)")
    if kind == "bind":
        mount.readonly = bools.get("readonly", True)
    elif kind == "cache":
        mount.readonly = bools.get("readonly", False)
        mount.sharing = values.get("sharing", "shared").lower()
        if mount.sharing not in SHARING_MODES:
            raise InvalidArgumentError(
                f'--mount: unsupported sharing value "{values["sharing"]}": use one of {", ".join(SHARING_MODES)}'
            )
        if not mount.id:
            mount.id = mount.target
    elif kind == "tmpfs":
        mount.readonly = bools.get("readonly", False)
        if "size" in values:
            mount.size = parse_size(values["size"], "--mount size")
    if kind != "cache":
        mount.sharing = "shared"
    if mount.source and kind not in ("bind", "cache"):
        raise InvalidArgumentError(f"--mount: source is not an option of type={kind} mounts")
    if mount.source:
        normal = posixpath.normpath("/" + mount.source)
        mount.source = normal.lstrip("/") or "."
    return mount


class SecretSource:
    """One `build --secret`: where the value of secret `id` comes from,
    a file (`src`) or a variable of the build's own environment (`env`)."""

    __slots__ = ("id", "src", "env")

    def __init__(self, id: str, src: str = "", env: str = "") -> None:
        self.id = id
        self.src = src
        self.env = env

    def __repr__(self) -> str:
        return f"SecretSource(id={self.id!r}, src={self.src!r}, env={self.env!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretSource) and (self.id, self.src, self.env) == (other.id, other.src, other.env)


def parse_secret(text: str, environ: dict[str, str] | None = None) -> SecretSource:
    """One `--secret` value, as buildx reads it: `id=ID,src=PATH` (also
    `source=`), `id=ID,env=VAR`, `type=file|env`; `id=ID` alone reads the
    variable ID when it is set, else the file ID."""
    import os

    fields = _split_csv(text, "--secret")
    values: dict[str, str] = {}
    for field in fields:
        key, eq, value = field.partition("=")
        key = key.strip().lower()
        if not eq or key not in ("id", "src", "source", "env", "type"):
            raise InvalidArgumentError(f'invalid --secret "{text}": use id=ID,src=PATH or id=ID,env=VARIABLE')
        values["src" if key == "source" else key] = value
    kind = values.get("type", "")
    if kind not in ("", "file", "env"):
        raise InvalidArgumentError(f'invalid --secret "{text}": type is file or env, not "{kind}"')
    secret_id = values.get("id", "")
    src, env = values.get("src", ""), values.get("env", "")
    if kind == "env" and not env:
        env, src = src or secret_id, ""
    if not secret_id:
        secret_id = env if env else os.path.basename(src)
    if not secret_id:
        raise InvalidArgumentError(f'invalid --secret "{text}": it needs an id (id=ID)')
    if src and env:
        raise InvalidArgumentError(f'invalid --secret "{text}": give src= or env=, not both')
    if not src and not env:
        source = os.environ if environ is None else environ
        if kind != "file" and secret_id in source:
            env = secret_id
        else:
            src = secret_id
    return SecretSource(secret_id, src, env)


def _split_csv(text: str, what: str) -> list[str]:
    try:
        rows = list(csv.reader([text], skipinitialspace=False))
    except csv.Error as exc:
        raise InvalidArgumentError(f'{what}: cannot read "{text}": {exc}') from None
    fields = [f for f in (rows[0] if rows else []) if f.strip()]
    if not fields:
        raise InvalidArgumentError(f"{what}: empty value")
    return fields


def _bool(value: str, field: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidArgumentError(f'--mount: invalid value for {field.partition("=")[0]}: "{value}" (true or false)')


def _number(text: str, name: str, base: int) -> int:
    try:
        value = int(text, base)
    except ValueError:
        kind = "an octal mode, e.g. 0755" if base == 8 else "a number"
        raise InvalidArgumentError(f'--mount: {name} takes {kind}, not "{text}"') from None
    if value < 0 or (name == "mode" and value > 0o7777):
        raise InvalidArgumentError(f'--mount: {name} out of range: "{text}"')
    return value

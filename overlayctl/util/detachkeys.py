"""Detach keys: the key sequence that leaves a terminal attached to a
container (`run -it`, `start -ai`, `attach`, `exec -it`) without stopping
it, in Docker's syntax, and the filter that watches typed input for it.

Docker's syntax: keys separated by commas, each one character (`a`) or
`ctrl-<value>` with value one of a-z, @, [, \\, ], ^, _ (the C0 control
codes), or `DEL`. The default is ctrl-p,ctrl-q. Without --detach-keys, the
"detachKeys" of Docker's client config ($DOCKER_CONFIG/config.json, else
~/.docker/config.json) applies, as with the docker CLI.

The detached monitor never imports this; the attach client and the exec
relay do.
"""

from __future__ import annotations

import os

from overlayctl.errors import InvalidArgumentError

DEFAULT = b"\x10\x11"  # ctrl-p ctrl-q
MESSAGE = "read escape sequence"  # what Docker prints on a detach

# ctrl-@ is 0, ctrl-a 1 ... ctrl-z 26, then ctrl-[ ctrl-\ ctrl-] ctrl-^ ctrl-_.
_CONTROL = "@abcdefghijklmnopqrstuvwxyz[\\]^_"


def parse(keys: str) -> bytes:
    """The bytes of a --detach-keys value; InvalidArgumentError (Docker's
    wording) for a key it does not know."""
    codes = bytearray()
    for key in keys.split(","):
        if len(key) == 1 and key.isascii():
            codes.append(ord(key))
        elif key.startswith("ctrl-") and len(key) == 6 and key[5] in _CONTROL:
            codes.append(_CONTROL.index(key[5]))
        elif key == "DEL":
            codes.append(127)
        else:
            raise InvalidArgumentError(f"invalid detach keys ({keys}): Unknown character: '{key}'")
    return bytes(codes)


def config_path() -> str:
    """Docker's client config file, where the docker CLI reads it."""
    directory = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def configured() -> str:
    """The "detachKeys" of Docker's client config, or "" (no file, no key,
    or a file that is not a JSON object: the docker CLI warns and goes on)."""
    import json

    try:
        with open(config_path(), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return ""
    value = data.get("detachKeys") if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


def resolve(option: str | None) -> bytes:
    """The detach keys in force: --detach-keys, else the config file's,
    else ctrl-p ctrl-q. A bad value in the config file is an error too,
    naming the file."""
    if option:
        return parse(option)
    value = configured()
    if not value:
        return DEFAULT
    try:
        return parse(value)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{exc.message} (detachKeys in {config_path()})") from None


class EscapeFilter:
    """Watch input for the detach keys, across reads.

    Bytes that may begin the sequence are held back; if the next byte does
    not continue it, they go on to the container unchanged with what
    follows (a ctrl-p then x reaches the program as ctrl-p x). The whole
    sequence reaches nobody."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = 0  # how many of keys[:held] were typed and held back

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(the bytes to pass on, whether the sequence is complete). Input
        after a complete sequence is dropped: the caller detaches."""
        if not self.keys:
            return data, False
        out = bytearray()
        for byte in data:
            if byte == self.keys[self.held]:
                self.held += 1
                if self.held == len(self.keys):
                    self.held = 0
                    return bytes(out), True
                continue
            out += self.keys[: self.held]
            # The byte that broke the sequence may begin it again.
            self.held = 0
            if byte == self.keys[0]:
                self.held = 1
            else:
                out.append(byte)
        return bytes(out), False

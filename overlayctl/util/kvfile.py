"""`--env-file` and `--label-file`: Docker's KEY=VALUE files.

The format is the docker CLI's (opts/file.go), so that a file written for
`docker run` means the same here:

- one entry a line; a UTF-8 byte-order mark at the start is dropped;
- leading whitespace is trimmed; blank lines and lines starting with `#`
  are skipped (a `#` later in a line is part of the value);
- `KEY=VALUE`: the value is taken as is, quotes and trailing spaces
  included (no shell rules: `A="x"` sets A to `"x"` with its quotes);
- `KEY` alone: in an env file, the caller's value of KEY, and nothing
  when the caller has none; in a label file, a label with an empty value;
- a key with whitespace in it, or no key, is an error naming the line.
"""

from __future__ import annotations

import os

from overlayctl.errors import InvalidArgumentError

TYPE_CHECKING = False
if TYPE_CHECKING:
    # Not at run time: collections.abc is not on `run`'s import path.
    from collections.abc import Callable, Iterable, Mapping

_BOM = b"\xef\xbb\xbf"
_BLANKS = " \t"


def parse_kv_lines(
    data: bytes, source: str, lookup: Callable[[str], str | None] | None = None
) -> list[tuple[str, str | None]]:
    """(key, value) for each entry of a file's bytes; value None for a bare
    KEY that `lookup` does not resolve (or when there is no lookup)."""
    entries: list[tuple[str, str | None]] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if number == 1:
            raw = raw.removeprefix(_BOM)
        raw = raw.removesuffix(b"\r")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgumentError(f"env file {source} contains invalid utf8 bytes at line {number}") from None
        line = text.lstrip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        key = key.lstrip(_BLANKS)
        if any(c in _BLANKS for c in key):
            raise InvalidArgumentError(f"poorly formatted environment: variable '{key}' contains whitespaces")
        if not key:
            raise InvalidArgumentError(f"poorly formatted environment: no variable name on line '{line}'")
        if eq:
            entries.append((key, value))
        else:
            key = line.strip()
            entries.append((key, lookup(key) if lookup is not None else None))
    return entries


def read_kv_file(path: str, lookup: Callable[[str], str | None] | None = None) -> list[tuple[str, str | None]]:
    """parse_kv_lines of the file at `path`; a file that cannot be read is
    an error naming it, as Docker's (`open PATH: no such file or directory`)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise InvalidArgumentError(f"open {path}: {reason}") from None
    return parse_kv_lines(data, path, lookup)


def env_from_files(paths: Iterable[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """The KEY=VALUE entries of `--env-file` files, in order; a bare KEY
    takes the caller's value, and is left out when the caller has none."""
    source = os.environ if environ is None else environ
    entries: list[str] = []
    for path in paths:
        for key, value in read_kv_file(path, source.get):
            if value is not None:
                entries.append(f"{key}={value}")
    return entries


def labels_from(files: Iterable[str], items: Iterable[str]) -> dict[str, str]:
    """Labels from `--label-file` files, then `-l/--label KEY[=VALUE]`
    items over them (later wins), as Docker merges them."""
    labels: dict[str, str] = {}
    for path in files:
        for key, value in read_kv_file(path):
            labels[key] = value or ""
    for item in items:
        key, _, value = item.partition("=")
        key = key.strip()
        if not key:
            raise InvalidArgumentError(f"invalid label '{item}': empty name")
        if any(c in _BLANKS for c in key):
            raise InvalidArgumentError(f"invalid label '{item}': label must not contain whitespace")
        labels[key] = value
    return labels

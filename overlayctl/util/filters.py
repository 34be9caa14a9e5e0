"""Docker's `--filter KEY=VALUE` arguments, and the matching rules they use.

Pure code: what each object (container, image, volume, network) offers to
match is the engine's (overlayctl.engine.filters); here are the parsing and
the rules every command and the Engine API share:

- `--filter` is repeatable. Values of one key are alternatives (ORed), keys
  are all required (ANDed); `label` is the exception, every label value
  must match (Docker's MatchKVList).
- A key is lowercased and trimmed, the value trimmed (filters.ParseFlag).
- An unknown key is `invalid filter 'KEY'`, a bad value `invalid filter
  'KEY=VALUE'`: both exit 125 before anything is listed or removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from overlayctl.errors import InvalidArgumentError


class Filters:
    """Parsed filters: each key with its values, in the order given."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, list[str]] | None = None) -> None:
        self.fields: dict[str, list[str]] = fields or {}

    def __contains__(self, key: str) -> bool:
        return key in self.fields

    def __bool__(self) -> bool:
        return bool(self.fields)

    def __repr__(self) -> str:
        return f"Filters({self.fields!r})"

    def values(self, key: str) -> list[str]:
        """The values given for `key` ([] when it was not given)."""
        return list(self.fields.get(key, []))

    def exact(self, key: str, source: str) -> bool:
        """True when `key` was not given, or one of its values is `source`."""
        wanted = self.fields.get(key)
        return not wanted or source in wanted

    def match(self, key: str, *sources: str) -> bool:
        """Docker's Match: True when `key` was not given, or one of its values
        equals one of `sources` or is a regular expression found in one
        (a value that is not a valid expression only matches exactly)."""
        wanted = self.fields.get(key)
        if not wanted:
            return True
        for value in wanted:
            for source in sources:
                if value == source or _search(value, source):
                    return True
        return False

    def labels(self, labels: Mapping[str, str], key: str = "label") -> bool:
        """Docker's MatchKVList: every value of `key` (KEY or KEY=VALUE) is
        among `labels`; True when `key` was not given."""
        wanted = self.fields.get(key)
        if not wanted:
            return True
        for value in wanted:
            name, has_value, text = value.partition("=")
            if name not in labels or (has_value and labels[name] != text):
                return False
        return True

    def prune_labels(self, labels: Mapping[str, str]) -> bool:
        """The label rule of the prune commands: `label` as labels() and,
        when `label!` is given, not every one of its values present."""
        if not self.labels(labels):
            return False
        return "label!" not in self.fields or not self.labels(labels, "label!")

    def boolean(self, key: str) -> bool | None:
        """A true/false filter (dangling): None when not given; its one
        value (true, 1, false, 0) otherwise."""
        wanted = self.fields.get(key)
        if not wanted:
            return None
        truth = {v.lower() in ("true", "1") for v in wanted if v.lower() in ("true", "1", "false", "0")}
        bad = [v for v in wanted if v.lower() not in ("true", "1", "false", "0")]
        if bad or len(truth) != 1:
            raise invalid_filter(key, bad[0] if bad else wanted[0])
        return truth.pop()


def invalid_filter(key: str, value: str = "") -> InvalidArgumentError:
    """Docker's error for an unknown key or a bad value."""
    return InvalidArgumentError(f"invalid filter '{key}={value}'" if value else f"invalid filter '{key}'")


def parse_filters(items: Iterable[str], accepted: Iterable[str]) -> Filters:
    """`--filter` arguments as Filters, each key checked against `accepted`."""
    allowed = set(accepted)
    fields: dict[str, list[str]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise InvalidArgumentError(f"bad format of filter (expected name=value): {item!r}")
        key, value = key.strip().lower(), value.strip()
        if key not in allowed:
            raise invalid_filter(key)
        fields.setdefault(key, [])
        if value not in fields[key]:
            fields[key].append(value)
    return Filters(fields)


def filter_items(document: Mapping[str, Any]) -> list[str]:
    """The Engine API's `filters` query parameter (JSON: each key with a
    list of values, or, as newer clients send it, an object whose keys are
    the values) as the `KEY=VALUE` strings the engine takes."""
    items = []
    for key, values in document.items():
        if isinstance(values, Mapping):
            values = [v for v, on in values.items() if on]
        elif isinstance(values, str) or not isinstance(values, Iterable):
            raise InvalidArgumentError(f"invalid filter '{key}': the values must be a list or an object")
        items += [f"{key}={value}" for value in values]
    return items


_COMPILED: dict[str, re.Pattern[str] | None] = {}


def _search(pattern: str, source: str) -> bool:
    if pattern not in _COMPILED:
        try:
            _COMPILED[pattern] = re.compile(pattern)
        except re.error:
            _COMPILED[pattern] = None
    compiled = _COMPILED[pattern]
    return compiled is not None and compiled.search(source) is not None


def glob_match(pattern: str, name: str) -> bool:
    """Go's path.Match, which `reference=` uses: `*` and `?` never cross a
    `/`, `[...]` is a class (`[^...]` or `[!...]` negated), `\\` escapes."""
    return re.fullmatch(_glob_regex(pattern), name) is not None


def _glob_regex(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                raise InvalidArgumentError(f"invalid filter 'reference={pattern}': syntax error in pattern")
            body = pattern[i + 1 : end]
            negate = body[:1] in ("^", "!")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def reference_match(pattern: str, familiar: str) -> bool:
    """`reference=PATTERN` against one image name (`busybox:1`, `acme/x:2`):
    the pattern matches the whole name with its tag, or the name alone."""
    if glob_match(pattern, familiar):
        return True
    name = familiar.rpartition(":")[0] if ":" in familiar.rpartition("/")[2] else familiar
    return name != familiar and glob_match(pattern, name)


def port_filter(key: str, value: str) -> set[str]:
    """`publish=`/`expose=` values as Docker reads them: PORT[/PROTO] or
    START-END[/PROTO] (tcp by default), each port as "80/tcp"."""
    if ":" in value:
        raise InvalidArgumentError(f"filter for '{key}' should not contain ':': {value}")
    port, _, proto = value.partition("/")
    proto = proto or "tcp"
    start, dash, end = port.partition("-")
    if not start.isdigit() or (dash and not end.isdigit()):
        raise InvalidArgumentError(f"error while looking up for {key} {value}: invalid port range")
    first, last = int(start), int(end) if dash else int(start)
    if not (0 < first <= last <= 65535):
        raise InvalidArgumentError(f"error while looking up for {key} {value}: invalid port range")
    return {f"{p}/{proto}" for p in range(first, last + 1)}


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_until(text: str, now: float) -> float:
    """A time as `until=`, `since=` of events and the like read it: a
    duration before now (10m, 1h30m), seconds since the epoch, an RFC 3339
    time or a date (UTC)."""
    import calendar
    import time

    value = text.strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", value)
    if parts and "".join(n + u for n, u in parts) == value:
        return now - sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    offset = 0
    zone = re.search(r"([+-])(\d\d):(\d\d)$", value)
    if zone and "T" in value:
        sign = 1 if zone.group(1) == "+" else -1
        offset = sign * (int(zone.group(2)) * 3600 + int(zone.group(3)) * 60)
        value = value[: zone.start()]
    for layout in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        whole = value.rstrip("Z").partition(".")[0]
        try:
            return float(calendar.timegm(time.strptime(whole, layout))) - offset
        except ValueError:
            continue
    raise InvalidArgumentError(f'failed to parse value as time or duration: "{text}"')

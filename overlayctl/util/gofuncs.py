"""The values half of overlayctl.util.gotemplate: how Go prints, compares
and tests values, and the template functions (Go's builtins and Docker's
json, join, split, lower, upper, title, truncate, pad), each checking its
arguments as Go's reflection does and failing with Go's words.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from overlayctl.util import jsonio
from overlayctl.util.goparse import go_quote


class _Missing:
    """Go's invalid reflect.Value: a map key that is not there."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()


class FuncError(Exception):
    """An error inside a function, worded by the function; the evaluator
    adds where it happened."""


class GoMap(Mapping[str, Any]):
    """A JSON object that is a Go map in Docker's types (Labels, Options,
    NetworkSettings.Networks, ...), not a struct: a key that is not there
    is Go's zero value (``<no value>``; ``""`` through ``index`` when the
    values are strings), never an error."""

    GO_TYPE = "map[string]interface {}"

    def __init__(self, items: Mapping[str, Any]) -> None:
        self._items = items

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Any:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def zero(self) -> Any:
        """The zero value of the map's element type."""
        values = list(self._items.values())
        return "" if all(isinstance(v, str) for v in values) else None


# ---------------------------------------------------------------- values


def go_type(value: Any) -> str:
    """The Go type Docker's data would have for ``value``, as errors name it."""
    name = getattr(value, "GO_TYPE", None)
    if isinstance(name, str):
        return name
    if value is None or value is MISSING:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "[]string" if value and all(isinstance(v, str) for v in value) else "[]interface {}"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    return type(value).__name__


def _format_float(value: float) -> str:
    """Go's %v of a float64: the shortest repr, %e past 1e21 or under 1e-4."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(value)
    if "e" in text or "E" in text:
        mantissa, exp = text.split("e")
        sign = "-" if exp.startswith("-") else "+"
        digits = exp.lstrip("+-").rjust(2, "0")
        return f"{mantissa.removesuffix('.0')}e{sign}{digits}"
    if abs(value) >= 1e21:
        return _format_float_exp(value)
    return text.removesuffix(".0")


def _format_float_exp(value: float) -> str:
    text = f"{value:e}"
    mantissa, exp = text.split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    sign = "-" if exp.startswith("-") else "+"
    return f"{mantissa}e{sign}{exp.lstrip('+-').rjust(2, '0')}"


def printable(value: Any, top: bool = True) -> str:
    """``value`` as Go's fmt.Print shows it: maps as map[k:v] with sorted
    keys, slices as [a b], nil as <nil> (and as <no value> when it is what
    an action printed)."""
    if value is MISSING or (value is None and top):
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return "[" + " ".join(printable(v, False) for v in value) + "]"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{printable(k, False)}:{printable(value[k], False)}" for k in sorted(value)) + "]"
    text = getattr(value, "go_string", None)
    if callable(text):
        return str(text())
    return str(value)


def truth(value: Any) -> bool:
    """Go's template truth: the zero value and empty collections are false."""
    if value is None or value is MISSING:
        return False
    if isinstance(value, bool | int | float | str | list | tuple | Mapping):
        return bool(value)
    return True


def _json_plain(value: Any) -> Any:
    convert = getattr(value, "json_value", None)
    if callable(convert):
        return _json_plain(convert())
    if isinstance(value, GoMap):
        # encoding/json writes a Go map's keys sorted (a struct's in order).
        return {str(k): _json_plain(value[k]) for k in sorted(value)}
    if isinstance(value, Mapping):
        return {str(k): _json_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_plain(v) for v in value]
    if value is MISSING:
        return None
    return value


# ---------------------------------------------------------------- functions


def want(value: Any, typ: str) -> Any:
    """``value`` converted to the Go parameter type ``typ``, or Go's error."""
    if typ == "any":
        return None if value is MISSING else value
    ok = {
        "string": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "[]string": isinstance(value, list | tuple) and all(isinstance(v, str) for v in value),
    }[typ]
    if not ok:
        if value is None or value is MISSING:
            raise FuncError(f"invalid value; expected {typ}")
        raise FuncError(f"wrong type for value; expected {typ}; got {go_type(value)}")
    return list(value) if typ == "[]string" else value


class Func:
    """A template function: a Python callable and its Go parameter types
    (a trailing "..." type takes any number of arguments)."""

    def __init__(self, call: Callable[..., Any], params: list[str]) -> None:
        self.call, self.params = call, params

    @classmethod
    def of(cls, value: Any) -> Func:
        if isinstance(value, Func):
            return value
        import inspect

        try:
            signature = inspect.signature(value)
        except (TypeError, ValueError):
            return cls(value, ["...any"])
        params = []
        for p in signature.parameters.values():
            if p.kind == p.VAR_POSITIONAL:
                params.append("...any")
            elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                params.append("any")
        return cls(value, params)


def _is_separator(ch: str) -> bool:
    # strings.Title's word boundaries: ASCII other than letters, digits and
    # "_", and white space.
    if ch.isascii():
        return not (ch.isalnum() or ch == "_")
    return not (ch.isalpha() or ch.isdigit()) and ch.isspace()


def _title(text: str) -> str:
    out = []
    previous = " "
    for ch in text:
        out.append(ch.upper() if _is_separator(previous) else ch)
        previous = ch
    return "".join(out)


def _truncate(text: str, length: int) -> str:
    return text if len(text) < length else text[: max(length, 0)]


def _pad(text: str, prefix: int, suffix: int) -> str:
    return text if text == "" else " " * prefix + text + " " * suffix


def _split(text: str, sep: str) -> list[str]:
    return list(text) if sep == "" else text.split(sep)


def _json(value: Any) -> str:
    return jsonio.dumps(_json_plain(value))


DOCKER_FUNCS: dict[str, Func] = {
    "json": Func(_json, ["any"]),
    "split": Func(_split, ["string", "string"]),
    "join": Func(lambda items, sep: sep.join(items), ["[]string", "string"]),
    "title": Func(_title, ["string"]),
    "lower": Func(str.lower, ["string"]),
    "upper": Func(str.upper, ["string"]),
    "pad": Func(_pad, ["string", "int", "int"]),
    "truncate": Func(_truncate, ["string", "int"]),
}


def _compare_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None or value is MISSING:
        return "nil"
    return "other"


def _eq(first: Any, *others: Any) -> bool:
    if not others:
        raise FuncError("missing argument for comparison")
    for other in others:
        a, b = _compare_kind(first), _compare_kind(other)
        if a != b:
            if "nil" in (a, b):
                if first is other or (a == b):
                    return True
                continue
            raise FuncError("incompatible types for comparison")
        if a == "other":
            if first is other:
                return True
            if isinstance(first, list | tuple | Mapping) or isinstance(other, list | tuple | Mapping):
                raise FuncError("non-comparable type " + printable(first) + ": " + go_type(first))
        if first == other:
            return True
    return False


def _ordered(a: Any, b: Any) -> tuple[Any, Any]:
    ka, kb = _compare_kind(a), _compare_kind(b)
    if ka not in ("number", "string") or kb not in ("number", "string"):
        raise FuncError("invalid type for comparison")
    if ka != kb:
        raise FuncError("incompatible types for comparison")
    return a, b


def _lt(a: Any, b: Any) -> bool:
    a, b = _ordered(a, b)
    return bool(a < b)


def _le(a: Any, b: Any) -> bool:
    a, b = _ordered(a, b)
    return bool(a <= b)


def _len(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogateescape"))
    if isinstance(value, list | tuple | Mapping):
        return len(value)
    raise FuncError(f"len of type {go_type(value)}")


def _index(item: Any, *indexes: Any) -> Any:
    if item is None or item is MISSING:
        raise FuncError("index of untyped nil")
    for index in indexes:
        if isinstance(item, Mapping):
            if not isinstance(index, str):
                raise FuncError(f"value has type {go_type(index)}; should be string")
            item = item[index] if index in item else item.zero() if isinstance(item, GoMap) else None
        elif isinstance(item, list | tuple | str):
            if not isinstance(index, int) or isinstance(index, bool):
                raise FuncError(f"cannot index slice/array with type {go_type(index)}")
            if not 0 <= index < len(item):
                raise FuncError(f"index out of range: {index}")
            item = item[index] if not isinstance(item, str) else item.encode()[index]
        elif item is None:
            raise FuncError("index of untyped nil")
        else:
            raise FuncError(f"can't index item of type {go_type(item)}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if not isinstance(item, list | tuple | str):
        raise FuncError(f"can't slice item of type {go_type(item)}")
    if len(indexes) > 2:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    bounds = [int(i) for i in indexes]
    start = bounds[0] if bounds else 0
    end = bounds[1] if len(bounds) > 1 else len(item)
    if not 0 <= start <= end <= len(item):
        raise FuncError(f"index out of range: {end if end > len(item) else start}")
    return item[start:end]


def _sprint(*values: Any) -> str:
    # fmt.Sprint: a space between operands when neither side is a string.
    out = []
    for i, value in enumerate(values):
        if i and not isinstance(value, str) and not isinstance(values[i - 1], str):
            out.append(" ")
        out.append(printable(value, False))
    return "".join(out)


def _sprintln(*values: Any) -> str:
    return " ".join(printable(v, False) for v in values) + "\n"


def _sprintf(fmt: str, *values: Any) -> str:
    """fmt.Sprintf for the verbs templates use: %v %s %q %d %f %e %g %x %X %o %b %t %c %%."""
    out: list[str] = []
    i, arg = 0, 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        j = i + 1
        while j < len(fmt) and fmt[j] in "+-# 0":
            j += 1
        while j < len(fmt) and fmt[j].isdigit():
            j += 1
        if j < len(fmt) and fmt[j] == ".":
            j += 1
            while j < len(fmt) and fmt[j].isdigit():
                j += 1
        if j >= len(fmt):
            out.append("%!(NOVERB)")
            break
        spec, verb = fmt[i + 1 : j], fmt[j]
        i = j + 1
        if verb == "%":
            out.append("%")
            continue
        if arg >= len(values):
            out.append(f"%!{verb}(MISSING)")
            continue
        value = values[arg]
        arg += 1
        out.append(_format_one(spec, verb, value))
    if arg < len(values):
        extra = ", ".join(f"{go_type(v)}={printable(v, False)}" for v in values[arg:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _format_one(spec: str, verb: str, value: Any) -> str:
    flags = "".join(c for c in spec if c in "+-# 0" and not spec.startswith(c + "."))
    rest = spec.lstrip("+-# 0")
    bad = f"%!{verb}({go_type(value)}={printable(value, False)})"
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if verb == "v":
        return _pad_spec(printable(value, False), flags, rest)
    if verb == "s":
        if isinstance(value, str) or not isinstance(value, int | float | bool):
            return _pad_spec(printable(value, False), flags, rest)
        return bad
    if verb == "q":
        if isinstance(value, str):
            return _pad_spec(go_quote(value), flags, rest)
        return bad
    if verb == "t":
        return _pad_spec(printable(value, False), flags, rest) if isinstance(value, bool) else bad
    if verb in "dxXobc":
        if not is_int:
            if verb in "xX" and isinstance(value, str):
                return _pad_spec(value.encode().hex() if verb == "x" else value.encode().hex().upper(), flags, rest)
            return bad
        if verb == "c":
            return _pad_spec(chr(value), flags, rest)
        if verb == "b":
            return _pad_spec(format(value, "b"), flags, rest)
        return ("%" + flags + rest + verb) % value
    if verb in "feEgG":
        if not isinstance(value, int | float) or isinstance(value, bool):
            return bad
        if verb in "gG" and "." not in rest:
            return _pad_spec(_format_float(float(value)), flags, rest)
        return ("%" + flags + (rest if "." in rest else rest + ".6") + verb) % value
    return f"%!{verb}({go_type(value)}={printable(value, False)})"


def _pad_spec(text: str, flags: str, rest: str) -> str:
    width_text, _, precision = rest.partition(".")
    if precision:
        text = text[: int(precision)]
    width = int(width_text) if width_text else 0
    return text.ljust(width) if "-" in flags else text.rjust(width)


def _html(*values: Any) -> str:
    text = _sprint(*values)
    for raw, escaped in (
        ("&", "&amp;"),
        ("'", "&#39;"),
        ("<", "&lt;"),
        (">", "&gt;"),
        ('"', "&#34;"),
        ("\0", "\ufffd"),
    ):
        text = text.replace(raw, escaped)
    return text


def _urlquery(*values: Any) -> str:
    from urllib.parse import quote_plus

    return quote_plus(_sprint(*values), safe="-_.~")


def _js(*values: Any) -> str:
    out = []
    for ch in _sprint(*values):
        if ch in "\\'\"":
            out.append("\\" + ch)
        elif ch in "<>&=":
            out.append(f"\\u{ord(ch):04X}")
        elif not ch.isprintable():
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


BUILTINS: dict[str, Func] = {
    "html": Func(_html, ["...any"]),
    "urlquery": Func(_urlquery, ["...any"]),
    "js": Func(_js, ["...any"]),
    "index": Func(_index, ["any", "...any"]),
    "slice": Func(_slice, ["any", "...any"]),
    "len": Func(_len, ["any"]),
    "not": Func(lambda v: not truth(v), ["any"]),
    "eq": Func(_eq, ["any", "...any"]),
    "ne": Func(lambda a, b: not _eq(a, b), ["any", "any"]),
    "lt": Func(_lt, ["any", "any"]),
    "le": Func(_le, ["any", "any"]),
    "gt": Func(lambda a, b: not _le(a, b), ["any", "any"]),
    "ge": Func(lambda a, b: not _lt(a, b), ["any", "any"]),
    "print": Func(_sprint, ["...any"]),
    "printf": Func(_sprintf, ["string", "...any"]),
    "println": Func(_sprintln, ["...any"]),
    # and/or evaluate their arguments lazily (Go 1.18); the evaluator handles them.
    "and": Func(lambda *a: a, ["any", "...any"]),
    "or": Func(lambda *a: a, ["any", "...any"]),
}

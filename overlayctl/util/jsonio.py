"""JSON for the catalog and the on-disk formats, without importing `json`.

`import json` pulls in `re` and `enum` (through json.decoder and
json.encoder), which costs more start-up time than everything `run` does
with JSON. The standard library's own C accelerators in `_json` are all
that is needed to read and write the compact JSON the store keeps, so the
run path uses them directly. Where `_json` is missing, or its constructors
do not take these arguments, the `json` module does the same work.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"


class _ScanContext:
    # The attributes _json.make_scanner reads from json.JSONDecoder.
    __slots__ = ("strict", "object_hook", "object_pairs_hook", "parse_float", "parse_int", "parse_constant", "memo")

    def __init__(self) -> None:
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = None
        self.parse_float = float
        self.parse_int = int
        self.parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__
        self.memo: dict[str, str] = {}


def _unserialisable(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


try:
    from _json import encode_basestring, make_encoder, make_scanner

    _scan = make_scanner(_ScanContext())
    # Arguments: markers (None: the store writes no cyclic data, and a
    # shared markers dict would keep stale entries after an error), default,
    # string encoder, indent, key separator, item separator, sort_keys,
    # skipkeys, allow_nan.
    _compact = make_encoder(None, _unserialisable, encode_basestring, None, ":", ",", False, False, True)
    _sorted = make_encoder(None, _unserialisable, encode_basestring, None, ":", ",", True, False, True)
except (ImportError, TypeError):  # pragma: no cover - another Python's _json
    _scan = _compact = _sorted = None  # type: ignore[assignment]


def loads(text: str | bytes) -> Any:
    """Parse one JSON document (like json.loads)."""
    if isinstance(text, bytes | bytearray):
        text = text.decode()
    if _scan is None:  # pragma: no cover
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration:
        value, end = None, -1
    if end < 0 or text[end:].strip(_WHITESPACE):
        # Let the json module word the error, with line and column.
        import json

        return json.loads(text)
    return value


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON (separators "," and ":", non-ASCII kept as is).

    Lone surrogates, which is how Python hands over bytes that are not
    UTF-8 in argv, the environment and file names, are written as \\uXXXX
    escapes, so the text is valid UTF-8 and `loads` gives the same str back
    (and os.fsencode the same bytes).
    """
    encoder = _sorted if sort_keys else _compact
    if encoder is None:  # pragma: no cover
        import json

        text = json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False)
    elif isinstance(value, str):
        text = encode_basestring(value)
    else:
        text = "".join(encoder(value, 0))
    return text if text.isascii() else _escape_surrogates(text)


def _escape_surrogates(text: str) -> str:
    try:
        text.encode()
    except UnicodeEncodeError:
        # Surrogates only occur inside JSON strings, and backslashreplace
        # writes each as exactly the JSON escape for it.
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def canonical(value: Any) -> bytes:
    """The bytes an ID is the digest of: sorted keys, compact, UTF-8."""
    return dumps(value, sort_keys=True).encode()


def pretty(value: Any) -> str:
    """Indented JSON for people (inspect, history --format json)."""
    import json

    return json.dumps(value, indent=4)

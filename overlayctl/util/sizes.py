"""Docker's size syntax, read once for every option that takes a size.

go-units' RAMInBytes, which `docker run` applies to --memory, --memory-swap,
--shm-size and the rest: a decimal number (``512``, ``1.5``, ``1e3``), an
optional space, then an optional unit k, m, g, t or p (binary: 1k = 1024),
optionally followed by ``b`` or ``ib``, in any case. A bare ``b`` means bytes.
What a size of 0 or -1 means is each option's business: that stays with the
caller.
"""

from __future__ import annotations

import re

from overlayctl.errors import InvalidArgumentError

_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
# What Go's strconv.ParseFloat takes in decimal (not Python's float(), which
# would also take "1_000", "inf" and "nan").
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INT64_MAX = (1 << 63) - 1


def parse_size(text: str, what: str) -> int:
    """Bytes for ``text`` ("1GiB", "512m", "1e3", "1.5g", "4096"), read as
    Docker reads sizes; `what` names the option in the one-line error
    (e.g. "-m, --memory", "--tmpfs size")."""
    value = text.strip()
    # Like go-units: the number ends at the last digit, dot or space.
    sep = max(value.rfind(c) for c in "0123456789. ")
    if sep < 0:
        raise _size_error(text, what, f"invalid size: '{text}'")
    if value[sep] == " ":
        number, suffix = value[:sep], value[sep + 1 :]
    else:
        number, suffix = value[: sep + 1], value[sep + 1 :]
    if not _NUMBER.fullmatch(number):
        raise _size_error(text, what, f"invalid size: '{text}'")
    size = float(number)
    if size < 0:
        raise _size_error(text, what, f"invalid size: '{text}'")
    unit = suffix.lower()
    if unit and unit != "b":
        multiplier = _UNITS.get(unit[0])
        if multiplier is None or unit[1:] not in ("", "b", "ib"):
            raise _size_error(text, what, f"invalid suffix: '{unit}'")
        size *= multiplier
    if size > _INT64_MAX:
        raise _size_error(text, what, "too large")
    return int(size)


def _size_error(text: str, what: str, why: str) -> InvalidArgumentError:
    # Docker's wording for a flag it cannot parse, kept for every option.
    return InvalidArgumentError(f'invalid argument "{text}" for "{what}" flag: {why}')

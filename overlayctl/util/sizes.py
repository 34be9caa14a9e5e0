"""Docker's size syntax, read once for every option that takes a size.

go-units' RAMInBytes, which `docker run` applies to --memory, --memory-swap,
--shm-size and the rest: a decimal number (``512``, ``1.5``, ``1e3``), an
optional space, then an optional unit k, m, g, t or p (binary: 1k = 1024),
optionally followed by ``b`` or ``ib``, in any case. A bare ``b`` means bytes.
What a size of 0 or -1 means is each option's business: that stays with the
caller.
"""

from __future__ import annotations

from overlayctl.errors import InvalidArgumentError

_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_INT64_MAX = (1 << 63) - 1
_DIGITS = frozenset("0123456789")


def _is_decimal(text: str) -> bool:
    """Whether ``text`` is what Go's strconv.ParseFloat takes in decimal,
    [+-]? (digits [. digits*] | . digits) ([eE] [+-]? digits)?, and not
    what Python's float() takes besides ("1_000", "inf", "nan", spaces).
    By hand, not with re: `run --storage-opt size=` and `--memory` parse
    sizes on the run path, where re and its enum cost about 4 ms
    (tests/unit/test_run_imports.py)."""
    mantissa, e, exponent = text.replace("E", "e").partition("e")
    if e and not _digits(exponent[1:] if exponent[:1] in "+-" else exponent):
        return False
    whole, _, fraction = (mantissa[1:] if mantissa[:1] in "+-" else mantissa).partition(".")
    return set(whole + fraction) <= _DIGITS and bool(whole or fraction)


def _digits(text: str) -> bool:
    return bool(text) and set(text) <= _DIGITS


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
    if not _is_decimal(number):
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

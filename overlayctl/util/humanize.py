"""Human-readable sizes and durations, formatted as the Docker CLI does."""

from __future__ import annotations

_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def human_size(size: float, precision: int = 3) -> str:
    """Decimal units with `precision` significant digits: 4096 -> "4.1kB"."""
    return _scaled(size, 1000.0, _DECIMAL_UNITS, precision)


def binary_size(size: float) -> str:
    """Binary units with 4 significant digits, as Docker's MEM USAGE: "1.195MiB"."""
    return _scaled(size, 1024.0, _BINARY_UNITS, 4)


def _scaled(size: float, base: float, units: tuple[str, ...], precision: int) -> str:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return f"{size:.{precision}g}{units[i]}"


def human_duration(seconds: float) -> str:
    """Docker's rough age: "Less than a second", "About a minute", "3 months"."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def now_rfc3339() -> str:
    """The current UTC time as Docker prints it: 2026-11-29T01:10:39.123456789Z."""
    import time

    return rfc3339_ns(time.time_ns())


def rfc3339_ns(ns: int) -> str:
    """A time in ns since the epoch, as now_rfc3339 writes it."""
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of a UTC RFC 3339 time written by now_rfc3339."""
    import calendar
    import time

    if not text:
        return 0.0
    whole, _, frac = text.rstrip("Z").partition(".")
    if len(whole) == 19 and whole[10] == "T":
        # The fixed layout now_rfc3339 writes, read without strptime (which
        # costs `ps` and the Engine API's list ~20 microseconds a row).
        from datetime import UTC, datetime

        try:
            seconds = datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp()
        except ValueError:
            pass
        else:
            return seconds + (float("0." + frac) if frac else 0.0)
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return seconds + (float("0." + frac) if frac else 0.0)


# Go's time units, as time.ParseDuration takes them (both micro signs).
_GO_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def parse_go_duration(text: str) -> int:
    """Nanoseconds of a duration written as Go's time.ParseDuration takes it
    ("1h30m", "2.5s", "300ms", "-1s", "0"); ValueError with Go's message
    otherwise, since Docker's errors quote it."""
    quoted = '"' + text + '"'
    s = text
    sign = 1
    if s[:1] in ("-", "+"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"time: invalid duration {quoted}")
    total = 0
    i = 0
    while i < len(s):
        j = i
        while j < len(s) and s[j].isdigit():
            j += 1
        whole = s[i:j]
        frac = ""
        if j < len(s) and s[j] == ".":
            k = j + 1
            while k < len(s) and s[k].isdigit():
                k += 1
            frac, j = s[j + 1 : k], k
        if not whole and not frac:
            raise ValueError(f"time: invalid duration {quoted}")
        k = j
        while k < len(s) and not (s[k].isdigit() or s[k] == "."):
            k += 1
        unit = s[j:k]
        if not unit:
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit not in _GO_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration {quoted}')
        scale = _GO_UNITS[unit]
        # Exact arithmetic: "0.1s" is 100000000ns, not a float's neighbour.
        total += int(whole or "0") * scale + (int(frac) * scale // 10 ** len(frac) if frac else 0)
        i = k
    if total > (1 << 63) - 1:
        raise ValueError(f"time: invalid duration {quoted}")
    return sign * total


def go_duration(ns: int) -> str:
    """A duration as Go's time.Duration.String() writes it: "0s", "300ms",
    "1.5s", "1m0s", "1h0m0s"."""
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)
    if u < 1_000_000_000:
        unit, scale = ("ns", 1) if u < 1_000 else ("\u00b5s", 1_000) if u < 1_000_000 else ("ms", 1_000_000)
        return sign + _decimal(u, scale) + unit
    minutes, rest = divmod(u, 60_000_000_000)
    text = _decimal(rest, 1_000_000_000) + "s"
    if minutes:
        hours, minutes = divmod(minutes, 60)
        text = f"{minutes}m" + text
        if hours:
            text = f"{hours}h" + text
    return sign + text


def _decimal(value: int, scale: int) -> str:
    whole, frac = divmod(value, scale)
    if not frac:
        return str(whole)
    return f"{whole}." + str(frac).zfill(len(str(scale)) - 1).rstrip("0")

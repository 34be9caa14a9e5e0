"""Container logs: the drivers that write them and the reader behind `logs`.

Three drivers, as Docker names them:

- json-file (the default): one JSON object per line in
  <root>/containers/<id>/<id>-json.log (Paths.container_log), Docker's format
  (`{"log":"hi\\n","stream":"stdout","time":"2024-05-01T12:00:00.123456789Z"}`),
  rotated by `--log-opt max-size=10m --log-opt max-file=3` into
  <id>-json.log.1, .2 ... (the highest number the oldest);
- journald: one journal entry per line, sent over the journal's native
  datagram protocol to /run/systemd/journal/socket, with Docker's fields
  (CONTAINER_ID, CONTAINER_NAME, IMAGE_NAME, PRIORITY 6 for stdout and 3 for
  stderr ...); refused at create when no journal listens there;
- none: nothing is kept.

A line longer than 16 KiB is split into several entries, as Docker's
copier does; `logs` prints them back to back, so the output is the
original bytes. The writers run in the container's supervisor, which is
kept small: this module imports only os and time (and _json, _socket when
used) at run time.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from overlayctl.container.model import LogConfig

DRIVERS = ("json-file", "journald", "none")
DEFAULT_DRIVER = "json-file"
JOURNAL_SOCKET = "/run/systemd/journal/socket"
MAX_LINE = 16 * 1024  # longer lines become several entries (Docker's buffer size)
STDOUT, STDERR = "stdout", "stderr"

_OPTIONS = {
    "json-file": ("max-size", "max-file", "compress", "labels", "env", "tag"),
    "journald": ("tag", "labels", "env"),
    "none": (),
}


# --- configuration ----------------------------------------------------------


def journal_socket() -> str:
    """The journal's socket (OVERLAYCTL_JOURNAL_SOCKET moves it, for tests)."""
    return os.environ.get("OVERLAYCTL_JOURNAL_SOCKET") or JOURNAL_SOCKET


def parse_log_config(driver: str | None, options: list[str]) -> LogConfig:
    """`--log-driver` and `--log-opt KEY=VALUE` as HostConfig.LogConfig,
    checked as Docker checks them at create."""
    from overlayctl.errors import InvalidArgumentError

    name = driver or DEFAULT_DRIVER
    if name not in DRIVERS:
        raise InvalidArgumentError(
            f'logging driver "{name}" is not supported; use {", ".join(DRIVERS)}'
        )
    config: dict[str, str] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgumentError(f'invalid --log-opt "{item}": use KEY=VALUE')
        if key not in _OPTIONS[name]:
            raise InvalidArgumentError(f"unknown log opt '{key}' for {name} log driver")
        config[key] = value
    if name == "json-file":
        size = parse_max_size(config["max-size"]) if "max-size" in config else 0
        if "max-file" in config:
            text = config["max-file"]
            if not text.isdigit() or int(text) < 1:
                raise InvalidArgumentError(f'invalid max-file "{text}": it must be a whole number of at least 1')
            if int(text) > 1 and not size:
                raise InvalidArgumentError("max-file can only be set if max-size is set")
        if config.get("compress", "false") not in ("false", "0"):
            raise InvalidArgumentError("compress=true is not supported by overlayctl's json-file driver")
    if name == "journald" and not _is_socket(journal_socket()):
        raise InvalidArgumentError(
            f"logging driver journald needs systemd-journald, and nothing listens on {journal_socket()}; "
            "use --log-driver json-file"
        )
    from overlayctl.container.model import LogConfig

    return LogConfig(name, config)


def parse_max_size(text: str) -> int:
    """max-size in Docker's size syntax ("10m", "1.5g", "1GiB", "100" bytes);
    at least one byte, as a file cannot rotate at 0."""
    from overlayctl.errors import InvalidArgumentError
    from overlayctl.util.sizes import parse_size

    size = parse_size(text, "--log-opt max-size")
    if size < 1:
        raise InvalidArgumentError(f'invalid max-size "{text}": it must be at least 1 byte')
    return size


def _is_socket(path: str) -> bool:
    import stat

    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


# --- writing ------------------------------------------------------------------


def rfc3339nano(ns: int) -> str:
    """Go's RFC3339Nano in UTC, as Docker writes log times: trailing zeros
    of the fraction dropped, no fraction at all on a whole second."""
    import time

    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000))
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return f"{whole}.{frac}Z" if frac else whole + "Z"


class Lines:
    """Cuts one stream into lines (the newline kept) and pieces of at most
    MAX_LINE bytes; what follows the last newline waits for more."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes) -> list[bytes]:
        buf = self.pending + data if self.pending else data
        out = []
        start = 0
        while True:
            end = buf.find(b"\n", start, start + MAX_LINE)
            if end >= 0:
                out.append(buf[start : end + 1])
                start = end + 1
            elif len(buf) - start >= MAX_LINE:
                out.append(buf[start : start + MAX_LINE])
                start += MAX_LINE
            else:
                break
        self.pending = buf[start:]
        return out

    def flush(self) -> bytes:
        rest, self.pending = self.pending, b""
        return rest


class JsonFileLog:
    """The json-file driver: append, and rotate before a write once the file
    has reached max-size (so a file exceeds it by at most one entry)."""

    def __init__(self, path: str, max_size: int = 0, max_file: int = 1) -> None:
        import _json

        self._encode = _json.encode_basestring
        self.path = path
        self.max_size = max_size
        self.max_file = max(1, max_file)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size

    def write(self, stream: str, line: bytes, ns: int) -> None:
        text = self._encode(line.decode("utf-8", "replace"))
        if "<" in text or ">" in text or "&" in text:
            # Go's encoder escapes these for HTML; readers do not care, diff tools might.
            text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        entry = f'{{"log":{text},"stream":"{stream}","time":"{rfc3339nano(ns)}"}}\n'.encode()
        if self.max_size and self.size >= self.max_size:
            self._rotate()
        os.write(self.fd, entry)
        self.size += len(entry)

    def _rotate(self) -> None:
        if self.max_file > 1:
            for i in range(self.max_file - 1, 1, -1):
                try:
                    os.rename(f"{self.path}.{i - 1}", f"{self.path}.{i}")
                except FileNotFoundError:
                    pass
            os.rename(self.path, self.path + ".1")
            os.close(self.fd)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        else:
            os.ftruncate(self.fd, 0)
        self.size = 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class JournalLog:
    """The journald driver: one datagram per entry in the journal's native
    protocol (KEY=value lines; a value holding a newline is sent as KEY,
    newline, its length as 64-bit little endian, the bytes, newline)."""

    def __init__(self, socket_path: str, fields: dict[str, str]) -> None:
        import _socket

        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
        self.socket_path = socket_path
        self.common = b"".join(encode_journal_field(k, v.encode()) for k, v in fields.items())

    def write(self, stream: str, line: bytes, ns: int) -> None:
        partial = not line.endswith(b"\n")
        message = encode_journal_field("MESSAGE", line[:-1] if not partial else line)
        extra = encode_journal_field("PRIORITY", b"3" if stream == STDERR else b"6")
        if partial:
            extra += b"CONTAINER_PARTIAL_MESSAGE=true\n"
        try:
            self.sock.sendto(message + extra + self.common, self.socket_path)
        except OSError:
            pass  # the journal is gone or full: the entry is lost, the container goes on

    def close(self) -> None:
        self.sock.close()


def encode_journal_field(key: str, value: bytes) -> bytes:
    if b"\n" in value:
        return key.encode() + b"\n" + len(value).to_bytes(8, "little") + value + b"\n"
    return key.encode() + b"=" + value + b"\n"


class NoLog:
    """The none driver."""

    def write(self, stream: str, line: bytes, ns: int) -> None:
        pass

    def close(self) -> None:
        pass


def open_writer(log_config: LogConfig | None, path: str, identity: dict[str, str]):  # type: ignore[no-untyped-def]
    """The writer for a container's LogConfig. `identity`: id, name, image."""
    kind = (log_config.type if log_config is not None else "") or DEFAULT_DRIVER
    config = (log_config.config if log_config is not None else None) or {}
    if kind == "none":
        return NoLog()
    if kind == "journald":
        tag = config.get("tag") or identity["id"][:12]
        return JournalLog(
            journal_socket(),
            {
                "CONTAINER_ID": identity["id"][:12],
                "CONTAINER_ID_FULL": identity["id"],
                "CONTAINER_NAME": identity["name"],
                "CONTAINER_TAG": tag,
                "IMAGE_NAME": identity["image"],
                "SYSLOG_IDENTIFIER": tag,
            },
        )
    max_size = parse_max_size(config["max-size"]) if config.get("max-size") else 0
    return JsonFileLog(path, max_size, int(config.get("max-file") or 1))


# --- reading ------------------------------------------------------------------


class Entry:
    """One log entry: its stream, its bytes and its time (as written, and
    in nanoseconds since the epoch)."""

    __slots__ = ("stream", "data", "time", "ns")

    def __init__(self, stream: str, data: bytes, time: str, ns: int) -> None:
        self.stream = stream
        self.data = data
        self.time = time
        self.ns = ns


def log_files(path: str) -> list[str]:
    """The json-file log and its rotated files, oldest first."""
    rotated = []
    directory, base = os.path.split(path)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        suffix = name[len(base) + 1 :]
        if name.startswith(base + ".") and suffix.isdigit():
            rotated.append((int(suffix), os.path.join(directory, name)))
    files = [p for _, p in sorted(rotated, reverse=True)]
    if os.path.exists(path):
        files.append(path)
    return files


def parse_line(line: bytes) -> Entry | None:
    """One json-file line; None for a torn or foreign one."""
    from overlayctl.util import jsonio

    try:
        obj = jsonio.loads(line)
        text, stream, when = obj["log"], obj.get("stream") or STDOUT, obj.get("time") or ""
    except (ValueError, KeyError, TypeError):
        return None
    return Entry(stream, text.encode("utf-8", "surrogateescape"), when, parse_time_ns(when))


def parse_time_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time ("Z" or an offset)."""
    import calendar
    import time

    if not text:
        return 0
    body, offset = text, 0
    if body.endswith(("Z", "z")):
        body = body[:-1]
    else:
        tail = body[-6:]
        if len(tail) == 6 and tail[0] in "+-" and tail[3] == ":":
            sign = 1 if tail[0] == "+" else -1
            offset = sign * (int(tail[1:3]) * 3600 + int(tail[4:6]) * 60)
            body = body[:-6]
    whole, _, frac = body.partition(".")
    fmt = "%Y-%m-%dT%H:%M:%S" if "T" in whole else "%Y-%m-%d"
    seconds = calendar.timegm(time.strptime(whole, fmt)) - offset
    return seconds * 1_000_000_000 + int((frac[:9] or "0").ljust(9, "0"))




def parse_since(text: str, now_ns: int | None = None) -> int:
    """`--since`/`--until` as Docker takes them, in ns since the epoch: a
    duration back from now ("10m", "1h30m", "2.5s"), Unix seconds
    ("1700000000", "1700000000.5"), or an RFC 3339 date or time."""
    import time

    from overlayctl.errors import InvalidArgumentError

    value = text.strip()
    now_ns = time.time_ns() if now_ns is None else now_ns
    if not value:
        raise InvalidArgumentError("--since/--until needs a time: a duration (10m), Unix seconds or RFC 3339")
    duration = _parse_duration(value)
    if duration is not None:
        return now_ns - duration
    whole, dot, frac = value.partition(".")
    if whole.isdigit() and (not dot or frac.isdigit()):
        return int(whole) * 1_000_000_000 + int((frac[:9] or "0").ljust(9, "0"))
    try:
        return parse_time_ns(value)
    except (ValueError, IndexError):
        raise InvalidArgumentError(
            f'invalid time "{text}": use a duration (10m, 1h30m), Unix seconds or RFC 3339 (2024-05-01T12:00:00Z)'
        ) from None


def _parse_duration(text: str) -> int | None:
    """Go's time.ParseDuration, for positive values with a unit; None if it
    is not one (a bare number is Unix seconds to --since)."""
    from overlayctl.util.humanize import parse_go_duration

    if not text or text.isdigit() or not (text[0].isdigit() or text[0] == "."):
        return None
    try:
        return parse_go_duration(text)
    except ValueError:
        return None


class Position:
    """Where a read of the log stopped: the current file, open, and the
    start of a line its writer had not finished. follow() goes on from
    there, so no line written between the read and the follow is lost."""

    def __init__(self, fd: int | None, pending: bytes) -> None:
        self.fd = fd
        self.pending = pending


def read_entries(
    path: str, since: int = 0, until: int = 0, tail: int = -1, position: list[Position] | None = None
) -> list[Entry]:
    """Entries of the log and its rotated files, oldest first, filtered by
    time, the last `tail` of them (all when negative). With `position` (a
    list), the current file stays open at the end of what was read, for
    follow(): its Position is appended to the list."""
    entries: list[Entry] = []
    current = _open_or_none(path) if position is not None else None
    for name in log_files(path):
        if current is not None and name == path:
            data = _read_to_end(current)
            complete, _, partial = data.rpartition(b"\n")
            data = complete
            assert position is not None
            position.append(Position(current, partial))
            current = None
        else:
            try:
                with open(name, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue  # rotated away while we listed
        for line in data.splitlines():
            entry = parse_line(line)
            if entry is None or (since and entry.ns < since) or (until and entry.ns > until):
                continue
            entries.append(entry)
    if position is not None and not position:
        # (the current file appeared or went while the files were listed)
        position.append(Position(current, b""))
    if tail >= 0:
        entries = entries[len(entries) - tail :] if tail else []
    return entries


def close_position(position: list[Position]) -> None:
    """Close what read_entries left open for a follow that will not come."""
    for pos in position:
        if pos.fd is not None:
            os.close(pos.fd)
            pos.fd = None


def _read_to_end(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def follow(
    path: str,
    still_running: Any,
    since: int = 0,
    until: int = 0,
    poll: float = 0.1,
    position: Position | None = None,
) -> Iterator[Entry]:
    """Entries written to the log from now on (or from `position`, where a
    read_entries stopped), across rotations, until `still_running()` says
    no and what was written before is read."""
    import time

    if position is not None:
        fd, pending = position.fd, position.pending
    else:
        fd, pending = _open_or_none(path), b""
        if fd is not None:
            os.lseek(fd, 0, os.SEEK_END)
    try:
        last_check = 0.0
        running = True
        while True:
            if fd is None:
                fd = _open_or_none(path)
            chunk = os.read(fd, 1 << 20) if fd is not None else b""
            if chunk:
                pending += chunk
                lines = pending.split(b"\n")
                pending = lines.pop()
                for line in lines:
                    entry = parse_line(line)
                    if entry is not None and entry.ns >= since and not (until and entry.ns > until):
                        yield entry
                continue
            if fd is not None and _rotated(path, fd):
                # The file we read was renamed to .1 (or truncated): what it had
                # is read; go on with the new one from its start.
                os.close(fd)
                fd, pending = _open_or_none(path), b""
                continue
            if not running:
                break
            now = time.monotonic()
            if now - last_check >= poll:
                last_check = now
                running = bool(still_running())
                if not running:
                    continue  # one more read: the supervisor wrote the last lines before it ended
            time.sleep(poll / 2)
    finally:
        # (also when the reader stops early: the generator is closed)
        if fd is not None:
            os.close(fd)


def _open_or_none(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def _rotated(path: str, fd: int) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return st.st_ino != own.st_ino or os.lseek(fd, 0, os.SEEK_CUR) > own.st_size

"""Health checks as Docker's daemon runs them: the settings, the state
machine of one container's health, and where that state is kept.

`Config.Healthcheck` is Docker's HealthConfig as JSON ({"Test": [...],
"Interval": ns, ...}, zero fields left out). A container's health, the
`State.Health` of inspect, is kept in `containers/<id>/health.json` beside
its log: the checker (supervise.health) rewrites it after every probe, and
`inspect` and `ps`, in other processes, read it. It lives as long as the
container, as Docker keeps it in the container's own state file.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from overlayctl.paths import Paths

# Docker's defaults (daemon/health.go) for a field left at 0.
DEFAULT_INTERVAL = 30_000_000_000
DEFAULT_TIMEOUT = 30_000_000_000
DEFAULT_START_PERIOD = 0
DEFAULT_START_INTERVAL = 5_000_000_000
DEFAULT_RETRIES = 3
MINIMUM_DURATION = 1_000_000  # 1ms: a shorter non-zero duration is refused
MAX_LOG_ENTRIES = 5
MAX_OUTPUT = 4096

STARTING, HEALTHY, UNHEALTHY, NO_HEALTHCHECK = "starting", "healthy", "unhealthy", "none"

# Config.Healthcheck's duration keys, and the flags of run/create that set them.
DURATION_KEYS = ("Interval", "Timeout", "StartPeriod", "StartInterval")
FIELDS = ("Test", *DURATION_KEYS, "Retries")
_FLAGS = {
    "Interval": "--health-interval",
    "Timeout": "--health-timeout",
    "StartPeriod": "--health-start-period",
    "StartInterval": "--health-start-interval",
}


class HealthOptions:
    """`--health-*` and `--no-healthcheck` of run/create, as given."""

    __slots__ = ("cmd", "durations", "retries", "disabled")

    def __init__(
        self,
        cmd: str | None = None,
        durations: dict[str, str] | None = None,
        retries: str | None = None,
        disabled: bool = False,
    ) -> None:
        self.cmd = cmd
        self.durations = durations or {}  # "Interval" -> "300ms", as given
        self.retries = retries
        self.disabled = disabled

    def given(self) -> bool:
        return bool(self.cmd or self.retries or any(self.durations.values()))


def from_options(options: HealthOptions) -> dict[str, Any] | None:
    """The HealthConfig the options ask for (None: none was given), as
    Docker's CLI makes it: --no-healthcheck is {"Test": ["NONE"]}."""
    from overlayctl.errors import InvalidArgumentError
    from overlayctl.util.humanize import parse_go_duration

    if options.disabled:
        if options.given():
            raise InvalidArgumentError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not options.given():
        return None
    config: dict[str, Any] = {}
    if options.cmd:
        config["Test"] = ["CMD-SHELL", options.cmd]
    for key in DURATION_KEYS:
        text = options.durations.get(key)
        if not text:
            continue
        flag = _FLAGS[key]
        try:
            value = parse_go_duration(text)
        except ValueError as exc:
            raise InvalidArgumentError(f'invalid argument "{text}" for "{flag}" flag: {exc}') from None
        if value < 0:
            raise InvalidArgumentError(f"{flag} cannot be negative")
        if 0 < value < MINIMUM_DURATION:
            raise InvalidArgumentError(f"{flag} cannot be less than 1ms")
        if value:
            config[key] = value
    if options.retries:
        text = options.retries.strip()
        if not text.lstrip("-").isdigit():
            raise InvalidArgumentError(f'invalid argument "{options.retries}" for "--health-retries" flag')
        if int(text) < 0:
            raise InvalidArgumentError("--health-retries cannot be negative")
        if int(text):
            config["Retries"] = int(text)
    return config


def merged(own: dict[str, Any] | None, image: dict[str, Any] | None) -> dict[str, Any] | None:
    """The container's Healthcheck: its own, with each field it leaves at
    zero taken from the image's (Docker's daemon merges them so)."""
    if own is None:
        return dict(image) if image else None
    out = dict(own)
    for key in FIELDS:
        if not out.get(key) and image and image.get(key):
            out[key] = image[key]
    # Docker's order, its zero fields left out (its JSON has omitempty).
    return {key: out[key] for key in FIELDS if out.get(key)}


class Settings:
    """A Healthcheck with Docker's defaults filled in; `test` is the probe's
    argv (None when nothing is checked: no test, NONE, or an unknown type)."""

    __slots__ = ("test", "interval", "timeout", "start_period", "start_interval", "retries")

    def __init__(self, config: dict[str, Any] | None, shell: list[str] | None = None) -> None:
        config = config or {}
        test = list(config.get("Test") or [])
        kind = test[0] if test else ""
        if kind == "CMD" and len(test) > 1:
            self.test: list[str] | None = test[1:]
        elif kind == "CMD-SHELL" and len(test) > 1:
            # The image's SHELL, as Docker's daemon uses it; else /bin/sh -c.
            self.test = list(shell or ["/bin/sh", "-c"]) + test[1:]
        else:
            self.test = None
        self.interval = int(config.get("Interval") or DEFAULT_INTERVAL)
        self.timeout = int(config.get("Timeout") or DEFAULT_TIMEOUT)
        self.start_period = int(config.get("StartPeriod") or DEFAULT_START_PERIOD)
        self.start_interval = int(config.get("StartInterval") or DEFAULT_START_INTERVAL)
        retries = int(config.get("Retries") or 0)
        self.retries = retries if retries > 0 else DEFAULT_RETRIES

    def next_interval(self, status: str, since_start: int) -> int:
        """How long until the next probe: the start interval while the start
        period lasts and no probe has succeeded, the interval after."""
        if since_start < self.start_period and status == STARTING:
            return self.start_interval
        return self.interval


class Result:
    """One probe: Docker's HealthcheckResult."""

    __slots__ = ("start", "end", "exit_code", "output")

    def __init__(self, start: int, end: int, exit_code: int, output: str) -> None:
        self.start = start  # ns since the epoch
        self.end = end
        self.exit_code = exit_code  # -1: it could not run, or ran out of time
        self.output = output

    def to_json(self) -> dict[str, Any]:
        from overlayctl.util.humanize import rfc3339_ns

        return {
            "Start": rfc3339_ns(self.start),
            "End": rfc3339_ns(self.end),
            "ExitCode": self.exit_code,
            "Output": self.output,
        }


class Health:
    """`State.Health`: the status, the failing streak and the last results."""

    __slots__ = ("status", "failing_streak", "log")

    def __init__(self, status: str = STARTING, failing_streak: int = 0, log: list[dict[str, Any]] | None = None):
        self.status = status
        self.failing_streak = failing_streak
        self.log: list[dict[str, Any]] = log if log is not None else []

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Health:
        return cls(
            str(data.get("Status") or STARTING), int(data.get("FailingStreak") or 0), list(data.get("Log") or [])
        )

    def to_json(self) -> dict[str, Any]:
        return {"Status": self.status, "FailingStreak": self.failing_streak, "Log": self.log}

    def record(self, result: Result, settings: Settings, in_start_period: bool) -> bool:
        """Count one result as Docker does; whether the status changed.

        A success makes it healthy (and ends the start period). A failure
        while still starting and within the start period does not count;
        otherwise `retries` failures in a row make it unhealthy."""
        before = self.status
        self.log = (self.log + [result.to_json()])[-MAX_LOG_ENTRIES:]
        if result.exit_code == 0:
            self.failing_streak = 0
            self.status = HEALTHY
        elif not (self.status == STARTING and in_start_period):
            self.failing_streak += 1
            if self.failing_streak >= settings.retries:
                self.status = UNHEALTHY
        return self.status != before


def truncated_output(data: bytes) -> str:
    """A probe's output as Docker keeps it: the first 4096 bytes, and "..."
    when there was more."""
    text = data[:MAX_OUTPUT].decode("utf-8", errors="replace")
    return text + "..." if len(data) > MAX_OUTPUT else text


def load(paths: Paths, container_id: str) -> Health | None:
    """The container's recorded health; None if it never had a check."""
    from overlayctl.util import jsonio

    try:
        with open(paths.container_health(container_id), "rb") as f:
            return Health.from_json(jsonio.loads(f.read()))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError:
        return None  # (torn by a crash mid-write is not possible: see save)


def save(paths: Paths, container_id: str, health: Health) -> None:
    """Write the health where inspect reads it: a whole new file renamed
    over the old, so that a reader never sees half of one."""
    from overlayctl.util import jsonio

    path = paths.container_health(container_id)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(jsonio.dumps(health.to_json()))
        os.rename(tmp, path)
    except FileNotFoundError:
        pass  # the container was removed meanwhile
    except OSError:
        pass  # (a full disk: the next probe writes it again)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def status_suffix(health: Health | None) -> str:
    """What `ps` adds after "Up 5 seconds" for a running container."""
    if health is None:
        return ""
    if health.status == STARTING:
        return " (health: starting)"
    return f" ({health.status})"

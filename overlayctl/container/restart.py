"""Restart policies, as Docker has them: parsing, the decision, the back-off.

    --restart no | on-failure[:N] | always | unless-stopped

The container's supervisor decides when the container ends: `always` and
`unless-stopped` restart it whatever its exit code, `on-failure` when the
code is not 0 (at most N times when N is given), `no` never. A container
that `stop` or `kill` ended (or `rm -f`) is never restarted. `always` and
`unless-stopped` differ only after a reboot, where `always` starts the
container again even if it had been stopped (see engine.control.restart_on_boot).

The delay before a restart starts at 100 ms and doubles each time, up to a
minute; a container that ran for 10 seconds or more starts again from 100 ms
(Docker's restart manager). Pure logic: no process is touched here.
"""

from __future__ import annotations

from overlayctl.container.model import RestartPolicy
from overlayctl.errors import InvalidArgumentError

POLICIES = ("no", "on-failure", "always", "unless-stopped")
FIRST_DELAY_MS = 100
MAX_DELAY_MS = 60_000
RESET_AFTER_SECONDS = 10.0


def parse_policy(text: str | None) -> RestartPolicy:
    """`--restart` as HostConfig.RestartPolicy."""
    if not text:
        return RestartPolicy()
    name, sep, count = text.partition(":")
    if name not in POLICIES:
        raise InvalidArgumentError(f'invalid restart policy "{text}": use no, on-failure[:N], always or unless-stopped')
    if sep:
        if name != "on-failure":
            raise InvalidArgumentError(
                f'invalid restart policy "{text}": a maximum retry count can only be used with on-failure'
            )
        if not count.isdigit():
            raise InvalidArgumentError(f'invalid restart policy "{text}": the retry count must be a whole number')
    return RestartPolicy(name, int(count) if sep else 0)


def should_restart(
    policy: RestartPolicy | None, exit_code: int | None, manually_stopped: bool, restarts: int
) -> bool:
    """Whether a container that just ended with `exit_code` (None: unknown)
    is started again, after `restarts` restarts since its last start."""
    name = (policy.name if policy is not None else "") or "no"
    if manually_stopped or exit_code is None:
        return False
    if name in ("always", "unless-stopped"):
        return True
    if name == "on-failure":
        assert policy is not None
        limit = int(policy.maximum_retry_count or 0)
        return exit_code != 0 and (limit == 0 or restarts < limit)
    return False


def next_delay_ms(previous_ms: int, ran_seconds: float) -> int:
    """The back-off before the next restart."""
    if previous_ms <= 0 or ran_seconds >= RESET_AFTER_SECONDS:
        return FIRST_DELAY_MS
    return min(previous_ms * 2, MAX_DELAY_MS)

"""Signals to a container: Docker's signal names, the container's stop
signal, and sending one to its PID 1 (by pidfd, checked against the start
time, so a recycled pid is never hit).
"""

from __future__ import annotations

import os

from overlayctl.errors import InvalidArgumentError
from overlayctl.store.containers import Container


def parse_signal(text: str) -> int:
    """A signal as Docker takes it: "KILL", "SIGKILL", "sigkill", "9"."""
    import signal

    value = text.strip()
    if value.isdigit():
        number = int(value)
        if 0 < number < signal.NSIG:
            return number
    else:
        name = value.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        number = getattr(signal, name, None)
        if isinstance(number, int) and not name.startswith("SIG_"):
            return int(number)
    raise InvalidArgumentError(f'invalid signal "{text}": use a name (TERM, SIGKILL) or a number')


def stop_signal(container: Container) -> int:
    """Config.StopSignal (--stop-signal or the image's STOPSIGNAL), else SIGTERM."""
    text = container.config.config.stop_signal
    return parse_signal(str(text)) if text else 15


def signal_container(container: Container, signum: int) -> bool:
    """Send `signum` to the container's PID 1; False if it is gone."""
    if not container.pid or not container.pid_start:
        return False
    # Through a pidfd, opened and then checked against the start time: it
    # names that one process for good, even if the pid is recycled later.
    try:
        fd = os.pidfd_open(container.pid)
    except ProcessLookupError:
        return False
    try:
        from overlayctl.util.proc import process_start_time

        if process_start_time(container.pid) != container.pid_start:
            return False
        import signal

        signal.pidfd_send_signal(fd, signum)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)

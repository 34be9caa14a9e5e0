"""What /proc tells about a process."""

from __future__ import annotations


def process_start_time(pid: int) -> int:
    """The kernel's start time of pid (clock ticks since boot), 0 if gone
    or a zombie (it has ended; only its parent has yet to reap it, and the
    reaper of a supervisor whose parent is long gone is init, which may
    take its time).

    Together with the pid it names one process for good: a recycled pid has
    a different start time.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    # comm (field 2) may contain spaces and parentheses: split after the last ")".
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return 0
    return int(fields[19])

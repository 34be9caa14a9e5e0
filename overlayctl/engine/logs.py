"""`logs`: a container's output read back, from its json-file log or, for
the journald driver, through journalctl; followed while it may still write.

Writing the log is the supervisor's (overlayctl.supervise.logs); this reads.
"""

from __future__ import annotations

from overlayctl.errors import InvalidArgumentError, OverlayctlError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from overlayctl.store import Store
    from overlayctl.store.containers import Container
    from overlayctl.supervise.logs import Entry


def log_entries(
    store: Store,
    container: Container,
    tail: str,
    since: str | None,
    until: str | None,
    follow: bool,
    cancelled: Callable[[], bool] | None = None,
) -> Iterator[Entry]:
    """The container's log entries in order: the last tail lines ("all" or a
    number), between since and until (10m, Unix seconds, RFC 3339), and with
    follow, the ones written after, until the container can write no more
    or `cancelled()` says the reader went away (checked while it waits, so
    a follow that nobody reads ends within a poll and lets its file go).
    The arguments are checked before this returns."""
    from overlayctl.supervise import logs

    kind = container.config.host.log_driver
    if kind == "none":
        raise OverlayctlError(f'container "{container.name}" logs to "none": there is nothing to read')
    if tail != "all" and not tail.lstrip("-").isdigit():
        raise InvalidArgumentError(f'invalid --tail "{tail}": give a number of lines or "all"')
    count = -1 if tail == "all" else int(tail)
    since_ns = logs.parse_since(since) if since else 0
    until_ns = logs.parse_since(until) if until else 0
    if kind == "journald":
        return _journal_entries(container.id, since_ns, until_ns, count, follow, cancelled)
    return _file_entries(store, container.id, since_ns, until_ns, count, follow, cancelled)


def _file_entries(
    store: Store,
    container_id: str,
    since: int,
    until: int,
    tail: int,
    follow: bool,
    cancelled: Callable[[], bool] | None,
) -> Iterator[Entry]:
    """A json-file container's entries, from its log and the rotated ones."""
    from overlayctl.supervise import logs

    path = store.paths.container_log(container_id)
    if not follow:
        yield from logs.read_entries(path, since, until, tail)
        return
    logging = still_logging(store, container_id)
    # The follow goes on from where the read stopped, on the same open file:
    # a line written in between is neither lost nor read twice, and what the
    # file holds stays readable if the container is removed meanwhile.
    position: list[logs.Position] = []
    try:
        yield from logs.read_entries(path, since, until, tail, position)
    except GeneratorExit:
        logs.close_position(position)
        raise
    if cancelled is not None:
        check = cancelled

        def logging_and_read() -> bool:
            return not check() and logging()

        yield from logs.follow(path, logging_and_read, since, until, position=position[0])
    else:
        yield from logs.follow(path, logging, since, until, position=position[0])


def still_logging(store: Store, container_id: str) -> Callable[[], bool]:
    """For `logs -f`: whether the container may still write to its log
    (it runs, or its supervisor will restart it)."""
    from overlayctl.store.containers import RESTARTING, RUNNING

    def check() -> bool:
        try:
            current = store.containers.get(container_id)
        except OverlayctlError:
            return False
        return current.status in (RUNNING, RESTARTING)

    return check


def _journal_entries(
    container_id: str, since: int, until: int, tail: int, follow: bool, cancelled: Callable[[], bool] | None
) -> Iterator[Entry]:
    """A journald container's entries, read back with journalctl."""
    import shutil
    import subprocess
    import threading
    import time

    from overlayctl.supervise import logs
    from overlayctl.util import jsonio

    journalctl = shutil.which("journalctl")
    if journalctl is None:
        raise OverlayctlError("reading journald logs needs journalctl, which is not installed")
    argv = [journalctl, "--no-pager", "-o", "json", f"CONTAINER_ID_FULL={container_id}"]
    if since:
        argv.append(f"--since=@{since / 1e9:.6f}")
    if until:
        argv.append(f"--until=@{until / 1e9:.6f}")
    if tail >= 0:
        argv.append(f"--lines={tail}")
    if follow:
        argv.append("--follow")
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        if follow and cancelled is not None:
            # journalctl --follow waits for lines that may never come: a
            # reader gone away ends it from here, and the loop below with it.
            check = cancelled

            def watch() -> None:
                while proc.poll() is None:
                    if check():
                        proc.terminate()
                        return
                    time.sleep(0.2)

            threading.Thread(target=watch, daemon=True).start()
        for line in proc.stdout:
            try:
                fields = jsonio.loads(line)
            except ValueError:
                continue
            message = fields.get("MESSAGE") or ""
            data = bytes(message) if isinstance(message, list) else str(message).encode()
            if fields.get("CONTAINER_PARTIAL_MESSAGE") != "true":
                data += b"\n"
            ns = int(fields.get("__REALTIME_TIMESTAMP") or 0) * 1000
            stream = "stderr" if str(fields.get("PRIORITY")) == "3" else "stdout"
            yield logs.Entry(stream, data, logs.rfc3339nano(ns), ns)

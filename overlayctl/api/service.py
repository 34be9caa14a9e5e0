"""`system service`: serve the Engine API until idle.

The sockets come from systemd (LISTEN_FDS, the overlayctl-api.socket unit)
or are bound here: a unix socket, 0660 and owned by root and --group, and
TCP only when asked for, with a warning, since whoever reaches the API is
root on the host. With --time N the service exits after N seconds with no
request open and none arriving; containers never depend on it, so exiting
loses nothing and the next activation sees them all.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import stat
import sys
import time
from typing import TYPE_CHECKING

from overlayctl.errors import InvalidArgumentError

if TYPE_CHECKING:
    from aiohttp import web

SD_LISTEN_FDS_START = 3
# Connections waiting to be accepted: as many as the kernel allows
# (net.core.somaxconn), as Go's listeners ask for. A burst beyond the queue
# fails at once on a unix socket (EAGAIN), where a TCP client would retry.
BACKLOG = socket.SOMAXCONN


def default_address(runroot: str | None = None) -> str:
    """unix:///run/overlayctl/docker.sock, or the same name under runroot."""
    from overlayctl.paths import Paths

    return "unix://" + Paths.from_env(None, runroot).api_socket


def activated_sockets() -> list[socket.socket]:
    """The sockets systemd passed (LISTEN_PID is us, LISTEN_FDS of them from
    fd 3), taken out of the environment so that children do not see them."""
    try:
        pid = int(os.environ.get("LISTEN_PID", "0"))
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    if pid != os.getpid() or count <= 0:
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    socks = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        os.set_inheritable(fd, False)
        socks.append(socket.socket(fileno=fd))
    return socks


def _group_id(group: str | None) -> int:
    if group is None:
        return 0
    import grp

    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            return int(group)
        raise InvalidArgumentError(f"--group: no group named {group!r} on this host") from None


def _bind_unix(path: str, gid: int) -> socket.socket:
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise InvalidArgumentError(f"{path} exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # a socket left by a service that died
        else:
            raise InvalidArgumentError(f"{path}: another service already answers on it")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Bound under a umask that gives nobody else a window: 0660 from the start.
    old = os.umask(0o117)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chown(path, 0, gid)
    os.chmod(path, 0o660)
    sock.listen(BACKLOG)
    return sock


def _bind_tcp(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise InvalidArgumentError(f"tcp address {address!r}: no port") from None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, number))
    sock.listen(BACKLOG)
    print(
        f"overlayctl: warning: serving the Engine API on tcp://{host}:{number} without TLS: "
        "whoever can connect to it is root on this host",
        file=sys.stderr,
    )
    return sock


def bind(address: str, group: str | None = None) -> socket.socket:
    """A listening socket for unix:///path or tcp://host:port."""
    if address.startswith("unix://"):
        return _bind_unix(address[len("unix://") :], _group_id(group))
    if address.startswith("tcp://"):
        return _bind_tcp(address[len("tcp://") :])
    if address.startswith("/"):
        return _bind_unix(address, _group_id(group))
    raise InvalidArgumentError(
        f"{address!r}: not an address the service can listen on (unix:///PATH or tcp://HOST:PORT)"
    )


def serve(
    addresses: list[str],
    idle_seconds: float = 5.0,
    group: str | None = None,
    root: str | None = None,
    runroot: str | None = None,
) -> None:
    """Serve until idle for idle_seconds (0: until signalled)."""
    from overlayctl.engine import open_store

    open_store(root, runroot)  # root and a readable store, before listening
    socks = activated_sockets()
    bound: list[str] = []
    if not socks:
        for address in addresses or [default_address(runroot)]:
            socks.append(bind(address, group))
            if address.startswith("unix://") or address.startswith("/"):
                bound.append(address.removeprefix("unix://"))
    try:
        asyncio.run(_serve(socks, idle_seconds, root, runroot))
    finally:
        for sock in socks:
            sock.close()
        for path in bound:
            try:
                os.unlink(path)
            except OSError:
                pass


# Worker threads for engine calls (http.call, http.blocking), made as
# needed and kept. Each one used costs about 200 kB for good (its stack, its
# store's SQLite connection, its malloc arena), so the pool is bounded: a
# burst of 100 clients leaves the service ~7 MB larger, not ~13. Follows
# (logs -f, wait, events) poll with short calls rather than hold a thread;
# a handler must never hold one while it waits for another (a pipe read
# waiting for its writer): with the pool full, neither would run.
WORKER_THREADS = 32


class _OneLine(logging.Formatter):
    """What a client did wrong (a malformed request line, a bad header, a
    connection dropped mid-request) as one line on stderr, the journal
    under systemd: a client that sends garbage must not fill it with
    tracebacks."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            detail = " ".join(str(exc).split())
            text = f"{text.strip()}: {type(exc).__name__}" + (f": {detail}" if detail else "")
        return f"overlayctl: api: {text}"


def _logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    server = logging.getLogger("aiohttp")
    server.addHandler(handler)
    server.setLevel(logging.WARNING)
    server.propagate = False


async def _serve(socks: list[socket.socket], idle_seconds: float, root: str | None, runroot: str | None) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from aiohttp import web

    from overlayctl.api.app import make_app
    from overlayctl.engine.system import notify_ready

    _logging()
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="overlayctl-api"))
    app = make_app(root, runroot)
    # handler_cancellation: a client that goes away cancels its handler, so
    # a stream (events, logs -f, stats) ends with its client, whether or not
    # it had anything to write. What a worker thread was doing for it runs
    # to its end: an engine call is never cut in half.
    runner = web.AppRunner(app, handle_signals=False, access_log=None, handler_cancellation=True)
    await runner.setup()
    for sock in socks:
        # (The listen() it makes again sets the queue of systemd's sockets too.)
        await web.SockSite(runner, sock, backlog=BACKLOG).start()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    notify_ready("serving the Engine API")
    # What start-up made stays for good: out of the cycle collector's sight
    # (it may have been off until now, see cli.fastrun.fast_service).
    gc.freeze()
    gc.enable()
    # As sd_notify(unset_environment=1): the supervisors and commands it
    # starts are not the unit's main process and must not speak for it.
    os.environ.pop("NOTIFY_SOCKET", None)
    try:
        if idle_seconds > 0:
            await _until_idle(app, stop, idle_seconds)
        else:
            await stop.wait()
    finally:
        await runner.cleanup()


async def _until_idle(app: web.Application, stop: asyncio.Event, idle_seconds: float) -> None:
    while not stop.is_set():
        idle_for = time.monotonic() - app["last_request"]
        if app["busy"] == 0 and idle_for >= idle_seconds:
            return
        try:
            await asyncio.wait_for(stop.wait(), timeout=max(0.05, idle_seconds - idle_for if app["busy"] == 0 else 1.0))
        except TimeoutError:
            pass

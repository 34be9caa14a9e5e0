"""Engine API: attach to a container (hijacked) and resize its terminal.

    POST /containers/{id}/attach?stream=&stdin=&stdout=&stderr=&logs=&detachKeys=
    POST /containers/{id}/resize?h=&w=

A container's output goes through its supervisor's attach socket (the
supervisor's protocol, supervise.frames, which the engine hands out): this
relays it to the hijacked connection as Docker's frames (raw with a TTY),
and the client's bytes back as the container's stdin.

`docker run` attaches before it starts the container: an attach to a
container that is not running waits here, registered, for the start.
The start handler asks `start_pending` first; if an attach waits, the
container is started with an attach client connected before its command
runs (engine.control.start_with_attach), so that none of its output is
lost. A container started some other way (the CLI's `start`) is found by
polling, and attached to as it runs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from overlayctl.api.hijack import Hijacked, docker_frame, hijack
from overlayctl.api.hijack import close_all as on_shutdown  # noqa: F401  (app.py: ends attach's and exec's streams)
from overlayctl.api.http import ApiError, call, flag, integer

if TYPE_CHECKING:
    import socket

    from aiohttp import web

    from overlayctl.engine.control import Container
    from overlayctl.store import Store

log = logging.getLogger("overlayctl.api")

POLL_SECONDS = 0.5  # how often a waiting attach looks whether its container started elsewhere

# Attaches waiting for their container's start: full container ID -> futures
# that the start resolves with a connected attach socket (or None: connect
# yourself).
_pending: dict[str, list[asyncio.Future[Any]]] = {}
_starting: set[str] = set()  # containers start_pending is starting


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("POST", "/containers/{id}/attach", attach_container),
        ("POST", "/containers/{id}/resize", resize_container),
    ]


def get_container(store: Store, ref: str) -> Container:
    """The container named or identified by ref; Docker's 404 otherwise."""
    from overlayctl.errors import NotFoundError

    try:
        return store.containers.get(ref)
    except NotFoundError:
        raise ApiError(404, f"No such container: {ref}") from None


# --- the start handler's hook ---------------------------------------------------------


async def start_pending(request: web.Request, container_id: str) -> bool:
    """For POST /containers/{id}/start: if an attach waits for this
    container (full ID), start it with an attach client connected before
    its command runs, hand that to the attach, and return True (the start
    is done; errors are the start's). False: no attach waits, start it
    as usual."""
    from overlayctl.engine import control

    waiters = [f for f in _pending.get(container_id, ()) if not f.done()]
    if not waiters:
        return False

    def start(store: Store) -> socket.socket | None:
        container = store.containers.get(container_id)
        if container.status == "running":
            return None  # (started meanwhile: the start handler answers 304)
        return control.start_with_attach(store, container)

    _starting.add(container_id)
    try:
        sock = await call(request, start)
        if sock is None:
            return False
    except BaseException as exc:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(exc if isinstance(exc, Exception) else ConnectionError("start cancelled"))
        raise
    finally:
        _starting.discard(container_id)
    first, rest = waiters[0], waiters[1:]
    if first.done():
        sock.close()  # (its client went away meanwhile: the supervisor sees it leave)
    else:
        first.set_result(sock)
    for waiter in rest:  # (one client connects before the start; the others as it runs)
        if not waiter.done():
            waiter.set_result(None)
    return True


# --- attach ---------------------------------------------------------------------------


async def attach_container(request: web.Request) -> web.StreamResponse:
    """POST /containers/{id}/attach: hijacked; the container's output (its
    log first with logs=1) until it ends or the client detaches."""
    from overlayctl.util import detachkeys

    ref = request.match_info["id"]
    container = await call(request, get_container, ref)
    stream, logs = flag(request, "stream"), flag(request, "logs")
    want_stdin = flag(request, "stdin")
    want = {1: flag(request, "stdout"), 2: flag(request, "stderr")}
    keys_text = request.query.get("detachKeys") or ""
    keys = detachkeys.parse(keys_text) if keys_text else detachkeys.DEFAULT
    cfg = container.config.config
    tty = bool(cfg.tty)
    stdin = want_stdin and bool(cfg.open_stdin)
    if not (stream or logs):
        raise ApiError(400, "attach: you must choose at least one of stream or logs")
    sock = None
    if stream and container.status == "running":
        sock = await call(request, _connect_now, container.id)
    # Registered before the answer: the client's start may come right after it.
    waiter = _register(container.id) if stream and sock is None else None
    waited = waiter is not None
    try:
        hijacked = await hijack(request)
    except BaseException:
        if sock is not None:
            sock.close()
        if waiter is not None:
            _unregister(container.id, waiter, False)
        raise
    try:
        if logs:
            await _write_log(request, hijacked, container, tty, want)
        if waiter is not None:
            sock = await _wait_for_start(request, hijacked, container.id, waiter)
            waiter = None
        if sock is not None:
            # An attach that waited for the start is `docker run -i`'s or
            # `start -ai`'s: the end of its input is the container's
            # (StdinOnce, which the catalog does not keep).
            await relay(hijacked, sock, tty, stdin, want, keys if tty else b"", close_stdin=waited)
            sock = None
    except Exception:  # noqa: BLE001 - the connection is raw now: no error can be answered
        log.exception("attach to %s", container.id[:12])
    finally:
        if sock is not None:
            sock.close()
        if waiter is not None:
            _unregister(container.id, waiter, False)
        hijacked.close()
    return hijacked.response


def _connect(store: Store, container_id: str) -> socket.socket | None:
    """A client of the container's attach socket, None if it is not running."""
    from overlayctl.engine import control
    from overlayctl.errors import OverlayctlError

    try:
        return control.connect_attach(store, store.containers.get(container_id))
    except OverlayctlError:
        return None


def _connect_now(store: Store, container_id: str) -> socket.socket | None:
    """A client of the running container's attach socket; Docker's 409 if
    it has none (run in the foreground by the CLI); None if it has ended
    meanwhile (the attach then waits for its next start, as dockerd's)."""
    from overlayctl.engine import control
    from overlayctl.errors import OverlayctlError

    container = store.containers.get(container_id)
    try:
        return control.connect_attach(store, container)
    except OverlayctlError as exc:
        if store.containers.get(container_id).status != "running":
            return None
        raise ApiError(409, exc.message) from None


def _running(store: Store, container_id: str) -> bool | None:
    """Whether the container runs; None once it is removed."""
    from overlayctl.errors import NotFoundError

    try:
        return store.containers.get(container_id).status == "running"
    except NotFoundError:
        return None


def _register(container_id: str) -> asyncio.Future[Any]:
    """A waiter for the container's start, which start_pending resolves."""
    waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    _pending.setdefault(container_id, []).append(waiter)
    return waiter


def _unregister(container_id: str, waiter: asyncio.Future[Any], taken: bool) -> None:
    """Forget the waiter; a socket handed to it and not taken is closed."""
    if not waiter.done():
        waiter.cancel()
    elif not taken and not waiter.cancelled() and waiter.exception() is None and waiter.result() is not None:
        waiter.result().close()  # (handed over as the client left)
    waiters = _pending.get(container_id, [])
    if waiter in waiters:
        waiters.remove(waiter)
    if not waiters:
        _pending.pop(container_id, None)


async def _wait_for_start(
    request: web.Request, hijacked: Hijacked, container_id: str, waiter: asyncio.Future[Any]
) -> socket.socket | None:
    """An attach socket once the container starts (handed over by the start
    handler to `waiter`, or connected once the container is seen running);
    None when the client goes away or the container is removed first."""
    gone = asyncio.ensure_future(hijacked.wait_lost())
    taken = False
    try:
        while True:
            done, _ = await asyncio.wait({waiter, gone}, timeout=POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            if gone in done:
                return None
            if waiter in done:
                try:
                    sock = waiter.result()
                except Exception:  # noqa: BLE001 - the start failed: its answer says why
                    return None
                taken = True
                return sock if sock is not None else await call(request, _connect, container_id)
            running = await call(request, _running, container_id)
            if running is None:
                return None
            if running and container_id not in _starting:
                return await call(request, _connect, container_id)
    finally:
        gone.cancel()
        _unregister(container_id, waiter, taken)


async def _write_log(
    request: web.Request, hijacked: Hijacked, container: Container, tty: bool, want: dict[int, bool]
) -> None:
    """logs=1: the container's output so far, from its log."""
    from overlayctl.engine import logs
    from overlayctl.errors import OverlayctlError

    def entries(store: Store) -> list[Any]:
        try:
            return list(logs.log_entries(store, container, "all", None, None, False))
        except OverlayctlError:
            return []  # (log driver "none": nothing to show)

    for entry in await call(request, entries):
        kind = 2 if entry.stream == "stderr" else 1
        if want[kind] and not await hijacked.write(entry.data if tty else docker_frame(kind, entry.data)):
            return


async def relay(
    hijacked: Hijacked,
    sock: socket.socket,
    tty: bool,
    stdin: bool,
    want: dict[int, bool],
    keys: bytes,
    close_stdin: bool = False,
) -> None:
    """Between the hijacked connection and a connected attach socket until
    the container ends (the supervisor's last message), the client
    detaches (the keys, with a TTY) or goes away. The end of the client's
    input (it closes its write side) ends the attach, as dockerd's does,
    unless `close_stdin` (dockerd's StdinOnce) without a TTY: then the
    container's stdin is closed and the output goes on to its end."""
    from overlayctl.engine import control
    from overlayctl.util.detachkeys import EscapeFilter

    frames = control.attach_protocol()
    reader, writer = await asyncio.open_unix_connection(sock=sock)

    async def output() -> None:
        buffer = b""
        while True:
            data = await reader.read(65536)
            if not data:
                return
            messages, buffer = frames.split_frames(buffer + data)
            for kind, payload in messages:
                if kind == frames.EXIT_FRAME:
                    return
                if kind in want and want[kind] and payload:
                    if not await hijacked.write(payload if tty else docker_frame(kind, payload)):
                        return

    async def input() -> None:
        escape = EscapeFilter(keys)
        while True:
            data = await hijacked.read()
            if not data:
                if stdin and not (close_stdin and not tty):
                    return  # dockerd's end of an attach whose stdin ends: the container's stays open
                if stdin and not hijacked.lost:
                    writer.write(frames.frame(frames.CLOSE_STDIN, b""))
                    await writer.drain()
                await hijacked.wait_lost()  # (half-closed: only its end is news now)
                return
            if not stdin:
                continue
            data, detached = escape.feed(data)
            if data:
                writer.write(frames.frame(frames.STDIN, data))
                await writer.drain()
            if detached:
                return

    tasks = [asyncio.ensure_future(output()), asyncio.ensure_future(input())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.close()


# --- resize ---------------------------------------------------------------------------


async def resize_container(request: web.Request) -> web.StreamResponse:
    """POST /containers/{id}/resize?h=&w=: the size of the container's terminal."""
    from aiohttp import web

    from overlayctl.engine import control

    rows, cols = _size(request)

    def resize(store: Store) -> None:
        container = get_container(store, request.match_info["id"])
        try:
            control.resize(store, container, rows, cols)
        except Exception as exc:
            from overlayctl.errors import ConflictError

            if isinstance(exc, ConflictError):
                raise ApiError(409, f"Container {container.id} is not running") from None
            raise

    await call(request, resize)
    return web.Response(status=200)


def _size(request: web.Request) -> tuple[int, int]:
    """The h and w query parameters (Docker's 400 for a missing or bad one)."""
    rows, cols = integer(request, "h"), integer(request, "w")
    if rows is None or cols is None or rows < 0 or cols < 0:
        raise ApiError(400, "resize: h and w must be given as non-negative numbers")
    return rows, cols

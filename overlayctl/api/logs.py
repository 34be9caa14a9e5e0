"""Engine API: a container's logs (`docker logs`), as dockerd streams them.

Without a TTY the body is Docker's multiplexed stream: each piece of output
behind an 8-byte header (the stream: 1 stdout, 2 stderr; three zero bytes;
the length, big-endian uint32), which the client's stdcopy splits back into
its stdout and stderr. With a TTY the container had one stream, sent raw.

The entries come from engine.logs.log_entries, read by a thread of the
request's own (a follow can wait for hours, and the shared executor's few
workers are for short calls). That thread stops within a poll when the
client goes away, and lets go of the log file then.
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
import threading
from typing import TYPE_CHECKING, Any

from aiohttp import web

from overlayctl.api.http import ApiError, flag

if TYPE_CHECKING:
    from collections.abc import Callable

    from overlayctl.store import Store

log = logging.getLogger("overlayctl.api")

# Bytes a producer may have ready that the client has not taken yet.
AHEAD = 1 << 20
# How often a waiting handler looks whether its client is still there.
CLIENT_CHECK = 1.0

_UNIX_TIME = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_STREAM_IDS = {"stdout": 1, "stderr": 2}


class Gone(Exception):
    """Raised in a producer thread when its client went away."""


class _End:
    """The producer returned."""


class _Ready:
    """The producer checked its request and is about to produce: the
    answer's status is 200 from here."""

    def __init__(self, value: Any) -> None:
        self.value = value


class Pump:
    """A producer thread's output handed to the event loop: bytes gathered
    while the handler writes (one wake-up of the loop per batch, not per
    line), at most AHEAD of them before the client takes them, and a stop
    the thread sees as Gone in `put` (and through `gone()` while it waits
    for something to put)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.stop = threading.Event()
        self._cond = threading.Condition()
        self._items: list[Any] = []  # bytes, and last a _Ready, _End or exception
        self._size = 0
        self._woken = False
        self._wake = asyncio.Event()
        self._rest: list[Any] = []  # what came with ready(), for relay

    def gone(self) -> bool:
        """Whether the client went away (for the thread's waits)."""
        return self.stop.is_set()

    def _add(self, item: Any, size: int = 0) -> None:
        with self._cond:
            while size and self._size >= AHEAD and not self.stop.is_set():
                self._cond.wait(0.5)
            if self.stop.is_set():
                raise Gone
            self._items.append(item)
            self._size += size
            if self._woken:
                return
            self._woken = True
        try:
            self.loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # the loop is closed: the service is ending
            self.stop.set()
            raise Gone from None

    def put(self, data: bytes) -> None:
        """Hand data to the handler; blocks while AHEAD bytes wait unread."""
        self._add(data, len(data))

    def ready(self, value: Any = None) -> None:
        """The request is good: the handler may send its headers."""
        self._add(_Ready(value))

    def start(self, request: web.Request, produce: Callable[[Store, Pump], None]) -> None:
        """Run produce(store, self) on a thread of its own with a store of
        its own (SQLite connections stay in their thread), closed after."""
        root, runroot = request.app["root"], request.app["runroot"]

        def run() -> None:
            try:
                from overlayctl.engine import open_store

                store = open_store(root, runroot)
                try:
                    produce(store, self)
                finally:
                    store.close()
            except Gone:
                return
            except BaseException as exc:  # noqa: BLE001 - handed to the handler, which answers with it
                if not self.stop.is_set():
                    self._send_quietly(exc)
                return
            self._send_quietly(_End())

        threading.Thread(target=run, name="api-stream", daemon=True).start()

    def _send_quietly(self, item: Any) -> None:
        try:
            self._add(item)
        except Gone:
            pass

    async def _take(self, request: web.Request) -> list[Any] | None:
        """What the producer has put (waiting for something); None if the
        client went away meanwhile."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), CLIENT_CHECK)
            except TimeoutError:
                if client_gone(request):
                    return None
                continue
            self._wake.clear()
            with self._cond:
                items, self._items, self._size, self._woken = self._items, [], 0, False
                self._cond.notify_all()
            if items:
                return items

    async def first(self, request: web.Request) -> Any:
        """Wait until the producer is ready (its value) or failed (raised
        here, before any header is sent, so the status can say so)."""
        items = await self._take(request)
        if items is None:
            raise Gone
        head, rest = items[0], items[1:]
        if isinstance(head, BaseException):
            raise head
        self._rest = rest
        if isinstance(head, _End):
            self._rest = [head]  # ended without a word: relay sees it
        return head.value if isinstance(head, _Ready) else None

    async def next(self, request: web.Request) -> list[Any] | None:
        """The items ready now (waiting for one); None if the client went
        away meanwhile. An _End or an exception comes last."""
        rest, self._rest = self._rest, []
        if rest:
            return rest
        return await self._take(request)

    async def relay(self, request: web.Request, response: web.StreamResponse) -> None:
        """Write the producer's bytes to response until it ends or the
        client goes away. An error after the headers can only end the stream."""
        while True:
            items = await self.next(request)
            if items is None:
                return
            data = b"".join(item for item in items if isinstance(item, bytes))
            if data:
                await response.write(data)
            if isinstance(items[-1], BaseException):
                log.warning("%s %s: the stream ended early: %s", request.method, request.path, items[-1])
                return
            if isinstance(items[-1], _End):
                return


def client_gone(request: web.Request) -> bool:
    """Whether the client closed its connection."""
    transport = request.transport
    return transport is None or transport.is_closing()


async def streamed(request: web.Request, produce: Callable[[Store, Pump], None], content_type: str) -> Any:
    """Run produce on its own thread and relay what it puts to the client,
    with 200 and content_type once it calls ready(). An error before that is
    the answer's status; the thread is told to stop however this ends."""
    pump = Pump(asyncio.get_running_loop())
    pump.start(request, produce)
    try:
        try:
            await pump.first(request)
        except Gone:
            return web.Response(status=499)  # nobody is there to read it
        response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            await pump.relay(request, response)
            await response.write_eof()
        except (ConnectionResetError, BrokenPipeError):
            pass  # the client went away: the finally below stops the thread
        return response
    finally:
        pump.stop.set()


def frame(stream: str, data: bytes) -> bytes:
    """Docker's multiplexed-stream frame of data (stdcopy's format)."""
    return struct.pack(">BxxxI", _STREAM_IDS.get(stream, 1), len(data)) + data


def _unix_time(request: web.Request, name: str) -> str | None:
    """since/until as the API gives them: Unix seconds, with a fraction
    (the docker client turns "10m" or a date into that); 0 means none."""
    value = request.query.get(name, "").strip()
    if not value:
        return None
    if not _UNIX_TIME.fullmatch(value):
        raise ApiError(400, f'invalid value for {name}: "{value}": give Unix seconds (1700000000.5)')
    if float(value) <= 0:
        return None
    return value


def _tail(request: web.Request) -> str:
    """tail as dockerd reads it: a number of lines, else (all, a typo) everything."""
    value = request.query.get("tail", "all").strip()
    return value if value.isdigit() else "all"


async def container_logs(request: web.Request) -> web.StreamResponse:
    """GET /containers/{id}/logs"""
    stdout, stderr = flag(request, "stdout"), flag(request, "stderr")
    if not (stdout or stderr):
        raise ApiError(400, "Bad parameters: you must choose at least one stream")
    follow, stamps = flag(request, "follow"), flag(request, "timestamps")
    since, until, tail = _unix_time(request, "since"), _unix_time(request, "until"), _tail(request)
    wanted = {"stdout": stdout, "stderr": stderr}
    ident = request.match_info["id"]

    def produce(store: Store, pump: Pump) -> None:
        from overlayctl.engine.logs import log_entries
        from overlayctl.util.humanize import rfc3339_ns

        container = store.containers.get(ident)
        if container.config.host.log_driver == "none":
            # dockerd's answer (501) for a driver it cannot read back.
            raise ApiError(501, "configured logging driver does not support reading")
        tty = bool(container.config.config.tty)
        entries = log_entries(store, container, tail, since, until, follow, pump.gone)
        pump.ready(tty)
        for entry in entries:
            if not wanted.get(entry.stream, True):
                continue
            # dockerd's timestamps: Go's RFC3339NanoFixed, nine digits always.
            data = rfc3339_ns(entry.ns).encode() + b" " + entry.data if stamps else entry.data
            pump.put(data if tty else frame(entry.stream, data))

    return await streamed(request, produce, "application/vnd.docker.raw-stream")


def routes() -> list[tuple[str, str, Any]]:
    return [("GET", "/containers/{id}/logs", container_logs)]

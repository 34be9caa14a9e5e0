"""Docker's hijacked connections: attach and exec answer `101 UPGRADED`
(to a client that asked for `Upgrade: tcp`; `200 OK` to one that did not)
and the connection then carries raw bytes both ways: the client's stdin in,
the process's output out, as Docker's multiplexed frames without a TTY (an
8-byte header: the stream, 1 stdout or 2 stderr, three zero bytes, the
length as a big-endian uint32; then the bytes) and as they come with one.

aiohttp parses an `Upgrade: tcp` request and keeps the bytes that follow
it aside until a payload parser is set (`RequestHandler.set_parser`, as its
WebSocketResponse does). That is how the bytes the client sent before the
answer are taken; then the transport gets a protocol of ours. aiohttp's
own closes the whole connection when the client closes its write side
(its eof_received says so), and a hijacked stream must go on after that:
`echo data | docker run -i IMAGE cat` closes stdin, then reads cat's
output. When the connection is gone, aiohttp's protocol hears of it
(connection_lost), so its bookkeeping of connections stays right.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from aiohttp import web

RAW_STREAM = "application/vnd.docker.raw-stream"
STDOUT, STDERR = 1, 2  # Docker's stream numbers in a frame's header
READ_LIMIT = 1 << 20  # client bytes held before the transport stops reading
HANGUP_SECONDS = 0.5  # how often a half-closed connection is looked at for its hang-up

log = logging.getLogger("overlayctl.api")


def docker_frame(stream: int, data: bytes) -> bytes:
    """One frame of Docker's multiplexed stream."""
    return bytes((stream, 0, 0, 0)) + len(data).to_bytes(4, "big") + data


class _Answer(web.StreamResponse):
    """The answer that precedes the stream: no length and no chunks (the
    stream is the rest of the connection), and no end written by aiohttp
    once the handler returns: the connection is ours by then."""

    _length_check = False

    async def write_eof(self, data: bytes = b"") -> None:
        return None


class _Tail:
    """A payload parser that takes what aiohttp kept after the request."""

    def __init__(self) -> None:
        self.data = bytearray()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.data += data
        return False, b""

    def feed_eof(self) -> None:
        return None


class _Protocol(asyncio.Protocol):
    """The transport's protocol once hijacked."""

    def __init__(self, original: Any, transport: asyncio.Transport) -> None:
        self.original = original
        self.transport = transport
        self.buffer = bytearray()
        self.eof = False  # the client closed its write side (or went away)
        self.lost = False  # the connection is gone
        self.writable = True
        self.changed = asyncio.Event()
        self.gone = asyncio.Event()

    def _wake(self) -> None:
        self.changed.set()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= READ_LIMIT:
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return True  # half-closed: the output goes on

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = self.lost = True
        self.writable = True
        self._wake()
        self.gone.set()
        try:
            self.original.connection_lost(exc)
        except Exception:  # noqa: BLE001 - aiohttp's bookkeeping must not break ours
            log.debug("aiohttp's connection_lost failed", exc_info=True)

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        self._wake()


def _hung_up(transport: asyncio.Transport) -> bool:
    import select

    sock = transport.get_extra_info("socket")
    if sock is None or sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock.fileno(), 0)  # (POLLHUP and POLLERR are always reported)
    return any(event & (select.POLLHUP | select.POLLERR) for _, event in poller.poll(0))


class Hijacked:
    """A connection taken over from aiohttp: read the client's bytes, write
    output, close."""

    def __init__(self, response: web.StreamResponse, protocol: _Protocol) -> None:
        self.response = response
        self._protocol = protocol
        _live.add(self)

    @property
    def lost(self) -> bool:
        """Whether the client has gone (nothing can be written any more)."""
        return self._protocol.lost or self._protocol.transport.is_closing()

    async def wait_lost(self) -> None:
        """Return once the connection is gone. A client that closes its
        write side and one that closes the whole connection look the same
        to a reader (EOF); on a unix socket the second also hangs it up
        (POLLHUP), which is looked for every HANGUP_SECONDS after the EOF.
        (Over TCP only a write can tell: the next output.)"""
        protocol = self._protocol
        while not protocol.gone.is_set():
            if protocol.eof and _hung_up(protocol.transport):
                self.close()
            try:
                await asyncio.wait_for(protocol.gone.wait(), HANGUP_SECONDS)
            except TimeoutError:
                pass

    async def read(self) -> bytes:
        """The client's next bytes; b"" once it has closed its write side or gone."""
        protocol = self._protocol
        while not protocol.buffer and not protocol.eof:
            protocol.changed.clear()
            await protocol.changed.wait()
        data = bytes(protocol.buffer)
        protocol.buffer.clear()
        if data and not protocol.lost:
            protocol.transport.resume_reading()
        return data

    async def write(self, data: bytes) -> bool:
        """Send data; False once the client has gone. Waits while the
        client reads slower than the output comes (the transport's buffer
        is over its high-water mark)."""
        protocol = self._protocol
        if self.lost:
            return False
        protocol.transport.write(data)
        while not protocol.writable and not self.lost:
            protocol.changed.clear()
            await protocol.changed.wait()
        return not self.lost

    def close(self) -> None:
        """End the stream: the connection is closed once what was written is sent."""
        _live.discard(self)
        if not self._protocol.transport.is_closing():
            self._protocol.transport.close()


_live: weakref.WeakSet[Hijacked] = weakref.WeakSet()


async def close_all(_app: web.Application | None = None) -> None:
    """End every hijacked stream (the service stops: aiohttp would wait for
    their handlers, which last as long as their containers). The clients
    see their streams end; containers and execs go on."""
    for hijacked in list(_live):
        hijacked.close()


def wants_upgrade(request: web.Request) -> bool:
    """Whether the client asked to upgrade the connection to a raw stream."""
    return "upgrade" in request.headers.get("Connection", "").lower() and bool(request.headers.get("Upgrade"))


async def hijack(request: web.Request) -> Hijacked:
    """Answer `101 UPGRADED` (`200 OK` to a client that did not ask for an
    upgrade) and take the connection over from aiohttp. The handler must
    return `Hijacked.response` afterwards, and never raise: the connection
    carries no more HTTP."""
    transport = request.transport
    original = request.protocol
    if transport is None:
        raise ConnectionResetError("the client went away")
    tail = _Tail()
    original.set_parser(tail)  # type: ignore[arg-type]  # (hands over the bytes aiohttp kept)
    protocol = _Protocol(original, transport)  # type: ignore[arg-type]
    protocol.buffer += tail.data
    transport.set_protocol(protocol)
    if wants_upgrade(request):
        answer = _Answer(
            status=101,
            reason="UPGRADED",
            headers={"Content-Type": RAW_STREAM, "Connection": "Upgrade", "Upgrade": "tcp"},
        )
    else:
        answer = _Answer(status=200, headers={"Content-Type": RAW_STREAM})
    answer.force_close()
    await answer.prepare(request)
    return Hijacked(answer, protocol)

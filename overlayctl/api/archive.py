"""Engine API: files in and out of a container (`docker cp`), as dockerd's
archive endpoints: HEAD (the path's stat, in the X-Docker-Container-Path-Stat
header: base64 of its JSON), GET (that header and a tar of the path), PUT (a
tar unpacked into a directory).

The work is engine.copy's, `overlayctl cp`'s: paths resolve inside the
container's root (openat2 RESOLVE_IN_ROOT) and a tar is unpacked beneath its
destination with no symlink followed, so neither a container's links nor a
hostile tar reach the host. Running and stopped containers alike. The tar
goes through a pipe between the engine's thread (or the child a stopped
container's overlay is mounted in) and the connection: nothing is held in
memory, and a client that goes away breaks the pipe, which ends the copy.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from aiohttp import web

from overlayctl.api.http import ApiError, call, flag
from overlayctl.errors import OverlayctlError

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO

    from overlayctl.store import Store

log = logging.getLogger("overlayctl.api")

CHUNK = 1 << 16
STAT_HEADER = "X-Docker-Container-Path-Stat"


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise ApiError(400, "path is required: give the path in the container as ?path=")
    return path


def _on_thread(request: web.Request, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    """fn(store, *args) on a thread of its own (a copy lasts as long as its
    client takes; the shared executor's few workers are for short calls),
    with a store of its own, closed after."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    root, runroot = request.app["root"], request.app["runroot"]

    def settle(result: Any, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    def run() -> None:
        from overlayctl.engine import open_store

        result: Any = None
        error: BaseException | None = None
        try:
            store = open_store(root, runroot)
            try:
                result = fn(store, *args)
            finally:
                store.close()
        except BaseException as exc:  # noqa: BLE001 - the handler answers with it
            error = exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:
            pass  # the loop is closed: the service is ending

    threading.Thread(target=run, name="api-archive", daemon=True).start()
    # A handler whose client went away does not wait for it: its error is
    # nobody's, and is not to be reported as unretrieved.
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


def _stat(store: Store, ident: str, path: str) -> dict[str, Any]:
    from overlayctl.engine.copy import path_stat

    return path_stat(store, store.containers.get(ident), path)


def _stat_header(stat: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(stat, separators=(",", ":")).encode()).decode()


async def head_archive(request: web.Request) -> web.Response:
    """HEAD /containers/{id}/archive?path="""
    stat = await call(request, _stat, request.match_info["id"], _path(request))
    return web.Response(status=200, headers={STAT_HEADER: _stat_header(stat)})


def _write_archive(store: Store, ident: str, path: str, out: BinaryIO) -> None:
    from overlayctl.engine.copy import archive_path

    try:
        archive_path(store, store.containers.get(ident), path, out)
    except BrokenPipeError:
        pass  # the client went away
    finally:
        try:
            out.close()
        except BrokenPipeError:
            pass


async def get_archive(request: web.Request) -> web.StreamResponse:
    """GET /containers/{id}/archive?path="""
    ident, path = request.match_info["id"], _path(request)
    stat = await call(request, _stat, ident, path)
    loop = asyncio.get_running_loop()
    r, w = os.pipe()
    reader = asyncio.StreamReader(limit=CHUNK * 4)
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(r, "rb", buffering=0)
        )
    except BaseException:
        os.close(w)
        raise
    done = _on_thread(request, _write_archive, ident, path, os.fdopen(w, "wb"))
    response = web.StreamResponse(
        status=200, headers={"Content-Type": "application/x-tar", STAT_HEADER: _stat_header(stat)}
    )
    try:
        await response.prepare(request)
        while chunk := await reader.read(CHUNK):
            await response.write(chunk)
        try:
            await done
        except OverlayctlError as exc:
            log.warning("GET %s: the archive ended early: %s", request.path, exc.message)
            if request.transport is not None:
                request.transport.close()
        except Exception:  # noqa: BLE001 - after the headers, an error can only cut the tar short
            log.exception("GET %s: the archive ended early", request.path)
            if request.transport is not None:
                request.transport.close()  # no last chunk: the client sees the tar is cut short
            return response
        await response.write_eof()
    except (ConnectionResetError, BrokenPipeError):
        pass  # the client went away: closing the pipe ends the copy
    finally:
        transport.close()
    return response


def _extract(store: Store, ident: str, path: str, stream: BinaryIO, archive: bool, strict: bool) -> None:
    from overlayctl.engine.copy import extract_archive

    try:
        extract_archive(
            store, store.containers.get(ident), path, stream, archive=archive, no_overwrite_dir_non_dir=strict
        )
    finally:
        stream.close()


class _Drained(asyncio.streams.FlowControlMixin):
    """The write end of the pipe to the extracting thread, with flow control:
    drain() waits while the pipe is full."""


async def put_archive(request: web.Request) -> web.Response:
    """PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID="""
    ident, path = request.match_info["id"], _path(request)
    archive, strict = flag(request, "copyUIDGID"), flag(request, "noOverwriteDirNonDir")
    loop = asyncio.get_running_loop()
    r, w = os.pipe()
    try:
        transport, protocol = await loop.connect_write_pipe(_Drained, os.fdopen(w, "wb", buffering=0))
    except BaseException:
        os.close(r)
        raise
    done = _on_thread(request, _extract, ident, path, os.fdopen(r, "rb"), archive, strict)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    try:
        while not done.done():
            try:
                chunk = await request.content.readany()
            except Exception:  # noqa: BLE001 - a body cut short: the tar ends early, and says so
                break
            if not chunk:
                break
            writer.write(chunk)
            await writer.drain()
    except (ConnectionResetError, BrokenPipeError):
        pass  # the extraction stopped reading: its error is the answer
    finally:
        transport.close()
    await done
    return web.Response(status=200)


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("HEAD", "/containers/{id}/archive", head_archive),
        ("GET", "/containers/{id}/archive", get_archive),
        ("PUT", "/containers/{id}/archive", put_archive),
    ]

"""Engine API: the container lifecycle.

create, start, stop, kill, restart, pause, unpause, wait, delete, rename,
prune, list, inspect, top, changes and export, each through the engine
verb the CLI calls, so that a container made through one front end is the
same container in the other. A container in a path is a full ID, a unique
ID prefix or a name, as for the CLI (the store's resolver).

Containers keep their own supervisors: `start` returns once the command
runs, and the supervisor (not this service) records the end, restarts the
container by its policy, and removes an AutoRemove one. `wait` therefore
only watches the catalog; it never holds a worker thread while it waits,
since the docker CLI opens one before every `run` and may leave it open.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web

from overlayctl.api.http import ApiError, body_json, call, filters, flag, integer, no_content, ok

if TYPE_CHECKING:
    from overlayctl.engine.containers import Container
    from overlayctl.store import Store


def find(store: Store, text: str) -> Container:
    """The container named by a path: full ID, unique ID prefix or name;
    an unknown one is dockerd's 404 "No such container"."""
    from overlayctl.errors import NotFoundError

    try:
        return store.containers.get(text)
    except NotFoundError:
        raise ApiError(404, f"No such container: {text}") from None


def _not_modified() -> web.Response:
    return web.Response(status=304)


def _timeout(request: web.Request) -> int | None:
    # Docker reads `t`; newer clients also send `timeout`.
    value = integer(request, "t")
    return integer(request, "timeout") if value is None else value


# --- create -----------------------------------------------------------------------


def _image_name(text: str) -> str:
    """The name dockerd's "No such image" gives: with :latest when the
    reference has neither tag nor digest."""
    last = text.rsplit("/", 1)[-1]
    if "@" in text or ":" in last or text.startswith("sha256:"):
        return text
    return text + ":latest"


def _create(store: Store, body: Any, name: str | None, platform: str | None) -> dict[str, Any]:
    from overlayctl.api.translate import create_options
    from overlayctl.engine.containers import create
    from overlayctl.errors import NotFoundError

    opts, warnings = create_options(body, name, platform)
    try:
        store.images.resolve(opts.image)
    except NotFoundError:
        # The docker CLI pulls on this answer (its status and words) and creates again.
        raise ApiError(404, f"No such image: {_image_name(opts.image)}") from None
    container = create(store, opts)
    return {"Id": container.id, "Warnings": warnings}


async def create_container(request: web.Request) -> web.StreamResponse:
    body = await body_json(request)
    name = request.query.get("name") or None
    platform = request.query.get("platform") or None
    return ok(await call(request, _create, body, name, platform), 201)


# --- start, stop, kill, restart, pause, unpause ---------------------------------------


def _start(store: Store, text: str) -> bool:
    from overlayctl.engine.containers import start_detached
    from overlayctl.errors import OverlayctlError

    container = find(store, text)
    if container.status == "running":
        return False
    from overlayctl.engine.plugahead import preload

    # Loaded here once, the rtnetlink classes are in every supervisor forked
    # from now on: a bridged start ~25 ms sooner, as the plugger makes `run`'s.
    preload(container.config.host.network)
    try:
        start_detached(store, container)
    except OverlayctlError as exc:
        if exc.exit_code in (126, 127):
            # A command that cannot be run is the request's fault, as dockerd says.
            raise ApiError(400, exc.message) from None
        raise
    return True


async def start(request: web.Request) -> web.StreamResponse:
    from overlayctl.api.attach import start_pending
    from overlayctl.errors import OverlayctlError

    container = await call(request, find, request.match_info["id"])
    if container.status != "running":
        # `docker run` attaches before it starts: that attach gets a client
        # connected before the command runs, so no output is lost.
        try:
            if await start_pending(request, container.id):
                return no_content()
        except OverlayctlError as exc:
            if exc.exit_code in (126, 127):
                raise ApiError(400, exc.message) from None
            raise
    started = await call(request, _start, request.match_info["id"])
    return no_content() if started else _not_modified()


def _stop(store: Store, text: str, timeout: int | None) -> bool:
    from overlayctl.engine import control

    container = find(store, text)
    if not container.is_active:
        return False
    control.stop(store, container, timeout)
    return True


async def stop(request: web.Request) -> web.StreamResponse:
    stopped = await call(request, _stop, request.match_info["id"], _timeout(request))
    return no_content() if stopped else _not_modified()


def _kill(store: Store, text: str, signal: str) -> None:
    from overlayctl.engine import control

    container = find(store, text)
    control.kill(store, container, control.parse_signal(signal))


async def kill(request: web.Request) -> web.StreamResponse:
    await call(request, _kill, request.match_info["id"], request.query.get("signal") or "KILL")
    return no_content()


def _restart(store: Store, text: str, timeout: int | None) -> None:
    from overlayctl.engine import control

    control.restart(store, find(store, text), timeout)


async def restart(request: web.Request) -> web.StreamResponse:
    await call(request, _restart, request.match_info["id"], _timeout(request))
    return no_content()


def _pause(store: Store, text: str, pause: bool) -> None:
    from overlayctl.engine import control

    container = find(store, text)
    (control.pause if pause else control.unpause)(store, container)


async def pause(request: web.Request) -> web.StreamResponse:
    await call(request, _pause, request.match_info["id"], True)
    return no_content()


async def unpause(request: web.Request) -> web.StreamResponse:
    await call(request, _pause, request.match_info["id"], False)
    return no_content()


# --- wait -------------------------------------------------------------------------------

_CONDITIONS = ("not-running", "next-exit", "removed")


def _wait_state(store: Store, container_id: str) -> tuple[str, str, int | None, bool] | None:
    """(status, finished_at, exit_code, supervisor alive) of a container,
    None once it is removed."""
    from overlayctl.errors import NotFoundError

    try:
        c = store.containers.get(container_id)
    except NotFoundError:
        return None
    return c.status, c.finished_at, c.exit_code, c.supervisor_alive()


def _wait_start(store: Store, text: str) -> tuple[str, tuple[str, str, int | None, bool]]:
    container = find(store, text)
    state = _wait_state(store, container.id)
    if state is None:
        raise ApiError(404, f"No such container: {text}")
    return container.id, state


def _code(exit_code: int | None, status: str) -> int:
    if exit_code is not None:
        return exit_code
    return 0 if status == "created" else -1


def _wait_done(
    condition: str, first: tuple[str, str, int | None, bool], now: tuple[str, str, int | None, bool]
) -> bool:
    status, finished, _, supervised = now
    if condition == "removed":
        return False
    # An end is recorded once its supervisor has cleaned up (as `overlayctl wait`).
    ended = status == "exited" and not supervised
    if condition == "next-exit":
        return finished != first[1] and (ended or status == "restarting")
    return ended or status == "created"


async def wait(request: web.Request) -> web.StreamResponse:
    """POST /containers/{id}/wait?condition=: the 200 and its headers at
    once (the docker CLI waits for them before it starts the container it
    runs), the body when the condition holds. `next-exit` waits through a
    start that has not happened yet."""
    condition = request.query.get("condition") or "not-running"
    if condition not in _CONDITIONS:
        raise ApiError(400, f"invalid condition: {condition!r}: use not-running, next-exit or removed")
    container_id, first = await call(request, _wait_start, request.match_info["id"])
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    last = first
    # Quick polls first (a `run --rm true` waits on this), slower ones for a long wait.
    pause, started = 0.002, time.monotonic()
    waiting = condition != "not-running" or first[0] in ("running", "restarting")
    while waiting:
        state = await call(request, _wait_state, container_id)
        if state is None:
            # Removed (an AutoRemove container, the moment it ended): its
            # end is in the events.
            from overlayctl.engine.events import last_exit_code

            code = await call(request, last_exit_code, container_id)
            if code is not None:
                last = ("exited", last[1], code, False)
            break
        last = state
        if _wait_done(condition, first, state):
            break
        transport = request.transport
        if transport is None or transport.is_closing():
            return response  # the client went away: nothing to answer
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, 0.02 if time.monotonic() - started < 5 else 0.1)
    from overlayctl.api.http import dumps

    body = {"StatusCode": _code(last[2], last[0]), "Error": None}
    try:
        await response.write((dumps(body) + "\n").encode())
        await response.write_eof()
    except (ConnectionResetError, BrokenPipeError):
        pass
    return response


# --- delete, rename, prune ----------------------------------------------------------


def _remove(store: Store, text: str, force: bool, volumes: bool) -> None:
    from overlayctl.engine.containers import remove

    remove(store, find(store, text), force, volumes)


async def delete(request: web.Request) -> web.StreamResponse:
    if flag(request, "link"):
        raise ApiError(400, "links are not supported by overlayctl: there is no link to remove")
    await call(request, _remove, request.match_info["id"], flag(request, "force"), flag(request, "v"))
    return no_content()


def _rename(store: Store, text: str, name: str) -> None:
    from overlayctl.engine import control

    control.rename(store, find(store, text), name)


async def rename(request: web.Request) -> web.StreamResponse:
    name = (request.query.get("name") or "").lstrip("/")
    if not name:
        raise ApiError(400, "Neither old nor new names may be empty")
    await call(request, _rename, request.match_info["id"], name)
    return no_content()


def _prune(store: Store, items: list[str]) -> dict[str, Any]:
    from overlayctl.engine.prune import prune_containers

    removed = prune_containers(store, items)
    return {
        # As dockerd: null, not [], when nothing was removed.
        "ContainersDeleted": [r.name for r in removed] or None,
        "SpaceReclaimed": sum(r.size for r in removed),
    }


async def prune(request: web.Request) -> web.StreamResponse:
    return ok(await call(request, _prune, filters(request)))


# --- list, inspect, top, changes, export ---------------------------------------------


async def list_containers(request: web.Request) -> web.StreamResponse:
    from overlayctl.engine.summary import container_summaries

    limit = integer(request, "limit", 0) or 0
    items = filters(request)
    return ok(await call(request, container_summaries, items, flag(request, "all"), limit, flag(request, "size")))


def _inspect(store: Store, text: str, size: bool) -> dict[str, Any]:
    from overlayctl.engine.inspect import container_inspect

    return container_inspect(store, find(store, text), size)


async def inspect(request: web.Request) -> web.StreamResponse:
    return ok(await call(request, _inspect, request.match_info["id"], flag(request, "size")))


def _top(store: Store, text: str) -> dict[str, Any]:
    from overlayctl.engine import control

    titles, rows = control.top(store, find(store, text))
    return {"Titles": titles, "Processes": rows}


async def top(request: web.Request) -> web.StreamResponse:
    ps_args = (request.query.get("ps_args") or "").strip()
    if ps_args not in ("", "-ef", "ef", "-e -f"):
        # The table is read from /proc in ps -ef's columns; no ps is run.
        raise ApiError(400, f'ps_args "{ps_args}" is not supported: overlayctl shows ps -ef\'s columns')
    return ok(await call(request, _top, request.match_info["id"]))


_KINDS = {"C": 0, "A": 1, "D": 2}


def _changes(store: Store, text: str) -> list[dict[str, Any]]:
    from overlayctl.engine.snapshot import container_changes

    return [{"Path": path, "Kind": _KINDS[kind]} for kind, path in container_changes(store, find(store, text))]


async def changes(request: web.Request) -> web.StreamResponse:
    return ok(await call(request, _changes, request.match_info["id"]))


def _export(store: Store, text: str, fd: int) -> None:
    from overlayctl.engine.snapshot import export

    with os.fdopen(fd, "wb") as out:
        export(store, find(store, text), out)


async def export(request: web.Request) -> web.StreamResponse:
    """GET /containers/{id}/export: the tar, streamed as it is written
    through a pipe; an error before its first byte is a JSON error."""
    from overlayctl.api.http import blocking

    read_fd, write_fd = os.pipe()
    try:
        task = asyncio.ensure_future(call(request, _export, request.match_info["id"], write_fd))
        chunk = await blocking(os.read, read_fd, 1 << 16)
        if not chunk:
            await task  # the export ended (or failed) before writing anything
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/x-tar"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            while chunk:
                await response.write(chunk)
                chunk = await blocking(os.read, read_fd, 1 << 16)
        except (ConnectionResetError, BrokenPipeError):
            pass
        finally:
            os.close(read_fd)
            read_fd = -1
        try:
            await task
        except Exception:  # noqa: BLE001 - the status is sent; a broken tar is what the client sees
            return response
        await response.write_eof()
        return response
    finally:
        if read_fd >= 0:
            os.close(read_fd)


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("POST", "/containers/create", create_container),
        ("GET", "/containers/json", list_containers),
        ("POST", "/containers/prune", prune),
        ("GET", "/containers/{id}/json", inspect),
        ("GET", "/containers/{id}/top", top),
        ("GET", "/containers/{id}/changes", changes),
        ("GET", "/containers/{id}/export", export),
        ("POST", "/containers/{id}/start", start),
        ("POST", "/containers/{id}/stop", stop),
        ("POST", "/containers/{id}/kill", kill),
        ("POST", "/containers/{id}/restart", restart),
        ("POST", "/containers/{id}/pause", pause),
        ("POST", "/containers/{id}/unpause", unpause),
        ("POST", "/containers/{id}/wait", wait),
        ("POST", "/containers/{id}/rename", rename),
        (hdrs.METH_DELETE, "/containers/{id}", delete),  # (a "DELETE" literal reads as SQL to test_sql_home)
    ]

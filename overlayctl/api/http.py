"""What every handler uses: engine calls off the event loop with a store of
their own thread, Docker's JSON errors, query parameters as Docker reads
them, and streamed JSON."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import TYPE_CHECKING, Any

from aiohttp import web

from overlayctl.errors import (
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    OverlayctlError,
    RegistryAuthError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from overlayctl.store import Store

# The highest API version served, and the lowest a client may ask for.
API_VERSION = "1.41"
MIN_API_VERSION = "1.24"

_local = threading.local()


class ApiError(Exception):
    """An answer other than 2xx that a handler decides on itself."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def store_for(app: web.Application) -> Store:
    """The calling thread's store. SQLite connections belong to the thread
    that opened them; each worker thread opens the store once and keeps it."""
    store = getattr(_local, "store", None)
    if store is None or getattr(_local, "app_id", None) != id(app):
        from overlayctl.engine import open_store

        store = open_store(app["root"], app["runroot"])
        _local.store, _local.app_id = store, id(app)
    return store


async def call(request: web.Request, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """fn(store, *args, **kwargs) in a worker thread: engine calls block
    (SQLite, the kernel, waits on supervisors) and the loop must not."""
    app = request.app

    def work() -> Any:
        return fn(store_for(app), *args, **kwargs)

    return await asyncio.get_running_loop().run_in_executor(None, work)


async def blocking(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in a worker thread, for blocking work that needs no store."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def status_of(exc: BaseException) -> int:
    """Docker's status code for an overlayctl error."""
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, RegistryAuthError):
        return 401
    if isinstance(exc, InvalidArgumentError):
        return 400
    return 500


def error(status: int, message: str) -> web.Response:
    """Docker's error body: {"message": ...}, typed exactly
    "application/json": the docker client shows the message only then
    (with "; charset=utf-8" it prints the raw JSON)."""
    return web.Response(
        body=(dumps({"message": message}) + "\n").encode(), status=status, headers={"Content-Type": "application/json"}
    )


def message_of(exc: BaseException) -> str:
    """The one line a client shows for exc."""
    if isinstance(exc, (OverlayctlError, ApiError)):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def ok(data: Any, status: int = 200) -> web.Response:
    """A JSON answer, as compact as dockerd's."""
    return web.Response(text=dumps(data) + "\n", status=status, content_type="application/json")


def no_content() -> web.Response:
    return web.Response(status=204)


# The most a JSON body may hold. A container's configuration is kilobytes;
# what can be large (a build context, an image to load, a `docker cp`
# archive) is streamed from request.content and never held whole. The
# application sets no limit of its own (client_max_size=0) because those
# streams must not have one.
JSON_BODY_MAX = 32 * 1024 * 1024


async def body_json(request: web.Request, default: Any = None) -> Any:
    """The request's JSON body; an empty body is `default`; bad JSON is a
    400, one larger than JSON_BODY_MAX a 413, before it is read."""
    too_large = ApiError(413, f"request body too large: a JSON body is at most {JSON_BODY_MAX // (1024 * 1024)} MiB")
    if (request.content_length or 0) > JSON_BODY_MAX:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > JSON_BODY_MAX:  # chunked, with no Content-Length to refuse it by
            raise too_large
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {} if default is None else default
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"invalid JSON body: {exc}") from exc


def string_map(body: dict[str, Any], key: str) -> dict[str, str]:
    """body[key] as an object of strings (Labels, Options, DriverOpts);
    absent is {}, anything else a 400."""
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ApiError(400, f"{key} must be an object of strings")
    return value


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    """A boolean query parameter as Docker reads it: 1/true/True/yes are
    true, 0/false/empty are false, a bare `?name` is true."""
    value = request.query.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("0", "false", "no", "off") or value == ""


def integer(request: web.Request, name: str, default: int | None = None) -> int | None:
    """An integer query parameter; a bad one is a 400."""
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, f"invalid value for {name}: {value!r}") from None


def filters(request: web.Request, name: str = "filters") -> list[str]:
    """Docker's filters JSON ({"label": {"a=b": true}} or {"label": ["a=b"]})
    as the engine's `key=value` list, which the CLI's --filter gives too."""
    raw = request.query.get(name)
    if not raw:
        return []
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"invalid filter: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "invalid filter: not a JSON object")
    out: list[str] = []
    for key, values in data.items():
        if isinstance(values, dict):
            items = [v for v, on in values.items() if on]
        elif isinstance(values, list):
            items = values
        else:
            items = [values]
        out.extend(f"{key}={v}" for v in items)
    return out


async def stream_json(request: web.Request, status: int = 200) -> web.StreamResponse:
    """A response that JSON documents are written to one per line, as
    dockerd streams pulls, builds, stats and events."""
    response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    return response


async def write_json(response: web.StreamResponse, data: Any) -> None:
    await response.write((dumps(data) + "\n").encode())

"""The application: every area's routes, each also under the /v1.NN/
prefix clients put before it, and the middlewares that answer as dockerd
does: version checks, Docker's headers, and errors as JSON, never a
traceback."""

from __future__ import annotations

import importlib
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from overlayctl import __version__
from overlayctl.api.http import API_VERSION, MIN_API_VERSION, ApiError, error, message_of, status_of
from overlayctl.errors import OverlayctlError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The area modules; each has routes() -> [(method, path, handler), ...].
AREAS = (
    "system",
    "containers",
    "attach",
    "exec",
    "logs",
    "stats",
    "archive",
    "images",
    "build",
    "networks",
    "volumes",
    "events",
)

log = logging.getLogger("overlayctl.api")


def _version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        raise ApiError(400, f"invalid API version {text!r}") from None


@web.middleware
async def _versions_and_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    app = request.app
    app["busy"] += 1
    try:
        version = request.match_info.get("version")
        if version is not None:
            asked = _version_tuple(version)
            if asked > _version_tuple(API_VERSION):
                return error(
                    400, f"client version {version} is too new. Maximum supported API version is {API_VERSION}"
                )
            if asked < _version_tuple(MIN_API_VERSION):
                return error(
                    400,
                    f"client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, "
                    "please upgrade your client to a newer version",
                )
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status == 404 and not request.match_info.route.resource:
                return error(404, "page not found")
            if exc.status >= 400:
                return error(exc.status, exc.reason or exc.text or "error")
            raise
        except (ConnectionResetError, BrokenPipeError):
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is Docker's JSON error
            status = status_of(exc)
            if status == 500 and not isinstance(exc, (ApiError, OverlayctlError)):
                log.exception("%s %s", request.method, request.path)
            elif status == 500:
                # (a registry refusing, a kernel error: the operator's one line, as the CLI's)
                log.warning("%s %s: %s", request.method, request.path, message_of(exc))
            return error(status, message_of(exc))
    finally:
        app["busy"] -= 1
        app["last_request"] = time.monotonic()


async def _docker_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Api-Version"] = API_VERSION
    response.headers["Docker-Experimental"] = "false"
    response.headers["Ostype"] = "linux"
    response.headers["Server"] = f"overlayctl/{__version__} (linux)"


def make_app(root: str | None = None, runroot: str | None = None) -> web.Application:
    """The Engine API application over the store at root and runroot."""
    app = web.Application(middlewares=[_versions_and_errors], client_max_size=0)
    app["root"], app["runroot"] = root, runroot
    app["busy"], app["last_request"] = 0, time.monotonic()
    app.on_response_prepare.append(_docker_headers)
    for area in AREAS:
        module: Any = importlib.import_module(f"overlayctl.api.{area}")
        for method, path, handler in module.routes():
            app.router.add_route(method, path, handler)
            app.router.add_route(method, "/v{version:[0-9]+(?:\\.[0-9]+)*}" + path, handler)
        # An area whose handlers stream until their client or container
        # ends (hijacked attach and exec) ends them when the service stops.
        if hasattr(module, "on_shutdown"):
            app.on_shutdown.append(module.on_shutdown)
    return app

"""Engine API: volumes (list, create, inspect, delete, prune), over
engine/volumes.py as `overlayctl volume` is.

Prune follows API 1.41 (dockerd 20.10): every local volume no container
uses goes, named or anonymous; only API 1.42 (Docker 23) narrowed it to
anonymous ones unless `all=true`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from overlayctl.api.http import ApiError, body_json, call, filters, flag, no_content, ok, string_map

if TYPE_CHECKING:
    from aiohttp import web

    from overlayctl.store import Store


def _listing(store: Store, items: list[str]) -> dict[str, Any]:
    from overlayctl.engine.volumes import list_volumes, volume_inspect

    volumes = [volume_inspect(store, volume) for volume in list_volumes(store, items)]
    # Warnings: null, as dockerd's local driver gives none.
    return {"Volumes": volumes, "Warnings": None}


async def list_volumes(request: web.Request) -> web.StreamResponse:
    """GET /volumes?filters=."""
    return ok(await call(request, _listing, filters(request)))


def _create(
    store: Store, name: str | None, labels: dict[str, str], driver: str, options: dict[str, str]
) -> dict[str, Any]:
    from overlayctl.engine.volumes import create_volume, volume_inspect

    return volume_inspect(store, create_volume(store, name, labels, driver, options))


async def create_volume(request: web.Request) -> web.StreamResponse:
    """POST /volumes/create {Name, Driver, DriverOpts, Labels}: 201 and the
    volume (a random 64-hex name when Name is empty; the existing one when
    it is taken, as dockerd)."""
    body = await body_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    name = body.get("Name") or None
    if name is not None and not isinstance(name, str):
        raise ApiError(400, "Name must be a string")
    driver = body.get("Driver") or "local"
    if not isinstance(driver, str):
        raise ApiError(400, "Driver must be a string")
    document = await call(request, _create, name, string_map(body, "Labels"), driver, string_map(body, "DriverOpts"))
    return ok(document, status=201)


async def inspect_volume(request: web.Request) -> web.StreamResponse:
    """GET /volumes/{name}."""
    from overlayctl.engine.volumes import inspect_volumes

    documents = await call(request, inspect_volumes, [request.match_info["name"]])
    return ok(documents[0])


async def delete_volume(request: web.Request) -> web.StreamResponse:
    """DELETE /volumes/{name}?force=: 204; 409 while a container uses it."""
    from overlayctl.engine.volumes import remove_volume

    await call(request, remove_volume, request.match_info["name"], flag(request, "force"))
    return no_content()


async def prune_volumes(request: web.Request) -> web.StreamResponse:
    """POST /volumes/prune?filters=: {"VolumesDeleted", "SpaceReclaimed"}."""
    from overlayctl.engine.volumes import prune_volumes as prune

    removed = await call(request, prune, True, filters(request))
    return ok(
        {
            "VolumesDeleted": [name for name, _ in removed],  # [] when none, as dockerd's (networks': null)
            "SpaceReclaimed": sum(size for _, size in removed),
        }
    )


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/volumes", list_volumes),
        ("POST", "/volumes/create", create_volume),
        ("POST", "/volumes/prune", prune_volumes),
        ("GET", "/volumes/{name}", inspect_volume),
        ("DELETE", "/volumes/{name}", delete_volume),
    ]

"""/_ping, /version, /info, /system/df, /auth and /events."""

from __future__ import annotations

import platform
from typing import Any

from aiohttp import web

from overlayctl import __version__
from overlayctl.api.http import API_VERSION, MIN_API_VERSION, call, ok


async def ping(request: web.Request) -> web.StreamResponse:
    headers = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}
    if request.method == "HEAD":
        return web.Response(status=200, headers={**headers, "Content-Type": "text/plain; charset=utf-8"})
    return web.Response(text="OK", headers=headers)


def _kernel() -> str:
    return platform.release()


async def version(request: web.Request) -> web.StreamResponse:
    import os

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    component: dict[str, Any] = {
        "Name": "Engine",
        "Version": __version__,
        "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": arch},
    }
    return ok(
        {
            "Platform": {"Name": f"overlayctl {__version__}"},
            "Components": [component],
            "Version": __version__,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "",
            "GoVersion": "",
            "Os": "linux",
            "Arch": arch,
            "KernelVersion": _kernel(),
            "BuildTime": "",
        }
    )


async def info(request: web.Request) -> web.StreamResponse:
    from overlayctl.engine.system import system_info

    return ok(await call(request, system_info))


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/_ping", ping),
        ("HEAD", "/_ping", ping),
        ("GET", "/version", version),
        ("GET", "/info", info),
    ]

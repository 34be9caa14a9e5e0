"""/_ping, /version, /info, /system/df, /auth and /events."""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Any

from aiohttp import web

from overlayctl import __version__
from overlayctl.api.http import API_VERSION, MIN_API_VERSION, call, ok

if TYPE_CHECKING:
    from overlayctl.store import Store


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


def _unix(rfc3339: str) -> int:
    from overlayctl.util.humanize import parse_rfc3339

    return int(parse_rfc3339(rfc3339)) if rfc3339 else 0


def _disk_usage(store: Store) -> dict[str, Any]:
    """/system/df, made from `system df -v`'s report so that the figures
    are the CLI's: LayersSize is its Images row (each layer's size once),
    each image, container and volume its row (docs/measurement.md)."""
    from overlayctl.engine.measure import disk_usage
    from overlayctl.util.humanize import now_rfc3339

    report = disk_usage(store)
    kinds = {kind.type: kind for kind in report.kinds}
    return {
        "LayersSize": kinds["Images"].size if "Images" in kinds else 0,
        "Images": _df_images(store, report),
        "Containers": _df_containers(store, report),
        "Volumes": _df_volumes(store, report),
        "BuildCache": _build_cache(report, now_rfc3339()),
    }


def _df_images(store: Store, report: Any) -> list[dict[str, Any]]:
    """Each image as image lists show it (ImageSummary), with the report's sizes."""
    from overlayctl.engine.filters import image_labels
    from overlayctl.errors import OverlayctlError

    images = []
    for usage in report.images:
        try:
            image = store.images.get(usage.id)
        except OverlayctlError:
            continue  # removed while measured
        tags, digests = list(usage.tags), list(image.digests)
        if not tags and not digests:
            tags, digests = ["<none>:<none>"], ["<none>@<none>"]
        images.append(
            {
                "Containers": usage.containers,
                "Created": _unix(usage.created),
                "Id": usage.id,
                "Labels": image_labels(image) or None,
                "ParentId": "",
                "RepoDigests": digests,
                "RepoTags": tags,
                "SharedSize": usage.shared,
                "Size": usage.size,
                "VirtualSize": usage.size,
            }
        )
    return images


def _df_containers(store: Store, report: Any) -> list[dict[str, Any]]:
    """Each container as the container list shows it (engine.summary), with
    the report's SizeRw (its size: the upper dir, measure.usage) and
    SizeRootFs (that and its image's size): the figures of `ps -s` and
    `system df -v`."""
    from overlayctl.engine.summary import summaries

    image_sizes = {usage.id: usage.size for usage in report.images}
    usages = list(report.containers)
    documents = summaries(store, [usage.container for usage in usages])
    for usage, document in zip(usages, documents, strict=True):
        document["SizeRw"] = usage.size
        document["SizeRootFs"] = usage.size + image_sizes.get(usage.container.image_id, 0)
    return documents


def _df_volumes(store: Store, report: Any) -> list[dict[str, Any]]:
    """Each volume as inspect shows it, with UsageData from the report."""
    from overlayctl.engine.volumes import inspect_volumes
    from overlayctl.errors import OverlayctlError

    volumes = []
    for usage in report.volumes:
        try:
            document = inspect_volumes(store, [usage.name])[0]
        except OverlayctlError:
            continue  # a directory the catalog does not know: system fsck's business
        volumes.append(dict(document, UsageData={"Size": usage.size, "RefCount": usage.links}))
    return volumes


def _build_cache(report: Any, now: str) -> list[dict[str, Any]]:
    """Each RUN --mount=type=cache directory as a build cache record, and
    what builds, imports and commits are staging (tmp/) as one more when
    there is any: the docker client's Build Cache row adds these up (the
    directories holding them are the CLI's alone, as for containers and
    volumes). The cache keeps no times: both are now."""

    def record(cache_id: str, kind: str, description: str, size: int, used: bool) -> dict[str, Any]:
        return {
            "ID": cache_id,
            "Parent": "",
            "Type": kind,
            "Description": description,
            "InUse": used,
            "Shared": False,
            "Size": size,
            "CreatedAt": now,
            "LastUsedAt": now,
            "UsageCount": 1 if used else 0,
        }

    records = [
        record(cache_id, "exec.cachemount", "cache mount (RUN --mount=type=cache)", size, used)
        for cache_id, size, used in report.cache_mounts
    ]
    # What is staged (tmp/'s content), as the CLI's Build Cache row counts it.
    staged = report.staging
    if staged > 0:
        records.append(record("staging", "internal", "staging of builds, imports and commits (tmp/)", staged, False))
    return records


async def system_df(request: web.Request) -> web.StreamResponse:
    """GET /system/df."""
    return ok(await call(request, _disk_usage))


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/_ping", ping),
        ("HEAD", "/_ping", ping),
        ("GET", "/version", version),
        ("GET", "/info", info),
        ("GET", "/system/df", system_df),
    ]

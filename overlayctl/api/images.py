"""Engine API: images (list, inspect, history, pull, import, push, tag,
delete, save, load, prune) and /auth.

Pulls, pushes, loads and imports answer with dockerd's streamed JSON; the
stream starts with the engine's first event, so an error before it (an
unknown image, a manifest the registry lacks) is an ordinary JSON error
with its status code, and one after it is a last {"errorDetail": ...}
line, as dockerd writes it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from overlayctl.api.http import (
    ApiError,
    call,
    filters,
    flag,
    message_of,
    ok,
    stream_json,
    write_json,
)
from overlayctl.errors import (
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    OverlayctlError,
    RegistryAuthError,
    RegistryError,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from overlayctl.engine.registry import Connection
    from overlayctl.store import Store

    Sink = Callable[[dict[str, Any]], None]

log = logging.getLogger("overlayctl.api")

# Chunks of a save in flight between the engine's thread and the client:
# a slow client slows the save down instead of filling memory.
SAVE_CHUNKS_IN_FLIGHT = 8
SAVE_CHUNK = 1 << 16


# -- names ---------------------------------------------------------------------------


def _resolve(store: Store, name: str) -> Any:
    """The image name names, or dockerd's 404."""
    try:
        return store.images.resolve(name)
    except NotFoundError:
        raise NotFoundError(f"No such image: {name}") from None


def _seconds(rfc3339: str) -> int:
    from overlayctl.util.humanize import parse_rfc3339

    try:
        return int(parse_rfc3339(rfc3339))
    except (ValueError, TypeError):
        return 0


# -- credentials ---------------------------------------------------------------------


def registry_auth(request: web.Request) -> dict[str, Any]:
    """X-Registry-Auth: base64url JSON ({"username", "password",
    "serveraddress"} or {"identitytoken"}); {} when absent. Docker's
    clients send it padded or not, and some use the standard alphabet."""
    raw = request.headers.get("X-Registry-Auth", "").strip()
    if not raw:
        return {}
    try:
        text = raw.translate(str.maketrans("+/", "-_"))
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, f"invalid X-Registry-Auth header: not base64url-encoded JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid X-Registry-Auth header: not a JSON object")
    return {key.lower(): value for key, value in data.items()}


def _connection(auth: dict[str, Any]) -> Connection:
    """How to reach the registry for this request: the credentials the
    client sent, for this request alone; without any, those the service's
    own credentials file holds for the registry (as `overlayctl pull`)."""
    from overlayctl.engine.registry import Connection

    username, password = auth.get("username") or "", auth.get("password") or ""
    if auth.get("identitytoken") and not username:
        raise ApiError(400, "identity tokens are not supported in X-Registry-Auth: send username and password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ApiError(400, "invalid X-Registry-Auth header: username and password must be strings")
    return Connection(creds=f"{username}:{password}" if username else None)


# -- streams ---------------------------------------------------------------------------


async def _drive(
    task: asyncio.Future[Any], queue: asyncio.Queue[Any], handle: Callable[[Any], Awaitable[None]]
) -> None:
    """Hand each item the worker puts on queue to handle, in order, until
    the worker is done and the queue empty."""
    while not (task.done() and queue.empty()):
        getter = asyncio.ensure_future(queue.get())
        done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            await handle(getter.result())
        else:
            getter.cancel()


def _settled(task: asyncio.Future[Any]) -> None:
    """A worker outlives a client that went away; its end is noted then,
    never left as an unretrieved error."""

    def done(t: asyncio.Future[Any]) -> None:
        if not t.cancelled() and t.exception() is not None:
            log.debug("worker ended: %s", message_of(t.exception()))  # type: ignore[arg-type]

    task.add_done_callback(done)


def _error_line(exc: BaseException) -> dict[str, Any]:
    """dockerd's last line of a stream that failed once begun."""
    if not isinstance(exc, OverlayctlError):
        log.error("a streamed request failed", exc_info=exc)
    message = message_of(exc)
    return {"errorDetail": {"message": message}, "error": message}


async def _stream_events(
    request: web.Request,
    fn: Callable[..., list[dict[str, Any]] | None],
    *args: Any,
    hold: Callable[[dict[str, Any]], bool] = lambda event: False,
) -> web.StreamResponse:
    """fn(store, *args, sink) in a worker thread, each event it hands to
    sink (then each it returns) a line of streamed JSON.

    The response starts with the first event hold() does not keep back, so
    that a failure before it is an ordinary error with its status code."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def sink(event: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    task = asyncio.ensure_future(call(request, fn, *args, sink))
    _settled(task)
    held: list[dict[str, Any]] = []
    response: web.StreamResponse | None = None

    async def send(event: dict[str, Any], start: bool = False) -> None:
        nonlocal response
        if response is None and hold(event) and not start:
            held.append(event)
            return
        if response is None:
            response = await stream_json(request)
        for line in [*held, event]:
            await write_json(response, line)
        held.clear()

    await _drive(task, queue, send)
    exc = task.exception()
    if exc is not None and response is None:
        raise exc
    if exc is not None:
        await send(_error_line(exc))
    else:
        for event in task.result() or []:
            await send(event, start=True)
    if response is None:  # nothing to say (held events are sent by send)
        response = await stream_json(request)
    await response.write_eof()
    return response


class _BodyReader(io.RawIOBase):
    """The request body as a blocking file for an engine call in a worker
    thread: each read waits for the event loop to receive the bytes."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._content = request.content
        self._loop = loop

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = asyncio.run_coroutine_threadsafe(self._content.read(len(buffer)), self._loop).result()
        buffer[: len(data)] = data
        return len(data)


def _body(request: web.Request) -> io.BufferedReader:
    return io.BufferedReader(_BodyReader(request, asyncio.get_running_loop()), SAVE_CHUNK)


class _ResponseWriter(io.RawIOBase):
    """A blocking file for an engine call in a worker thread whose bytes
    go to the client; a write waits while SAVE_CHUNKS_IN_FLIGHT chunks are
    not yet sent, and fails once the client is gone."""

    def __init__(self, queue: asyncio.Queue[bytes], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._queue = queue
        self._loop = loop
        self.gone = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.gone:
            raise BrokenPipeError("the client went away")
        chunk = bytes(data)
        asyncio.run_coroutine_threadsafe(self._queue.put(chunk), self._loop).result()
        return len(chunk)


# -- handlers: reading -------------------------------------------------------------


def _summary(image: Any, tags: list[str]) -> dict[str, Any]:
    from overlayctl.engine.filters import image_labels

    digests = list(image.digests)
    if not tags and not digests:
        # dockerd 20.10's names for an image with no name at all.
        tags, digests = ["<none>:<none>"], ["<none>@<none>"]
    return {
        "Containers": -1,
        "Created": _seconds(image.created),
        "Id": image.id,
        "Labels": image_labels(image) or None,
        "ParentId": "",
        "RepoDigests": digests,
        "RepoTags": tags,
        "SharedSize": -1,
        "Size": image.size,
        "VirtualSize": image.size,
    }


def _list(store: Store, flt: list[str]) -> list[dict[str, Any]]:
    from overlayctl.engine.filters import filter_images

    return [_summary(image, tags) for image, tags in filter_images(store, flt)]


async def list_images(request: web.Request) -> web.StreamResponse:
    """GET /images/json?filters=: newest first, as `overlayctl images`
    lists them (`all` changes nothing: no intermediate images are kept
    apart from the build cache)."""
    return ok(await call(request, _list, filters(request)))


def _inspect(store: Store, name: str) -> dict[str, Any]:
    from overlayctl.engine.inspect import image_inspect

    return image_inspect(_resolve(store, name))


async def inspect(request: web.Request) -> web.StreamResponse:
    """GET /images/{name}/json."""
    return ok(await call(request, _inspect, request.match_info["name"]))


def _history(store: Store, name: str) -> list[dict[str, Any]]:
    from overlayctl.engine.images import image_history

    image = _resolve(store, name)
    return [
        {
            "Comment": row["comment"],
            "Created": _seconds(row["created"]),
            "CreatedBy": row["created_by"],
            "Id": row["id"],
            "Size": row["size"],
            "Tags": list(image.tags) or None if row["id"] == image.id else None,
        }
        for row in image_history(store, image)
    ]


async def history(request: web.Request) -> web.StreamResponse:
    """GET /images/{name}/history: newest step first."""
    return ok(await call(request, _history, request.match_info["name"]))


# -- handlers: registries --------------------------------------------------------------


def _pull(store: Store, name: str, platform: str | None, connection: Connection, sink: Sink) -> list[dict[str, Any]]:
    from overlayctl.engine import registry
    from overlayctl.engine.progress import Events

    ref = registry.remote_reference(name)
    try:
        image, digest, new = registry.pull(store, ref, Events(sink), platform, connection)
    except RegistryAuthError as exc:
        # Not a 401: the docker CLI answers a 401 by asking for a login on
        # its terminal; dockerd reports a registry's refusal as a failure.
        raise RegistryError(exc.message) from None
    shown = str(ref.local) if ref.local else f"{ref.name}@{digest}"
    status = "Downloaded newer image" if new else "Image is up to date"
    return [{"status": f"Digest: {digest}"}, {"status": f"Status: {status} for {shown}"}]


def _pull_name(image: str, tag: str) -> str:
    """fromImage and tag as one reference (tag may be a digest)."""
    if not tag:
        return image
    return f"{image}@{tag}" if tag.startswith("sha256:") else f"{image}:{tag}"


def _import(store: Store, body: io.BufferedReader, name: str | None, message: str, sink: Sink) -> list[dict[str, Any]]:
    from overlayctl.engine.images import import_image

    image, _new = import_image(store, "-", name, message, stream=body)
    return [{"status": image.id}]


async def create(request: web.Request) -> web.StreamResponse:
    """POST /images/create: a pull (fromImage, tag, platform, with
    X-Registry-Auth), or an import of the tar in the body (fromSrc=-,
    repo, tag, message)."""
    query = request.query
    if query.get("fromImage"):
        name = _pull_name(query["fromImage"], query.get("tag", ""))
        connection = _connection(registry_auth(request))
        platform = query.get("platform") or None
        # "Pulling from" comes once the registry has answered for the
        # manifest (as dockerd's): a missing image is a 404, not a stream.
        return await _stream_events(
            request, _pull, name, platform, connection, hold=lambda event: "progressDetail" not in event
        )
    source = query.get("fromSrc")
    if source == "-":
        if query.get("changes"):
            raise ApiError(400, "import with changes is not supported")
        repo, tag = query.get("repo", ""), query.get("tag", "")
        name = f"{repo}:{tag}" if repo and tag else repo or None
        return await _stream_events(request, _import, _body(request), name, query.get("message", ""))
    if source:
        raise ApiError(400, f"importing from {source!r} is not supported: send the tar as the body with fromSrc=-")
    raise ApiError(400, "fromImage or fromSrc is required")


def _push_targets(store: Store, name: str, tag: str) -> list[str]:
    """The local names a push sends: name:tag, the name itself when it has
    a tag, else (as dockerd) every tag of the repository."""
    if tag:
        targets = [f"{name}:{tag}"]
    elif ":" in name.rsplit("/", 1)[-1]:
        targets = [name]
    else:
        targets = sorted(t for image in store.images.list() for t in image.tags if t.rpartition(":")[0] == name)
    try:
        for target in targets:
            store.images.resolve(target)
    except (NotFoundError, InvalidArgumentError):
        targets = []
    if not targets:
        raise NotFoundError(f"An image does not exist locally with the tag: {name}")
    return targets


def _push(store: Store, name: str, tag: str, connection: Connection, sink: Sink) -> None:
    from overlayctl.engine import registry
    from overlayctl.engine.progress import Events

    for target in _push_targets(store, name, tag):
        try:
            ref, digest, size = registry.push(store, target, None, Events(sink), connection=connection)
        except RegistryAuthError as exc:
            raise RegistryError(exc.message) from None  # as for a pull
        sink({"status": f"{ref.tag}: digest: {digest} size: {size}"})
        sink({"progressDetail": {}, "aux": {"Tag": ref.tag, "Digest": digest, "Size": size}})


async def push(request: web.Request) -> web.StreamResponse:
    """POST /images/{name}/push?tag=, with X-Registry-Auth."""
    connection = _connection(registry_auth(request))
    name, tag = request.match_info["name"], request.query.get("tag", "")
    return await _stream_events(request, _push, name, tag, connection)


def _auth(host: str, username: str, password: str) -> None:
    from overlayctl.engine.registry import check_login

    check_login(host, username, password)


async def auth(request: web.Request) -> web.StreamResponse:
    """POST /auth: the registry checks the credentials; nothing is kept
    (the client stores them, and sends them again in X-Registry-Auth)."""
    from overlayctl.api.http import blocking, body_json
    from overlayctl.engine.registry import registry_host

    body = await body_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    username, password = body.get("username") or "", body.get("password") or ""
    if body.get("identitytoken") and not username:
        raise ApiError(400, "identity tokens are not supported: send username and password")
    if not username or not password or not isinstance(username, str) or not isinstance(password, str):
        raise ApiError(400, "a username and a password are required")
    host = registry_host(body.get("serveraddress") or None)
    await blocking(_auth, host, username, password)
    return ok({"IdentityToken": "", "Status": "Login Succeeded"})


# -- handlers: names, removal, save, load, prune -------------------------------------


def _tag(store: Store, name: str, repo: str, tag: str) -> None:
    from overlayctl.engine.images import tag_image

    _resolve(store, name)
    tag_image(store, name, f"{repo}:{tag}" if tag else repo)


async def tag(request: web.Request) -> web.StreamResponse:
    """POST /images/{name}/tag?repo=&tag=: 201, as dockerd."""
    repo = request.query.get("repo", "")
    if not repo:
        raise ApiError(400, "repository name (repo) is required")
    await call(request, _tag, request.match_info["name"], repo, request.query.get("tag", ""))
    return web.Response(status=201)


def _remove(store: Store, name: str, force: bool) -> list[dict[str, str]]:
    from overlayctl.engine.images import removal_conflict, removed_references

    _resolve(store, name)
    try:
        pairs = removed_references(store, name, force)
    except ConflictError:
        raise ConflictError(removal_conflict(store, name)) from None
    return [{kind: value} for kind, value in pairs]


async def remove(request: web.Request) -> web.StreamResponse:
    """DELETE /images/{name}?force=&noprune=: the untagged names and the
    deleted image and layers (noprune changes nothing: there are no parent
    images to keep)."""
    return ok(await call(request, _remove, request.match_info["name"], flag(request, "force")))


def _save(store: Store, names: list[str], out: io.BufferedWriter) -> None:
    from overlayctl.engine import transfer
    from overlayctl.engine.progress import Progress, archive_reporter

    for name in names:
        _resolve(store, name)
    transfer.save(store, names, out, "docker-archive", None, archive_reporter(Progress("quiet"), "save"))


async def _save_response(request: web.Request, names: list[str]) -> web.StreamResponse:
    """A docker-archive of names (docker save's format) as the body."""
    if not names:
        raise ApiError(400, "no image names given")
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue(SAVE_CHUNKS_IN_FLIGHT)
    raw = _ResponseWriter(queue, loop)
    task = asyncio.ensure_future(call(request, _save, names, io.BufferedWriter(raw, SAVE_CHUNK)))
    _settled(task)
    response: web.StreamResponse | None = None

    async def send(chunk: bytes) -> None:
        nonlocal response
        if response is None:
            response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
            response.enable_chunked_encoding()
            await response.prepare(request)
        await response.write(chunk)

    try:
        await _drive(task, queue, send)
    finally:
        # Gone or not, a worker waiting for room must not wait forever.
        raw.gone = True
        while not queue.empty():
            queue.get_nowait()
    exc = task.exception()
    if exc is not None and response is None:
        raise exc
    if response is None:
        response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
        await response.prepare(request)
    elif exc is not None:
        # dockerd's way: the error follows what was sent; the archive is not whole.
        await write_json(response, _error_line(exc))
    await response.write_eof()
    return response


async def save_one(request: web.Request) -> web.StreamResponse:
    """GET /images/{name}/get."""
    return await _save_response(request, [request.match_info["name"]])


async def save_many(request: web.Request) -> web.StreamResponse:
    """GET /images/get?names=a&names=b."""
    return await _save_response(request, request.query.getall("names", []))


def _load(store: Store, body: io.BufferedReader, quiet: bool, sink: Sink) -> None:
    from overlayctl.engine import transfer
    from overlayctl.engine.progress import Events, archive_reporter

    def send(event: dict[str, Any]) -> None:
        if "id" not in event and "progressDetail" not in event:
            sink({"stream": event["status"] + "\n"})  # "Loaded image: x:1", as dockerd's
        elif not quiet:
            sink(event)

    transfer.load_stream(store, body, "the request body", archive_reporter(Events(send), "load"))


async def load(request: web.Request) -> web.StreamResponse:
    """POST /images/load?quiet=: the archive (docker-archive or
    oci-archive) is the body; "Loaded image: x" lines are streamed."""
    return await _stream_events(request, _load, _body(request), flag(request, "quiet"))


def _prune(store: Store, flt: list[str]) -> dict[str, Any]:
    from overlayctl.engine.prune import prune_images

    lines, removed = prune_images(store, filters=flt)
    deleted = []
    for line in lines:
        kind, _, name = line.partition(": ")
        deleted.append({kind.capitalize(): name})
    return {"ImagesDeleted": deleted or None, "SpaceReclaimed": sum(r.size for r in removed)}


async def prune(request: web.Request) -> web.StreamResponse:
    """POST /images/prune?filters=: dangling images, or with
    dangling=false every image no container uses."""
    return ok(await call(request, _prune, filters(request)))


def routes() -> list[tuple[str, str, Any]]:
    # The fixed paths first: a name may contain slashes, so {name:.*}
    # would take "/images/json" too.
    return [
        ("GET", "/images/json", list_images),
        ("POST", "/images/create", create),
        ("POST", "/images/load", load),
        ("GET", "/images/get", save_many),
        ("POST", "/images/prune", prune),
        ("POST", "/auth", auth),
        ("GET", "/images/{name:.+}/json", inspect),
        ("GET", "/images/{name:.+}/history", history),
        ("POST", "/images/{name:.+}/push", push),
        ("POST", "/images/{name:.+}/tag", tag),
        ("GET", "/images/{name:.+}/get", save_one),
        ("DELETE", "/images/{name:.+}", remove),
    ]

"""Engine API: build (POST /build) and the build cache's prune (POST /build/prune).

A build is the CLI's `build` with the context read from the request's
body (a tar, maybe compressed), unpacked by the engine into staging that
goes with the build. The builder runs in a worker thread and hands its
progress to an output object that puts each piece on the event loop's
queue; the handler writes the pieces as Docker's classic builder streams
them: {"stream": ...} lines, {"aux": {"ID": ...}} for the image, and an
error as the last line once the stream has started.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import TYPE_CHECKING, Any

from overlayctl.api.http import ApiError, call, filters, flag, integer, ok, stream_json, write_json

if TYPE_CHECKING:
    from aiohttp import web


# dockerd's classic builder writes what a RUN command puts on its standard
# error in red (its stderr stream formatter), inside the same "stream" lines.
_RED, _RESET = "\x1b[91m", "\x1b[0m"


def _json_object(request: web.Request, name: str) -> dict[str, Any]:
    """A query parameter holding a JSON object (buildargs, labels); a bad one is a 400."""
    raw = request.query.get(name)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"invalid {name}: {exc}") from None
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, (str, type(None))) for v in value.values()):
        raise ApiError(400, f"invalid {name}: not a JSON object of strings")
    return value


def _options(request: web.Request) -> Any:
    """BuildOptions from the query, as dockerd reads it; what cannot be
    honoured is refused before anything is read."""
    from overlayctl.engine.builds import STDIN, BuildOptions

    query = request.query
    if query.get("remote"):
        raise ApiError(
            400, "a remote build context (remote=URL) is not supported: send the context as the request's body (a tar)"
        )
    if query.get("version", "1") not in ("", "1"):
        raise ApiError(400, "BuildKit (version=2) is not supported: only the classic builder's API is served")
    if query.get("extrahosts"):
        raise ApiError(400, "extrahosts is not supported: RUN steps get the network's own /etc/hosts")
    if query.get("outputs"):
        raise ApiError(400, "outputs is a BuildKit option; the classic builder makes an image")
    if flag(request, "squash"):
        raise ApiError(400, "squash is only supported with experimental mode")
    # A null value is an ARG the client named without a value and could not
    # find in its environment: the Dockerfile's default applies, as in dockerd.
    build_args = {k: v for k, v in _json_object(request, "buildargs").items() if v is not None}
    labels = {k: v or "" for k, v in _json_object(request, "labels").items()}
    network = query.get("networkmode") or "default"
    return BuildOptions(
        STDIN,
        query.get("dockerfile") or None,
        tags=[t for t in query.getall("t", []) if t],
        build_args=build_args,
        no_cache=flag(request, "nocache"),
        # Quiet is this module's: the builder's output is held back here and
        # shown only if the build fails, as dockerd does.
        quiet=False,
        network=network,
        target=query.get("target") or None,
        labels=labels,
        platform=query.get("platform") or None,
    )


def _registry_config(request: web.Request) -> None:
    """X-Registry-Config: credentials for the FROM images a build would pull.
    The builder uses local images only, so they are read (to refuse nothing
    a client sends) and not used; a malformed one is ignored, as dockerd does."""
    raw = request.headers.get("X-Registry-Config")
    if raw:
        try:
            json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        except ValueError:
            pass


class _Body:
    """The request's body as the blocking reader the engine takes for a
    context on standard input: each read waits on the event loop."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        self.content = request.content
        self.loop = loop

    def read(self, size: int = -1) -> bytes:
        import concurrent.futures

        pending = asyncio.run_coroutine_threadsafe(self.content.read(size if size > 0 else 1 << 20), self.loop)
        while True:
            try:
                return pending.result(timeout=1)
            except concurrent.futures.TimeoutError:
                # A loop that has stopped (the service is going) would never
                # answer: the build fails, and its staging goes with it.
                if not self.loop.is_running():
                    pending.cancel()
                    raise OSError("the service stopped while the build context was being received") from None


def _streamed_output(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[dict | None]) -> Any:
    """A BuildOutput that puts each piece on queue, from the building thread."""
    from overlayctl.engine.builds import BuildOutput

    class Streamed(BuildOutput):
        def text(self, text: str, stderr: bool = False) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, {"stream": f"{_RED}{text}{_RESET}" if stderr else text})

        def image(self, image_id: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, {"aux": {"ID": image_id}})

    return Streamed()


def _in_a_thread_of_its_own(request: web.Request, opts: Any, body: _Body, output: Any, done: Any) -> asyncio.Future:
    """The build, in a thread of its own with its own store: a build takes
    minutes, and the worker threads `call` shares are for the short
    requests (a few builds at once must not leave `ps` waiting). The thread
    is not a daemon: a service told to stop waits for its builds to end."""
    import threading

    from overlayctl.api.http import store_for
    from overlayctl.engine.builds import build

    loop = asyncio.get_running_loop()
    result: asyncio.Future = loop.create_future()
    app = request.app

    def settle(value: Any, failure: BaseException | None) -> None:
        if result.cancelled():
            return
        if failure is not None:
            result.set_exception(failure)
        else:
            result.set_result(value)

    def work() -> None:
        value, failure = None, None
        try:
            value = build(store_for(app), opts, body, output)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - handed to the handler, which answers with it
            failure = exc
        done()
        loop.call_soon_threadsafe(settle, value, failure)

    threading.Thread(target=work, name="build").start()
    return result


def _error_line(exc: BaseException) -> dict[str, Any]:
    """The stream's last line for a failed build: errorDetail.code is a RUN
    command's exit code (the docker CLI exits with it), absent otherwise."""
    from overlayctl.api.http import message_of
    from overlayctl.engine.builds import BuildError

    message = message_of(exc)
    detail: dict[str, Any] = {"message": message}
    code = getattr(exc, "command_code", None) if isinstance(exc, BuildError) else None
    if code:
        detail = {"code": code, "message": message}
    return {"errorDetail": detail, "error": message}


class _Stream:
    """The answer, started at the first line to write (until then a failure
    is an HTTP error, as dockerd answers when nothing was flushed). A client
    that has gone makes every later write a no-op: the build goes on to its
    end, and cleans up after itself as it always does."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response: web.StreamResponse | None = None
        self.gone = False

    async def write(self, data: dict[str, Any]) -> None:
        if self.gone:
            return
        try:
            if self.response is None:
                self.response = await stream_json(self.request)
            await write_json(self.response, data)
        except (ConnectionError, RuntimeError):
            # RuntimeError: aiohttp's "Cannot write to closing transport".
            self.gone = True


async def build(request: web.Request) -> web.StreamResponse:
    """POST /build: the body is the context; streams the build's progress."""
    from overlayctl.engine.builds import BuildError

    opts = _options(request)
    _registry_config(request)
    quiet = flag(request, "q")
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict | None] = asyncio.Queue()
    output = _streamed_output(loop, queue)

    def done() -> None:
        loop.call_soon_threadsafe(queue.put_nowait, None)

    work = _in_a_thread_of_its_own(request, opts, _Body(request, loop), output, done)
    stream = _Stream(request)
    held: list[dict[str, Any]] = []  # with q, the progress, shown only on failure
    # Every piece the thread handed on comes before its end (the same loop's
    # queue, in order), so the pieces end with None.
    while (piece := await queue.get()) is not None:
        if quiet and "stream" in piece:
            held.append(piece)
        else:
            await stream.write(piece)
    try:
        image_id = await work
    except Exception as exc:
        for piece in held:
            await stream.write(piece)
        if stream.response is None:
            if isinstance(exc, BuildError):
                raise ApiError(400, exc.message) from None  # the request's Dockerfile or context
            raise
        await stream.write(_error_line(exc))
        return stream.response
    if quiet:
        await stream.write({"stream": image_id + "\n"})
    assert stream.response is not None
    return stream.response


async def prune(request: web.Request) -> web.Response:
    """POST /build/prune: the whole build cache (all= changes nothing: the
    cache has no shared part to keep); keep-storage and filters are refused,
    as `builder prune` refuses them."""
    from overlayctl.engine.prune import check_build_cache_filters, prune_build_cache

    check_build_cache_filters(filters(request))
    if integer(request, "keep-storage", 0):
        raise ApiError(400, "keep-storage is not supported: the build cache is pruned whole")
    removed = await call(request, prune_build_cache)
    return ok({"CachesDeleted": [item.name for item in removed], "SpaceReclaimed": sum(i.size for i in removed)})


def routes() -> list[tuple[str, str, Any]]:
    return [("POST", "/build", build), ("POST", "/build/prune", prune)]

"""Engine API: exec.

    POST /containers/{id}/exec   create an exec instance -> 201 {"Id"}
    POST /exec/{id}/start        run it: hijacked, or in the background with Detach
    POST /exec/{id}/resize       the size of its terminal
    GET  /exec/{id}/json         its state

Exec instances live in the service's memory, as dockerd keeps them in
its own: a new service knows none (a running one's process goes on).
The process is started by the engine (engine.control.exec_spawn) on pipes
or a pty whose other ends come back here; the service is its parent and
reaps it, without a thread (a pidfd on the event loop), so that a client
that goes away costs nothing: the process reads EOF on its stdin, its
output is read and dropped until it ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from overlayctl.api.hijack import Hijacked, docker_frame, hijack
from overlayctl.api.http import ApiError, body_json, call, ok

if TYPE_CHECKING:
    from aiohttp import web

    from overlayctl.store import Store

log = logging.getLogger("overlayctl.api")

KEEP_FINISHED = 256  # finished exec instances kept for inspect; the oldest go first
DRAIN_SECONDS = 2.0  # how long output may go on after the process is gone (something it left holds it)
UNSTARTED_SECONDS = 3600.0  # an exec instance nobody starts is forgotten after this
STARTED_WAIT = 10.0  # how long a resize waits for its exec to start, as dockerd's

_execs: dict[str, Exec] = {}
_tasks: set[asyncio.Task[Any]] = set()  # processes reaped in the background


class Exec:
    """One exec instance: its configuration, then its process and end."""

    def __init__(self, exec_id: str, container_id: str, config: dict[str, Any]) -> None:
        self.id = exec_id
        self.container_id = container_id
        self.argv: list[str] = config["Cmd"]
        self.env: list[str] = config.get("Env") or []
        self.workdir: str | None = config.get("WorkingDir") or None
        self.user: str = config.get("User") or ""
        self.privileged = bool(config.get("Privileged"))
        self.tty = bool(config.get("Tty"))
        self.stdin = bool(config.get("AttachStdin"))
        self.stdout = bool(config.get("AttachStdout"))
        self.stderr = bool(config.get("AttachStderr"))
        self.detach_keys: str = config.get("DetachKeys") or ""
        self.running = False
        self.started = False
        self.exit_code: int | None = None
        self.pid = 0
        self.master: int | None = None
        self.ended_at = 0.0
        self.created_at = time.monotonic()
        self.ready = asyncio.Event()  # set once the process runs (or failed to)

    def to_json(self) -> dict[str, Any]:
        """GET /exec/{id}/json, as dockerd's ExecInspect."""
        return {
            "CanRemove": False,
            "ContainerID": self.container_id,
            "DetachKeys": self.detach_keys,
            "ExitCode": self.exit_code,
            "ID": self.id,
            "OpenStderr": self.stderr,
            "OpenStdin": self.stdin,
            "OpenStdout": self.stdout,
            "ProcessConfig": {
                "arguments": self.argv[1:],
                "entrypoint": self.argv[0],
                "privileged": self.privileged,
                "tty": self.tty,
                "user": self.user,
            },
            "Running": self.running,
            "Pid": self.pid,
        }


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("POST", "/containers/{id}/exec", create_exec),
        ("POST", "/exec/{id}/start", start_exec),
        ("POST", "/exec/{id}/resize", resize_exec),
        ("GET", "/exec/{id}/json", inspect_exec),
    ]


def _exec_of(request: web.Request) -> Exec:
    exec_id = request.match_info["id"]
    found = _execs.get(exec_id)
    if found is None:
        raise ApiError(404, f"No such exec instance: {exec_id}")
    return found


def _check_running(store: Store, ref: str, argv: list[str], workdir: str | None) -> Any:
    """The container, if an exec can run in it now; Docker's 409s otherwise."""
    from overlayctl.api.attach import get_container
    from overlayctl.engine import control
    from overlayctl.errors import ConflictError

    container = get_container(store, ref)
    try:
        control.check_exec(container, argv, workdir)
    except ConflictError:
        if container.status == "running" and container.process_alive() and control.is_paused(container):
            raise ApiError(409, f"Container {container.id} is paused, unpause the container before exec") from None
        raise ApiError(409, f"Container {container.id} is not running") from None
    return container


def _forget_finished() -> None:
    """Bound the service's memory: the oldest finished instances beyond
    KEEP_FINISHED go, and those never started within UNSTARTED_SECONDS."""
    finished = sorted((e for e in _execs.values() if e.started and not e.running), key=lambda e: e.ended_at)
    for old in finished[: max(0, len(finished) - KEEP_FINISHED)]:
        del _execs[old.id]
    now = time.monotonic()
    for old in [e for e in _execs.values() if not e.started and now - e.created_at > UNSTARTED_SECONDS]:
        del _execs[old.id]


async def create_exec(request: web.Request) -> web.StreamResponse:
    """POST /containers/{id}/exec -> 201 {"Id"}."""
    from overlayctl.engine import control
    from overlayctl.util import detachkeys

    config = await body_json(request)
    if not isinstance(config, dict):
        raise ApiError(400, "exec: the body must be a JSON object")
    argv = config.get("Cmd")
    if isinstance(argv, str):
        argv = [argv]
    if not argv or not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ApiError(400, "No exec command specified")
    env = config.get("Env") or []
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise ApiError(400, "exec: Env must be a list of KEY=value strings")
    if config.get("DetachKeys"):
        detachkeys.parse(config["DetachKeys"])  # (a bad one is Docker's 400)
    config["Cmd"] = argv
    exec_id = os.urandom(32).hex()

    def create(store: Store) -> str:
        container = _check_running(store, request.match_info["id"], argv, config.get("WorkingDir") or None)
        control.record_exec(store, container, f"exec_create: {' '.join(argv)}", exec_id)
        return str(container.id)

    container_id = await call(request, create)
    _forget_finished()
    _execs[exec_id] = Exec(exec_id, container_id, config)
    return ok({"Id": exec_id}, status=201)


async def inspect_exec(request: web.Request) -> web.StreamResponse:
    """GET /exec/{id}/json."""
    return ok(_exec_of(request).to_json())


async def resize_exec(request: web.Request) -> web.StreamResponse:
    """POST /exec/{id}/resize?h=&w=: waits (as dockerd does) for the exec
    to start, then sizes its terminal (nothing without one)."""
    from aiohttp import web

    from overlayctl.api.attach import _size

    found = _exec_of(request)
    rows, cols = _size(request)
    try:
        await asyncio.wait_for(found.ready.wait(), STARTED_WAIT)
    except TimeoutError:
        raise ApiError(500, "timeout waiting for exec session ready") from None
    if found.master is not None:
        _set_size(found.master, rows, cols)
    return web.Response(status=200)


def _set_size(master: int, rows: int, cols: int) -> None:
    import fcntl
    import termios

    try:
        fcntl.ioctl(master, termios.TIOCSWINSZ, rows.to_bytes(2, "little") + cols.to_bytes(2, "little") + bytes(4))
    except OSError:
        pass  # (the process is gone, its pty with it)


async def start_exec(request: web.Request) -> web.StreamResponse:
    """POST /exec/{id}/start {"Detach", "Tty"}: with Detach, start it and
    answer; else hijack the connection and relay until the process ends
    (its exit code is in /exec/{id}/json by the time the stream closes)."""
    from aiohttp import web

    from overlayctl.util import detachkeys

    found = _exec_of(request)
    options = await body_json(request)
    if not isinstance(options, dict):
        raise ApiError(400, "exec start: the body must be a JSON object")
    detach = bool(options.get("Detach"))
    framed = not bool(options.get("Tty", found.tty))
    if found.exit_code is not None:
        raise ApiError(409, f"Error: Exec command {found.id} has already run")
    if found.running or found.started:
        raise ApiError(409, f"Error: Exec command {found.id} is already running")
    found.started = True
    if detach:
        try:
            process = await _spawn(request, found, detach=True)
        except BaseException:
            found.started = False
            raise
        _background(_finish(request, found, process, None, framed))
        return web.Response(status=200)
    try:
        hijacked = await hijack(request)
    except BaseException:
        found.started = False  # (the client went away before the answer: it may be started again)
        raise
    try:
        try:
            process = await _spawn(request, found, detach=False)
        except Exception as exc:  # noqa: BLE001 - written to the stream, as dockerd does
            from overlayctl.api.http import message_of

            text = (message_of(exc) + "\r\n").encode()
            await hijacked.write(docker_frame(1, text) if framed else text)
            return hijacked.response
        keys = detachkeys.parse(found.detach_keys) if found.detach_keys else detachkeys.DEFAULT
        done = asyncio.get_running_loop().create_future()
        _background(_finish(request, found, process, (hijacked, done, keys if found.tty else b""), framed))
        await done
    except Exception:  # noqa: BLE001 - the connection is raw now: no error can be answered
        log.exception("exec %s", found.id[:12])
    finally:
        hijacked.close()
    return hijacked.response


def _background(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _spawn(request: web.Request, found: Exec, detach: bool) -> Any:
    """Start the exec's process; on failure its exit code (126, 127) is the exec's."""
    from overlayctl.engine import control
    from overlayctl.errors import OverlayctlError

    def spawn(store: Store) -> Any:
        container = _check_running(store, found.container_id, found.argv, found.workdir)
        control.record_exec(store, container, f"exec_start: {' '.join(found.argv)}", found.id)
        return control.exec_spawn(
            store,
            container,
            found.argv,
            found.env,
            found.workdir,
            found.user or None,
            tty=found.tty,
            stdin=found.stdin,
            privileged=found.privileged,
            detach=detach,
        )

    try:
        process = await call(request, spawn)
    except OverlayctlError as exc:
        found.exit_code, found.ended_at = exc.exit_code or 126, time.monotonic()
        found.ready.set()
        raise
    except BaseException:
        found.started = False
        found.ready.set()
        raise
    found.pid, found.master, found.running = process.pid, process.master, True
    found.ready.set()
    return process


async def _readable(fd: int, write: bool = False) -> None:
    """Wait until fd can be read (or written) without blocking."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await ready
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


async def _write_fd(fd: int, data: bytes) -> bool:
    """All of data to the non-blocking fd; False if its reader is gone."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await _readable(fd, write=True)
        except OSError:
            return False
    return True


async def _finish(
    request: web.Request,
    found: Exec,
    process: Any,
    attached: tuple[Hijacked, asyncio.Future[None], bytes] | None,
    framed: bool,
) -> None:
    """Relay (while a client is attached), reap the process, record its
    end; the attached client's `done` is set once it has all of the output
    and the exit code is known, or once it detached or went away."""
    from overlayctl.engine import control
    from overlayctl.util.detachkeys import EscapeFilter

    hijacked, done, keys = attached if attached is not None else (None, None, b"")
    streams = [(process.master, 1)] if process.master is not None else [(process.stdout, 1), (process.stderr, 2)]
    want = {1: found.stdout, 2: found.stderr}
    client: list[Hijacked | None] = [hijacked]

    def let_go() -> None:
        """The client leaves (detached, or gone): the process goes on alone."""
        client[0] = None
        if done is not None and not done.done():
            done.set_result(None)

    async def output(fd: int, kind: int) -> None:
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                await _readable(fd)
                continue
            except OSError:
                data = b""  # EIO: the pty's last slave is closed
            if not data:
                return
            current = client[0]
            if current is not None and want[kind]:
                if not await current.write(docker_frame(kind, data) if framed else data):
                    let_go()

    async def input() -> None:
        assert hijacked is not None
        escape = EscapeFilter(keys)
        target = process.master if process.master is not None else process.stdin
        while client[0] is not None:
            data = await hijacked.read()
            if not data:
                if found.stdin and process.master is not None:
                    # dockerd's: the end of a terminal's input ends the stream; the process goes on.
                    let_go()
                    return
                if process.stdin is not None:
                    # The end of the client's input is the process's (and its output goes on).
                    os.close(process.stdin)
                    process.stdin = None
                await hijacked.wait_lost()
                let_go()
                return
            if target is None or not found.stdin:
                continue
            data, detached = escape.feed(data)
            if data and not await _write_fd(target, data):
                target = None
            if detached:
                let_go()
                return

    async def reaped() -> int:
        pidfd = os.pidfd_open(process.pid)
        try:
            await _readable(pidfd)
        finally:
            os.close(pidfd)
        _, status = os.waitpid(process.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code

    readers = [asyncio.ensure_future(output(fd, kind)) for fd, kind in streams if fd is not None]
    feeder = asyncio.ensure_future(input()) if hijacked is not None else None
    try:
        code = await reaped()
        if readers:
            _, late = await asyncio.wait(readers, timeout=DRAIN_SECONDS)
            for task in late:
                task.cancel()
        found.exit_code, found.running, found.ended_at = code, False, time.monotonic()

        def record(store: Store) -> None:
            try:
                control.record_exec(store, found.container_id, "exec_die", found.id, exitCode=str(code))
            except Exception:  # noqa: BLE001 - the container may be gone meanwhile
                pass

        await call(request, record)
    except Exception:  # noqa: BLE001 - a background task: nobody else would see it
        log.exception("exec %s", found.id[:12])
        found.running = False
    finally:
        for task in [*readers, *([feeder] if feeder is not None else [])]:
            task.cancel()
        await asyncio.gather(*readers, *([feeder] if feeder is not None else []), return_exceptions=True)
        found.master = None
        process.close()
        let_go()

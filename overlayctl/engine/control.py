"""Verbs on a container that exists: stop, kill, restart, wait, pause,
unpause, rename, top, exec, attach.

Signals go straight to the container's PID 1 (named by pid and start time,
so a recycled pid is never hit); the supervisor sees the end and records
it, and these commands wait for that record, so that the next command
sees the container exited. `stop` and `kill` mark the container as stopped
by hand first: its restart policy then does not start it again.
"""

from __future__ import annotations

import os
import time

from overlayctl.container.signals import parse_signal as parse_signal  # front ends name signals with it
from overlayctl.container.signals import signal_container, stop_signal
from overlayctl.errors import ConflictError, InvalidArgumentError, OverlayctlError
from overlayctl.store import Store
from overlayctl.store.containers import EXITED, RESTARTING, RUNNING, Container

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_STOP_TIMEOUT = 10
RECORD_TIMEOUT = 30.0  # how long the supervisor may take to record an end


def _wait_pid_gone(container: Container, timeout: float | None) -> bool:
    """Wait until the container's PID 1 is gone; False on timeout."""
    return _wait_gone(container.pid, container.pid_start, 10**9 if timeout is None else timeout)


def _wait_recorded(store: Store, container_id: str, timeout: float = RECORD_TIMEOUT) -> Container | None:
    """Wait until the catalog no longer says "running" (the supervisor has
    recorded the end, or is gone) and, once it says "exited", until the
    supervisor has finished its clean-up; the row then, None if removed."""
    deadline = time.monotonic() + timeout
    pause = 0.002
    while True:
        try:
            container = store.containers.get(container_id)
        except OverlayctlError:
            return None
        if time.monotonic() > deadline:
            return container
        if container.status != RUNNING:
            if container.status == EXITED and container.supervisor_pid != os.getpid():
                _wait_gone(container.supervisor_pid, container.supervisor_start, deadline - time.monotonic())
            return container
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _wait_gone(pid: int, pid_start: int, timeout: float) -> bool:
    """Wait until process `pid` (with that start time) is gone."""
    import select

    from overlayctl.util.proc import process_start_time

    if pid <= 0 or not pid_start:
        return True
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        if process_start_time(pid) != pid_start:
            return True
        ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
        return bool(ready)
    finally:
        os.close(fd)


# --- stop, kill, restart, wait ----------------------------------------------------


def stop(store: Store, container: Container, timeout: int | None = None) -> None:
    """`stop`: the stop signal, SIGKILL after `timeout` seconds (default
    Config.StopTimeout, else 10), and return once the end is recorded. A
    container waiting for a restart is simply not restarted."""
    if not container.is_active:
        return
    if timeout is None:
        configured = container.config.config.stop_timeout
        timeout = DEFAULT_STOP_TIMEOUT if configured is None else int(configured)
    signum = stop_signal(container)
    store.containers.set_manually_stopped(container.id)
    if container.status == RESTARTING:
        _stop_restarting(store, container)
        store.containers.record(container, "stop")
        return
    # Docker's order of events: kill (each signal sent), die, stop.
    store.containers.record(container, "kill", signal=str(signum))
    signal_container(container, signum)
    thaw_if_paused(container)
    if not _wait_pid_gone(container, max(0, timeout)):
        store.containers.record(container, "kill", signal="9")
        signal_container(container, 9)
        thaw_if_paused(container)
        _wait_pid_gone(container, 10.0)
    after = _wait_recorded(store, container.id)
    if after is not None and after.status == RESTARTING:
        _stop_restarting(store, after)  # it ended just before the mark was read
    store.containers.record(container, "stop")


def _stop_restarting(store: Store, container: Container) -> None:
    """Wake the supervisor from its back-off; it then records the exit."""
    if container.supervisor_alive():
        try:
            os.kill(container.supervisor_pid, 15)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + RECORD_TIMEOUT
    while time.monotonic() < deadline:
        try:
            current = store.containers.get(container.id)
        except OverlayctlError:
            return
        if current.status == RUNNING:
            # It had just restarted: stop that run.
            stop(store, current, DEFAULT_STOP_TIMEOUT)
            return
        if current.status != RESTARTING:
            return
        time.sleep(0.01)


def kill(store: Store, container: Container, signum: int = 9) -> None:
    """`kill`: send `signum` to the container's PID 1. SIGKILL and the stop
    signal end it for good (no restart), and the end is waited for."""
    if container.status != RUNNING:
        if container.status == RESTARTING and signum in (9, stop_signal(container)):
            store.containers.set_manually_stopped(container.id)
            _stop_restarting(store, container)
            return
        raise ConflictError(f'cannot kill container "{container.name}": it is not running')
    final = signum in (9, stop_signal(container))
    if final:
        store.containers.set_manually_stopped(container.id)
    store.containers.record(container, "kill", signal=str(signum))
    if not signal_container(container, signum):
        return  # it ended meanwhile
    if final:
        thaw_if_paused(container)
    if signum == 9:
        _wait_pid_gone(container, 10.0)
        _wait_recorded(store, container.id)


def restart(store: Store, container: Container, timeout: int | None = None) -> None:
    """`restart`: stop (if it runs), then start in the background."""
    from overlayctl.engine.containers import start_detached

    stop(store, container, timeout)
    start_detached(store, store.containers.get(container.id))
    store.containers.record(container, "restart")


def wait(store: Store, container: Container) -> int:
    """`wait`: block until the container is not running; its exit code
    (-1 when it could not be learned)."""
    while True:
        if container.status == RUNNING:
            if container.process_alive():
                _wait_pid_gone(container, None)
            refreshed = _wait_recorded(store, container.id)
            if refreshed is None:
                return -1
            container = refreshed
            continue
        if container.status in (EXITED, RESTARTING):
            return container.exit_code if container.exit_code is not None else -1
        return 0  # created: nothing ran


# --- pause ----------------------------------------------------------------------


def is_paused(container: Container) -> bool:
    """Whether a running container is frozen (read from its freezer)."""
    if container.status != RUNNING:
        return False
    from overlayctl.container.resources import frozen

    return frozen(container.id)


def pause(store: Store, container: Container) -> None:
    """`pause`: move the container's processes into its freezer (made now,
    at the first pause) and freeze them."""
    from overlayctl.runtime import procs
    from overlayctl.runtime.cgroups.freezer import Freezer

    if container.status != RUNNING or not container.process_alive():
        raise ConflictError(f'container "{container.name}" is not running')
    if is_paused(container):
        raise ConflictError(f'container "{container.name}" is already paused')
    freezer = Freezer(container.id)
    freezer.adopt(lambda: procs.container_pids(container.id, container.pid, container.config.host.pid_mode))
    freezer.freeze()
    store.containers.record(container, "pause")


def unpause(store: Store, container: Container) -> None:
    """`unpause`: thaw (the processes stay in the freezer until the end)."""
    from overlayctl.runtime.cgroups.freezer import Freezer

    if not is_paused(container):
        raise ConflictError(f'container "{container.name}" is not paused')
    Freezer(container.id).thaw()
    store.containers.record(container, "unpause")


def thaw_if_paused(container: Container) -> None:
    """Thaw the container if it is frozen. A frozen process gets its signal
    only once thawed (Docker's stop and kill unpause too)."""
    if is_paused(container):
        from overlayctl.runtime.cgroups.freezer import Freezer

        Freezer(container.id).thaw()


# --- rename, top --------------------------------------------------------------------


def rename(store: Store, container: Container, new_name: str) -> None:
    store.containers.rename(container, new_name)


def top(store: Store, container: Container) -> tuple[list[str], list[list[str]]]:
    """`top`: ps -ef's table of the container's processes (host pids)."""
    from overlayctl.runtime import procs

    if container.status != RUNNING or not container.process_alive():
        raise ConflictError(f'container "{container.name}" is not running')
    return procs.top_table(procs.container_pids(container.id, container.pid, container.config.host.pid_mode))


# --- exec, attach -------------------------------------------------------------------


def exec_in(
    store: Store,
    container: Container,
    argv: list[str],
    env: list[str] | None = None,
    workdir: str | None = None,
    user: str | None = None,
    tty: bool = False,
    interactive: bool = False,
    detach: bool = False,
    detach_keys: bytes | None = None,
) -> int | None:
    """`exec`: run argv in the running container, with its namespaces,
    cgroups, capabilities and seccomp filter; its exit code, or None when
    the user typed the detach keys (ctrl-p ctrl-q unless told) at its
    terminal: the process goes on."""
    from overlayctl.runtime import exec as runtime_exec
    from overlayctl.util.detachkeys import DEFAULT

    check_exec(container, argv, workdir)
    command = _exec_command(store, container, argv, env, workdir, user, tty=tty, interactive=interactive, detach=detach)

    keys = DEFAULT if detach_keys is None else detach_keys
    # Docker names the command in the action itself ("exec_start: sh -c ...").
    shown, exec_id = " ".join(argv), os.urandom(32).hex()
    store.containers.record(container, f"exec_create: {shown}", execID=exec_id)
    store.containers.record(container, f"exec_start: {shown}", execID=exec_id)
    code = runtime_exec.run(container.pid, container.pid_start, command, keys)
    if not detach and code is not None:
        store.containers.record(container, "exec_die", execID=exec_id, exitCode=str(code))
    return code


def check_exec(container: Container, argv: list[str], workdir: str | None = None) -> None:
    """What an exec needs before anything starts: a running container that
    is not paused, a command, an absolute working directory."""
    if container.status != RUNNING or not container.process_alive():
        raise ConflictError(f'container "{container.name}" is not running')
    if is_paused(container):
        raise ConflictError(f'container "{container.name}" is paused; unpause it before exec')
    if not argv:
        raise InvalidArgumentError('"exec" requires a command: overlayctl exec CONTAINER COMMAND [ARG...]')
    if workdir is not None and not workdir.startswith("/"):
        raise InvalidArgumentError(f'working directory "{workdir}" is not an absolute path')


def _exec_command(
    store: Store,
    container: Container,
    argv: list[str],
    env: list[str] | None,
    workdir: str | None,
    user: str | None,
    **how: Any,
) -> Any:
    """The runtime's ExecSpec of an exec in `container` (how: ExecSpec's tty,
    interactive, detach, privileged)."""
    from overlayctl.container.spec import container_spec, exec_spec
    from overlayctl.runtime.spec import resolve_env

    overrides = resolve_env(env or [])
    privileged = how.pop("privileged", False)
    spec = container_spec(store, container, store.images.get(container.image_id))
    command = exec_spec(container, spec, argv, overrides, workdir, user, **how)
    if privileged:
        command.privileged = True  # every capability, as Docker's exec --privileged
    return command


def record_exec(store: Store, container: Container | str, action: str, exec_id: str, **attributes: str) -> None:
    """An exec's event (exec_create, exec_start: with the command in the
    action as Docker names it, exec_die with exitCode) for a front end that
    creates, starts and reaps execs itself."""
    store.containers.record(container, action, execID=exec_id, **attributes)


class ExecProcess:
    """An exec started with pipes or a pty its caller relays (the Engine
    API's): its pid, the caller's child to reap, and the caller's ends:
    the pty master (stdin and output both) with a terminal, else a stdin
    pipe (with `stdin`) and the stdout and stderr pipes (None detached)."""

    __slots__ = ("pid", "master", "stdin", "stdout", "stderr")

    def __init__(
        self,
        pid: int,
        master: int | None = None,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> None:
        self.pid, self.master, self.stdin, self.stdout, self.stderr = pid, master, stdin, stdout, stderr

    def close(self) -> None:
        """Close the caller's ends still open."""
        for name in ("master", "stdin", "stdout", "stderr"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                try:
                    os.close(fd)
                except OSError:
                    pass


def exec_spawn(
    store: Store,
    container: Container,
    argv: list[str],
    env: list[str] | None = None,
    workdir: str | None = None,
    user: str | None = None,
    tty: bool = False,
    stdin: bool = False,
    privileged: bool = False,
    detach: bool = False,
) -> ExecProcess:
    """Start argv in the running container as `exec` does, without this
    process's terminal: with `tty` on a pty whose master comes back, else
    on pipes whose other ends come back (stdin a pipe with `stdin`, else
    /dev/null); `detach`: on /dev/null in a session of its own. Returns once
    the command runs (or raises what stopped it, with the exit code 126 or
    127 as `exec` has); the caller relays, reaps ExecProcess.pid and
    records the exec's events (record_exec)."""
    from overlayctl.runtime import exec as runtime_exec

    check_exec(container, argv, workdir)
    command = _exec_command(
        store, container, argv, env, workdir, user, tty=tty, interactive=stdin, detach=detach, privileged=privileged
    )
    if detach:
        child, _ = runtime_exec.spawn(container.pid, container.pid_start, command)
        return ExecProcess(child)
    if tty:
        child, master = runtime_exec.spawn(container.pid, container.pid_start, command)
        if master is None:
            raise OverlayctlError("the exec's terminal did not come back from the container")
        os.set_blocking(master, False)
        return ExecProcess(child, master=master)
    theirs: list[int] = []
    ours = ExecProcess(0)
    try:
        if stdin:
            child_in, ours.stdin = os.pipe()
        else:
            child_in = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        theirs.append(child_in)
        ours.stdout, child_out = os.pipe()
        theirs.append(child_out)
        ours.stderr, child_err = os.pipe()
        theirs.append(child_err)
        command.stdio = (child_in, child_out, child_err)
        ours.pid, _ = runtime_exec.spawn(container.pid, container.pid_start, command)
    except BaseException:
        ours.close()
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    for end in (ours.stdin, ours.stdout, ours.stderr):
        if end is not None:
            os.set_blocking(end, False)
    return ours


def start_with_attach(store: Store, container: Container) -> Any:
    """`start` with an attach client connected before the container starts,
    so that none of its output is missed (the Engine API's attach that
    comes before the start, as `docker run` and `docker start -a` send
    them; `run -it` here): the container runs under a detached
    supervisor, as `start` runs it. Returns the client's socket (the
    supervisor's attach protocol, supervise.frames)."""
    from overlayctl.supervise import detached

    sock = detached.start(store, store.containers.claim_start(container.id), attach=True)
    assert sock is not None
    return sock


def connect_attach(store: Store, container: Container) -> Any:
    """A client socket on the running container's attach socket (the
    supervisor's attach protocol, supervise.frames)."""
    from overlayctl.supervise import attach as client

    if container.status != RUNNING:
        raise ConflictError(f'cannot attach to container "{container.name}": it is not running; start it first')
    return client.connect(store.paths.attach_socket(container.id), container.name)


def attach_protocol() -> Any:
    """The module of the supervisor's attach protocol (supervise.frames:
    frame, split_frames and the message kinds), for a front end that
    relays an attach socket itself (the Engine API)."""
    from overlayctl.supervise import frames

    return frames


def resize(store: Store, container: Container, rows: int, cols: int) -> None:
    """Set the size of the running container's terminal (a no-op without
    one), through its supervisor."""
    from overlayctl.supervise.frames import RESIZE, frame

    if container.status != RUNNING or not container.process_alive():
        raise ConflictError(f'container "{container.name}" is not running')
    if not container.config.config.tty:
        return
    sock = connect_attach(store, container)
    try:
        sock.sendall(frame(RESIZE, f"{rows} {cols}".encode()))
    finally:
        sock.close()


def attach(store: Store, container: Container, stdin: bool = True, detach_keys: bytes | None = None) -> int | None:
    """`attach`: the container's output (and, for a container made with -i,
    stdin) until it ends (its exit code) or the user detaches (None)."""
    from overlayctl.supervise import attach as client

    cfg = container.config.config
    sock = connect_attach(store, container)
    keys = client.DEFAULT_DETACH_KEYS if detach_keys is None else detach_keys
    store.containers.record(container, "attach")
    return relay_attached(store, container, sock, stdin and bool(cfg.open_stdin), bool(cfg.tty), container.pid, keys)


def on_terminal(container: Container) -> bool:
    """Whether a foreground start would relay the user's terminal to the
    container's (-i and -t, stdin a terminal) and so may be detached from:
    then start_on_terminal starts it. Not under systemd (NOTIFY_SOCKET),
    whose unit the foreground supervisor must stay."""
    cfg = container.config.config
    return bool(cfg.tty and cfg.open_stdin) and os.isatty(0) and "NOTIFY_SOCKET" not in os.environ


def start_on_terminal(store: Store, container: Container, detach_keys: bytes) -> int | None:
    """`run -it` and `start -ai` on a terminal: the container is started
    under a detached supervisor, as `run -d` starts it, and this process
    is only its attach client, connected before the start so that no
    output is missed. The terminal can then go away (the detach keys, a
    closed window) while the supervisor keeps the container, its log and
    its end recorded; `attach` takes it up again. Returns the exit code,
    once the end is recorded (and the container removed, with --rm), or
    None when the user detached."""
    sock = start_with_attach(store, container)
    return relay_attached(store, container, sock, True, True, 0, detach_keys)


def relay_attached(
    store: Store, container: Container, sock: Any, stdin: bool, tty: bool, pid: int, detach_keys: bytes
) -> int | None:
    """Relay through the connected attach socket `sock` until the container
    ends (its exit code, once its supervisor has recorded the end and, with
    --rm, removed it) or the user detaches (None)."""
    from overlayctl.supervise import attach as client

    code = client.attach(sock, stdin, tty, pid, detach_keys)
    if code is None:
        return None
    if code == client.STREAM_ENDED:
        # The monitor let go of us (too slow a reader) while the container
        # goes on: nothing to wait for.
        try:
            current = store.containers.get(container.id)
        except OverlayctlError:
            current = None
        if current is not None and current.status == RUNNING and current.process_alive():
            return 0
    after = _wait_recorded(store, container.id)
    if code != client.STREAM_ENDED:
        return code
    return after.exit_code if after is not None and after.exit_code is not None else -1


# --- after a reboot -------------------------------------------------------------------


def restart_on_boot(store: Store) -> list[str]:
    """Start what Docker's daemon starts when it comes up: containers with
    restart policy `always`, and `unless-stopped` ones not stopped by hand.
    For a boot-time unit, after the state is reconciled; names started."""
    from overlayctl.engine.containers import start_detached

    started = []
    for container in store.containers.list(all=True):
        policy = container.config.host.restart_name
        if container.status != EXITED:
            continue
        if policy == "always" or (policy == "unless-stopped" and not container.manually_stopped):
            start_detached(store, container)
            started.append(container.name)
    return started

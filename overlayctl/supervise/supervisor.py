"""The supervisor: the container's parent, in the host's namespaces.

It forks PID 1 of a new PID namespace, learns whether the command could be
executed, relays a terminal when asked for one, forwards the signals a user
sends to it, reaps the container and returns its exit status the way
Docker reports it (128 + N for a death by signal N).
"""

from __future__ import annotations

import os

from overlayctl.errors import OverlayctlError
from overlayctl.runtime import syscalls as sc
from overlayctl.runtime.spec import ContainerSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


def run(
    spec: ContainerSpec,
    on_started: Callable[[int], None] | None = None,
    attach_stdin: bool = True,
    on_namespaces: Callable[[int], None] | None = None,
    stdio: tuple[int | None, int | None, int | None] | None = None,
    relay: Callable[[int, int | None], None] | None = None,
    on_signal: Callable[[int], None] | None = None,
) -> int:
    """Start the container, wait for it, return its exit code.

    `on_namespaces(pid)` runs in the supervisor once PID 1 has its own
    namespaces (the network is configured there, from the host's side),
    while PID 1 builds its root; PID 1 waits for it before it becomes the
    container's user and runs the command. If it raises, the
    container is killed and reaped and the error passes on.

    `stdio` (stdin, stdout, stderr) replaces the supervisor's own for the
    container (None keeps that one). `relay(pid, pty_master)` runs once the
    command runs, instead of the terminal relay, and returns when the
    container's output has ended (or never: the detached supervisor
    replaces itself with its small monitor there). `on_signal(signum)` runs
    after a signal was forwarded to the container.

    Raises OverlayctlError (with exit code 125, 126 or 127) if the container
    could not be set up or its command could not be executed; the container
    process is reaped before that.
    """
    # The C module: signal.py wraps it in enums, and importing enum costs
    # `run` more than everything else it does with signals.
    import _signal as signal

    os.makedirs(spec.mountpoint, exist_ok=True)
    error_r, error_w = os.pipe()  # both close-on-exec: EOF means exec happened
    console_parent = console_child = None
    if spec.tty:
        import socket

        console_parent, console_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    sync_child = sync_parent = None
    if on_namespaces is not None:
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        sync_child, sync_parent = (ready_w, go_r), (ready_r, go_w)
    # PID 1's code, imported here rather than in PID 1, and what it reads
    # of the host: there, a fork of this process, every page the import
    # or the reads write would first be copied (about 1.3 ms of every
    # start, against 0.4 ms here).
    from overlayctl.runtime.init import container_main, masked_paths

    masked_paths()
    pid = _fork_for(spec)
    if pid == 0:
        # The child must never unwind into the caller's code (which would
        # record or remove the container a second time): exit, whatever happens.
        try:
            os.close(error_r)
            if console_parent is not None:
                console_parent.close()
            if sync_parent is not None:
                for fd in sync_parent:
                    os.close(fd)
            if stdio is not None:
                for target, fd in enumerate(stdio):
                    if fd is not None:
                        os.dup2(fd, target)
            container_main(spec, error_w, console_child.detach() if console_child is not None else None, sync_child)
        finally:
            os._exit(125)
    os.close(error_w)
    if console_child is not None:
        console_child.close()
    if sync_parent is not None and sync_child is not None and on_namespaces is not None:
        for fd in sync_child:
            os.close(fd)
        try:
            _sync_namespaces(pid, sync_parent, on_namespaces)
        except BaseException:
            # PID 1 builds its root meanwhile: if that failed first (and
            # made the hook fail, its namespace gone), its reason is the one
            # to give. It has been killed and reaped: the pipe is at its end.
            failure = _read_all(error_r)
            os.close(error_r)
            if failure:
                raise _setup_error(failure) from None
            raise

    # From now on the user's signals are the container's.
    def forward(signum: int, _frame: object) -> None:
        _forward(pid, signum)
        if on_signal is not None:
            on_signal(signum)

    previous = {}
    for name in FORWARDED_SIGNALS:
        sig = getattr(signal, name)
        try:
            previous[sig] = signal.signal(sig, forward)
        except ValueError:
            # Only the main thread may set handlers, and only it gets
            # signals: run from another thread (a build step in the Engine
            # API's service), the process's signals stay its main thread's.
            break
    try:
        master = _receive_console(console_parent) if console_parent is not None else None
        failure = _read_all(error_r)
        os.close(error_r)
        if failure:
            os.waitpid(pid, 0)  # reap it before reporting
            raise _setup_error(failure)
        if (spec.pid_host or spec.pid_join is not None) and spec.cgroup_procs:
            _end_with(pid, spec.cgroup_procs)
        try:
            if on_started is not None:
                on_started(pid)
            if relay is not None:
                relay(pid, master)
            elif master is not None:
                from overlayctl.runtime.console import relay as terminal_relay

                terminal_relay(master, pid, forward_stdin=spec.stdin and attach_stdin)
        except BaseException:
            # Nobody would reap it or record its end: it must not outlive us.
            _forward(pid, 9)
            os.waitpid(pid, 0)
            raise
        _, status = os.waitpid(pid, 0)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _end_with(pid: int, procs_files: list[str]) -> None:
    """For a container in a PID namespace it does not own (--pid host or
    container:NAME): nothing kills what it started when its first process
    ends, as the end of a namespace of its own would, and those left would
    hold its output open. A small watcher, outside the supervisor's life
    (forked twice), waits for that end and kills what is left in the
    container's cgroup."""
    import select

    pidfd = os.pidfd_open(pid)
    first = os.fork()
    if first == 0:
        try:
            if os.fork() == 0:
                sc.close_fds_except([pidfd])
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                poller.poll()
                _kill_cgroup(procs_files)
        finally:
            os._exit(0)
    os.close(pidfd)
    os.waitpid(first, 0)


def _kill_cgroup(procs_files: list[str]) -> None:
    # cgroup.kill (Linux >= 5.14, cgroup2) kills the whole cgroup at once;
    # otherwise one pid at a time, until none is left (or a few rounds).
    for procs in procs_files:
        kill_file = os.path.join(os.path.dirname(procs), "cgroup.kill")
        if os.path.exists(kill_file):
            try:
                with open(kill_file, "w") as f:
                    f.write("1")
            except OSError:
                pass
            continue
        for _ in range(100):
            try:
                with open(procs) as f:
                    pids = [int(p) for p in f.read().split()]
            except OSError:
                break
            if not pids:
                break
            for victim in pids:
                _forward(victim, 9)


def _sync_namespaces(pid: int, fds: tuple[int, int], hook: Callable[[int], None]) -> None:
    ready_r, go_w = fds
    try:
        ready = os.read(ready_r, 1)
        if ready == b"r":
            try:
                hook(pid)
            except BaseException:
                _forward(pid, 9)
                os.waitpid(pid, 0)
                raise
            try:
                os.write(go_w, b"g")
            except BrokenPipeError:
                pass  # PID 1 failed while building its root: the error pipe says why
        # Otherwise PID 1 failed before its namespaces existed: the error
        # pipe says why.
    finally:
        os.close(ready_r)
        os.close(go_w)


def _fork_for(spec: ContainerSpec) -> int:
    """Fork PID 1 in the PID namespace the spec asks for: a new one (the
    default), the host's (--pid host), or a running container's (--pid
    container:NAME, where it is not PID 1)."""
    if spec.pid_host:
        return os.fork()
    if spec.pid_join is not None:
        return _fork_in_pid_namespace_of(*spec.pid_join)
    return _fork_in_new_pid_namespace()


def _fork_in_pid_namespace_of(donor: int, start: int) -> int:
    from overlayctl.util.proc import process_start_time

    theirs = os.open(f"/proc/{donor}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        # Opened, then checked: the descriptor holds the right namespace
        # even if the pid is recycled from now on.
        if process_start_time(donor) != start:
            raise OverlayctlError("cannot join PID of a non running container: it has stopped")
        sc.setns(theirs, sc.CLONE_NEWPID)
        pid = -1
        try:
            pid = os.fork()
        finally:
            if pid != 0:  # (the child cannot go back up to an ancestor namespace)
                sc.setns(own, sc.CLONE_NEWPID)
    finally:
        os.close(theirs)
        os.close(own)
    return pid


def _fork_in_new_pid_namespace() -> int:
    # unshare(CLONE_NEWPID) only changes where our *children* go; the
    # supervisor itself stays in the host's PID namespace. Joining our own
    # namespace again afterwards resets that, so the next fork (another
    # container, or a helper) is not caught in this one.
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.unshare(sc.CLONE_NEWPID)
        try:
            pid = os.fork()
        finally:
            if os.getpid() != 1:
                sc.setns(own, sc.CLONE_NEWPID)
    finally:
        os.close(own)
    return pid


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _setup_error(failure: bytes) -> OverlayctlError:
    """PID 1's report ("CODE message") as the error to raise."""
    code, _, message = failure.decode(errors="replace").partition(" ")
    return OverlayctlError(message, exit_code=int(code) if code.isdigit() else 125)


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _receive_console(sock) -> int | None:  # type: ignore[no-untyped-def]
    import socket

    with sock:
        _, fds, _, _ = socket.recv_fds(sock, 16, 1)
    return fds[0] if fds else None


def require_root() -> None:
    """Every privileged command checks for root first and says so."""
    if os.geteuid() != 0:
        raise OverlayctlError("overlayctl needs root: run it with sudo or as root")

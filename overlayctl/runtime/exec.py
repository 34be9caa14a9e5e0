"""`exec`: start another process in a running container.

The process joins everything PID 1 has: its cgroups (written into their
cgroup.procs from the host's side first, so that its limits and freezer
count it), then its IPC, UTS, network and cgroup namespaces, its PID
namespace (through the parent: setns(CLONE_NEWPID) moves only the children
of the caller, so the caller joins, forks, and goes back), and last its
mount namespace, which puts it in the container's root: setns to a mount
namespace sets the root and working directory to that namespace's root,
and after the container's pivot_root that is its overlay. Then, as PID 1
did: user and groups from the container's own /etc/passwd and /etc/group,
the container's capability sets, no_new_privs, its seccomp filter, exec.

Failures before exec come back over a close-on-exec pipe as
"<exit code> <message>", as from PID 1: 127 for a command not found, 126
for one that cannot run or a working directory that does not exist.
"""

from __future__ import annotations

import os

from overlayctl.errors import CommandNotExecutableError, ConflictError, OverlayctlError
from overlayctl.runtime import syscalls as sc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# setns order: the mount namespace last (it takes the host's files away).
NAMESPACES = (
    ("ipc", sc.CLONE_NEWIPC),
    ("uts", sc.CLONE_NEWUTS),
    ("net", sc.CLONE_NEWNET),
    ("cgroup", sc.CLONE_NEWCGROUP),
    ("pid", sc.CLONE_NEWPID),
    ("mnt", sc.CLONE_NEWNS),
)


class ExecSpec:
    """What to run in the container, and with which privileges."""

    def __init__(
        self,
        argv: list[str],
        env: list[str],
        cwd: str = "/",
        user: str = "",
        tty: bool = False,
        interactive: bool = False,
        detach: bool = False,
        capabilities: tuple[str, ...] | None = None,
        privileged: bool = False,
        seccomp: bytes | None = None,
        output: int | None = None,
    ) -> None:
        self.argv = argv
        self.env = env  # "KEY=value", HOME added from the user when missing
        self.cwd = cwd
        self.user = user
        self.tty = tty
        self.interactive = interactive
        self.detach = detach
        self.capabilities = capabilities  # None: Docker's default set
        self.privileged = privileged
        self.seccomp = seccomp
        # A descriptor for its stdout and stderr both (stdin: /dev/null), and
        # a session of its own, so that the caller can kill all it started
        # (a health check's probe). None: the caller's stdio.
        self.output = output
        # Descriptors for its stdin, stdout and stderr (the Engine API's
        # pipes); None: the caller's stdio, or as `output` and `detach` say.
        self.stdio: tuple[int, int, int] | None = None
        # As PID 1 has them (ContainerSpec's): --ulimit and --group-add.
        self.rlimits: list[tuple[str, int, int, int]] = []
        self.group_add: list[str] = []


def run(pid: int, pid_start: int, spec: ExecSpec, detach_keys: bytes = b"") -> int | None:
    """Run `spec` in the container whose PID 1 is `pid` (with that start
    time); return its exit code (0 at once with `detach`). With a terminal
    and stdin, `detach_keys` leave the process running: None."""
    import _signal as signal

    child, error_r, console_parent, console_child = _fork_with_console(pid, pid_start, spec)

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    previous = {}
    if not spec.detach:
        for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"):
            sig = getattr(signal, name)
            previous[sig] = signal.signal(sig, forward)
    try:
        master = None
        if console_parent is not None:
            with console_parent:
                import socket

                _, received, _, _ = socket.recv_fds(console_parent, 16, 1)
                master = received[0] if received else None
        _started(child, error_r)
        if spec.detach:
            return 0
        if master is not None:
            from overlayctl.runtime.console import relay

            if relay(master, child, forward_stdin=spec.interactive, detach_keys=detach_keys):
                # Left running; once this process is gone the kernel hands
                # it to a reaper (as any orphan), and its pty to _hold's.
                return None
        _, status = os.waitpid(child, 0)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def spawn(pid: int, pid_start: int, spec: ExecSpec) -> tuple[int, int | None]:
    """Start `spec` in the container whose PID 1 is `pid` and return, once
    its command runs, its pid (the host's number) and, with `spec.tty`, the
    master of its pty (made in the container's devpts); without a terminal
    its stdio is `spec.stdio`. The caller relays and reaps: nothing here
    touches this process's own stdio or signal handlers, so a thread of
    a server (the Engine API's exec) may call it."""
    child, error_r, console_parent, console_child = _fork_with_console(pid, pid_start, spec)
    master = None
    try:
        if console_parent is not None:
            with console_parent:
                import socket

                _, received, _, _ = socket.recv_fds(console_parent, 16, 1)
                master = received[0] if received else None
        _started(child, error_r)
    except BaseException:
        if master is not None:
            os.close(master)
        raise
    return child, master


def start(pid: int, pid_start: int, spec: ExecSpec) -> int:
    """Start `spec` (no terminal) in the container whose PID 1 is `pid`, and
    return its pid (the host's number) once its command runs; the caller
    waits for it. A session leader with `spec.output`: killpg reaches all
    it started."""
    child, error_r = _fork_inside(pid, pid_start, spec, None, None)
    _started(child, error_r)
    return child


def _fork_with_console(pid: int, pid_start: int, spec: ExecSpec) -> tuple[int, int, Any, Any]:
    """_fork_inside, with the socket pair its pty's master comes back on
    when the exec has a terminal (and is not detached): (child, error
    pipe, our end, the child's end), the sockets None without one."""
    console_parent = console_child = None
    if spec.tty and not spec.detach:
        import socket

        console_parent, console_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        child, error_r = _fork_inside(pid, pid_start, spec, console_parent, console_child)
    except BaseException:
        for sock in (console_parent, console_child):
            if sock is not None:
                sock.close()
        raise
    return child, error_r, console_parent, console_child


def _started(child: int, error_r: int) -> None:
    """Wait until the child has executed its command (its error pipe closes
    empty), or reap it and raise what it reported."""
    failure = _read_all(error_r)
    os.close(error_r)
    if failure:
        os.waitpid(child, 0)
        code, _, message = failure.decode(errors="replace").partition(" ")
        raise OverlayctlError(message, exit_code=int(code) if code.isdigit() else 126)


def _fork_inside(pid: int, pid_start: int, spec: ExecSpec, console_parent: Any, console_child: Any) -> tuple[int, int]:
    """Fork the child into the container's PID namespace; (its pid, the read
    end of its error pipe)."""
    from overlayctl.util.proc import process_start_time

    fds: dict[str, int] = {}
    try:
        for name, _ in NAMESPACES:
            fds[name] = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        _close_all(fds)
        raise ConflictError("the container is not running") from None
    # Opened, then checked: the descriptors hold the namespaces of the right
    # process even if the pid is recycled from now on.
    if process_start_time(pid) != pid_start:
        _close_all(fds)
        raise ConflictError("the container is not running")
    error_r, error_w = os.pipe()
    # Non-dumpable before the child exists in the container's PID namespace
    # (see init.leave_host_behind); harmless to this process, which stays
    # on the host's side.
    from overlayctl.runtime.capabilities import make_non_dumpable

    make_non_dumpable()
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    child = -1
    try:
        sc.setns(fds["pid"], sc.CLONE_NEWPID)
        try:
            child = os.fork()
        finally:
            # Back to our own PID namespace for any later child; only on the
            # parent's side (the child cannot go up to an ancestor namespace).
            if child != 0:
                sc.setns(own, sc.CLONE_NEWPID)
    finally:
        if child != 0:
            os.close(own)
    if child == 0:
        try:
            os.close(error_r)
            if console_parent is not None:
                console_parent.close()
            _child(pid, fds, spec, error_w, console_child.detach() if console_child is not None else None)
        finally:
            os._exit(126)
    _close_all(fds)
    os.close(error_w)
    if console_child is not None:
        console_child.close()
    return child, error_r


def _child(pid: int, fds: dict[str, int], spec: ExecSpec, error_fd: int, console_fd: int | None) -> None:
    """In the forked child: join, drop, exec; never returns."""
    from overlayctl.runtime.init import (
        _env_dict,
        _exec_error,
        _report,
        _reset_signals,
        attach_console,
        cwd_inside_root,
        drop_privileges,
        leave_host_behind,
        resolve_command,
        resolve_user_here,
    )

    try:
        # The namespaces' descriptors are kept until each is joined.
        leave_host_behind((error_fd, console_fd, spec.output, *(spec.stdio or ()), *fds.values()))
        # Imported while the host's files are in reach (setns below);
        # python-prctl's _prctl came with runtime.init.
        import overlayctl.runtime.capabilities  # noqa: F401  (used by drop_privileges)
        import overlayctl.runtime.users  # noqa: F401  (used by resolve_user_here)
        from overlayctl.runtime.cgroups.join import join_cgroups_of
        from overlayctl.runtime.spec import DEFAULT_PATH

        if spec.tty:
            import fcntl  # noqa: F401  (used by attach_console)
            import socket  # noqa: F401
            import termios  # noqa: F401
        if spec.output is not None:
            os.setsid()
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
            os.dup2(spec.output, 1)
            os.dup2(spec.output, 2)
            os.close(spec.output)
        if spec.stdio is not None and not spec.tty:
            import fcntl

            # Above 2 first: a caller whose own stdio was closed may have
            # got 0-2 for them, and a dup2 onto one would lose another.
            moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in spec.stdio]
            for fd in set(spec.stdio):
                os.close(fd)
            for target, fd in enumerate(moved):
                os.dup2(fd, target)
            for fd in moved:
                os.close(fd)
        if spec.detach:
            os.setsid()
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.close(null)
        join_cgroups_of(pid)
        for name, flag in NAMESPACES:
            if name != "pid":  # (joined through the parent)
                sc.setns(fds[name], flag)
            os.close(fds[name])
        # From here on the root is the container's.
        try:
            os.chdir(spec.cwd or "/")
        except OSError as exc:
            raise CommandNotExecutableError(
                f"cannot change to working directory {spec.cwd}: {os.strerror(exc.errno or 0).lower()}"
            ) from None
        if not cwd_inside_root():
            raise CommandNotExecutableError(f"working directory {spec.cwd} is outside the container's root")
        env = list(spec.env)
        uid, gid, groups = 0, 0, []
        if spec.user:
            who = resolve_user_here(spec.user)
            uid, gid, groups = who.uid, who.gid, who.groups
            home = who.home
        else:
            home = "/root"
        if not any(e.startswith("HOME=") for e in env):
            env.append(f"HOME={home}")
        if spec.group_add:
            from overlayctl.runtime.users import account_files, resolve_groups

            groups = groups + [g for g in resolve_groups(spec.group_add, account_files()[1]) if g not in groups]
        for _, resource, soft, hard in spec.rlimits:
            sc.setrlimit(resource, soft, hard)
        if spec.tty:
            attach_console(console_fd)
        elif not spec.interactive and not spec.detach and spec.output is None and spec.stdio is None:
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
        drop_privileges(spec.privileged, spec.capabilities, spec.seccomp, uid, gid, groups)
        env_map = _env_dict(env)
        path = resolve_command(spec.argv[0], env_map.get("PATH") or DEFAULT_PATH)
        _reset_signals()
        try:
            os.execve(path, spec.argv, env_map)
        except OSError as exc:
            raise _exec_error(spec.argv[0], exc) from exc
    except OverlayctlError as exc:
        _report(error_fd, exc.exit_code, exc.message)
    except BaseException as exc:  # noqa: BLE001 - the child must report, never unwind
        _report(error_fd, 126, f"exec failed: {exc}")


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _close_all(fds: dict[str, int]) -> None:
    for fd in fds.values():
        os.close(fd)

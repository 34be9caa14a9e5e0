"""PID 1 of a new container: everything between fork and exec.

Runs in the child the supervisor forked into a new PID namespace. It joins
new mount, UTS, IPC, network and cgroup namespaces, builds the root
filesystem from the plan, switches root, drops privileges and executes the
command. Any failure is written to the error pipe as "<exit code> <message>"
so the supervisor can report it in one line; a successful exec closes the
pipe (it is close-on-exec), which tells the supervisor the command runs.
"""

from __future__ import annotations

import errno
import os
import stat

from overlayctl.errors import CommandNotExecutableError, CommandNotFoundError, KernelError, OverlayctlError
from overlayctl.runtime import syscalls as sc
from overlayctl.runtime.mountplan import rootfs_plan
from overlayctl.runtime.spec import DEFAULT_PATH, ContainerSpec

NAMESPACES = sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWNET | sc.CLONE_NEWCGROUP


def container_main(spec: ContainerSpec, error_fd: int, console_fd: int | None) -> None:
    """Set up the container and exec its command; never returns."""
    try:
        _setup(spec, console_fd)
        path = resolve_command(spec.argv[0], spec.env_value("PATH") or DEFAULT_PATH)
        _reset_signals()
        try:
            os.execve(path, spec.argv, _env_dict(spec.env))
        except OSError as exc:
            raise _exec_error(spec.argv[0], exc) from exc
    except OverlayctlError as exc:
        _report(error_fd, exc.exit_code, exc.message)
    except BaseException as exc:  # noqa: BLE001 - PID 1 must report, never unwind
        # No imports here: after pivot_root the host's Python library is gone.
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f" (in {tb.tb_frame.f_code.co_name}, line {tb.tb_lineno})" if tb is not None else ""
        _report(error_fd, 125, f"container set-up failed: {exc}{where}")


def _report(error_fd: int, code: int, message: str) -> None:
    try:
        os.write(error_fd, f"{code} {message}".encode())
    finally:
        os._exit(code)


def _setup(spec: ContainerSpec, console_fd: int | None) -> None:
    # After pivot_root the host's files, Python's library included, are out
    # of reach: import everything the rest of the set-up needs now.
    import _signal  # noqa: F401  (used by _reset_signals)

    import _prctl  # noqa: F401  (used by capabilities)

    from overlayctl.runtime.capabilities import drop_to, set_parent_death_signal

    if spec.tty:
        import fcntl  # noqa: F401
        import socket  # noqa: F401
        import termios  # noqa: F401

    # A killed supervisor takes its container with it: nothing would record
    # the exit, and the mount namespace dies with the last process.
    set_parent_death_signal(9)
    sc.unshare(NAMESPACES if spec.network != "host" else NAMESPACES & ~sc.CLONE_NEWNET)
    # Nothing mounted from here on may propagate back to the host.
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    rootfs_plan(spec.layout, spec.store_root, spec.overlay_api).execute(spec.mountpoint)
    _switch_root(spec.mountpoint)
    if spec.hostname:
        sc.sethostname(spec.hostname)
    if spec.network != "host":
        sc.loopback_up()
    if spec.tty:
        _attach_console(console_fd)
    elif not spec.stdin:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    _enter_workdir(spec.cwd)
    drop_to()
    if spec.uid or spec.gid:
        os.setgroups([])
        os.setgid(spec.gid)
        os.setuid(spec.uid)
    elif os.getgroups():
        os.setgroups([])


def _switch_root(new_root: str) -> None:
    os.chdir(new_root)
    # pivot_root(".", ".") puts the old root on top of the new one at "/";
    # no put_old directory is needed inside the image.
    sc.pivot_root(".", ".")
    # Make the old root a slave so unmounting it cannot reach the host's
    # mounts, then detach it: the container sees only its own tree.
    sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
    sc.umount(".", sc.MNT_DETACH)
    os.chdir("/")


def _attach_console(console_fd: int | None) -> None:
    """Open a pty in the container's own devpts, hand the master to the
    supervisor over the console socket and make the slave our terminal."""
    import fcntl
    import socket
    import termios

    master, slave = os.openpty()
    assert console_fd is not None
    with socket.socket(fileno=console_fd) as sock:
        socket.send_fds(sock, [b"pty"], [master])
    os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def _enter_workdir(cwd: str) -> None:
    # Docker creates a missing working directory; so do we, inside the root.
    try:
        os.chdir(cwd)
    except FileNotFoundError:
        os.makedirs(cwd, 0o755, exist_ok=True)
        os.chdir(cwd)
    except NotADirectoryError:
        raise KernelError(f"working directory {cwd} is not a directory in the image") from None


def resolve_command(name: str, search_path: str) -> str:
    """Find the command as execvp would, inside the container's root."""
    if "/" in name:
        return name
    denied = None
    for directory in search_path.split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            if os.access(candidate, os.X_OK):
                return candidate
            denied = candidate
    if denied is not None:
        raise CommandNotExecutableError(f'exec: "{name}": permission denied ({denied} is not executable)')
    raise CommandNotFoundError(f'exec: "{name}": executable file not found in $PATH')


def _exec_error(name: str, exc: OSError) -> OverlayctlError:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return CommandNotFoundError(f'exec: "{name}": no such file or directory')
    return CommandNotExecutableError(f'exec: "{name}": {os.strerror(exc.errno or errno.EACCES).lower()}')


def _reset_signals() -> None:
    # Python ignores SIGPIPE and SIGXFSZ; an ignored signal stays ignored
    # across exec, and the container's programs must see the defaults.
    import _signal as signal  # signal.py's enums would cost an import of enum

    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _env_dict(env: list[str]) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in env)


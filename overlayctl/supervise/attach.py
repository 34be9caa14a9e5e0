"""`attach`: the client side of a detached container's attach socket.

The supervisor listens on Paths.attach_socket, <runroot>/containers/<id>.sock
(see supervise.frames for the framing). A socket path must fit in 108 bytes
and a runroot may be deep, so both sides name it through an O_PATH
descriptor of its directory: /proc/self/fd/N/<id>.sock is always short.
"""

from __future__ import annotations

import os

from overlayctl.errors import OverlayctlError
from overlayctl.util.detachkeys import DEFAULT as DEFAULT_DETACH_KEYS

STREAM_ENDED = -1  # attach(): the supervisor closed the stream without an exit code

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket


class _InDir:
    """A short name for a file in `directory`: /proc/self/fd/N/name."""

    def __init__(self, directory: str) -> None:
        self.fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def name(self, base: str) -> str:
        return f"/proc/self/fd/{self.fd}/{base}"

    def close(self) -> None:
        os.close(self.fd)


def listen(path: str) -> int:
    """Make the attach socket at `path` (root only) and return its listening
    fd. (_socket, not socket: socket.py imports enum, ~8 ms of every `run -d`.)"""
    import _socket

    directory = os.path.dirname(path)
    os.makedirs(directory, 0o700, exist_ok=True)
    where = _InDir(directory)
    try:
        name = where.name(os.path.basename(path))
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        try:
            old = os.umask(0o077)
            try:
                sock.bind(name)
            finally:
                os.umask(old)
            sock.listen(16)
        except BaseException:
            sock.close()
            raise
    finally:
        where.close()
    return sock.detach()


def remove_socket(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def connect(path: str, name: str) -> socket.socket:
    """Connect to the attach socket at `path` of the container `name`."""
    import socket

    try:
        where = _InDir(os.path.dirname(path))
    except FileNotFoundError:
        where = None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        if where is None:
            raise FileNotFoundError
        sock.connect(where.name(os.path.basename(path)))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise OverlayctlError(
            f'cannot attach to container "{name}": it has no attach socket (only a container started '
            'with -d, or by "start" without -a, has one; for the output use "overlayctl logs -f")'
        ) from None
    finally:
        if where is not None:
            where.close()
    return sock


def attach(
    sock: socket.socket, stdin: bool, tty: bool, container_pid: int = 0, detach_keys: bytes = DEFAULT_DETACH_KEYS
) -> int | None:
    """Relay until the container ends (its exit code) or the user detaches
    with the detach keys (ctrl-p ctrl-q unless told) on a container's
    terminal (None; the keys themselves reach nobody), or STREAM_ENDED when
    the stream ends without an exit code. Without a terminal,
    SIGINT, SIGTERM and friends go to the container, as Docker's --sig-proxy."""
    import select
    import signal
    import sys

    from overlayctl.supervise.frames import CLOSE_STDIN, EXIT_FRAME, STDERR_FRAME, STDIN, frame, split_frames
    from overlayctl.util.detachkeys import EscapeFilter

    in_fd, out_fd, err_fd = sys.stdin.fileno(), sys.stdout.fileno(), sys.stderr.fileno()
    raw = tty and stdin and os.isatty(in_fd)
    saved = None
    previous: dict[int, object] = {}
    if raw:
        import termios
        import tty as ttymod

        saved = termios.tcgetattr(in_fd)
        ttymod.setraw(in_fd, termios.TCSANOW)  # (TCSAFLUSH would drop what was typed ahead)
    if tty:
        _send_size(sock, out_fd if os.isatty(out_fd) else in_fd)
        previous[signal.SIGWINCH] = signal.signal(
            signal.SIGWINCH, lambda *_: _send_size(sock, out_fd if os.isatty(out_fd) else in_fd)
        )
    elif container_pid:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            previous[sig] = signal.signal(sig, lambda signum, _f: _signal_container(container_pid, signum))
    buffer = b""
    escape = EscapeFilter(detach_keys if tty else b"")
    readers = [sock.fileno()] + ([in_fd] if stdin else [])
    try:
        while True:
            try:
                ready, _, _ = select.select(readers, [], [])
            except InterruptedError:
                continue
            if sock.fileno() in ready:
                data = sock.recv(65536)
                if not data:
                    return STREAM_ENDED
                messages, buffer = split_frames(buffer + data)
                for kind, payload in messages:
                    if kind == EXIT_FRAME:
                        return int(payload or b"0")
                    os.write(err_fd if kind == STDERR_FRAME else out_fd, payload)
            if in_fd in ready:
                data = os.read(in_fd, 65536)
                if not data:
                    readers.remove(in_fd)  # the container's stdin stays open, as Docker's
                    if tty:
                        sock.sendall(frame(CLOSE_STDIN, b""))
                    continue
                data, detached = escape.feed(data)
                if data:
                    sock.sendall(frame(STDIN, data))
                if detached:
                    return None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        if saved is not None:
            import termios

            termios.tcsetattr(in_fd, termios.TCSADRAIN, saved)
        sock.close()


def _send_size(sock: socket.socket, fd: int) -> None:
    import fcntl
    import termios

    from overlayctl.supervise.frames import RESIZE, frame

    try:
        size = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return
    rows, cols = int.from_bytes(size[0:2], "little"), int.from_bytes(size[2:4], "little")
    try:
        sock.sendall(frame(RESIZE, f"{rows} {cols}".encode()))
    except OSError:
        pass


def _signal_container(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass

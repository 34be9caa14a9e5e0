"""The supervisor's side of `-t`: relay between the user's terminal and the
container's pty, in raw mode, keeping the window size in step."""

from __future__ import annotations

import os
import select
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def relay(
    master: int,
    pid: int,
    forward_stdin: bool,
    on_output: Callable[[bytes], None] | None = None,
    detach_keys: bytes = b"",
) -> bool:
    """Copy stdin to the pty and the pty to stdout until the container's
    side closes (EIO once its last process holding the slave exits).
    `on_output` sees every chunk of output too (the log).

    With `detach_keys` typed on stdin, return True at once, the pty left
    to a holder process (see _hold) so that what runs on it goes on."""
    import signal
    import termios
    import tty

    from overlayctl.util.detachkeys import EscapeFilter

    stdin = sys.stdin.fileno()
    stdout = sys.stdout.fileno()
    saved = None
    if forward_stdin and os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
    _copy_winsize(stdout if os.isatty(stdout) else stdin, master)
    previous = signal.signal(signal.SIGWINCH, lambda *_: _copy_winsize(stdout, master))
    escape = EscapeFilter(detach_keys if forward_stdin else b"")
    detached = False
    try:
        readers = [master] + ([stdin] if forward_stdin else [])
        while True:
            try:
                ready, _, _ = select.select(readers, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                if on_output is not None:
                    on_output(data)
                try:
                    os.write(stdout, data)
                except OSError:
                    pass  # the terminal went away; the container and its log go on
            if stdin in ready:
                data = os.read(stdin, 65536)
                if data:
                    data, detached = escape.feed(data)
                    if data:
                        os.write(master, data)
                    if detached:
                        _hold(master)
                        return True
                else:
                    readers.remove(stdin)
                    os.write(master, b"\x04")  # EOF for the program reading the tty
    finally:
        signal.signal(signal.SIGWINCH, previous)
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        os.close(master)
    return detached


def _hold(master: int) -> None:
    """Keep the pty of a process the user detached from: closing the last
    descriptor of its master would hang its terminal up (SIGHUP to its
    session). A daemonized child (its own session, no terminal, stdio on
    /dev/null) holds it and reads and drops the output, so that writes to
    the terminal never block, until the last holder of the other side is
    gone (EIO). Nobody attaches to it again, as with Docker's exec."""
    pid = os.fork()
    if pid != 0:
        os.waitpid(pid, 0)
        return
    try:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        os.closerange(3, master)
        os.closerange(master + 1, 65536)
        while True:
            try:
                if not os.read(master, 65536):
                    break
            except InterruptedError:
                continue
            except OSError:
                break
    finally:
        os._exit(0)


def _copy_winsize(source: int, master: int) -> None:
    import fcntl
    import termios

    try:
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)
    except OSError:
        pass

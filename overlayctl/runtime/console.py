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
    master: int, pid: int, forward_stdin: bool, on_output: Callable[[bytes], None] | None = None
) -> None:
    """Copy stdin to the pty and the pty to stdout until the container's
    side closes (EIO once its last process holding the slave exits).
    `on_output` sees every chunk of output too (the log)."""
    import signal
    import termios
    import tty

    stdin = sys.stdin.fileno()
    stdout = sys.stdout.fileno()
    saved = None
    if forward_stdin and os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
    _copy_winsize(stdout if os.isatty(stdout) else stdin, master)
    previous = signal.signal(signal.SIGWINCH, lambda *_: _copy_winsize(stdout, master))
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
                    os.write(master, data)
                else:
                    readers.remove(stdin)
                    os.write(master, b"\x04")  # EOF for the program reading the tty
    finally:
        signal.signal(signal.SIGWINCH, previous)
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        os.close(master)


def _copy_winsize(source: int, master: int) -> None:
    import fcntl
    import termios

    try:
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)
    except OSError:
        pass

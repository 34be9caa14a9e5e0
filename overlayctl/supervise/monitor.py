"""The small, long-lived part of a detached container's supervisor.

`run -d` forks a full overlayctl process (catalog, network, cgroups, the
mount plan) that starts the container; once the command runs, that process
replaces itself (execv, same pid, still the container's parent) with

    python -IS -c "...monitor.main(...)" key=value...

which imports only C modules and `overlayctl.supervise.logs`: about 9 MB resident
instead of ~30. It keeps only file descriptors: the container's stdout and
stderr pipes (or its pty), its stdin, the attach socket and the network
lease lock. It copies output to the log and to attached clients, passes
attached stdin on, forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2
to the container, reaps it, and then, with the container gone, loads the
full overlayctl again in the same process (`detached.after_exit`) to
record the exit, clean up, and restart it or remove it as the container's
policies say.

`Pump`, the copying loop, also serves the foreground supervisor of an
attached run that keeps a log.

The attach protocol it speaks is supervise.frames'.
"""

from __future__ import annotations

import os

from overlayctl.supervise.frames import (
    CLOSE_STDIN,
    EXIT_FRAME,
    RESIZE,
    STDERR_FRAME,
    STDIN,
    STDOUT_FRAME,
    frame,
    split_frames,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

STDIN_LIMIT = 1 << 20  # stdin bytes held for a container; past them its clients are not read
DRAIN_SECONDS = 5.0  # how long output may go on after the container's PID 1 is gone
CLIENT_BACKLOG = 8 << 20  # output held for a slow attached client before it is let go
FLUSH_SECONDS = 5.0  # how long attached clients may take to read the last of it
FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


class Pump:
    """Copy a container's output to its log, to `sinks` (the foreground's
    own stdout/stderr) and to attached clients; stdin from clients to
    `stdin_fd`. With `child`, also reap it (through a pidfd) and return
    its wait status; without, return None once the output has ended."""

    def __init__(
        self,
        log: Any,
        sources: list[tuple[int, str]],
        sinks: dict[str, int] | None = None,
        stdin_fd: int | None = None,
        listener: int | None = None,
        child: int | None = None,
        tty: bool = False,
    ) -> None:
        from overlayctl.supervise.logs import Lines

        self.log = log
        self.sources = dict(sources)  # fd -> "stdout" | "stderr"
        self.lines = {fd: Lines() for fd in self.sources}
        self.sinks = dict(sinks or {})
        self.stdin_fd = stdin_fd
        self.listener = listener
        self.child = child
        self.tty = tty
        self.clients: dict[int, bytes] = {}  # fd -> bytes received, not yet a whole message
        self.backlog: dict[int, bytes] = {}  # fd -> output not yet taken by that client
        self.pending = b""  # for stdin_fd
        self.held: set[int] = set()  # clients not read until the container takes its stdin
        self.close_stdin = False  # close stdin_fd once `pending` is written
        self.masks: dict[int, int] = {}
        self._listen_sock = None
        if listener is not None:
            import _socket

            self._listen_sock = _socket.socket(fileno=listener)

    def run(self) -> int | None:
        import select
        import time

        self.poller = poller = select.poll()
        for fd in self.sources:
            self._watch(fd, select.POLLIN)
        if self.listener is not None:
            self._watch(self.listener, select.POLLIN)
            # A client that connected before the container started (`run
            # -it`) must see its output from the first byte: take it first.
            while select.select([self.listener], [], [], 0)[0] and self._accept():
                pass
        pidfd = None
        if self.child is not None:
            pidfd = os.pidfd_open(self.child)
            self._watch(pidfd, select.POLLIN)
        status = None
        deadline = None
        while self.sources or (self.child is not None and status is None):
            timeout = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            events = poller.poll(timeout)
            if not events and deadline is not None and time.monotonic() >= deadline:
                break  # something outside the container holds its output open: stop waiting
            for fd, event in events:
                if fd in self.sources:
                    self._read_source(fd)
                elif fd == pidfd:
                    _, status = os.waitpid(self.child, 0)  # type: ignore[arg-type]
                    self._unwatch(pidfd)
                    os.close(pidfd)
                    pidfd = None
                    deadline = time.monotonic() + DRAIN_SECONDS
                elif fd == self.listener:
                    self._accept()
                elif fd in self.clients:
                    if event & select.POLLOUT:
                        self._flush_client(fd)
                    if fd in self.clients and event & ~select.POLLOUT:
                        self._read_client(fd)
                elif fd == self.stdin_fd and event & select.POLLOUT:
                    self._flush_stdin()
                elif event & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                    self._unwatch(fd)
        for fd in list(self.sources):
            self._close_source(fd)
        if status is not None:
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code
            self._broadcast(EXIT_FRAME, str(code).encode())
        self._finish_clients()
        for fd in list(self.clients):
            self._drop(fd)
        # Nothing of this container may leak into what comes next (a restart).
        if self._listen_sock is not None:
            self._listen_sock.close()
        if self.stdin_fd is not None:
            os.close(self.stdin_fd)
            self.stdin_fd = None
        return status

    # -- poll bookkeeping

    def _watch(self, fd: int, mask: int) -> None:
        if fd in self.masks:
            self.masks[fd] |= mask
            self.poller.modify(fd, self.masks[fd])
        else:
            self.masks[fd] = mask
            self.poller.register(fd, mask)

    def _unwatch(self, fd: int, mask: int | None = None) -> None:
        if fd not in self.masks:
            return
        remaining = 0 if mask is None else self.masks[fd] & ~mask
        if remaining:
            self.masks[fd] = remaining
            self.poller.modify(fd, remaining)
        else:
            del self.masks[fd]
            self.poller.unregister(fd)

    # -- the container's output

    def _read_source(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO: the pty's last slave is closed
        if not data:
            self._close_source(fd)
            return
        import time

        stream = self.sources[fd]
        for line in self.lines[fd].feed(data):
            self.log.write(stream, line, time.time_ns())  # per line, as Docker stamps them
        sink = self.sinks.get(stream)
        if sink is not None:
            try:
                _write_all(sink, data)
            except OSError:
                del self.sinks[stream]  # the reader went away; the log goes on
        self._broadcast(STDERR_FRAME if stream == "stderr" else STDOUT_FRAME, data)

    def _close_source(self, fd: int) -> None:
        import time

        rest = self.lines[fd].flush()
        if rest:
            self.log.write(self.sources[fd], rest, time.time_ns())
        self._unwatch(fd)
        del self.sources[fd]
        if fd != self.stdin_fd:
            os.close(fd)  # (a pty master is also the stdin: closed at the end)

    # -- attached clients

    def _accept(self) -> bool:
        try:
            fd = self._listen_sock._accept()[0]  # type: ignore[union-attr]
        except OSError:
            return False
        os.set_blocking(fd, False)
        self.clients[fd] = b""
        import select

        self._watch(fd, select.POLLIN)
        return True

    def _read_client(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(fd)
            return
        messages, self.clients[fd] = split_frames(self.clients[fd] + data)
        for kind, payload in messages:
            if kind == STDIN and self.stdin_fd is not None and not self.close_stdin:
                self.pending += payload
                self._flush_stdin()
            elif kind == CLOSE_STDIN and self.stdin_fd is not None:
                if self.tty:
                    self.pending += b"\x04"
                    self._flush_stdin()
                elif self.stdin_fd not in self.sources:
                    # Once what was sent before it is written: `cat big |
                    # docker run -i ...` must not lose its tail.
                    self.close_stdin = True
                    self._flush_stdin()
            elif kind == RESIZE and self.tty and self.stdin_fd is not None:
                _set_winsize(self.stdin_fd, payload)
        if self.stdin_fd is not None and len(self.pending) >= STDIN_LIMIT and fd in self.clients:
            # The container reads its stdin slower than this client sends
            # it: read no more of the client (its socket fills, and so the
            # sender waits) until the container has taken what is held.
            import select

            self._unwatch(fd, select.POLLIN)
            self.held.add(fd)

    def _flush_stdin(self) -> None:
        import select

        assert self.stdin_fd is not None
        while self.pending:
            try:
                n = os.write(self.stdin_fd, self.pending)
            except BlockingIOError:
                self._watch(self.stdin_fd, select.POLLOUT)
                return
            except OSError:
                self.pending = b""  # the container closed its stdin
                break
            self.pending = self.pending[n:]
        self._unwatch(self.stdin_fd, select.POLLOUT)
        for fd in self.held:
            if fd in self.clients:
                self._watch(fd, select.POLLIN)
        self.held.clear()
        if self.close_stdin:
            os.close(self.stdin_fd)
            self.stdin_fd, self.close_stdin = None, False

    def _broadcast(self, kind: int, data: bytes) -> None:
        if not self.clients:
            return
        message = frame(kind, data)
        for fd in list(self.clients):
            if self.backlog.get(fd):
                # Behind already: queue, in order. A client that falls too
                # far behind is let go rather than hold the container up
                # (or its memory grow without end).
                if len(self.backlog[fd]) + len(message) > CLIENT_BACKLOG:
                    self._drop(fd)
                else:
                    self.backlog[fd] += message
                continue
            try:
                written = os.write(fd, message)
            except BlockingIOError:
                written = 0
            except OSError:
                self._drop(fd)
                continue
            if written < len(message):
                # A terminal scrolling a burst of output reads slower than
                # a program writes it: the rest waits for the client.
                import select

                self.backlog[fd] = message[written:]
                self._watch(fd, select.POLLOUT)

    def _flush_client(self, fd: int) -> None:
        import select

        pending = self.backlog.get(fd, b"")
        try:
            written = os.write(fd, pending) if pending else 0
        except BlockingIOError:
            return
        except OSError:
            self._drop(fd)
            return
        self.backlog[fd] = pending = pending[written:]
        if not pending:
            del self.backlog[fd]
            self._unwatch(fd, select.POLLOUT)

    def _finish_clients(self) -> None:
        """Give the clients still behind a few seconds to take the rest
        (the exit code is the last of it)."""
        import select
        import time

        deadline = time.monotonic() + FLUSH_SECONDS
        while self.backlog and time.monotonic() < deadline:
            poller = select.poll()
            for fd in self.backlog:
                poller.register(fd, select.POLLOUT)
            for fd, _ in poller.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                if fd in self.backlog:
                    self._flush_client(fd)

    def _drop(self, fd: int) -> None:
        self._unwatch(fd)
        self.held.discard(fd)
        del self.clients[fd]
        self.backlog.pop(fd, None)
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _set_winsize(master: int, payload: bytes) -> None:
    import fcntl
    import termios

    try:
        rows, cols = (int(x) for x in payload.split())
        fcntl.ioctl(master, termios.TIOCSWINSZ, rows.to_bytes(2, "little") + cols.to_bytes(2, "little") + bytes(4))
    except (ValueError, OSError):
        pass


# --- the entry point (detached.exec_monitor runs it) ----------------------------


def main(argv: list[str]) -> None:
    """The monitor: pump until the container is reaped, then hand over."""
    state = dict(item.partition("=")[::2] for item in argv)
    status = None
    try:
        status = _monitor(state)
    finally:
        # The rest needs the whole of overlayctl (and its dependencies).
        import sys

        sys.path[:] = [p for p in state.get("syspath", "").split(os.pathsep) if p]
        try:
            from overlayctl.supervise.detached import after_exit

            after_exit(state, status)
        finally:
            os._exit(125)


def _monitor(state: dict[str, str]) -> int | None:
    import _signal

    pid = int(state["pid"])

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for name in FORWARDED:
        _signal.signal(getattr(_signal, name), forward)
    log = _writer(state)
    sources = []
    if state.get("master"):
        sources.append((int(state["master"]), "stdout"))
    for key in ("out", "err"):
        if state.get(key):
            sources.append((int(state[key]), "stdout" if key == "out" else "stderr"))
    stdin_fd = int(state["master"]) if state.get("master") else int(state["stdin"]) if state.get("stdin") else None
    if stdin_fd is not None:
        os.set_blocking(stdin_fd, False)
    listener = int(state["listen"]) if state.get("listen") else None
    pump = Pump(log, sources, None, stdin_fd, listener, pid, tty=bool(state.get("master")))
    os.setpriority(os.PRIO_PROCESS, 0, 0)  # up and running: back to the normal priority
    try:
        return pump.run()
    finally:
        log.close()


def _writer(state: dict[str, str]):  # type: ignore[no-untyped-def]
    from overlayctl.supervise import logs

    kind = state.get("log_type") or logs.DEFAULT_DRIVER
    if kind == "none":
        return logs.NoLog()
    if kind == "journald":
        from overlayctl.container.model import LogConfig

        return logs.open_writer(
            LogConfig(kind, {"tag": state.get("log_tag", "")}),
            "",
            {"id": state["id"], "name": state.get("name", ""), "image": state.get("image", "")},
        )
    return logs.JsonFileLog(state["log_path"], int(state.get("log_max_size") or 0), int(state.get("log_max_file") or 1))

"""Build stages at the same time: one forked process per stage.

A process, not a thread, per stage: every RUN step forks a supervisor and
every COPY forks a child that mounts and chroots, and a fork taken while
another thread holds a lock (stdout's buffer, the catalog's connection)
leaves the child with that lock held forever. The parent stays single
threaded; it forks a worker per stage, reads the workers' output and puts
each line out whole, prefixed with its stage as BuildKit does (standard
output to standard output, errors to standard error), and gets back each
stage's result as JSON on a pipe of its own.

A worker reports, then waits until the parent has taken its leases on the
layers it made (its own go with it), so that no `system gc` can remove
them in between.
"""

from __future__ import annotations

import json
import os
import selectors
import sys

from overlayctl.errors import OverlayctlError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    Writer = Callable[[str], None]


# The parent's ends of every worker's pipes: a worker forked later must
# not hold them (an ack pipe held open by a sibling would never close).
_PARENT_FDS: set[int] = set()


class Worker:
    """A forked stage: its pid, the parent's ends of its pipes, what it said."""

    def __init__(self, label: str, pid: int, out_fd: int, err_fd: int, result_fd: int, ack_fd: int) -> None:
        self.label = label
        self.pid = pid
        self.out_fd = out_fd
        self.err_fd = err_fd
        self.result_fd = result_fd
        self.ack_fd = ack_fd
        self.pending = {out_fd: b"", err_fd: b""}  # a line not yet ended, per output
        self.result = b""
        self.open = {out_fd, err_fd, result_fd}


def start(label: str, work: Callable[[], dict]) -> Worker:
    """Fork a worker that runs `work` and reports what it returns (or its error)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    result_r, result_w = os.pipe()
    ack_r, ack_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            for fd in (out_r, err_r, result_r, ack_w, *_PARENT_FDS):
                os.close(fd)
            _PARENT_FDS.clear()
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.close(out_w)
            os.close(err_w)
            # Python's streams too, whatever they were in the parent.
            sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the worker
            sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
            from overlayctl.layer.workers import quiet_sibling_waits

            quiet_sibling_waits()
            try:
                payload: dict = {"ok": work()}
            except OverlayctlError as exc:
                payload = {"error": exc.message, "code": exc.exit_code}
            except BaseException as exc:  # noqa: BLE001 - the worker must never unwind into the caller
                payload = {"error": f"{type(exc).__name__}: {exc}", "code": 125}
            sys.stdout.flush()
            sys.stderr.flush()
            data = json.dumps(payload).encode()
            while data:
                data = data[os.write(result_w, data) :]
            os.close(result_w)
            while os.read(ack_r, 1):
                pass
        finally:
            os._exit(0)
    for fd in (out_w, err_w, result_w, ack_r):
        os.close(fd)
    _PARENT_FDS.update((out_r, err_r, result_r, ack_w))
    return Worker(label, pid, out_r, err_r, result_r, ack_w)


def wait_any(workers: list[Worker], out: Writer, err: Writer) -> tuple[Worker, dict]:
    """Pass on the workers' output line by line until one has reported;
    return it and its report (not yet acknowledged: see finish)."""
    sel = selectors.DefaultSelector()
    try:
        for worker in workers:
            for fd in worker.open:
                sel.register(fd, selectors.EVENT_READ, worker)
        while True:
            for key, _ in sel.select():
                worker = key.data
                chunk = os.read(key.fd, 65536)
                if key.fd == worker.result_fd:
                    worker.result += chunk
                else:
                    _output(worker, key.fd, chunk, out if key.fd == worker.out_fd else err)
                if chunk:
                    continue
                sel.unregister(key.fd)
                worker.open.discard(key.fd)
                if key.fd == worker.result_fd:
                    report = json.loads(worker.result or b'{"error": "the stage\'s process died", "code": 125}')
                    return worker, report
    finally:
        sel.close()


def _output(worker: Worker, fd: int, chunk: bytes, write: Writer) -> None:
    lines = (worker.pending[fd] + chunk).split(b"\n")
    worker.pending[fd] = lines.pop()
    if not chunk and worker.pending[fd]:
        lines.append(worker.pending[fd])  # the end: a last line without its newline
        worker.pending[fd] = b""
    for line in lines:
        write(f"[{worker.label}] {line.decode(errors='replace')}")


def finish(worker: Worker, out: Writer, err: Writer) -> None:
    """Let the worker exit, pass on the rest of its output and reap it."""
    os.close(worker.ack_fd)
    _PARENT_FDS.discard(worker.ack_fd)
    for fd, write in ((worker.out_fd, out), (worker.err_fd, err)):
        while fd in worker.open:
            chunk = os.read(fd, 65536)
            _output(worker, fd, chunk, write)
            if not chunk:
                worker.open.discard(fd)
    for fd in (worker.out_fd, worker.err_fd, worker.result_fd):
        os.close(fd)
        _PARENT_FDS.discard(fd)
    os.waitpid(worker.pid, 0)

"""Plugging a container into its bridges, with pyroute2 loaded off the clock.

A start's network set-up needs pyroute2's rtnetlink message classes, and
importing them costs about 20 ms: more than the rest of the bridge path
together, and all of it on the start's critical path, because the
supervisor can only plug a veth into PID 1's namespace once that exists.
`run` knows it will need the classes as soon as its options are parsed,
some 20 ms earlier. So it forks a plugger right then: a child that imports
the classes on another CPU while `run` creates and prepares the container,
then waits for one request (PID 1's pid and its attachments' plug
requests), carries it out with netlink.plug, answers and exits. While it
plugs, the supervisor publishes the container's ports (the batch of DNAT
elements, firewall.publish_ports: the prepare only claims and records
them, network.ports), so that neither waits for the other.

    prewarm()                   # run, first thing: fork the plugger
    ...                         # create, prepare, fork the supervisor
    plug(pid, requests, dnat)   # the supervisor (a fork of run), from on_namespaces
    finish()                    # run, once the start is over: reap the plugger

Without a plugger (start, a restart, a build's RUN step) `plug` does the
same work in-process. The plugger holds nothing of `run`'s: it is forked
before any lock is taken, and keeps only its two pipes and `run`'s
stderr. It ends when its request is answered, or when every copy of the
request pipe's writing end is closed (the start failed before plugging),
or after REQUEST_TIMEOUT.
"""

from __future__ import annotations

import os

from overlayctl.errors import KernelError

REQUEST_TIMEOUT = 120.0  # seconds a plugger waits for its request

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _Plugger:
    """The pre-forked child, as its parent and the parent's forks see it."""

    __slots__ = ("pid", "parent", "request_w", "answer_r")

    def __init__(self, pid: int, parent: int, request_w: int, answer_r: int) -> None:
        self.pid = pid
        self.parent = parent
        self.request_w = request_w
        self.answer_r = answer_r

    def close(self) -> None:
        for fd in (self.request_w, self.answer_r):
            try:
                os.close(fd)
            except OSError:
                pass
        if os.getpid() == self.parent:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass


# The plugger of this process (or of the `run` this process was forked
# from): one per `run`, used once.
_current: _Plugger | None = None


def prewarm() -> None:
    """Fork the plugger, unless this process has one already."""
    global _current
    if _current is not None:
        return
    request_r, request_w = os.pipe()
    answer_r, answer_w = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the plugger
        try:
            _serve(request_r, answer_w)
        finally:
            os._exit(0)
    os.close(request_r)
    os.close(answer_w)
    _current = _Plugger(pid, parent, request_w, answer_r)


def finish() -> None:
    """Let this process's plugger go (it ends once no start can send it a
    request) and reap it if this process forked it."""
    global _current
    plugger, _current = _current, None
    if plugger is not None:
        plugger.close()


def plug(pid: int, requests: list[dict[str, Any]], dnat: list[list[Any]] | None = None) -> None:
    """Give the network namespace of `pid` its interfaces (attach.Attachment.
    plug_request), through the plugger if there is one, else in-process,
    and publish its ports (`dnat`: ports.dnat_rules) in this process
    meanwhile. Raises what netlink.plug and firewall.publish_ports raise,
    with the same message either way."""
    global _current
    plugger, _current = _current, None
    try:
        sent = plugger is not None and _send(plugger, pid, requests)
        if dnat:
            from overlayctl.network import firewall

            firewall.publish_ports([tuple(rule) for rule in dnat])  # type: ignore[misc]
        answer = _receive(plugger) if sent and plugger is not None else None
    finally:
        if plugger is not None:
            plugger.close()
    if answer is not None:
        _raise_if_failed(answer)
        return
    # No plugger, or no answer (it died: killed, out of memory). Plugging
    # here is safe either way: every step accepts what it finds done.
    _plug_here(pid, requests)


def _plug_here(pid: int, requests: list[dict[str, Any]]) -> None:
    from overlayctl.network import netlink

    with netlink.Rtnl() as rtnl:
        for request in requests:
            netlink.plug(rtnl, pid, request)


def _send(plugger: _Plugger, pid: int, requests: list[dict[str, Any]]) -> bool:
    from overlayctl.util import jsonio  # not json: that brings re and enum onto the start's path

    data = jsonio.dumps({"pid": pid, "requests": requests}).encode() + b"\n"
    try:
        os.write(plugger.request_w, data)  # one request, well under PIPE_BUF
    except BrokenPipeError:
        return False
    os.close(plugger.request_w)
    plugger.request_w = -1
    return True


def _receive(plugger: _Plugger) -> dict[str, Any] | None:
    from overlayctl.util import jsonio

    chunks = []
    while True:
        chunk = os.read(plugger.answer_r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    text = b"".join(chunks)
    if not text.endswith(b"\n"):
        return None
    return jsonio.loads(text)


def _raise_if_failed(answer: dict[str, Any]) -> None:
    if answer.get("ok"):
        return
    from overlayctl.network.netlink import NetlinkError

    message = str(answer.get("message") or "the network set-up failed")
    errno = answer.get("errno")
    if isinstance(errno, int):
        raise NetlinkError(message, errno)
    raise KernelError(message)


def _serve(request_r: int, answer_w: int) -> None:  # pragma: no cover - runs in the plugger
    """In the plugger: load the classes, then answer one request."""
    import select

    from overlayctl.runtime import syscalls as sc

    # stderr stays `run`'s, which waits for this process before it exits.
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1):
        os.dup2(null, target)
    os.close(null)
    sc.close_fds_except((request_r, answer_w))
    from overlayctl.network import netlink

    netlink.load_messages()
    data = b""
    while not data.endswith(b"\n"):
        if not select.select([request_r], [], [], REQUEST_TIMEOUT)[0]:
            return
        chunk = os.read(request_r, 65536)
        if not chunk:
            return  # the start ended without plugging
        data += chunk
    from overlayctl.util import jsonio

    request = jsonio.loads(data)
    try:
        _plug_here(request["pid"], request["requests"])
        answer: dict[str, Any] = {"ok": True}
    except netlink.NetlinkError as exc:
        answer = {"ok": False, "errno": exc.errno, "message": exc.message}
    except KernelError as exc:
        answer = {"ok": False, "message": exc.message}
    except Exception as exc:  # noqa: BLE001 - reported to the supervisor, which says it in one line
        answer = {"ok": False, "message": f"the network set-up failed: {exc!r}"}
    os.write(answer_w, jsonio.dumps(answer).encode() + b"\n")

"""The detached supervisor: `run -d` and `start` without -a.

    overlayctl run -d ...      prepares the start with its catalog connection
     │                         (network, cgroup, pipes, attach socket), records
     │                         the container running, prints the ID, exits
     └─ fork, setsid, fork: the supervisor, in its own session and the
        host's namespaces, stdio on /dev/null
         ├─ forks PID 1, reports its pid once the command runs, waits
         │  until that is recorded
         ├─ execv: the small monitor (supervise.monitor), same pid, still the
         │  parent of the container's PID 1 (whose PR_SET_PDEATHSIG kills it
         │  if the supervisor is ever killed)
         └─ after the container's end, overlayctl again (`after_exit`):
            record the end, release the lease, the cgroup, a freezer, the
            socket; then restart (back-off, then the same steps again, in
            the same process) or remove (--rm), and exit.

A `stop` (SIGTERM to this process while it waits to restart, or the
manually_stopped mark in the catalog) ends the restarts.
"""

from __future__ import annotations

import os

from overlayctl.container.model import ContainerConfig
from overlayctl.container.resources import Held, acquire, release_held
from overlayctl.container.spec import container_spec, image_of, needs_cgroup
from overlayctl.container.teardown import remove
from overlayctl.errors import OverlayctlError
from overlayctl.store import Store
from overlayctl.store.containers import RESTARTING, Container

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Any

STOP_SIGNALS = (1, 2, 15)  # SIGHUP, SIGINT, SIGTERM: no (more) restarts


def _daemonize() -> None:
    """In the first child: a session of our own, then fork again and let
    the first child go, so that the supervisor can never gain a controlling
    terminal; stdio on /dev/null (whoever reads the caller's output must
    see its end when the caller exits, not when the container does), and
    no descriptor the caller inherited from its own caller (a shell's or a
    test harness's pipe, held open for as long as the container runs).
    Ours are all close-on-exec, and stay: the monitor keeps what it needs."""
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    os.close(fd)
            except OSError:
                pass  # (the directory's own descriptor, already gone)
    # Not the caller's service: systemd must not hear from this process.
    os.environ.pop("NOTIFY_SOCKET", None)


def start(store: Store, container: Container, attach: bool = False) -> socket.socket | None:
    """Start `container` (claimed) under a new detached supervisor; return
    once its command runs, or raise what stopped it.

    With `attach`, return a client connected to its attach socket before
    the container started, so that none of its output is missed: the
    connection waits in the socket's backlog, the output in its pipes or
    pty, until the monitor takes both up (`run -it`, `start -ai`).

    Everything that needs the catalog is done here, before the fork, with
    this process's connection (a SQLite connection must not cross a fork,
    and opening another costs the start): the spec, the network lease, the
    cgroup, the pipes and the attach socket. The supervisor only forks
    PID 1 and reports its pid; this process records it running, then lets
    the supervisor become the monitor."""
    import gc

    launch = Launch(store, container, image_of(store, container), 0, 0)
    client = None
    if attach:
        from overlayctl.supervise.attach import connect

        try:
            client = connect(store.paths.attach_socket(container.id), container.name)
        except OverlayctlError as exc:
            launch.fail(exc.exit_code, exc.message)
            raise
    to_caller_r, to_caller_w = os.pipe()
    to_child_r, to_child_w = os.pipe()
    gc.freeze()  # the collector must not touch (and so copy) every inherited page
    pid = os.fork()
    if pid == 0:
        os.close(to_caller_r)
        os.close(to_child_w)
        if client is not None:
            # The caller's end: a copy held here (or in a health checker
            # forked from here) would hide the client's leaving from the monitor.
            client.close()
        _first_supervisor(launch, to_caller_w, to_child_r)
    # The caller may live on (the Engine API service starts many): what it
    # froze for the child must stay collectable here.
    gc.unfreeze()
    os.close(to_caller_w)
    os.close(to_child_r)
    os.waitpid(pid, 0)
    with os.fdopen(to_caller_r, "rb") as answers, os.fdopen(to_child_w, "wb", buffering=0) as ack:
        answer = answers.readline().decode(errors="replace").strip()
        word, _, rest = answer.partition(" ")
        if word == "running":
            pid1, supervisor = (int(x) for x in rest.split())
            store.containers.set_running(container.id, pid1, supervisor_pid=supervisor)
            ack.write(b"ok")
            launch.hand_over()
            return client
    code, _, message = answer.partition(" ")
    exit_code = int(code) if code.isdigit() else 125
    message = message or "the container's supervisor died before the container started"
    if client is not None:
        client.close()
    launch.fail(exit_code, message)
    raise OverlayctlError(message, exit_code=exit_code)


def _first_supervisor(launch: Launch, to_caller: int, from_caller: int) -> None:
    """The supervisor of a first start; never returns."""
    code = 0
    reported = []
    try:
        _daemonize()

        def started(pid: int) -> None:
            os.write(to_caller, f"running {pid} {os.getpid()}\n".encode())
            reported.append(pid)
            if os.read(from_caller, 2) != b"ok":
                raise OverlayctlError("the command that started the container went away before it was recorded")
            os.close(to_caller)
            os.close(from_caller)

        launch.supervise(started)
    except OverlayctlError as exc:
        code = exc.exit_code
        if not reported:
            _send(to_caller, f"{exc.exit_code} {exc.message}\n")
    except BaseException as exc:  # noqa: BLE001
        code = 125
        if not reported:
            _send(to_caller, f"125 the container's supervisor failed: {exc!r}\n")
    if reported:
        # Recorded as running, then lost (supervise killed and reaped it):
        # record the end with a connection of our own.
        _record_lost(launch, code)
    os._exit(code)


def _send(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode())
    except OSError:
        pass


_INHERITED: list[Any] = []  # the caller's catalog connection: never closed in a child


def _record_lost(launch: Launch, code: int) -> None:
    try:
        own = Store(launch.store.paths)
        # Closing the caller's connection here could make SQLite believe it
        # is the last one (its locks are not inherited) and reset the WAL.
        _INHERITED.append(launch.store)
        launch.store = own
        launch.fail(code, "the supervisor could not go on watching the container")
    except BaseException:  # noqa: BLE001 - nobody is left to tell
        pass


def spawn_restarter(store: Store, container_id: str, restart: tuple) -> str:
    """For a foreground run whose policy restarts its container: fork a
    detached supervisor that takes it over (records itself, waits out the
    back-off, starts it again) and return "ok" once it has taken over.
    `restart`: (exit code, oom killed, restart count, last delay ms, seconds it ran)."""
    import gc

    ready_r, ready_w = os.pipe()
    gc.freeze()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        code = 0
        try:
            _daemonize()
            own = Store(store.paths)  # (a SQLite connection must not cross a fork)
            exit_code, oom, count, delay_ms, ran = restart
            own.containers.set_restarting(container_id, exit_code, count, oom)
            _send(ready_w, "ok")
            os.close(ready_w)
            _restart_after_backoff(own, container_id, count, delay_ms, ran)
        except BaseException as exc:  # noqa: BLE001
            code = 125
            _send(ready_w, f"125 {exc}")
        os._exit(code)
    os.close(ready_w)
    os.waitpid(pid, 0)
    with os.fdopen(ready_r, "rb") as ready:
        return ready.read().decode(errors="replace")


class Launch:
    """One start of a detached container: prepared in the process that has
    the catalog (network, cgroup, pipes, attach socket, the monitor's
    settings), supervised in the supervisor."""

    def __init__(self, store: Store, container: Container, image: Any, restart_count: int, delay_ms: int) -> None:
        self.store = store
        self.container = container
        self.spec = spec = container_spec(store, container, image)
        if not os.path.isdir(spec.layout.workdir):
            os.mkdir(spec.layout.workdir, 0o700)
        self.held = Held()
        self.fds: dict[str, int] = {}  # the monitor's: listen, out, err, stdin (master: once known)
        self.child_stdio: list[int | None] = [None, None, None]
        self.lock_fd: int | None = None
        try:
            acquire(store, container, spec, self.held)
            self.fds["listen"] = _listen(store.paths.attach_socket(container.id))
            if not spec.tty:
                self.fds["out"], self.child_stdio[1] = os.pipe()
                self.fds["err"], self.child_stdio[2] = os.pipe()
                if spec.stdin:
                    # `-d -i`: stdin stays open (a pipe only attach writes to),
                    # as Docker keeps it, so a shell waiting on it goes on.
                    self.child_stdio[0], self.fds["stdin"] = os.pipe()
            self.state = {
                "id": container.id,
                "name": container.name,
                "image": container.image_name,
                "root": store.paths.root,
                "runroot": store.paths.runroot,
                "restart_count": str(restart_count),
                "delay_ms": str(delay_ms),
            }
            self.state.update(_log_state(store, container))
            self.check = None
            if container.config.config.healthcheck:
                from overlayctl.supervise import health

                self.check = health.plan(store.paths, container, image, spec)
            # The leases are held by a lock for as long as the supervisor
            # lives (their addresses' host-wide claims name it): the
            # monitor inherits it. (NetworkPlan keeps it private.)
            plan = self.held.plan
            self.lock_fd = getattr(plan, "_lock_fd", None) if plan is not None else None
            if self.lock_fd is not None:
                self.state["lock"], self.state["network"] = str(self.lock_fd), plan.mode
        except OverlayctlError as exc:
            self.fail(exc.exit_code, exc.message)
            raise

    def supervise(self, started: Any) -> None:
        """In the supervisor: fork PID 1, `started(pid)` once its command
        runs, then become the monitor. Returns only by raising."""
        import time

        from overlayctl.supervise import supervisor

        def on_started(pid: int) -> None:
            self.state["pid"], self.state["started"] = str(pid), repr(time.time())
            if self.check is not None:
                from overlayctl.supervise import health

                # A child of this process, and so of the monitor it becomes:
                # after_exit reaps it.
                self.state["health"] = str(health.start(self.check, pid))
            started(pid)

        def become_monitor(pid: int, master: int | None) -> None:
            self._close_child_stdio()  # the monitor must see the end of the output
            if master is not None:
                self.fds["master"] = master
            self.state.update({key: str(fd) for key, fd in self.fds.items()})
            import _signal

            _signal.pthread_sigmask(_signal.SIG_SETMASK, [])  # a blocked signal stays blocked across exec
            # The monitor's interpreter starts while the user's next command
            # runs: at the lowest priority, which the monitor resets once it
            # is up (see monitor._monitor), so that it takes only idle time.
            os.setpriority(os.PRIO_PROCESS, 0, 19)
            keep = list(self.fds.values()) + self._lease_fds()
            exec_monitor(self.state, keep)

        supervisor.run(
            self.spec,
            on_started=on_started,
            attach_stdin=False,
            on_namespaces=self.held.plan.on_namespaces if self.held.plan is not None else None,
            stdio=(self.child_stdio[0], self.child_stdio[1], self.child_stdio[2]),
            relay=become_monitor,
        )
        raise OverlayctlError("the supervisor could not become the container's monitor")

    def hand_over(self) -> None:
        """In the caller, once the supervisor runs the container: let go of
        every descriptor (the supervisor holds its own copies; the lease's
        lock stays held through them)."""
        self._close_child_stdio()
        for fd in list(self.fds.values()) + self._lease_fds():
            os.close(fd)
        self.fds, self.lock_fd = {}, None

    def _lease_fds(self) -> list[int]:
        return [self.lock_fd] if self.lock_fd is not None else []

    def fail(self, code: int | None, error: str) -> None:
        """The start failed: release everything and record the end."""
        self._close_child_stdio()
        for fd in self.fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = {}
        try:
            os.unlink(self.store.paths.attach_socket(self.container.id))
        except OSError:
            pass
        oom, cleanup_error = release_held(self.store, self.container, self.held)
        self.store.containers.set_exited(self.container.id, code, error=error or cleanup_error, oom_killed=oom)
        if self.container.config.host.auto_remove:
            remove(self.store, self.store.containers.get(self.container.id), force=True, volumes=True)

    def _close_child_stdio(self) -> None:
        for fd in self.child_stdio:
            if fd is not None:
                os.close(fd)
        self.child_stdio = [None, None, None]


def _listen(path: str) -> int:
    """The attach socket (supervise.attach.listen; its import, with the attach
    client, is left to `attach` itself)."""
    from overlayctl.supervise.attach import listen

    return listen(path)


def _log_state(store: Store, container: Container) -> dict[str, str]:
    """The monitor's log settings, as key=value strings (max-size was checked
    by logs.parse_log_config at create; overlayctl.supervise.logs is not imported on
    every `run -d`)."""
    hc = container.config.host
    kind = hc.log_driver
    config = (hc.log_config.config if hc.log_config is not None else None) or {}
    state = {"log_type": kind}
    if kind == "json-file":
        state["log_path"] = store.paths.container_log(container.id)
        # Made now, before the start is recorded, not when the monitor takes
        # over: a `logs -f` that comes as soon as the container runs finds
        # its file and keeps it open, whatever the monitor's pace.
        os.close(os.open(state["log_path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640))
        max_size = 0
        if config.get("max-size"):
            from overlayctl.util.sizes import parse_size

            max_size = parse_size(config["max-size"], "--log-opt max-size")
        state["log_max_size"] = str(max_size)
        state["log_max_file"] = str(config.get("max-file") or 1)
    elif kind == "journald":
        state["log_tag"] = config.get("tag") or ""
    return state


def after_exit(state: dict[str, str], status: int | None) -> None:
    """The supervisor again, once its monitor has reaped the container
    (`status` from waitpid; None if the monitor failed). Never returns."""
    code = 0
    try:
        _after_exit(state, status)
    except BaseException:  # noqa: BLE001 - nobody is left to tell
        code = 125
    os._exit(code)


def _after_exit(state: dict[str, str], status: int | None) -> None:
    import _signal
    import time

    from overlayctl.container.restart import should_restart
    from overlayctl.paths import Paths
    from overlayctl.supervise import attach

    # From now on a SIGTERM (stop, rm -f) means: no restart. It is held
    # pending and read before a restart, or while waiting for one.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, STOP_SIGNALS)
    exit_code = None
    if status is not None:
        exit_code = os.waitstatus_to_exitcode(status)
        exit_code = 128 - exit_code if exit_code < 0 else exit_code
    paths = Paths(state["root"], state["runroot"])
    container_id = state["id"]
    attach.remove_socket(paths.attach_socket(container_id))
    if state.get("health"):
        from overlayctl.supervise import health

        health.stop(int(state["health"]))  # before the cgroup goes: no probe may be left in it
    store = Store(paths)
    held = Held()
    if state.get("lock"):
        held.plan = _network_plan(store, container_id, state.get("network", ""), int(state["lock"]))
    try:
        container: Container | None = store.containers.get(container_id)
    except OverlayctlError:
        container = None  # removed meanwhile (rm -f): only clean up
    if container is not None and needs_cgroup(container.config.host):
        from overlayctl.runtime.cgroups.cgroup import find

        held.cgroup = find(container_id)
    subject = container or Container(container_id, "", "", "", ContainerConfig(), "", "", 0, 0, None, "", "", "")
    oom, error = release_held(store, subject, held)
    if container is None:
        return
    hc = container.config.host
    count = int(state.get("restart_count") or 0)
    stop_asked = bool(_signal.sigpending() & set(STOP_SIGNALS))
    if not stop_asked and should_restart(hc.restart_policy, exit_code, container.manually_stopped, count):
        store.containers.set_restarting(container_id, exit_code, count + 1, oom)
        ran = time.time() - float(state.get("started") or time.time())
        _restart_after_backoff(store, container_id, count + 1, int(state.get("delay_ms") or 0), ran)
        return
    store.containers.set_exited(container_id, exit_code, error=error, oom_killed=oom)
    if hc.auto_remove:
        remove(store, store.containers.get(container_id), force=True, volumes=True)


def _restart_after_backoff(store: Store, container_id: str, count: int, last_delay_ms: int, ran: float) -> None:
    """Wait out the back-off (a stop signal cuts it short and ends the
    restarts), then start the container again as its supervisor."""
    import _signal

    from overlayctl.container.restart import next_delay_ms

    _signal.pthread_sigmask(_signal.SIG_BLOCK, STOP_SIGNALS)
    delay_ms = next_delay_ms(last_delay_ms, ran)
    stopped = _signal.sigtimedwait(STOP_SIGNALS, delay_ms / 1000) is not None
    stopped = stopped or bool(_signal.sigpending() & set(STOP_SIGNALS))
    try:
        container = store.containers.get(container_id)
    except OverlayctlError:
        return
    if stopped or container.manually_stopped or container.status != RESTARTING:
        if container.status == RESTARTING:
            store.containers.set_exited(
                container_id, container.exit_code, oom_killed=container.oom_killed, died=False
            )
        return
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, STOP_SIGNALS)
    launch = Launch(store, container, store.images.get(container.image_id), count, delay_ms)
    try:
        launch.supervise(lambda pid: store.containers.set_running(container_id, pid))
    except OverlayctlError as exc:
        launch.fail(exc.exit_code, exc.message)
        raise


def _network_plan(store: Store, container_id: str, mode: str, lock_fd: int) -> Any:
    """The network plan of the start, rebuilt from what the monitor kept:
    its release() frees the leases (and their claims), the generated files
    and the lock."""
    from overlayctl.network import attach
    from overlayctl.network.leases import network_dir

    return attach.NetworkPlan(store, container_id, mode, [], network_dir(store.paths, container_id), [], None, lock_fd)


# The monitor's entry point, run by exec_monitor in a fresh interpreter.
_BOOT = "import sys;sys.path.insert(0,sys.argv[1]);from overlayctl.supervise.monitor import main;main(sys.argv[2:])"


def exec_monitor(state: dict[str, str], fds: list[int]) -> None:
    """Replace this process (the full supervisor) with the small monitor,
    keeping `fds` open; `state` is everything the monitor and, after the
    exit, detached.after_exit need. Never returns."""
    import sys

    import overlayctl

    for fd in fds:
        os.set_inheritable(fd, True)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(overlayctl.__file__)))
    state = dict(state, syspath=os.pathsep.join(p for p in sys.path if p))
    argv = [sys.executable, "-IS", "-c", _BOOT, package_parent]
    argv += [f"{key}={value}" for key, value in state.items()]
    os.execv(sys.executable, argv)

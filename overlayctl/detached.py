"""The detached supervisor: `run -d` and `start` without -a.

    overlayctl run -d ...            (waits for "ok", prints the ID, exits)
     └─ fork, setsid, fork: the supervisor, in its own session and the
        host's namespaces, stdio on /dev/null
         ├─ starts the container (network, cgroup, pipes, attach socket),
         │  records it running, says "ok"
         ├─ execv: the small monitor (runtime.monitor), same pid, still the
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

from overlayctl.errors import OverlayctlError
from overlayctl.lifecycle import Held, acquire, container_spec, paused_once, release_held, remove
from overlayctl.store import Store
from overlayctl.store.containers import RESTARTING, Container

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from overlayctl.paths import Paths

STOP_SIGNALS = (1, 2, 15)  # SIGHUP, SIGINT, SIGTERM: no (more) restarts
RestartInfo = tuple  # (exit code, oom killed, restart count, last delay ms, seconds it ran)


class Ready:
    """The pipe to the command waiting for the start: one answer, once."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def send(self, text: str) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            os.write(fd, text.encode())
        except OSError:
            pass
        finally:
            os.close(fd)


def spawn_supervisor(store: Store, container_id: str, restart: RestartInfo | None = None) -> str:
    """Fork the detached supervisor and return what it reports: "ok" once
    the command runs (or, with `restart`, once it has taken the container
    over to restart it), else "<exit code> <message>"."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        _supervisor_main(store.paths, container_id, Ready(ready_w), restart)
    os.close(ready_w)
    os.waitpid(pid, 0)
    with os.fdopen(ready_r, "rb") as ready:
        return ready.read().decode(errors="replace")


def _supervisor_main(paths: Paths, container_id: str, ready: Ready, restart: RestartInfo | None) -> None:
    """The background supervisor; never returns."""
    code = 0
    try:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        # Not the caller's service: systemd must not hear from this process.
        os.environ.pop("NOTIFY_SOCKET", None)
        # SQLite connections must not cross a fork: open the store anew.
        own = Store(paths)
        if restart is not None:
            exit_code, oom, count, delay_ms, ran = restart
            own.containers.set_restarting(container_id, exit_code, count, oom)
            ready.send("ok")
            _restart_after_backoff(own, container_id, count, delay_ms, ran)
        else:
            launch(own, container_id, ready, 0, 0)
    except OverlayctlError as exc:
        code = exc.exit_code
        ready.send(f"{exc.exit_code} {exc.message}")
    except BaseException as exc:  # noqa: BLE001
        code = 125
        ready.send(f"125 the container's supervisor failed: {exc!r}")
    os._exit(code)


def launch(store: Store, container_id: str, ready: Ready, restart_count: int, delay_ms: int) -> None:
    """Start the container with this process as its supervisor, then
    become the monitor (execv). Returns only by raising: the start failed,
    and its end is recorded."""
    from overlayctl.runtime import attach, supervisor
    from overlayctl.runtime.monitor import exec_monitor

    container = store.containers.get(container_id)
    image = store.images.get(container.image_id)
    spec = container_spec(store, container, image)
    if not os.path.isdir(spec.layout.workdir):
        os.mkdir(spec.layout.workdir, 0o700)
    hc = container.config.get("HostConfig", {})
    held = Held()
    fds: dict[str, int] = {}
    child_stdio: list[int | None] = [None, None, None]
    code: int | None = None
    error = ""
    try:
        acquire(store, container, spec, held)
        if paused_once(container.id):
            from overlayctl.runtime import cgroups

            cgroups.Freezer(container.id).remove()  # left by a supervisor that was killed
        fds["listen"] = attach.listen(store.paths.run_containers, container.id)
        if not spec.tty:
            fds["out"], child_stdio[1] = os.pipe()
            fds["err"], child_stdio[2] = os.pipe()
            if spec.stdin:
                # `-d -i`: stdin stays open (a pipe only attach writes to),
                # as Docker keeps it, so a shell waiting on it goes on.
                child_stdio[0], fds["stdin"] = os.pipe()
        state = {
            "id": container.id,
            "name": container.name,
            "image": container.image_name,
            "root": store.paths.root,
            "runroot": store.paths.runroot,
            "restart_count": str(restart_count),
            "delay_ms": str(delay_ms),
        }
        state.update(_log_state(store, container))
        # The lease is held by a lock for as long as the supervisor lives:
        # the monitor inherits it. (NetworkPlan keeps it private.)
        lock_fd = getattr(held.plan, "_lock_fd", None) if held.plan is not None else None
        if lock_fd is not None:
            state["lock"], state["network"] = str(lock_fd), held.plan.mode

        def started(pid: int) -> None:
            import time

            store.containers.set_running(container.id, pid)
            state["pid"], state["started"] = str(pid), repr(time.time())
            ready.send("ok")

        def become_monitor(pid: int, master: int | None) -> None:
            for fd in child_stdio:
                if fd is not None:
                    os.close(fd)  # the monitor must see the end of the output
            child_stdio[:] = [None, None, None]
            if master is not None:
                fds["master"] = master
            state.update({key: str(fd) for key, fd in fds.items()})
            import _signal

            _signal.pthread_sigmask(_signal.SIG_SETMASK, [])  # a blocked signal stays blocked across exec
            exec_monitor(state, list(fds.values()) + ([lock_fd] if lock_fd is not None else []))

        supervisor.run(
            spec,
            on_started=started,
            attach_stdin=False,
            on_namespaces=held.plan.on_namespaces if held.plan is not None else None,
            stdio=(child_stdio[0], child_stdio[1], child_stdio[2]),
            relay=become_monitor,
        )
        raise OverlayctlError("the supervisor could not become the container's monitor")
    except OverlayctlError as exc:
        code, error = exc.exit_code, exc.message
        raise
    finally:
        # Only a failed start gets here (a good one became the monitor).
        for fd in list(fds.values()) + [fd for fd in child_stdio if fd is not None]:
            try:
                os.close(fd)
            except OSError:
                pass
        attach.remove_socket(store.paths.run_containers, container.id)
        oom, cleanup_error = release_held(store, container, held)
        store.containers.set_exited(container.id, code, error=error or cleanup_error, oom_killed=oom)
        if hc.get("AutoRemove"):
            remove(store, store.containers.get(container.id), force=True, volumes=True)


def _log_state(store: Store, container: Container) -> dict[str, str]:
    """The monitor's log settings, as key=value strings."""
    from overlayctl import logs

    log_config = container.config.get("HostConfig", {}).get("LogConfig") or {}
    kind = log_config.get("Type") or logs.DEFAULT_DRIVER
    config = log_config.get("Config") or {}
    state = {"log_type": kind}
    if kind == "json-file":
        state["log_path"] = logs.log_path(store.paths.containers, container.id)
        state["log_max_size"] = str(logs.parse_size(config["max-size"]) if config.get("max-size") else 0)
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

    from overlayctl.paths import Paths
    from overlayctl.restart import should_restart
    from overlayctl.runtime import attach

    # From now on a SIGTERM (stop, rm -f) means: no restart. It is held
    # pending and read before a restart, or while waiting for one.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, STOP_SIGNALS)
    exit_code = None
    if status is not None:
        exit_code = os.waitstatus_to_exitcode(status)
        exit_code = 128 - exit_code if exit_code < 0 else exit_code
    paths = Paths(state["root"], state["runroot"])
    container_id = state["id"]
    attach.remove_socket(paths.run_containers, container_id)
    store = Store(paths)
    held = Held()
    if state.get("lock"):
        held.plan = _network_plan(store, container_id, state.get("network", ""), int(state["lock"]))
    try:
        container: Container | None = store.containers.get(container_id)
    except OverlayctlError:
        container = None  # removed meanwhile (rm -f): only clean up
    if container is not None and container.config.get("HostConfig", {}).get("Limits"):
        from overlayctl.runtime import cgroups

        held.cgroup = cgroups.find(container_id)
    subject = container or Container(container_id, "", "", "", {"HostConfig": {}}, "", "", 0, 0, None, "", "", "")
    oom, error = release_held(store, subject, held)
    if container is None:
        return
    hc = container.config.get("HostConfig", {})
    count = int(state.get("restart_count") or 0)
    stop_asked = bool(_signal.sigpending() & set(STOP_SIGNALS))
    if not stop_asked and should_restart(hc.get("RestartPolicy"), exit_code, container.manually_stopped, count):
        store.containers.set_restarting(container_id, exit_code, count + 1, oom)
        ran = time.time() - float(state.get("started") or time.time())
        _restart_after_backoff(store, container_id, count + 1, int(state.get("delay_ms") or 0), ran)
        return
    store.containers.set_exited(container_id, exit_code, error=error, oom_killed=oom)
    if hc.get("AutoRemove"):
        remove(store, store.containers.get(container_id), force=True, volumes=True)


def _restart_after_backoff(store: Store, container_id: str, count: int, last_delay_ms: int, ran: float) -> None:
    """Wait out the back-off (a stop signal cuts it short and ends the
    restarts), then start the container again as its supervisor."""
    import _signal

    from overlayctl.restart import next_delay_ms

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
            store.containers.set_exited(container_id, container.exit_code, oom_killed=container.oom_killed)
        return
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, STOP_SIGNALS)
    launch(store, container_id, Ready(None), count, delay_ms)


def _network_plan(store: Store, container_id: str, mode: str, lock_fd: int) -> Any:
    """The network plan of the start, rebuilt from what the monitor kept:
    its release() frees the lease, the generated files and the lock."""
    from overlayctl.network import attach, manage

    leases = manage.networks(store).leases(container_id=container_id)
    return attach.NetworkPlan(
        store,
        container_id,
        mode,
        None,
        leases[0] if leases else None,
        attach.network_dir(store.paths, container_id),
        [],
        {},
        lock_fd,
    )

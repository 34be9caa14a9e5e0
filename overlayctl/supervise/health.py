"""The health checker: a container's HEALTHCHECK, run as Docker's daemon runs it.

A container with a check gets, from its supervisor (foreground or
detached) once its command runs, a forked process of its own:

    supervisor ── container PID 1
        └─ checker: waits the interval (the start interval during the
           start period), runs the probe through `exec`'s way in
           (runtime.exec.start: the container's namespaces, cgroups, user,
           capabilities and seccomp filter), kills it at the timeout,
           counts the result (container.health) and writes State.Health

The checker watches PID 1 through a pidfd: when the container ends it kills
the probe's whole session (the probe is a session leader in the container's
PID namespace), reaps it, marks the health unhealthy as Docker does when
its monitor stops, and exits. The supervisor reaps it (stop) before it
releases the container's cgroup, so nothing of the check outlives the
container or keeps its cgroup busy.
"""

from __future__ import annotations

import os

from overlayctl.container import health as model
from overlayctl.errors import ConflictError, OverlayctlError
from overlayctl.store import events

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.paths import Paths
    from overlayctl.runtime.exec import ExecSpec
    from overlayctl.runtime.spec import ContainerSpec
    from overlayctl.store.containers import Container
    from overlayctl.store.images import Image


# How long a probe found SIGKILLed waits to learn whether its container is ending.
_CONTAINER_END_NS = 1_000_000_000


class Check:
    """What the checker of one start needs: where to write, what to run."""

    def __init__(self, paths: Paths, container: Container, settings: model.Settings, probe: ExecSpec) -> None:
        self.paths = paths
        self.container_id = container.id
        self.name = container.name
        self.image = container.image_name
        self.labels = (container.config.to_json().get("Config") or {}).get("Labels")
        self.settings = settings
        self.probe = probe


def plan(paths: Paths, container: Container, image: Image, spec: ContainerSpec) -> Check | None:
    """The container's check, or None when it has none (no Healthcheck, or
    NONE): decided before the start, where the image is at hand."""
    from overlayctl.container.spec import exec_spec

    config = container.config.config.healthcheck
    settings = model.Settings(config, shell=image.container_config.get("Shell"))
    if settings.test is None:
        return None
    return Check(paths, container, settings, exec_spec(container, spec, settings.test))


def start(check: Check | None, pid: int) -> int:
    """Fork the checker for the container whose PID 1 is `pid`; its pid
    (0 when there is nothing to check). The caller reaps it with stop()."""
    if check is None:
        return 0
    import gc

    from overlayctl.util.proc import process_start_time

    pid_start = process_start_time(pid)
    # "starting" before the start is reported, so that no reader sees a
    # running container with the health of its last run.
    health = model.load(check.paths, check.container_id) or model.Health()
    health.status, health.failing_streak = model.STARTING, 0
    model.save(check.paths, check.container_id, health)
    gc.freeze()  # (the collector must not touch, and so copy, every inherited page)
    child = os.fork()
    if child != 0:
        return child
    code = 0
    try:
        _leave_supervisor()
        _Checker(check, pid, pid_start, health).run()
    except BaseException:  # noqa: BLE001 - nobody is left to tell
        code = 1
    os._exit(code)


def stop(checker: int) -> None:
    """Ask the checker to end (its container has, or is about to) and reap it."""
    if checker <= 0:
        return
    try:
        os.kill(checker, 15)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(checker, 0)
    except ChildProcessError:
        pass


def _leave_supervisor() -> None:
    """In the forked checker: a session of its own (a terminal's ^C is the
    foreground container's, not the check's), stdio on /dev/null, and no
    descriptor of the supervisor's (the container's output pipes, the
    attach socket, the catalog: the monitor must see the output end)."""
    os.setsid()
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    from overlayctl.runtime import syscalls as sc

    sc.close_fds_except(())


class _Checker:
    """The checker's loop (in its own process)."""

    def __init__(self, check: Check, pid: int, pid_start: int, health: model.Health) -> None:
        self.check = check
        self.pid = pid
        self.pid_start = pid_start
        self.health = health

    def run(self) -> None:
        import _signal as signal

        from overlayctl.util.proc import process_start_time

        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, lambda *_: None)  # stop(): seen through the wakeup pipe
        health = self.health
        try:
            try:
                container_fd = os.pidfd_open(self.pid)
            except ProcessLookupError:
                return
            if process_start_time(self.pid) != self.pid_start:
                return  # (the pid was recycled: the container is gone)
            self.watch = (container_fd, wake_r)
            self._loop(health)
        finally:
            # Docker's, "for compatibility": unhealthy once checks have stopped.
            health.status = model.UNHEALTHY
            model.save(self.check.paths, self.check.container_id, health)

    def _loop(self, health: model.Health) -> None:
        import time

        settings = self.check.settings
        started = time.monotonic_ns()
        while True:
            wait = settings.next_interval(health.status, time.monotonic_ns() - started)
            if self._ended(wait):
                return
            since_start = time.monotonic_ns() - started
            result = self._probe()
            if result is None:
                return
            changed = health.record(result, settings, since_start < settings.start_period)
            model.save(self.check.paths, self.check.container_id, health)
            if changed and health.status in (model.HEALTHY, model.UNHEALTHY):
                events.record(
                    self.check.paths,
                    "container",
                    f"health_status: {health.status}",
                    self.check.container_id,
                    events.container_attributes(self.check.name, self.check.image, self.check.labels),
                )

    def _ended(self, timeout_ns: int) -> bool:
        """Wait up to `timeout_ns`; whether the container ended or the
        checker was told to stop meanwhile."""
        import select

        poller = select.poll()
        for fd in self.watch:
            poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(0, timeout_ns // 1_000_000)))

    def _probe(self) -> model.Result | None:
        """Run the probe once; its result, or None if the container ended
        (or the checker was told to stop) while it ran."""
        import select
        import time

        from overlayctl.runtime import exec as runtime_exec

        settings = self.check.settings
        start = time.time_ns()
        from overlayctl.container.resources import frozen

        if frozen(self.check.container_id):
            # Docker's exec refuses a paused container, and its daemon counts
            # that as a failed probe; a probe in the frozen cgroup would hang.
            message = f"Container {self.check.container_id} is paused, unpause the container before exec"
            return model.Result(start, time.time_ns(), -1, message)
        out_r, out_w = os.pipe()
        self.check.probe.output = out_w
        try:
            child = runtime_exec.start(self.pid, self.pid_start, self.check.probe)
        except OverlayctlError as exc:
            os.close(out_r)
            # "Not running": its namespaces went first; PID 1's exit shows a moment later.
            ending = self._ended(_CONTAINER_END_NS if isinstance(exc, ConflictError) else 0)
            return None if ending else model.Result(start, time.time_ns(), -1, exc.message)
        finally:
            os.close(out_w)
        child_fd = os.pidfd_open(child)
        os.set_blocking(out_r, False)
        output = bytearray()
        deadline = time.monotonic_ns() + settings.timeout
        poller = select.poll()
        for fd in (out_r, child_fd, *self.watch):
            poller.register(fd, select.POLLIN)
        outcome = ""
        try:
            while not outcome:
                left = deadline - time.monotonic_ns()
                if left <= 0:
                    outcome = "timeout"
                    break
                for fd, _event in poller.poll(max(1, left // 1_000_000)):
                    if fd == out_r:
                        if not _read_some(out_r, output):
                            poller.unregister(out_r)
                    elif fd == child_fd:
                        outcome = "exited"
                    else:
                        outcome = "ended"
            _read_some(out_r, output)  # what the probe wrote before it exited
        finally:
            # A zombie still holds its pid and process group: the kill
            # reaches whatever it left running, and nothing else.
            _kill_session(child)
            _, status = os.waitpid(child, 0)
            os.close(child_fd)
            os.close(out_r)
        end = time.time_ns()
        # A container that ends takes its probe with it (its PID namespace's
        # end SIGKILLs it before PID 1's own exit shows): that is no result.
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
        if outcome == "ended" or self._ended(_CONTAINER_END_NS if killed else 0):
            return None
        if outcome == "timeout":
            from overlayctl.util.humanize import go_duration

            message = f"Health check exceeded timeout ({go_duration(settings.timeout)})"
            return model.Result(start, end, -1, message)
        code = os.waitstatus_to_exitcode(status)
        return model.Result(start, end, 128 - code if code < 0 else code, model.truncated_output(bytes(output)))


def _read_some(fd: int, into: bytearray) -> bool:
    """Read what is there (keeping no more than Docker shows, and one byte
    to know there was more); False at the end of the output."""
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not data:
            return False
        room = model.MAX_OUTPUT + 1 - len(into)
        if room > 0:
            into += data[:room]


def _kill_session(leader: int) -> None:
    try:
        os.killpg(leader, 9)
    except (ProcessLookupError, PermissionError):
        pass

"""The foreground supervisor (`run`, `start -a`): the command itself forks
the container's PID 1, copies its output to a log when it keeps one, tells
systemd (sdnotify) when it runs and stops, records the end, and hands a
container whose restart policy wants it again to a detached supervisor.
"""

from __future__ import annotations

import os

from overlayctl.container.resources import Held, acquire, release_held
from overlayctl.container.spec import container_spec
from overlayctl.container.teardown import remove
from overlayctl.errors import OverlayctlError
from overlayctl.runtime.spec import ContainerSpec
from overlayctl.store import Store
from overlayctl.store.containers import Container
from overlayctl.store.images import Image

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def _keeps_log(container: Container) -> bool:
    """Whether a foreground run copies the output through the supervisor
    into a log: not for --rm (the log would go with the container a moment
    later; the container writes straight to the terminal) nor without a
    log driver."""
    hc = container.config.host
    return not hc.auto_remove and hc.log_driver != "none"


def run(
    store: Store,
    container: Container,
    image: Image,
    on_started: Callable[[int], None] | None = None,
    attach_stdin: bool = True,
) -> int:
    from overlayctl.supervise import supervisor

    spec = container_spec(store, container, image)
    if not os.path.isdir(spec.layout.workdir):
        os.mkdir(spec.layout.workdir, 0o700)
    hc = container.config.host
    notify = "NOTIFY_SOCKET" in os.environ  # under systemd (Type=notify)
    code: int | None = None
    error = ""
    held = Held()
    ran: list[int] = []  # the command was executed (a failed start is never restarted)
    output = _ForegroundOutput(store, container, spec.tty) if _keeps_log(container) else None
    check = None
    if container.config.config.healthcheck:
        from overlayctl.supervise import health

        check = health.plan(store.paths, container, image, spec)
    checker = [0]  # the health checker's pid, once the command runs
    try:
        acquire(store, container, spec, held)

        def started(pid: int) -> None:
            store.containers.set_running(container.id, pid)
            ran.append(pid)
            if check is not None:
                checker[0] = health.start(check, pid)
            if on_started is not None:
                on_started(pid)
            if notify:
                from overlayctl.supervise import sdnotify

                sdnotify.ready(f"container {container.name} running (pid {pid})", os.getpid())

        def on_signal(signum: int) -> None:
            if notify and signum in (2, 15):  # SIGINT, SIGTERM: a stop begins
                from overlayctl.supervise import sdnotify

                sdnotify.stopping(f"stopping container {container.name}")

        code = supervisor.run(
            spec,
            on_started=started,
            attach_stdin=attach_stdin,
            on_namespaces=held.plan.on_namespaces if held.plan is not None else None,
            stdio=output.stdio if output is not None else None,
            relay=output.relay(spec, attach_stdin) if output is not None else None,
            on_signal=on_signal if notify else None,
        )
        return code
    except OverlayctlError as exc:
        code, error = exc.exit_code, exc.message
        raise
    finally:
        if checker[0]:
            health.stop(checker[0])  # before the cgroup goes: no probe may be left in it
        if output is not None:
            output.close()
        if notify:
            from overlayctl.supervise import sdnotify

            sdnotify.stopping(f"container {container.name} exited ({'unknown' if code is None else code})")
        oom, cleanup_error = release_held(store, container, held)
        error = error or cleanup_error
        # Recorded however the start ends (an unknown code if it was cut short).
        if not (ran and _hand_over_restart(store, container, code, oom, notify)):
            store.containers.set_exited(container.id, code, error=error, oom_killed=oom)
            if hc.auto_remove:
                # Read back: if the start was cut short while the process lived,
                # the row says "running" and remove() kills and waits first.
                remove(store, store.containers.get(container.id), force=True, volumes=True)


class _ForegroundOutput:
    """A foreground run that keeps a log: the container's stdout and stderr
    are pipes (without -t) that the supervisor copies to its own and to the
    log; with -t, the terminal relay copies to the log too."""

    def __init__(self, store: Store, container: Container, tty: bool) -> None:
        from overlayctl.supervise.logs import open_writer

        self.writer = open_writer(
            container.config.host.log_config,
            store.paths.container_log(container.id),
            {"id": container.id, "name": container.name, "image": container.image_name},
        )
        self.pipes: list[int] = []
        self.stdio: tuple[int | None, int | None, int | None] | None = None
        if not tty:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            self.pipes = [out_r, out_w, err_r, err_w]
            self.stdio = (None, out_w, err_w)

    def relay(self, spec: ContainerSpec, attach_stdin: bool) -> Callable[[int, int | None], None]:
        def copy(pid: int, master: int | None) -> None:
            if master is not None:
                from overlayctl.runtime.console import relay
                from overlayctl.supervise.logs import Lines

                lines = Lines()

                def log(data: bytes) -> None:
                    import time

                    for line in lines.feed(data):
                        self.writer.write("stdout", line, time.time_ns())

                try:
                    relay(master, pid, forward_stdin=spec.stdin and attach_stdin, on_output=log)
                finally:
                    rest = lines.flush()
                    if rest:
                        import time

                        self.writer.write("stdout", rest, time.time_ns())
                return
            from overlayctl.supervise.monitor import Pump

            out_r, out_w, err_r, err_w = self.pipes
            os.close(out_w)
            os.close(err_w)
            self.pipes = []  # the pump closes the read ends
            Pump(self.writer, [(out_r, "stdout"), (err_r, "stderr")], {"stdout": 1, "stderr": 2}).run()

        return copy

    def close(self) -> None:
        for fd in self.pipes:
            os.close(fd)
        self.pipes = []
        self.writer.close()


def _hand_over_restart(store: Store, container: Container, code: int | None, oom: bool, notify: bool) -> bool:
    """A foreground container whose restart policy wants it again: as with
    Docker, the run returns the exit code and the restarts go on in the
    background, in a detached supervisor. Not under systemd, whose
    Restart= decides there."""
    policy = container.config.host.restart_policy
    if notify or policy is None or container.config.host.restart_name == "no":
        return False
    from overlayctl.container.restart import should_restart

    try:
        current = store.containers.get(container.id)
    except OverlayctlError:
        return False
    if not should_restart(policy, code, current.manually_stopped, current.restart_count):
        return False
    from overlayctl.supervise.detached import spawn_restarter

    return spawn_restarter(store, container.id, (code, oom, current.restart_count + 1, 0, 0.0)) == "ok"

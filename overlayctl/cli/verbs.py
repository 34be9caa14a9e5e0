"""Commands on containers that exist: stop, kill, restart, wait, pause,
unpause, rename, top, attach, exec, logs."""

from __future__ import annotations

import sys

import click

from overlayctl.cli.common import open_store
from overlayctl.cli.output import table

_PASSTHROUGH = {"allow_interspersed_args": False, "help_option_names": ["--help"]}

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from overlayctl.store import Store
    from overlayctl.store.containers import Container


def each_container(store: Store, names: Sequence[str], act: Callable[[Container], object]) -> None:
    """Do ``act`` to every named container and print what it returns (the
    name when it returns None), going on past the ones that fail, as Docker
    does: one error line each, then exit status 1.

    With one name, its error is raised as it is (and keeps its exit code).
    """
    if len(names) == 1:
        result = act(store.containers.get(names[0]))
        click.echo(names[0] if result is None else result)
        return
    from overlayctl.errors import OverlayctlError, one_line

    failed = False
    for text in names:
        try:
            result = act(store.containers.get(text))
        except OverlayctlError as exc:
            failed = True
            sys.stdout.flush()
            sys.stderr.write(f"overlayctl: {one_line(exc.message)}\n")
            sys.stderr.flush()
            continue
        click.echo(text if result is None else result)
    if failed:
        sys.exit(1)


@click.command("stop")
@click.argument("containers", nargs=-1, required=True, metavar="CONTAINER...")
@click.option("-t", "--time", "timeout", type=int, default=None, help="seconds before SIGKILL (default 10)")
@click.pass_obj
def stop(obj: dict, containers: tuple[str, ...], timeout: int | None) -> None:
    """Stop containers: the stop signal (SIGTERM), then SIGKILL after a grace period."""
    from overlayctl.engine import control

    store = open_store(obj)
    each_container(store, containers, lambda c: control.stop(store, c, timeout))


@click.command("kill")
@click.argument("containers", nargs=-1, required=True, metavar="CONTAINER...")
@click.option("-s", "--signal", "signal_name", default="KILL", show_default=True, help="signal to send")
@click.pass_obj
def kill(obj: dict, containers: tuple[str, ...], signal_name: str) -> None:
    """Send a signal to the main process of containers."""
    from overlayctl.container.signals import parse_signal
    from overlayctl.engine import control

    signum = parse_signal(signal_name)
    store = open_store(obj)
    each_container(store, containers, lambda c: control.kill(store, c, signum))


@click.command("restart")
@click.argument("containers", nargs=-1, required=True, metavar="CONTAINER...")
@click.option("-t", "--time", "timeout", type=int, default=None, help="seconds before SIGKILL (default 10)")
@click.pass_obj
def restart(obj: dict, containers: tuple[str, ...], timeout: int | None) -> None:
    """Stop containers (if they run) and start them again in the background."""
    from overlayctl.engine import control

    store = open_store(obj)
    each_container(store, containers, lambda c: control.restart(store, c, timeout))


@click.command("wait")
@click.argument("containers", nargs=-1, required=True, metavar="CONTAINER...")
@click.pass_obj
def wait(obj: dict, containers: tuple[str, ...]) -> None:
    """Block until containers stop, then print their exit codes."""
    from overlayctl.engine import control

    store = open_store(obj)
    each_container(store, containers, lambda c: str(control.wait(store, c)))


@click.command("pause")
@click.argument("containers", nargs=-1, required=True, metavar="CONTAINER...")
@click.pass_obj
def pause(obj: dict, containers: tuple[str, ...]) -> None:
    """Freeze every process of containers (the freezer cgroup)."""
    from overlayctl.engine import control

    store = open_store(obj)
    each_container(store, containers, lambda c: control.pause(store, c))


@click.command("unpause")
@click.argument("containers", nargs=-1, required=True, metavar="CONTAINER...")
@click.pass_obj
def unpause(obj: dict, containers: tuple[str, ...]) -> None:
    """Thaw paused containers."""
    from overlayctl.engine import control

    store = open_store(obj)
    each_container(store, containers, lambda c: control.unpause(store, c))


@click.command("rename")
@click.argument("container")
@click.argument("new_name")
@click.pass_obj
def rename(obj: dict, container: str, new_name: str) -> None:
    """Rename a container."""
    from overlayctl.engine import control

    store = open_store(obj)
    control.rename(store, store.containers.get(container), new_name)


@click.command("top")
@click.argument("container")
@click.pass_obj
def top(obj: dict, container: str) -> None:
    """Show the processes of a running container (host PIDs), as ps -ef."""
    from overlayctl.engine import control

    store = open_store(obj)
    headers, rows = control.top(store, store.containers.get(container))
    table(headers, rows)


@click.command("attach")
@click.argument("container")
@click.option("--no-stdin", is_flag=True, help="do not attach stdin")
@click.pass_obj
def attach(obj: dict, container: str, no_stdin: bool) -> None:
    """Attach to a detached container's output (and stdin with -i); ctrl-p ctrl-q detaches from a terminal."""
    from overlayctl.engine import control

    store = open_store(obj)
    sys.exit(control.attach(store, store.containers.get(container), stdin=not no_stdin))


@click.command("exec", context_settings=_PASSTHROUGH)
@click.option("-i", "--interactive", is_flag=True, help="keep stdin open")
@click.option("-t", "--tty", is_flag=True, help="allocate a pseudo-terminal")
@click.option("-d", "--detach", is_flag=True, help="run the command in the background")
@click.option("-e", "--env", multiple=True, metavar="KEY=VALUE", help="set an environment variable")
@click.option("-w", "--workdir", metavar="DIR", help="working directory inside the container")
@click.option("-u", "--user", metavar="USER[:GROUP]", help="user to run as")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def exec_(
    obj: dict,
    interactive: bool,
    tty: bool,
    detach: bool,
    env: tuple[str, ...],
    workdir: str | None,
    user: str | None,
    container: str,
    command: tuple[str, ...],
) -> None:
    """Run a command in a running container (its namespaces, cgroups, capabilities and seccomp)."""
    from overlayctl.engine import control

    store = open_store(obj)
    sys.exit(
        control.exec_in(
            store,
            store.containers.get(container),
            list(command),
            list(env),
            workdir,
            user,
            tty=tty,
            interactive=interactive,
            detach=detach,
        )
    )


@click.command("logs")
@click.argument("container")
@click.option("-f", "--follow", is_flag=True, help="follow the log while the container runs")
@click.option("-n", "--tail", default="all", show_default=True, help="lines to show from the end")
@click.option("--since", metavar="TIME", help="only after TIME (10m, Unix seconds, RFC 3339)")
@click.option("--until", metavar="TIME", help="only before TIME")
@click.option("-t", "--timestamps", is_flag=True, help="prefix every line with its time")
@click.pass_obj
def logs(
    obj: dict, container: str, follow: bool, tail: str, since: str | None, until: str | None, timestamps: bool
) -> None:
    """Show a container's output: its json-file log (journald: through journalctl)."""
    from overlayctl.errors import InvalidArgumentError, OverlayctlError
    from overlayctl.supervise import logs as logmod

    store = open_store(obj)
    found = store.containers.get(container)
    kind = found.config.host.log_driver
    if kind == "none":
        raise OverlayctlError(f'container "{found.name}" logs to "none": there is nothing to read')
    if tail != "all" and not tail.lstrip("-").isdigit():
        raise InvalidArgumentError(f'invalid --tail "{tail}": give a number of lines or "all"')
    count = -1 if tail == "all" else int(tail)
    since_ns = logmod.parse_since(since) if since else 0
    until_ns = logmod.parse_since(until) if until else 0
    out, err = sys.stdout.buffer, sys.stderr.buffer

    def show(entry: logmod.Entry) -> None:
        stream = err if entry.stream == "stderr" else out
        if timestamps:
            stream.write(entry.time.encode() + b" ")
        stream.write(entry.data)
        stream.flush()

    if kind == "journald":
        for entry in _journal_entries(found.id, since_ns, until_ns, count, follow):
            show(entry)
        return
    from overlayctl.engine import control

    path = store.paths.container_log(found.id)
    for entry in logmod.read_entries(path, since_ns, until_ns, count):
        show(entry)
    if follow:
        for entry in logmod.follow(path, control.still_logging(store, found.id), since_ns, until_ns):
            show(entry)


def _journal_entries(container_id: str, since: int, until: int, tail: int, follow: bool):  # type: ignore[no-untyped-def]
    """A journald container's entries, read back with journalctl."""
    import shutil
    import subprocess

    from overlayctl.errors import OverlayctlError
    from overlayctl.supervise import logs as logmod
    from overlayctl.util import jsonio

    journalctl = shutil.which("journalctl")
    if journalctl is None:
        raise OverlayctlError("reading journald logs needs journalctl, which is not installed")
    argv = [journalctl, "--no-pager", "-o", "json", f"CONTAINER_ID_FULL={container_id}"]
    if since:
        argv.append(f"--since=@{since / 1e9:.6f}")
    if until:
        argv.append(f"--until=@{until / 1e9:.6f}")
    if tail >= 0:
        argv.append(f"--lines={tail}")
    if follow:
        argv.append("--follow")
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                fields = jsonio.loads(line)
            except ValueError:
                continue
            message = fields.get("MESSAGE") or ""
            data = bytes(message) if isinstance(message, list) else str(message).encode()
            if fields.get("CONTAINER_PARTIAL_MESSAGE") != "true":
                data += b"\n"
            ns = int(fields.get("__REALTIME_TIMESTAMP") or 0) * 1000
            stream = "stderr" if str(fields.get("PRIORITY")) == "3" else "stdout"
            yield logmod.Entry(stream, data, logmod.rfc3339nano(ns), ns)


COMMANDS = (stop, kill, restart, wait, pause, unpause, rename, top, attach, exec_, logs)

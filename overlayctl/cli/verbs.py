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

    from overlayctl.engine.containers import Container
    from overlayctl.store import Store


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
    from overlayctl.engine import control

    signum = control.parse_signal(signal_name)
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
@click.option("--detach-keys", metavar="KEYS", help="keys that detach (default ctrl-p,ctrl-q)")
@click.pass_obj
def attach(obj: dict, container: str, no_stdin: bool, detach_keys: str | None) -> None:
    """Attach to a detached container's output (and stdin with -i); ctrl-p ctrl-q detaches from a terminal."""
    from overlayctl.cli.common import attached_exit
    from overlayctl.cli.common import detach_keys as resolve_keys
    from overlayctl.engine import control

    keys = resolve_keys(detach_keys, True)
    store = open_store(obj)
    code = control.attach(store, store.containers.get(container), stdin=not no_stdin, detach_keys=keys)
    sys.exit(attached_exit(code, on_detach=1))


@click.command("exec", context_settings=_PASSTHROUGH)
@click.option("-i", "--interactive", is_flag=True, help="keep stdin open")
@click.option("-t", "--tty", is_flag=True, help="allocate a pseudo-terminal")
@click.option("-d", "--detach", is_flag=True, help="run the command in the background")
@click.option("-e", "--env", multiple=True, metavar="KEY=VALUE", help="set an environment variable")
@click.option("--env-file", "env_file", multiple=True, metavar="FILE", help="read environment variables from a file")
@click.option("-w", "--workdir", metavar="DIR", help="working directory inside the container")
@click.option("-u", "--user", metavar="USER[:GROUP]", help="user to run as")
@click.option("--detach-keys", metavar="KEYS", help="keys that detach from -it (default ctrl-p,ctrl-q)")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def exec_(
    obj: dict,
    interactive: bool,
    tty: bool,
    detach: bool,
    env: tuple[str, ...],
    env_file: tuple[str, ...],
    workdir: str | None,
    user: str | None,
    detach_keys: str | None,
    container: str,
    command: tuple[str, ...],
) -> None:
    """Run a command in a running container (its namespaces, cgroups, capabilities and seccomp)."""
    from overlayctl.cli.common import attached_exit
    from overlayctl.cli.common import detach_keys as resolve_keys
    from overlayctl.engine import control
    from overlayctl.util.kvfile import env_from_files

    keys = resolve_keys(detach_keys, tty and interactive and not detach)
    env = (*env_from_files(env_file), *env)
    store = open_store(obj)
    code = control.exec_in(
        store,
        store.containers.get(container),
        list(command),
        list(env),
        workdir,
        user,
        tty=tty,
        interactive=interactive,
        detach=detach,
        detach_keys=keys,
    )
    sys.exit(attached_exit(code, on_detach=1))


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
    from overlayctl.engine.logs import log_entries

    store = open_store(obj)
    entries = log_entries(store, store.containers.get(container), tail, since, until, follow)
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for entry in entries:
        stream = err if entry.stream == "stderr" else out
        if timestamps:
            stream.write(entry.time.encode() + b" ")
        stream.write(entry.data)
        stream.flush()


@click.command("port")
@click.argument("container")
@click.argument("private_port", required=False, metavar="[PRIVATE_PORT[/PROTO]]")
@click.option(
    "--format",
    "fmt",
    default=None,
    metavar="TEMPLATE",
    help='a Go template over the ports as inspect shows them: {"80/tcp": [{"HostIp", "HostPort"}]}',
)
@click.pass_obj
def port(obj: dict, container: str, private_port: str | None, fmt: str | None) -> None:
    """List a container's published ports, or the host addresses of one of them."""
    from overlayctl.engine import format as formats
    from overlayctl.engine.inspect import port_mappings

    formats.check_template(fmt, listing=False)
    if fmt is not None and private_port is not None:
        raise click.UsageError("give either PRIVATE_PORT or --format")
    store = open_store(obj)
    found = store.containers.get(container)
    text = formats.render_documents(fmt, [formats.port_document(store, found)])
    if text is not None:
        click.echo(text, nl=False)
        return
    mappings = port_mappings(store, found)
    if private_port is None:
        for key, host_ip, host_port in mappings:
            click.echo(f"{key} -> {host_ip}:{host_port}")
        return
    key = private_port if "/" in private_port else private_port + "/tcp"
    matches = [(host_ip, host_port) for k, host_ip, host_port in mappings if k == key.lower()]
    if not matches:
        from overlayctl.errors import NotFoundError

        raise NotFoundError(f"No public port '{key}' published for {container}", exit_code=1)
    for host_ip, host_port in matches:
        click.echo(f"{host_ip}:{host_port}")


COMMANDS = (stop, kill, restart, wait, pause, unpause, rename, top, attach, exec_, logs, port)

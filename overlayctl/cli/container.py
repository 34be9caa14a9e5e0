"""Container commands: run, create, start, ps, inspect, rm (and, from
cli.verbs, stop, kill, restart, wait, pause, unpause, rename, top, attach,
exec, logs)."""

from __future__ import annotations

import sys
import time

import click

from overlayctl.cli import runopts
from overlayctl.cli.common import create_options, open_store, run_container
from overlayctl.cli.output import FORMAT_HELP, INSPECT_FORMAT_HELP, filter_option, print_documents, table
from overlayctl.cli.verbs import each_container

_PASSTHROUGH = {"allow_interspersed_args": False, "help_option_names": ["--help"]}


@click.command("run", context_settings=_PASSTHROUGH)
@runopts.click_options(runopts.RUN_OPTIONS)
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def run(obj: dict, image: str, command: tuple[str, ...], **opts: object) -> None:
    """Create a container from IMAGE and run COMMAND in it."""
    sys.exit(run_container(obj, opts, image, list(command)))


@click.command("create", context_settings=_PASSTHROUGH)
@runopts.click_options(runopts.CREATE_OPTIONS)
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def create(obj: dict, image: str, command: tuple[str, ...], **opts: object) -> None:
    """Create a container (its upper and work directories) without starting it."""
    from overlayctl.engine import containers as engine

    store = open_store(obj)
    container = engine.create(store, create_options(opts, image, list(command)))
    click.echo(container.id)


@click.command("start")
@click.argument("containers", nargs=-1, required=True, metavar="CONTAINER...")
@click.option("-a", "--attach", is_flag=True, help="attach stdout/stderr and pass on the exit code")
@click.option("-i", "--interactive", is_flag=True, help="attach stdin")
@click.option("--detach-keys", metavar="KEYS", help="keys that detach from -ai (default ctrl-p,ctrl-q)")
@click.pass_obj
def start(obj: dict, containers: tuple[str, ...], attach: bool, interactive: bool, detach_keys: str | None) -> None:
    """Start created or exited containers."""
    from overlayctl.cli.common import attached_exit
    from overlayctl.cli.common import detach_keys as resolve_keys
    from overlayctl.engine import containers as engine
    from overlayctl.engine import control

    keys = resolve_keys(detach_keys, interactive)
    store = open_store(obj)
    if attach or interactive:
        if len(containers) > 1:
            raise click.UsageError("you cannot start and attach multiple containers at once")
        container = store.containers.get(containers[0])
        if keys is not None and control.on_terminal(container):
            sys.exit(attached_exit(control.start_on_terminal(store, container, keys)))
        sys.exit(engine.start_attached(store, container))
    each_container(store, containers, lambda c: engine.start_detached(store, c))


@click.command("ps")
@click.option("-a", "--all", "all_", is_flag=True, help="show all containers (default: running only)")
@click.option("-q", "--quiet", is_flag=True, help="only show container IDs")
@click.option("-s", "--size", is_flag=True, help="show sizes: the writable layer and the virtual total")
@click.option("--no-trunc", is_flag=True, help="do not truncate output")
@click.option("--format", "fmt", default=None, metavar="FORMAT", help=FORMAT_HELP)
@filter_option("id, name, label, status, exited, ancestor, before, since, volume, network, health, publish, expose")
@click.pass_obj
def ps(
    obj: dict, all_: bool, quiet: bool, size: bool, no_trunc: bool, fmt: str | None, filters: tuple[str, ...]
) -> None:
    """List containers; with -s, SIZE is the upper dir and virtual adds the image."""
    from overlayctl.engine import format as formats
    from overlayctl.engine.filters import list_containers
    from overlayctl.engine.inspect import (
        ago,
        command_text,
        container_health,
        container_sizes,
        ports_text,
        status_text,
    )
    from overlayctl.util.humanize import human_size

    form = formats.parse(fmt)
    store = open_store(obj)
    containers = list_containers(store, filters, all_)
    if quiet:
        for c in containers:
            click.echo(c.id if no_trunc else c.short_id)
        return
    if not form.is_default:
        # As Docker: a template that shows .Size asks for the sizes.
        listed = formats.ps_rows(store, containers, no_trunc, size or form.uses("Size"))
        click.echo(formats.render(form, listed, formats.PS), nl=False)
        return
    now = time.time()
    sizes = container_sizes(store, containers) if size else {}
    ports = ports_text(store, containers)
    headers = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    rows = []
    for c in containers:
        row = [
            c.id if no_trunc else c.short_id,
            c.image_name,
            command_text(c, 10**6 if no_trunc else 20),
            ago(c.created, now),
            status_text(c, now, container_health(store, c)),
            ports.get(c.id, ""),
            c.name,
        ]
        if size:
            rw, virtual = sizes[c.id]
            row.append(f"{human_size(rw)} (virtual {human_size(virtual)})")
        rows.append(row)
    table(headers + (["SIZE"] if size else []), rows)


@click.command("inspect")
@click.argument("objects", nargs=-1, required=True, metavar="NAME|ID...")
@click.option("-s", "--size", is_flag=True, help="add SizeRw and SizeRootFs for containers")
@click.option("-f", "--format", "fmt", default=None, metavar="FORMAT", help=INSPECT_FORMAT_HELP)
@click.option(
    "--type",
    "kind",
    type=click.Choice(["container", "image", "network", "volume"]),
    default=None,
    help="look only for this kind of object",
)
@click.pass_obj
def inspect(obj: dict, objects: tuple[str, ...], size: bool, fmt: str | None, kind: str | None) -> None:
    """Show containers, images, networks or volumes as Docker-shaped JSON,
    or each through a Go template (-f '{{.State.Pid}}')."""
    from overlayctl.engine.objects import inspect_objects

    print_documents(fmt, lambda: inspect_objects(open_store(obj), list(objects), size, kind))


@click.command("rm")
@click.argument("containers", nargs=-1, required=True, metavar="CONTAINER...")
@click.option("-f", "--force", is_flag=True, help="kill and remove a running container")
@click.option("-v", "--volumes", is_flag=True, help="remove the container's anonymous volumes too")
@click.pass_obj
def rm(obj: dict, containers: tuple[str, ...], force: bool, volumes: bool) -> None:
    """Remove containers and their writable layers."""
    from overlayctl.engine.containers import remove

    store = open_store(obj)
    each_container(store, containers, lambda c: remove(store, c, force, volumes))


def register(cli: click.Group) -> None:
    """Attach the container commands, at top level and under `container`."""

    @cli.group("container")
    def container() -> None:
        """Manage containers."""

    from overlayctl.cli.verbs import COMMANDS

    for command in (run, create, start, ps, inspect, rm, *COMMANDS):
        cli.add_command(command)
        container.add_command(command)
    container.add_command(ps, "ls")

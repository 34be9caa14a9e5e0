"""Volume commands: volume create, ls, inspect, rm, prune."""

from __future__ import annotations

import click

from overlayctl.cli.common import open_store
from overlayctl.cli.output import FORMAT_HELP, INSPECT_FORMAT_HELP, filter_option, print_documents, table
from overlayctl.errors import InvalidArgumentError, OverlayctlError


def _pairs(items: tuple[str, ...], what: str) -> dict[str, str]:
    result = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise InvalidArgumentError(f'invalid {what} "{item}": use KEY=VALUE')
        result[key] = value
    return result


@click.command("create")
@click.argument("name", required=False)
@click.option("-d", "--driver", default="local", show_default=True, help="volume driver (only local)")
@click.option("-l", "--label", "labels", multiple=True, metavar="KEY=VALUE", help="set a label (repeatable)")
@click.option("--label-file", "label_files", multiple=True, metavar="FILE", help="read labels from a file")
@click.option("-o", "--opt", "opts", multiple=True, metavar="KEY=VALUE", help="driver option (none for local)")
@click.pass_obj
def volume_create(
    obj: dict,
    name: str | None,
    driver: str,
    labels: tuple[str, ...],
    label_files: tuple[str, ...],
    opts: tuple[str, ...],
) -> None:
    """Create a volume (a random 64-hex name when NAME is omitted)."""
    from overlayctl.engine.volumes import create_volume
    from overlayctl.util.kvfile import labels_from

    label_map = labels_from(label_files, labels)
    store = open_store(obj)
    volume = create_volume(store, name, label_map, driver, _pairs(opts, "option"))
    click.echo(volume.name)


@click.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="only show volume names")
@filter_option("dangling=, name=, label=, driver=")
@click.option("--format", "fmt", default=None, metavar="FORMAT", help=FORMAT_HELP)
@click.pass_obj
def volume_ls(obj: dict, quiet: bool, filters: tuple[str, ...], fmt: str | None) -> None:
    """List volumes: DRIVER VOLUME NAME."""
    from overlayctl.engine import format as formats
    from overlayctl.engine.volumes import list_volumes

    form = formats.parse(fmt)
    store = open_store(obj)
    volumes = list_volumes(store, list(filters))
    if quiet:
        for volume in volumes:
            click.echo(volume.name)
        return
    if not form.is_default:
        click.echo(formats.render(form, formats.volume_rows(store, volumes), formats.VOLUMES), nl=False)
        return
    table(["DRIVER", "VOLUME NAME"], [(volume.driver, volume.name) for volume in volumes])


@click.command("inspect")
@click.argument("names", nargs=-1, required=True, metavar="VOLUME...")
@click.option("-f", "--format", "fmt", default=None, metavar="FORMAT", help=INSPECT_FORMAT_HELP)
@click.pass_obj
def volume_inspect(obj: dict, names: tuple[str, ...], fmt: str | None) -> None:
    """Show volumes as Docker-shaped JSON, or each through a Go template."""
    from overlayctl.engine.volumes import inspect_volumes

    print_documents(fmt, lambda: inspect_volumes(open_store(obj), list(names)))


@click.command("rm")
@click.argument("names", nargs=-1, required=True, metavar="VOLUME...")
@click.option("-f", "--force", is_flag=True, help="ignore missing volumes; take them from stopped containers")
@click.pass_obj
def volume_rm(obj: dict, names: tuple[str, ...], force: bool) -> None:
    """Remove volumes no container uses (running or not)."""
    from overlayctl.engine.volumes import remove_volume

    store = open_store(obj)
    # As Docker: every name is tried; the first failure is reported at the end.
    failure: OverlayctlError | None = None
    for name in names:
        try:
            remove_volume(store, name, force)
        except OverlayctlError as exc:
            failure = failure or exc
            if len(names) > 1:
                click.echo(f"overlayctl: {exc.message}", err=True)
            continue
        click.echo(name)
    if failure is not None:
        raise failure


@click.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="named volumes too, not only anonymous ones")
@click.option("-f", "--force", is_flag=True, help="do not ask for confirmation")
@filter_option("label=KEY[=VALUE], label!=KEY[=VALUE]", short=False)
@click.pass_obj
def volume_prune(obj: dict, all_: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove volumes no container uses (anonymous ones unless --all)."""
    from overlayctl.engine.volumes import prune_volumes
    from overlayctl.util.humanize import human_size

    store = open_store(obj)
    if not force:
        what = "all local volumes" if all_ else "anonymous local volumes"
        click.echo(f"WARNING! This will remove {what} not used by at least one container.")
        if not click.confirm("Are you sure you want to continue?", default=False):
            return
    removed = prune_volumes(store, all_, list(filters))
    if removed:
        click.echo("Deleted Volumes:")
        for name, _size in removed:
            click.echo(name)
        click.echo("")
    click.echo(f"Total reclaimed space: {human_size(sum(size for _, size in removed))}")


def register(cli: click.Group) -> None:
    """Attach `volume` and its commands, with Docker's aliases."""

    @cli.group("volume")
    def volume() -> None:
        """Manage volumes."""

    volume.add_command(volume_create)
    volume.add_command(volume_ls)
    volume.add_command(volume_ls, "list")
    volume.add_command(volume_inspect)
    volume.add_command(volume_rm)
    volume.add_command(volume_rm, "remove")
    volume.add_command(volume_prune)

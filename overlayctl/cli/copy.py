"""`cp` (and `container cp`): files between a container and the host."""

from __future__ import annotations

import sys

import click

from overlayctl.cli.common import open_store
from overlayctl.errors import InvalidArgumentError


@click.command("cp")
@click.argument("source", metavar="SRC")
@click.argument("destination", metavar="DEST")
@click.option("-a", "--archive", is_flag=True, help="archive mode (copy all uid/gid information)")
@click.option("-L", "--follow-link", "follow", is_flag=True, help="always follow symbol link in SRC_PATH")
@click.option(
    "-q", "--quiet", is_flag=True, help="suppress progress output (there is none: accepted for Docker's scripts)"
)
@click.pass_obj
def cp(obj: dict, source: str, destination: str, archive: bool, follow: bool, quiet: bool) -> None:
    """Copy files between a container and the host: CONTAINER:SRC DEST|-, or SRC|- CONTAINER:DEST.

    A "-" is a tar on standard output or input."""
    from overlayctl.engine.copy import copy

    if destination == "-" and sys.stdout.isatty():
        raise InvalidArgumentError("refusing to write a tar to a terminal; redirect standard output")
    copy(open_store(obj), source, destination, archive=archive, follow=follow)


def register(cli: click.Group) -> None:
    """Attach cp at top level and under `container`."""
    cli.add_command(cp)
    container_group = cli.commands.get("container")
    if isinstance(container_group, click.Group):
        container_group.add_command(cp)

"""The click application: global options and the command groups."""

from __future__ import annotations

import click

from overlayctl import __version__
from overlayctl.cli import runopts


@click.group(context_settings={"help_option_names": ["--help"]})
@click.option("--root", metavar="DIR", help=runopts.GLOBAL_OPTIONS[0].help)
@click.option("--runroot", metavar="DIR", help=runopts.GLOBAL_OPTIONS[1].help)
@click.option("--debug", is_flag=True, help=runopts.GLOBAL_OPTIONS[2].help)
@click.version_option(__version__, prog_name="overlayctl")
@click.pass_context
def cli(ctx: click.Context, root: str | None, runroot: str | None, debug: bool) -> None:
    """overlayctl: images as stacks of shared layers, containers on kernel overlayfs."""
    ctx.obj = {"root": root, "runroot": runroot, "debug": debug}


def _register() -> None:
    from overlayctl.cli import (
        build,
        container,
        copy,
        du,
        image,
        network,
        prune,
        registry,
        stats,
        system,
        transfer,
        volume,
    )

    image.register(cli)
    container.register(cli)
    build.register(cli)
    copy.register(cli)
    volume.register(cli)
    network.register(cli)
    system.register(cli)
    stats.register(cli)
    du.register(cli)
    registry.register(cli)
    transfer.register(cli)
    prune.register(cli)


_register()

"""Image transfer commands: save (images to an archive) and load (back)."""

from __future__ import annotations

import sys

import click

from overlayctl.cli.common import open_store


@click.command("save")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["oci-archive", "docker-archive"]),
    default="oci-archive",
    show_default=True,
    help="archive format",
)
@click.option(
    "--compression",
    type=click.Choice(["none", "gzip", "zstd"]),
    help="oci-archive: compress every layer so (default: a layer goes out as it came in, one made here as gzip)",
)
@click.option("-q", "--quiet", is_flag=True, help="no progress")
@click.pass_obj
def save(
    obj: dict, images: tuple[str, ...], output: str | None, fmt: str, compression: str | None, quiet: bool
) -> None:
    """Save images to an OCI (podman, skopeo) or docker-archive tar."""
    from overlayctl.engine import transfer
    from overlayctl.engine.progress import Progress, archive_reporter
    from overlayctl.errors import InvalidArgumentError

    if output is None and sys.stdout.isatty():
        raise InvalidArgumentError("refusing to write an archive to a terminal: use -o FILE or redirect stdout")
    store = open_store(obj)
    # The archive owns stdout when there is no -o; progress is then not shown.
    display = Progress("quiet" if quiet or output is None or not sys.stdout.isatty() else "tty")
    reporter = archive_reporter(display, "save")
    if output is None:
        transfer.save(store, list(images), sys.stdout.buffer, fmt, compression, reporter)
        return
    try:
        transfer.save_to_file(store, list(images), output, fmt, compression, reporter)
    finally:
        display.close()


@click.command("load")
@click.option("-i", "--input", "source", metavar="FILE", help="read from FILE instead of stdin")
@click.option("-q", "--quiet", is_flag=True, help="only the Loaded image lines")
@click.pass_obj
def load(obj: dict, source: str | None, quiet: bool) -> None:
    """Load images from an OCI or docker-archive tar (file or stdin)."""
    from overlayctl.engine import transfer
    from overlayctl.engine.progress import Progress, archive_reporter

    store = open_store(obj)
    display = Progress("auto")
    if quiet:
        # docker load -q: the Loaded image lines only.
        display.mode = "quiet"
    reporter = archive_reporter(display, "load")
    if quiet:
        reporter.image_done = lambda name: click.echo(  # type: ignore[method-assign]
            f"Loaded image ID: {name}" if name.startswith("sha256:") else f"Loaded image: {name}"
        )
    try:
        transfer.load(store, source, reporter)
    finally:
        display.close()


def register(cli: click.Group) -> None:
    """Attach save and load, at the top level and under `image`."""
    cli.add_command(save)
    cli.add_command(load)
    image = cli.commands.get("image")
    if isinstance(image, click.Group):
        image.add_command(save)
        image.add_command(load)

"""Image transfer commands: save (images to an archive) and load (back)."""

from __future__ import annotations

import os
import sys

import click

from overlayctl.cli.common import open_store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.oci.archive import Progress
    from overlayctl.oci.progress import Progress as Display


def _reporter(display: Display, verb: str) -> Progress:
    """archive.Progress events drawn by the shared per-layer display."""
    from overlayctl.oci.archive import Progress
    from overlayctl.oci.progress import short_digest

    # On a terminal the row carries a bar, which the display draws only for
    # its transfer statuses; a log gets Docker's words.
    busy = {"load": "Extracting", "save": "Writing"}[verb] if display.mode == "tty" else "Loading layer"

    class _Shown(Progress):
        def layer_start(self, digest: str, size: int) -> None:
            display.add(short_digest(digest), busy, size)

        def layer_advance(self, digest: str, nbytes: int) -> None:
            display.advance(short_digest(digest), nbytes)

        def layer_done(self, digest: str, status: str) -> None:
            key = short_digest(digest)
            if status == "Already exists":
                display.add(key, status)
            else:
                display.status(key, status, line=verb == "save")

        def image_done(self, name: str) -> None:
            display.message(f"Loaded image ID: {name}" if name.startswith("sha256:") else f"Loaded image: {name}")

    return _Shown()


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
    from overlayctl.errors import InvalidArgumentError, KernelError
    from overlayctl.oci.archive import save_archive
    from overlayctl.oci.progress import Progress as Display

    if output is None and sys.stdout.isatty():
        raise InvalidArgumentError("refusing to write an archive to a terminal: use -o FILE or redirect stdout")
    store = open_store(obj)
    # The archive owns stdout when there is no -o; progress is then not shown.
    display = Display("quiet" if quiet or output is None or not sys.stdout.isatty() else "tty")
    reporter = _reporter(display, "save")
    if output is None:
        save_archive(store, list(images), sys.stdout.buffer, fmt, compression, reporter)
        sys.stdout.buffer.flush()
        return
    # Written beside the target and renamed: a failed save leaves no half archive.
    target = os.path.abspath(output)
    partial = f"{target}.{os.getpid()}.partial"
    try:
        with open(partial, "xb") as out:
            save_archive(store, list(images), out, fmt, compression, reporter)
            out.flush()
            os.fsync(out.fileno())
        os.rename(partial, target)
    except OSError as e:
        if e.filename not in (None, partial, target):
            raise  # the store's, not the archive's (cli.main names it)
        raise KernelError(f"cannot write {output}: {e.strerror or e}") from e
    finally:
        if os.path.lexists(partial):
            os.unlink(partial)
        display.close()


@click.command("load")
@click.option("-i", "--input", "source", metavar="FILE", help="read from FILE instead of stdin")
@click.option("-q", "--quiet", is_flag=True, help="only the Loaded image lines")
@click.pass_obj
def load(obj: dict, source: str | None, quiet: bool) -> None:
    """Load images from an OCI or docker-archive tar (file or stdin)."""
    from overlayctl.oci.archive import load_archive, open_source
    from overlayctl.oci.progress import Progress as Display

    store = open_store(obj)
    stream, where, close = open_source(source)
    display = Display("auto")
    if quiet:
        # docker load -q: the Loaded image lines only.
        display.mode = "quiet"
    reporter = _reporter(display, "load")
    if quiet:
        reporter.image_done = lambda name: click.echo(  # type: ignore[method-assign]
            f"Loaded image ID: {name}" if name.startswith("sha256:") else f"Loaded image: {name}"
        )
    try:
        load_archive(store, stream, where, reporter)
    finally:
        close()
        display.close()


def register(cli: click.Group) -> None:
    """Attach save and load, at the top level and under `image`."""
    cli.add_command(save)
    cli.add_command(load)
    image = cli.commands.get("image")
    if isinstance(image, click.Group):
        image.add_command(save)
        image.add_command(load)

"""Image commands: import, image ls (images), image rm (rmi), image tag (tag), image inspect."""

from __future__ import annotations

import time

import click

from overlayctl.cli.common import open_store
from overlayctl.cli.output import FORMAT_HELP, INSPECT_FORMAT_HELP, filter_option, print_documents, table


@click.command("import")
@click.argument("source", metavar="FILE|-")
@click.argument("name", metavar="NAME[:TAG]", required=False)
@click.option("-m", "--message", default="", help="commit message recorded in the image history")
@click.pass_obj
def import_(obj: dict, source: str, name: str | None, message: str) -> None:
    """Import a root filesystem tar (plain, gzip, xz, zstd) as a one-layer image."""
    from overlayctl.engine.images import import_image

    store = open_store(obj)
    image, _new = import_image(store, source, name, message)
    click.echo(image.id)


@click.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="only show image IDs")
@click.option("--no-trunc", is_flag=True, help="do not truncate IDs")
@click.option("--digests", is_flag=True, help="show digests")
@click.option("--format", "fmt", default=None, metavar="FORMAT", help=FORMAT_HELP)
@filter_option("reference, dangling, label, before, since, until")
@click.pass_obj
def image_ls(
    obj: dict, quiet: bool, no_trunc: bool, digests: bool, fmt: str | None, filters: tuple[str, ...]
) -> None:
    """List images: REPOSITORY TAG IMAGE ID CREATED SIZE."""
    from overlayctl.engine import format as formats
    from overlayctl.engine.images import list_images, repo_digest
    from overlayctl.engine.inspect import ago
    from overlayctl.util.humanize import human_size

    form = formats.parse(fmt)
    store = open_store(obj)
    now = time.time()
    rows = [
        (repo, tag, image.id if no_trunc else image.short_id, image)
        for repo, tag, image in list_images(store, list(filters))
    ]
    if quiet:
        seen: list[str] = []
        for _, _, image_id, _ in rows:
            if image_id not in seen:
                seen.append(image_id)
                click.echo(image_id)
        return
    if not form.is_default:
        listed = formats.image_rows(store, no_trunc, list(filters))
        click.echo(formats.render(form, listed, formats.IMAGES), nl=False)
        return
    if digests:
        table(
            ["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"],
            [
                (repo, tag, repo_digest(image, repo), image_id, ago(image.created, now), human_size(image.size))
                for repo, tag, image_id, image in rows
            ],
        )
        return
    table(
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
        [(repo, tag, image_id, ago(image.created, now), human_size(image.size)) for repo, tag, image_id, image in rows],
    )


@click.command("rm")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("-f", "--force", is_flag=True, help="untag an image used by containers")
@click.pass_obj
def image_rm(obj: dict, images: tuple[str, ...], force: bool) -> None:
    """Remove images; layers no other image uses are deleted."""
    from overlayctl.engine.images import remove_image

    store = open_store(obj)
    for text in images:
        for line in remove_image(store, text, force):
            click.echo(line)


@click.command("tag")
@click.argument("source", metavar="SOURCE_IMAGE[:TAG]")
@click.argument("target", metavar="TARGET_IMAGE[:TAG]")
@click.pass_obj
def image_tag(obj: dict, source: str, target: str) -> None:
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE (an existing tag moves)."""
    from overlayctl.engine.images import tag_image

    tag_image(open_store(obj), source, target)


@click.command("inspect")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("-f", "--format", "fmt", default=None, metavar="FORMAT", help=INSPECT_FORMAT_HELP)
@click.pass_obj
def image_inspect(obj: dict, images: tuple[str, ...], fmt: str | None) -> None:
    """Show images as JSON, or each through a Go template."""
    from overlayctl.engine.objects import inspect_objects

    print_documents(fmt, lambda: inspect_objects(open_store(obj), list(images), kind="image"))


def register(cli: click.Group) -> None:
    """Attach the image commands, with Docker's short aliases."""

    @cli.group("image")
    def image() -> None:
        """Manage images."""

    image.add_command(image_ls)
    image.add_command(image_ls, "list")
    image.add_command(image_rm)
    image.add_command(image_inspect)
    image.add_command(image_tag)
    image.add_command(import_)
    cli.add_command(image_tag)
    cli.add_command(import_)
    cli.add_command(image_ls, "images")
    cli.add_command(image_rm, "rmi")

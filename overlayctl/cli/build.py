"""Build commands: build, history, and what a container's upper dir holds (diff, commit, export)."""

from __future__ import annotations

import sys

import click

from overlayctl.cli import runopts
from overlayctl.cli.common import build_image, open_store
from overlayctl.cli.output import FORMAT_HELP, table
from overlayctl.errors import InvalidArgumentError


@click.command("build")
@runopts.click_options(runopts.BUILD_OPTIONS)
@click.argument("context", metavar="CONTEXT")
@click.pass_obj
def build(obj: dict, context: str, **opts: object) -> None:
    """Build an image from a Dockerfile, one cached layer per step."""
    build_image(obj, opts, context)


@click.command("history")
@click.argument("image")
@click.option("--no-trunc", is_flag=True, help="do not truncate output")
@click.option("-q", "--quiet", is_flag=True, help="only show image IDs")
@click.option("--format", "fmt", default=None, metavar="FORMAT", help=FORMAT_HELP)
@click.pass_obj
def history(obj: dict, image: str, no_trunc: bool, quiet: bool, fmt: str | None) -> None:
    """Show the layers of an image and the instructions that made them."""
    from overlayctl.engine import format as formats

    form = formats.parse(fmt)
    store = open_store(obj)
    rows = formats.history_rows(store, store.images.resolve(image), no_trunc)
    if quiet:
        for row in rows:
            click.echo(row.ID)
        return
    if not form.is_default:
        click.echo(formats.render(form, rows, formats.HISTORY), nl=False)
        return
    table(
        ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
        [(r.ID, r.CreatedSince, r.CreatedBy, r.Size, r.Comment) for r in rows],
    )


@click.command("diff")
@click.argument("container")
@click.pass_obj
def diff(obj: dict, container: str) -> None:
    """List what a container changed: A added, C changed, D deleted."""
    from overlayctl.engine.snapshot import container_changes

    store = open_store(obj)
    for kind, path in container_changes(store, store.containers.get(container)):
        click.echo(f"{kind} {path}")


class _BoolFlagValues(click.Command):
    """A command whose on/off flags also take Docker's spelling with a value
    (`--pause=false`, `-p=true`): click's flags take no value."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        spelled: dict[str, tuple[str, str]] = {}
        takes_value: set[str] = set()
        for param in self.params:
            if isinstance(param, click.Option) and param.is_flag and param.secondary_opts:
                for flag in param.opts:
                    spelled[flag] = (param.opts[-1], param.secondary_opts[0])
            elif isinstance(param, click.Option) and not param.is_flag:
                takes_value.update(param.opts)
        rewritten: list[str] = []
        for i, arg in enumerate(args):
            if arg == "--":
                rewritten += args[i:]
                break
            flag, eq, value = arg.partition("=")
            if i and args[i - 1] in takes_value:
                pass  # a value (`-m --pause=x`), not a flag
            elif eq and flag in spelled:
                if value.lower() not in ("true", "false", "1", "0"):
                    raise InvalidArgumentError(f'option {flag} takes true or false (got "{value}")')
                arg = spelled[flag][0 if value.lower() in ("true", "1") else 1]
            rewritten.append(arg)
        return super().parse_args(ctx, rewritten)


@click.command("commit", cls=_BoolFlagValues)
@click.argument("container")
@click.argument("name", metavar="[NAME[:TAG]]", required=False)
@click.option("-m", "--message", default="", help="commit message")
@click.option("-a", "--author", default="", help='author (e.g. "Jane <jane@example.com>")')
@click.option("-c", "--change", "changes", multiple=True, help="apply a Dockerfile instruction (CMD, ENV, ...)")
@click.option(
    "-p", "--pause/--no-pause", "pause", default=True, show_default=True, help="pause the container while it is read"
)
@click.pass_obj
def commit(
    obj: dict, container: str, name: str | None, message: str, author: str, changes: tuple[str, ...], pause: bool
) -> None:
    """Create an image from a container's changes."""
    from overlayctl.engine.snapshot import commit as commit_container

    store = open_store(obj)
    image = commit_container(store, store.containers.get(container), name, message, author, list(changes), pause=pause)
    click.echo(image.id)


@click.command("export")
@click.argument("container")
@click.option("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
@click.pass_obj
def export(obj: dict, container: str, output: str | None) -> None:
    """Write a container's filesystem as a tar archive."""
    from overlayctl.engine.snapshot import export as export_container
    from overlayctl.engine.snapshot import export_to_file

    store = open_store(obj)
    target = store.containers.get(container)
    if output is None:
        if sys.stdout.isatty():
            raise InvalidArgumentError("refusing to write a tar to a terminal; use -o FILE or redirect")
        export_container(store, target, sys.stdout.buffer)
        return
    export_to_file(store, target, output)


def register(cli: click.Group) -> None:
    """Attach the build commands at top level (and history under `image`)."""
    for command in (build, history, diff, commit, export):
        cli.add_command(command)
    image_group = cli.commands.get("image")
    if isinstance(image_group, click.Group):
        image_group.add_command(build)
        image_group.add_command(history)
    container_group = cli.commands.get("container")
    if isinstance(container_group, click.Group):
        for command in (diff, commit, export):
            container_group.add_command(command)

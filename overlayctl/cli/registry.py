"""Registry commands: pull, push, login, logout."""

from __future__ import annotations

import sys

import click

from overlayctl.cli.common import open_store
from overlayctl.errors import InvalidArgumentError


def _tls_options(f):  # type: ignore[no-untyped-def]
    """--tls-verify[=BOOL], --cert-dir, --authfile: as podman spells them."""
    f = click.option(
        "--authfile",
        metavar="PATH",
        help="credentials file (default: $REGISTRY_AUTH_FILE or /run/containers/0/auth.json)",
    )(f)
    f = click.option("--cert-dir", metavar="DIR", help="CA certificates (*.crt) and client key pair (*.cert, *.key)")(f)
    f = click.option(
        "--tls-verify",
        type=click.BOOL,
        is_flag=False,
        flag_value=True,
        default=None,
        metavar="[BOOL]",
        help="require HTTPS and a trusted certificate (default true, except for localhost and 127.0.0.1); "
        "false also allows plain HTTP",
    )(f)
    return f


def _progress(quiet: bool):  # type: ignore[no-untyped-def]
    from overlayctl.engine.progress import Progress

    return Progress("quiet" if quiet else "auto")


@click.command("pull")
@click.argument("name", metavar="NAME[:TAG|@DIGEST]")
@click.option(
    "--platform", metavar="OS/ARCH", help="the image of this platform in a multi-platform index (e.g. linux/arm64)"
)
@click.option("-q", "--quiet", is_flag=True, help="print only the image ID")
@click.option("--creds", metavar="USER:PASSWORD", help="credentials for this pull only")
@_tls_options
@click.pass_obj
def pull_cmd(
    obj: dict,
    name: str,
    platform: str | None,
    quiet: bool,
    creds: str | None,
    tls_verify: bool | None,
    cert_dir: str | None,
    authfile: str | None,
) -> None:
    """Download an image from a registry."""
    from overlayctl.engine import registry

    ref = registry.remote_reference(name)
    store = open_store(obj)
    progress = _progress(quiet)
    try:
        image, digest, new = registry.pull(
            store, ref, progress, platform, registry.Connection(tls_verify, cert_dir, authfile, creds)
        )
    finally:
        progress.close()
    if quiet:
        click.echo(image.id)
        return
    progress.message(f"Digest: {digest}")
    shown = str(ref.local) if ref.local else f"{ref.name}@{digest}"
    progress.message(f"Status: {'Downloaded newer image' if new else 'Image is up to date'} for {shown}")
    click.echo(f"{ref.registry}/{ref.repository}:{ref.tag}" if ref.tag else f"{ref.registry}/{ref.repository}@{digest}")


@click.command("push")
@click.argument("image", metavar="IMAGE")
@click.argument("destination", metavar="[DESTINATION]", required=False)
@click.option("--chunk-size", metavar="BYTES", help="upload blobs larger than this in chunks of this size (e.g. 16m)")
@click.option(
    "--compression-format",
    type=click.Choice(["gzip", "zstd", "none"]),
    default="gzip",
    help="compression of layers made here (pulled layers go out as they came)",
)
@click.option("-q", "--quiet", is_flag=True, help="print nothing but errors")
@click.option("--creds", metavar="USER:PASSWORD", help="credentials for this push only")
@_tls_options
@click.pass_obj
def push_cmd(
    obj: dict,
    image: str,
    destination: str | None,
    chunk_size: str | None,
    compression_format: str,
    quiet: bool,
    creds: str | None,
    tls_verify: bool | None,
    cert_dir: str | None,
    authfile: str | None,
) -> None:
    """Upload an image to a registry (DESTINATION defaults to IMAGE's name)."""
    from overlayctl.engine import registry
    from overlayctl.util.sizes import parse_size

    chunk = parse_size(chunk_size, "--chunk-size") if chunk_size else None
    if chunk is not None and chunk < 1024:
        raise InvalidArgumentError("--chunk-size must be at least 1k")
    store = open_store(obj)
    progress = _progress(quiet)
    try:
        connection = registry.Connection(tls_verify, cert_dir, authfile, creds)
        ref, digest, size = registry.push(store, image, destination, progress, chunk, compression_format, connection)
    finally:
        progress.close()
    progress.message(f"{ref.tag}: digest: {digest} size: {size}")


@click.command("login")
@click.argument("registry", required=False)
@click.option("-u", "--username", help="user name")
@click.option("-p", "--password", help="password (prefer --password-stdin)")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@_tls_options
def login_cmd(
    registry: str | None,
    username: str | None,
    password: str | None,
    password_stdin: bool,
    tls_verify: bool | None,
    cert_dir: str | None,
    authfile: str | None,
) -> None:
    """Check credentials with a registry and store them in auth.json."""
    from overlayctl.engine.registry import Connection, login, registry_host

    host = registry_host(registry)
    if password_stdin:
        if password:
            raise InvalidArgumentError("--password and --password-stdin cannot be used together")
        password = sys.stdin.readline().rstrip("\r\n")
    if not username:
        username = click.prompt("Username")
    if password is None:
        password = click.prompt("Password", hide_input=True)
    if not username or not password:
        raise InvalidArgumentError("a user name and a password are required")
    login(host, username, password, Connection(tls_verify, cert_dir, authfile))
    click.echo("Login Succeeded!")


@click.command("logout")
@click.argument("registry", required=False)
@click.option("-a", "--all", "all_", is_flag=True, help="remove the credentials of every registry")
@click.option(
    "--authfile", metavar="PATH", help="credentials file (default: $REGISTRY_AUTH_FILE or /run/containers/0/auth.json)"
)
def logout_cmd(registry: str | None, all_: bool, authfile: str | None) -> None:
    """Remove stored credentials."""
    from overlayctl.engine.registry import logout, registry_host

    if all_:
        logout(None, authfile)
        click.echo("Removed login credentials for all registries")
        return
    host = registry_host(registry)
    logout(host, authfile)
    click.echo(f"Removed login credentials for {host}")


def register(cli: click.Group) -> None:
    """Attach pull, push, login and logout (also as `image pull`, `image push`)."""
    cli.add_command(pull_cmd)
    cli.add_command(push_cmd)
    cli.add_command(login_cmd)
    cli.add_command(logout_cmd)
    image_group = cli.commands.get("image")
    if isinstance(image_group, click.Group):
        image_group.add_command(pull_cmd)
        image_group.add_command(push_cmd)

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


def _client(
    registry: str, tls_verify: bool | None, cert_dir: str | None, authfile: str | None, creds: str | None = None
):  # type: ignore[no-untyped-def]
    from overlayctl.oci.auth import get_credentials
    from overlayctl.oci.registry import RegistryClient

    if creds:
        user, sep, password = creds.partition(":")
        if not sep or not user:
            raise InvalidArgumentError("--creds wants USERNAME:PASSWORD")
        credentials: tuple[str, str] | None = (user, password)
    else:
        credentials = get_credentials(registry, authfile)
    return RegistryClient(registry, tls_verify=tls_verify, cert_dir=cert_dir, credentials=credentials)


def _progress(quiet: bool):  # type: ignore[no-untyped-def]
    from overlayctl.oci.progress import Progress

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
    from overlayctl.oci import pull as pull_mod
    from overlayctl.oci.registry import parse_remote

    ref = parse_remote(name)
    store = open_store(obj)
    client = _client(ref.registry, tls_verify, cert_dir, authfile, creds)
    progress = _progress(quiet)
    if ref.tag and not quiet:
        progress.message(f"{ref.tag}: Pulling from {ref.repository}")
    try:
        image, digest, new = pull_mod.pull(store, ref, client, progress, platform)
    finally:
        progress.close()
        client.close()
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
    from overlayctl.oci import push as push_mod
    from overlayctl.oci.registry import parse_remote
    from overlayctl.util.sizes import parse_size

    chunk = parse_size(chunk_size, "--chunk-size") if chunk_size else None
    if chunk is not None and chunk < 1024:
        raise InvalidArgumentError("--chunk-size must be at least 1k")
    store = open_store(obj)
    local = store.images.resolve(image)
    ref = parse_remote(destination or image)
    if ref.digest:
        raise InvalidArgumentError(f'cannot push to a digest ("{destination or image}"); give a tag')
    client = _client(ref.registry, tls_verify, cert_dir, authfile, creds)
    progress = _progress(quiet)
    if not quiet:
        progress.message(f"The push refers to repository [{ref.registry}/{ref.repository}]")
    try:
        digest, size = push_mod.push(store, local, ref, client, progress, chunk, compression_format)
    finally:
        progress.close()
        client.close()
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
    from overlayctl.oci.auth import store_credentials
    from overlayctl.oci.registry import RegistryClient

    host = _registry_name(registry)
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
    client = RegistryClient(host, tls_verify=tls_verify, cert_dir=cert_dir, credentials=(username, password))
    try:
        client.check_login()
    finally:
        client.close()
    store_credentials(host, username, password, authfile)
    click.echo("Login Succeeded!")


@click.command("logout")
@click.argument("registry", required=False)
@click.option("-a", "--all", "all_", is_flag=True, help="remove the credentials of every registry")
@click.option(
    "--authfile", metavar="PATH", help="credentials file (default: $REGISTRY_AUTH_FILE or /run/containers/0/auth.json)"
)
def logout_cmd(registry: str | None, all_: bool, authfile: str | None) -> None:
    """Remove stored credentials."""
    from overlayctl.oci.auth import remove_all_credentials, remove_credentials

    if all_:
        remove_all_credentials(authfile)
        click.echo("Removed login credentials for all registries")
        return
    host = _registry_name(registry)
    if not remove_credentials(host, authfile):
        raise InvalidArgumentError(f"not logged into {host}")
    click.echo(f"Removed login credentials for {host}")


def _registry_name(text: str | None) -> str:
    """host[:port] from what login/logout accept: a bare host, or a URL."""
    if not text:
        return "docker.io"
    host = text.split("://", 1)[-1].split("/", 1)[0]
    if not host:
        raise InvalidArgumentError(f'invalid registry "{text}"')
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


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

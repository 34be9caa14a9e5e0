"""Registries: `pull`, `push`, `login` and `logout`.

The protocol, the credentials file and the transfer are overlayctl.oci's;
these hold the sequencing (credentials, client, transfer, closing) so every
front end behaves the same. Progress goes to the display the caller hands
in (engine.progress), which a front end may keep quiet.
"""

from __future__ import annotations

from overlayctl.errors import InvalidArgumentError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.oci.progress import Progress
    from overlayctl.oci.registry import RegistryClient, RemoteReference
    from overlayctl.store import Store
    from overlayctl.store.images import Image

__all__ = ["login", "logout", "pull", "push", "registry_host", "remote_reference"]


def remote_reference(name: str) -> RemoteReference:
    """NAME[:TAG|@DIGEST] as a reference to a registry (docker.io by default)."""
    from overlayctl.oci.registry import parse_remote

    return parse_remote(name)


def _client(
    registry: str, tls_verify: bool | None, cert_dir: str | None, authfile: str | None, creds: str | None
) -> RegistryClient:
    """A client for registry with creds ("USER:PASSWORD") or, without them,
    what the credentials file holds for it."""
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


def pull(
    store: Store,
    ref: RemoteReference,
    progress: Progress,
    platform: str | None = None,
    creds: str | None = None,
    tls_verify: bool | None = None,
    cert_dir: str | None = None,
    authfile: str | None = None,
) -> tuple[Image, str, bool]:
    """`pull`: (the image, its manifest digest, whether anything new was stored)."""
    from overlayctl.oci import pull as oci_pull

    client = _client(ref.registry, tls_verify, cert_dir, authfile, creds)
    if ref.tag:
        progress.message(f"{ref.tag}: Pulling from {ref.repository}")
    try:
        return oci_pull.pull(store, ref, client, progress, platform)
    finally:
        client.close()


def push(
    store: Store,
    image: str,
    destination: str | None,
    progress: Progress,
    chunk_size: int | None = None,
    compression: str = "gzip",
    creds: str | None = None,
    tls_verify: bool | None = None,
    cert_dir: str | None = None,
    authfile: str | None = None,
) -> tuple[RemoteReference, str, int]:
    """`push IMAGE [DESTINATION]` (DESTINATION defaults to IMAGE's name):
    (the reference pushed to, the manifest digest, the manifest size)."""
    from overlayctl.oci import push as oci_push

    local = store.images.resolve(image)
    ref = remote_reference(destination or image)
    if ref.digest:
        raise InvalidArgumentError(f'cannot push to a digest ("{destination or image}"); give a tag')
    client = _client(ref.registry, tls_verify, cert_dir, authfile, creds)
    progress.message(f"The push refers to repository [{ref.registry}/{ref.repository}]")
    try:
        digest, size = oci_push.push(store, local, ref, client, progress, chunk_size, compression)
    finally:
        client.close()
    return ref, digest, size


def registry_host(text: str | None) -> str:
    """host[:port] from what login and logout accept: a bare host, or a URL
    (docker.io when none is given)."""
    if not text:
        return "docker.io"
    host = text.split("://", 1)[-1].split("/", 1)[0]
    if not host:
        raise InvalidArgumentError(f'invalid registry "{text}"')
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


def login(
    host: str,
    username: str,
    password: str,
    tls_verify: bool | None = None,
    cert_dir: str | None = None,
    authfile: str | None = None,
) -> None:
    """`login`: check the credentials with the registry, then store them."""
    from overlayctl.oci.auth import store_credentials
    from overlayctl.oci.registry import RegistryClient

    client = RegistryClient(host, tls_verify=tls_verify, cert_dir=cert_dir, credentials=(username, password))
    try:
        client.check_login()
    finally:
        client.close()
    store_credentials(host, username, password, authfile)


def logout(host: str | None, authfile: str | None = None) -> None:
    """`logout`: forget the credentials of host, or of every registry when
    host is None."""
    from overlayctl.oci.auth import remove_all_credentials, remove_credentials

    if host is None:
        remove_all_credentials(authfile)
        return
    if not remove_credentials(host, authfile):
        raise InvalidArgumentError(f"not logged into {host}")

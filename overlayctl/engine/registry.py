"""Registries: `pull`, `push`, `login` and `logout`.

The protocol, the credentials file and the transfer are overlayctl.oci's;
these hold the sequencing (credentials, client, transfer, closing) so every
front end behaves the same. Progress goes to the display the caller hands
in (engine.progress), which a front end may keep quiet.
"""

from __future__ import annotations

from dataclasses import dataclass

from overlayctl.errors import InvalidArgumentError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.oci.progress import Progress
    from overlayctl.oci.registry import RegistryClient, RemoteReference
    from overlayctl.store import Store
    from overlayctl.store.images import Image

__all__ = ["Connection", "check_login", "login", "logout", "pull", "push", "registry_host", "remote_reference"]


@dataclass
class Connection:
    """How to reach a registry, as podman spells it: whether to insist on
    HTTPS and a trusted certificate (None: yes, except for localhost), where
    CA and client certificates are, which credentials file to read and write,
    and credentials for this command alone ("USER:PASSWORD")."""

    tls_verify: bool | None = None
    cert_dir: str | None = None
    authfile: str | None = None
    creds: str | None = None


def remote_reference(name: str) -> RemoteReference:
    """NAME[:TAG|@DIGEST] as a reference to a registry (docker.io by default)."""
    from overlayctl.oci.registry import parse_remote

    return parse_remote(name)


def _client(registry: str, connection: Connection, credentials: tuple[str, str] | None = None) -> RegistryClient:
    """A client for registry with credentials, else the connection's creds,
    else what the credentials file holds for it."""
    from overlayctl.oci.auth import get_credentials
    from overlayctl.oci.registry import RegistryClient

    if credentials is None and connection.creds:
        user, sep, password = connection.creds.partition(":")
        if not sep or not user:
            raise InvalidArgumentError("--creds wants USERNAME:PASSWORD")
        credentials = (user, password)
    elif credentials is None:
        credentials = get_credentials(registry, connection.authfile)
    return RegistryClient(
        registry, tls_verify=connection.tls_verify, cert_dir=connection.cert_dir, credentials=credentials
    )


def pull(
    store: Store,
    ref: RemoteReference,
    progress: Progress,
    platform: str | None = None,
    connection: Connection | None = None,
) -> tuple[Image, str, bool]:
    """`pull`: (the image, its manifest digest, whether anything new was stored)."""
    from overlayctl.oci import pull as oci_pull

    client = _client(ref.registry, connection or Connection())
    if ref.tag:
        progress.message(f"Pulling from {ref.repository}", key=ref.tag)
    try:
        pulled = oci_pull.pull(store, ref, client, progress, platform)
    finally:
        client.close()
    image = pulled[0]
    # The image holds its layers now: the leases taken for the transfer go,
    # or a long-lived process (the Engine API service) keeps every layer it
    # ever pulled from a later rmi.
    store.layers.release(layer.diff_id for layer in image.layers)
    # Docker's pull event names the reference pulled, not the image ID.
    store.images.record(_shown(ref), "pull", _shown(ref, tag=False), image.container_config.get("Labels"))
    return pulled


def push(
    store: Store,
    image: str,
    destination: str | None,
    progress: Progress,
    chunk_size: int | None = None,
    compression: str = "gzip",
    connection: Connection | None = None,
) -> tuple[RemoteReference, str, int]:
    """`push IMAGE [DESTINATION]` (DESTINATION defaults to IMAGE's name):
    (the reference pushed to, the manifest digest, the manifest size)."""
    from overlayctl.oci import push as oci_push

    local = store.images.resolve(image)
    ref = remote_reference(destination or image)
    if ref.digest:
        raise InvalidArgumentError(f'cannot push to a digest ("{destination or image}"); give a tag')
    client = _client(ref.registry, connection or Connection())
    progress.message(f"The push refers to repository [{ref.registry}/{ref.repository}]")
    try:
        digest, size = oci_push.push(store, local, ref, client, progress, chunk_size, compression)
    finally:
        client.close()
    store.images.record(_shown(ref), "push", _shown(ref, tag=False), local.container_config.get("Labels"))
    # Docker records the digest in the repository pushed, whose tag the
    # image carries; a push to another name (podman's `push SRC DEST`)
    # leaves the image's names as they were.
    if any(tag.rpartition(":")[0] == ref.name for tag in local.tags):
        store.images.add_digest(local.id, ref.name, digest)
    return ref, digest, size


def _shown(ref: RemoteReference, tag: bool = True) -> str:
    """A reference as an event names it: as the user wrote the repository,
    with its tag or digest."""
    name = ref.name
    if tag and ref.digest:
        return f"{name}@{ref.digest}"
    return f"{name}:{ref.tag}" if tag and ref.tag else name


def registry_host(text: str | None) -> str:
    """host[:port] from what login and logout accept: a bare host, or a URL
    (docker.io when none is given)."""
    if not text:
        return "docker.io"
    host = text.split("://", 1)[-1].split("/", 1)[0]
    if not host:
        raise InvalidArgumentError(f'invalid registry "{text}"')
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


def login(host: str, username: str, password: str, connection: Connection | None = None) -> None:
    """`login`: check the credentials with the registry, then store them in
    the connection's credentials file."""
    from overlayctl.oci.auth import store_credentials

    connection = connection or Connection()
    check_login(host, username, password, connection)
    store_credentials(host, username, password, connection.authfile)


def check_login(host: str, username: str, password: str, connection: Connection | None = None) -> None:
    """Prove the credentials with the registry and keep nothing (the Engine
    API's /auth: its client stores them itself). RegistryAuthError when
    the registry refuses them."""
    client = _client(host, connection or Connection(), (username, password))
    try:
        client.check_login()
    finally:
        client.close()


def logout(host: str | None, authfile: str | None = None) -> None:
    """`logout`: forget the credentials of host, or of every registry when
    host is None."""
    from overlayctl.oci.auth import remove_all_credentials, remove_credentials

    if host is None:
        remove_all_credentials(authfile)
        return
    if not remove_credentials(host, authfile):
        raise InvalidArgumentError(f"not logged into {host}")

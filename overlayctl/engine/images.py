"""The image verbs a user asks for by name: import, ls, rm, history.

Pull and push are engine.registry's, save and load engine.transfer's,
build engine.builds'; the catalog's rows are overlayctl.store.images'.
"""

from __future__ import annotations

import os
import sys
from typing import Any, BinaryIO

from overlayctl.errors import InvalidArgumentError, OverlayctlError
from overlayctl.oci.platform import host_architecture
from overlayctl.store import Store
from overlayctl.store.images import Image
from overlayctl.util import faults, space
from overlayctl.util.humanize import now_rfc3339
from overlayctl.util.reference import parse_reference


def import_image(
    store: Store, source: str, name: str | None, message: str = "", stream: BinaryIO | None = None
) -> tuple[Image, bool]:
    """`docker import`: a root filesystem tar (plain, gzip, xz, zstd, bzip2)
    becomes a one-layer image. Returns the image and whether its layer was
    new (identical content is stored once). The tar is read from stream
    when given (source then only names it), else from the file source or
    stdin ("-")."""
    ref = parse_reference(name) if name else None
    given = stream
    if stream is None and source == "-":
        stream = sys.stdin.buffer
    elif stream is None:
        try:
            stream = open(source, "rb")
        except OSError as exc:
            raise InvalidArgumentError(f"cannot open {source}: {exc.strerror}") from exc
        # Unpacked, and staged whole until its tar-split is made: twice its
        # size (more if compressed).
        space.expect(2 * os.fstat(stream.fileno()).st_size)
    try:
        from overlayctl.layer.compression import open_decompressed
        from overlayctl.oci.image import import_tar_layer

        # Save and push need the tar as it was: its tar-split is kept.
        layer, new = import_tar_layer(store, open_decompressed(stream))
    except EOFError as exc:
        raise OverlayctlError(f"cannot import {source}: the archive is truncated") from exc
    finally:
        if stream is not sys.stdin.buffer and stream is not given:
            stream.close()
    created = now_rfc3339()
    config: dict[str, Any] = {
        "architecture": host_architecture(),
        "os": "linux",
        "created": created,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created": created, "created_by": "", "comment": message or f"Imported from {source}"}],
    }
    faults.point("import-layer")
    image = store.images.create(config, ref)
    # The image holds the layer from here; a lease kept for the life of a
    # long-lived process (the Engine API service) would outlive an rmi.
    store.layers.release([layer.diff_id])
    store.images.record(image.id, "import", image.id)
    return image, new


def list_images(store: Store, filters: list[str] | None = None) -> list[tuple[str, str, Image]]:
    """`image ls [--filter ...]`: (repository, tag, image) for every tag of
    every image kept, (repository, "<none>", image) for a repository it has
    a digest in but no tag, ("<none>", "<none>", image) for one with neither."""
    from overlayctl.engine.filters import filter_images

    return [
        (repo, tag, image)
        for image, tags in filter_images(store, filters or [])
        for repo, tag in repo_tags(tags, image.digests)
    ]


def repo_tags(tags: list[str], digests: list[str] | None = None) -> list[tuple[str, str]]:
    """Each "repository:tag" of an image split in two, as Docker's listings
    show them: a repository known only by a digest with tag "<none>", and
    ("<none>", "<none>") for an image with no name at all."""
    pairs = []
    for name in tags:
        repo, _, tag = name.rpartition(":")
        pairs.append((repo, tag))
    tagged = {repo for repo, _ in pairs}
    for name in digests or []:
        repo = name.rpartition("@")[0]
        if repo not in tagged:
            tagged.add(repo)
            pairs.append((repo, "<none>"))
    return pairs or [("<none>", "<none>")]


def repo_digest(image: Image, repository: str) -> str:
    """The digest of the image's manifest in repository ("<none>" when it
    has none there), for `image ls --digests`."""
    for name in image.digests:
        repo, _, digest = name.rpartition("@")
        if repo == repository:
            return digest
    return "<none>"


def tag_image(store: Store, source: str, target: str) -> Image:
    """`docker tag SOURCE TARGET`: TARGET names SOURCE's image from now on
    (a tag that named another image moves, as Docker's does)."""
    if "@" in target:
        raise InvalidArgumentError(f'refusing to create a tag with a digest reference: "{target}"')
    ref = parse_reference(target)
    image = store.images.resolve(source)
    store.images.tag(image, ref)
    return store.images.get(image.id)


def remove_image(store: Store, text: str, force: bool = False) -> list[str]:
    """`docker rmi`: the Untagged/Deleted lines Docker prints."""
    return [f"{kind}: {name}" for kind, name in removed_references(store, text, force)]


def removed_references(store: Store, text: str, force: bool = False) -> list[tuple[str, str]]:
    """`docker rmi` as data: ("Untagged", name) for each name removed, then
    ("Deleted", ID) for the image and each layer that went with it."""
    untagged, deleted, diff_ids = store.images.remove(text, force)
    pairs = [("Untagged", name) for name in untagged] + [("Deleted", image_id) for image_id in deleted]
    pairs += [("Deleted", layer.diff_id) for layer in store.layers.remove_unreferenced(diff_ids)]
    return pairs


def removal_conflict(store: Store, text: str) -> str:
    """Why dockerd refuses `rmi text` without force, in its words (for
    clients that match them): a container made from the image, or an image
    named in several repositories."""
    from overlayctl.engine.inspect import state_name

    image = store.images.resolve(text)
    users = [c for c in store.containers.list(all=True) if c.image_id == image.id]
    short = image.id.removeprefix("sha256:")[:12]
    if users and _names_reference(text, image):
        return (
            f'conflict: unable to remove repository reference "{text}" (must force) - '
            f"container {users[0].id[:12]} is using its referenced image {short}"
        )
    if users:
        running = [c for c in users if state_name(c) == "running"]
        user = (running or users)[0]
        how = "cannot be forced" if running else "must be forced"
        state = "running" if running else "stopped"
        return f"conflict: unable to delete {short} ({how}) - image is being used by {state} container {user.id[:12]}"
    return f"conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories"


def _names_reference(text: str, image: Image) -> bool:
    """Whether text is a name of the image rather than (a prefix of) its ID."""
    body = text.removeprefix("sha256:")
    return not (len(body) >= 4 and image.id.removeprefix("sha256:").startswith(body.lower()) and "@" not in text)


def image_history(store: Store, image: Image) -> list[dict[str, Any]]:
    """`docker history`, newest first: each history entry with the ID of the
    image that step produced ("<missing>" where that image is not known
    here), when, the instruction, the size of its layer, the comment."""
    entries = list(image.config.get("history") or [])
    ids: list[str] = ["<missing>"] * len(entries)
    current: str | None = image.id
    cache = store.build_cache
    for i in range(len(entries) - 1, -1, -1):
        # An ID is shown only for an image this store has: a tagged or
        # untagged image, or the result of a build step it remembers.
        if not current or not (current == image.id or cache.known(current) or _exists(store, current)):
            break
        ids[i] = current
        current = cache.parent_of(current)
    sizes = iter(layer.size for layer in image.layers)
    rows = []
    for image_id, entry in zip(ids, entries, strict=True):
        size = 0 if entry.get("empty_layer") else next(sizes, 0)
        rows.append(
            {
                "id": image_id,
                "created": entry.get("created", ""),
                "created_by": entry.get("created_by", ""),
                "size": size,
                "comment": entry.get("comment", ""),
            }
        )
    rows.reverse()
    return rows


def _exists(store: Store, image_id: str) -> bool:
    try:
        store.images.get(image_id)
    except OverlayctlError:
        return False
    return True

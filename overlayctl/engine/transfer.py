"""Images to an archive and back: `save` and `load` (oci-archive, as podman
and skopeo write it, or docker-archive).

The archive formats are overlayctl.oci.archive's; these hold what a front
end needs around them: where the archive goes or comes from, and that a
failed save leaves no half archive behind.
"""

from __future__ import annotations

import os

from overlayctl.errors import KernelError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

    from overlayctl.oci.archive import Progress
    from overlayctl.store import Store
    from overlayctl.store.images import Image

__all__ = ["load", "load_stream", "save", "save_to_file"]


def save(store: Store, images: list[str], out: BinaryIO, fmt: str, compression: str | None, progress: Progress) -> None:
    """`save IMAGE...` as one archive on out, flushed."""
    from overlayctl.oci.archive import save_archive

    save_archive(store, images, out, fmt, compression, progress)
    out.flush()
    for text in images:
        image = store.images.resolve(text)
        store.images.record(image.id, "save", image.id, image.container_config.get("Labels"))


def save_to_file(
    store: Store, images: list[str], path: str, fmt: str, compression: str | None, progress: Progress
) -> None:
    """`save -o FILE`: written beside FILE, synced and renamed into place,
    so a failed save leaves no half archive."""
    target = os.path.abspath(path)
    partial = f"{target}.{os.getpid()}.partial"
    try:
        with open(partial, "xb") as out:
            save(store, images, out, fmt, compression, progress)
            os.fsync(out.fileno())
        os.rename(partial, target)
    except OSError as e:
        if e.filename not in (None, partial, target):
            raise  # the store's, not the archive's (cli.main names it)
        raise KernelError(f"cannot write {path}: {e.strerror or e}") from e
    finally:
        if os.path.lexists(partial):
            os.unlink(partial)


def load(store: Store, source: str | None, progress: Progress) -> None:
    """`load [-i FILE]`: every image of the archive in FILE (stdin when
    None), reported to progress as it is loaded."""
    from overlayctl.oci.archive import open_source

    stream, where, close = open_source(source)
    try:
        load_stream(store, stream, where, progress)
    finally:
        close()


def load_stream(store: Store, stream: BinaryIO, where: str, progress: Progress) -> list[Image]:
    """Every image of the archive read from stream (`where` names it in
    messages), reported to progress as it is loaded; returns them."""
    from overlayctl.oci.archive import load_archive

    loaded = load_archive(store, stream, where, progress)
    for image in loaded:
        # As after a pull: the images hold their layers, the leases go.
        store.layers.release(layer.diff_id for layer in image.layers)
        store.images.record(image.id, "load", image.id, image.container_config.get("Labels"))
    return loaded

"""Layers: read-only directories identified by their diff_id.

A layer's directory content depends only on its own tar, so one directory
serves every image that has the layer, whatever sits beneath it. Its size is
measured once, at commit, and stored.
"""

from __future__ import annotations

import os

from overlayctl.errors import NotFoundError
from overlayctl.paths import Paths
from overlayctl.store import staging
from overlayctl.store.catalog import transaction
from overlayctl.util import faults
from overlayctl.util.humanize import now_rfc3339

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable
    from typing import Any, BinaryIO


class Layer:
    """A committed layer: its identity, its directory and its size at commit."""

    __slots__ = ("diff_id", "dir", "size", "apparent", "inodes", "created")

    def __init__(self, diff_id: str, dir: str, size: int, apparent: int, inodes: int, created: str) -> None:
        self.diff_id = diff_id
        self.dir = dir  # short id: layers/<dir>/diff
        self.size = size  # allocated bytes, as du counts them
        self.apparent = apparent
        self.inodes = inodes
        self.created = created

    def __repr__(self) -> str:
        return f"Layer({self.diff_id!r}, dir={self.dir!r}, size={self.size})"

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Layer:
        return cls(row["diff_id"], row["dir"], row["size"], row["apparent"], row["inodes"], row["created"])


# Leases this process holds: diff_id -> the lock file's descriptor.
_LEASES: dict[str, int] = {}


class LayerStore:
    """Commit, look up and delete layers.

    A layer is kept while an image uses it, and while a command relies on
    it before any image does (a pull that found it stored, a build on its
    base, a layer just committed): such a command holds a lease, a shared
    flock on leases/<hex>, until it ends or releases it. Removal takes that
    lock exclusively without waiting, and leaves a leased layer in place
    (for the next rmi, prune or gc once nothing relies on it): nobody waits,
    and a layer never vanishes under a command that is using it.
    """

    def __init__(self, paths: Paths, conn: sqlite3.Connection) -> None:
        self.paths = paths
        self.conn = conn

    def diff_path(self, layer: Layer) -> str:
        """The layer's files: the directory overlayfs uses as a lowerdir."""
        return self.paths.layer_diff(layer.dir)

    def get(self, diff_id: str) -> Layer:
        row = self.conn.execute("SELECT * FROM layers WHERE diff_id = ?", (diff_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"layer {diff_id} not found in the store")
        return Layer.from_row(row)

    def find(self, diff_id: str) -> Layer | None:
        row = self.conn.execute("SELECT * FROM layers WHERE diff_id = ?", (diff_id,)).fetchone()
        return None if row is None else Layer.from_row(row)

    def import_tar(self, stream: BinaryIO) -> tuple[Layer, bool]:
        """Extract an uncompressed layer tar into the store.

        Returns the layer and whether it was new. Identical content yields
        the same diff_id and is stored once: the second copy is dropped
        from staging. On any error nothing is kept.
        """
        from overlayctl.layer.extract import extract_layer

        with staging.staging(self.paths.tmp, "layer") as stage:
            diff = os.path.join(stage, "diff")
            os.mkdir(diff, 0o755)
            digest = extract_layer(stream, diff)
            self.lease([digest.diff_id])
            existing = self.find(digest.diff_id)
            if existing is not None:
                return existing, False
            return self.commit_staged(stage, digest.diff_id), True

    def keep_tar_split(self, layer: Layer, tar_path: str) -> bool:
        """Keep beside ``layer`` its tar-split: what it takes, with the
        layer's files, to give back the tar at ``tar_path`` it was unpacked
        from, byte for byte. False, keeping nothing, when the files do not
        give back that tar (the caller then keeps the whole tar)."""
        from overlayctl.layer import tarsplit

        target = self.paths.layer_tar_split(layer.dir)
        tmp = os.path.join(self.paths.tmp, f"tarsplit-{os.getpid()}-{os.urandom(6).hex()}")
        try:
            if tarsplit.write(tar_path, self.diff_path(layer), tmp) != layer.diff_id:
                return False
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.rename(tmp, target)
            staging.fsync_dir(os.path.dirname(target))
            return True
        except (OSError, tarsplit.TarSplitError):
            # A full disk, say: keeping the whole tar needs no more space
            # (it is written already), so the import goes on that way.
            return False
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def tar_split(self, layer: Layer) -> str | None:
        """The layer's tar-split (keep_tar_split), if it has one."""
        path = self.paths.layer_tar_split(layer.dir)
        return path if os.path.isfile(path) else None

    def commit_tree(self, stage: str, clamp_mtime: int | None = None) -> tuple[Layer, bool]:
        """Store the directory stage/diff (an upper dir built in staging) as a layer.

        The directory itself becomes the layer: no tar is written or
        extracted, only hashed. It is normalised first (see normalize_tree)
        so the layer is exactly what its tar says. Anything else in stage
        (an overlay workdir) is removed. Returns the layer and whether it
        was new; when the content is already stored, the stage is dropped.
        """
        from overlayctl.layer.writer import digest_tree, normalize_tree

        diff = os.path.join(stage, "diff")
        for name in os.listdir(stage):
            if name != "diff":
                staging.remove_tree(os.path.join(stage, name))
        normalize_tree(diff, clamp_mtime=clamp_mtime)
        digest = digest_tree(diff)
        self.lease([digest.diff_id])
        existing = self.find(digest.diff_id)
        if existing is not None:
            staging.discard_detached(stage, self.paths.tmp)
            return existing, False
        return self.commit_staged(stage, digest.diff_id), True

    def commit_staged(self, stage: str, diff_id: str) -> Layer:
        """Move a staged layer (stage/diff) into place and record it.

        Order: measure, flush, rename, then the catalog row. A crash before
        the row leaves an orphan directory that sweep/gc removes, never a
        row whose directory is missing or half written.
        """
        from overlayctl.layer import contentindex
        from overlayctl.layer.du import disk_usage
        from overlayctl.store.locks import exclusive

        self.lease([diff_id])  # from the moment it exists until an image uses it
        usage = disk_usage(os.path.join(stage, "diff"))
        content = contentindex.ensure_index(stage)
        with open(os.path.join(stage, "diff_id"), "w") as f:
            f.write(diff_id + "\n")
        staging.flush(stage)
        faults.point("layer-staged")
        with exclusive(self.paths.layers_lock, "the layer store"):
            existing = self.find(diff_id)
            if existing is not None:  # committed meanwhile by another process
                return existing
            short = self._short_id(diff_id)
            target = self.paths.layer_dir(short)
            if os.path.lexists(target):
                # A leftover of a crash between rename and commit: not in the
                # catalog (checked by _short_id), so nothing references it.
                staging.discard(target, self.paths.tmp)
            os.rename(stage, target)
            staging.fsync_dir(self.paths.layers)
            faults.point("layer-placed")
            layer = Layer(diff_id, short, usage.bytes, usage.apparent, usage.inodes, now_rfc3339())
            with transaction(self.conn):
                self.conn.execute(
                    "INSERT INTO layers (diff_id, dir, size, apparent, inodes, created, content_index) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (layer.diff_id, layer.dir, layer.size, layer.apparent, layer.inodes, layer.created, content),
                )
            return layer

    def _short_id(self, diff_id: str) -> str:
        # Short names keep classic mount(2) option strings small (many layers
        # per page). Derived from the digest so a retry after a crash lands
        # on the same directory; lengthened on the (astronomically rare)
        # prefix collision with another layer.
        hex_digest = diff_id.split(":", 1)[1]
        for length in (16, 24, 32, 64):
            short = hex_digest[:length]
            row = self.conn.execute("SELECT diff_id FROM layers WHERE dir = ?", (short,)).fetchone()
            if row is None or row["diff_id"] == diff_id:
                return short
        raise NotFoundError(f"no free directory name for layer {diff_id}")

    def lease(self, diff_ids: Iterable[str]) -> None:
        """Keep these layers (stored or about to be) from removal while this
        process lives, or until release()."""
        import fcntl  # (not on `run`'s path)

        for diff_id in diff_ids:
            if diff_id in _LEASES:
                continue
            path = self.paths.layer_lease(diff_id)
            while True:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
                except FileNotFoundError:
                    os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
                    continue
                # Waits only while a removal of this very layer is under way.
                fcntl.flock(fd, fcntl.LOCK_SH)
                try:
                    same = os.stat(path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)  # the file of a layer removed meanwhile: take the new one
            _LEASES[diff_id] = fd

    def release(self, diff_ids: Iterable[str]) -> None:
        """Give up this process's leases on these layers (the lease file of
        a layer that was never stored goes, unless another holds it)."""
        import fcntl

        for diff_id in diff_ids:
            fd = _LEASES.pop(diff_id, None)
            if fd is None:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if self.find(diff_id) is None:
                    os.unlink(self.paths.layer_lease(diff_id))
            except (BlockingIOError, FileNotFoundError):
                pass
            finally:
                os.close(fd)

    def all_layers(self) -> list[Layer]:
        """Every committed layer."""
        return [Layer.from_row(row) for row in self.conn.execute("SELECT * FROM layers").fetchall()]

    def unreferenced(self) -> list[str]:
        """diff_ids of the layers no image uses, oldest first (left by a
        crash between an image's removal and its layers')."""
        rows = self.conn.execute(
            "SELECT diff_id FROM layers WHERE diff_id NOT IN (SELECT diff_id FROM image_layers) ORDER BY created"
        ).fetchall()
        return [row[0] for row in rows]

    # The blobs (blobs/sha256/<hex>) a layer was received or sent as.

    def record_blob(self, digest: str, diff_id: str, media_type: str, size: int, original: bool) -> None:
        """Remember that blob ``digest`` is layer ``diff_id`` as ``media_type``
        (``original``: received as is; a blob once received stays so)."""
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO layer_blobs (digest, diff_id, media_type, size, original) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(digest) DO UPDATE SET original = max(original, excluded.original)",
                (digest, diff_id, media_type, size, int(original)),
            )

    def forget_blob(self, digest: str) -> None:
        """Drop the record of a blob (its file is the caller's to delete)."""
        with transaction(self.conn):
            self.conn.execute("DELETE FROM layer_blobs WHERE digest = ?", (digest,))

    def blobs_of(self, diff_id: str) -> list[dict[str, Any]]:
        """The recorded blobs of a layer (digest, media_type, size,
        original), those received as is first, then in the order recorded."""
        rows = self.conn.execute(
            "SELECT digest, media_type, size, original FROM layer_blobs WHERE diff_id = ? "
            "ORDER BY original DESC, rowid",
            (diff_id,),
        ).fetchall()
        return [
            {"digest": r["digest"], "media_type": r["media_type"], "size": r["size"], "original": r["original"]}
            for r in rows
        ]

    def layer_of_blob(self, digest: str) -> str | None:
        """The diff_id of the layer a recorded blob unpacks to."""
        row = self.conn.execute("SELECT diff_id FROM layer_blobs WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else str(row[0])

    def blob_digests(self) -> set[str]:
        """The digests of every recorded blob."""
        return {row[0] for row in self.conn.execute("SELECT digest FROM layer_blobs").fetchall()}

    def made_blobs(self) -> list[tuple[str, str]]:
        """(digest, diff_id) of the blobs made here on the way out (save,
        push), not received: they are made again, byte for byte, when needed."""
        rows = self.conn.execute("SELECT digest, diff_id FROM layer_blobs WHERE original = 0 ORDER BY digest")
        return [(row[0], row[1]) for row in rows]

    def drop_made_blob(self, digest: str, diff_id: str) -> bool:
        """Forget and delete a made blob, unless a command holds its layer's
        lease (a save writing it out); whether it went."""
        import fcntl

        try:
            fd = os.open(self.paths.layer_lease(diff_id), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = -1
        try:
            if fd >= 0:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
            with transaction(self.conn):
                gone = self.conn.execute("DELETE FROM layer_blobs WHERE digest = ? AND original = 0", (digest,))
            if gone.rowcount:
                try:
                    os.unlink(self.paths.blob(digest))
                except FileNotFoundError:
                    pass
            return bool(gone.rowcount)
        finally:
            if fd >= 0:
                os.close(fd)

    def remove_unreferenced(self, diff_ids: list[str]) -> list[Layer]:
        """Delete those of the given layers that no image uses any more."""
        from overlayctl.store.locks import exclusive

        with exclusive(self.paths.layers_lock, "the layer store"):
            removed = [layer for diff_id in diff_ids if (layer := self._remove_if_unused(diff_id))]
        return removed

    def _remove_if_unused(self, diff_id: str) -> Layer | None:
        import fcntl

        # The lease file, made if need be: a command leasing the layer from
        # now on either holds it first (and the layer stays) or waits until
        # the row is gone (and finds the layer missing).
        lease = self.paths.layer_lease(diff_id)
        os.makedirs(os.path.dirname(lease), 0o700, exist_ok=True)
        fd = os.open(lease, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # a command relies on it: kept
            with transaction(self.conn):
                row = self.conn.execute("SELECT * FROM layers WHERE diff_id = ?", (diff_id,)).fetchone()
                if row is None:
                    os.unlink(lease)
                    return None
                used = self.conn.execute(
                    "SELECT 1 FROM image_layers WHERE diff_id = ? LIMIT 1", (diff_id,)
                ).fetchone()
                if used is not None:
                    return None
                blobs = [
                    r[0] for r in self.conn.execute("SELECT digest FROM layer_blobs WHERE diff_id = ?", (diff_id,))
                ]
                self.conn.execute("DELETE FROM layers WHERE diff_id = ?", (diff_id,))
            faults.point("layer-forgotten")
            os.unlink(lease)  # under the exclusive lock: a waiting lease takes a new file
        finally:
            os.close(fd)
        layer = Layer.from_row(row)
        staging.discard(self.paths.layer_dir(layer.dir), self.paths.tmp)
        # The tars the layer was received or sent as go with it (their rows
        # went with the layer's); a crash before this leaves them to a gc.
        for digest in blobs:
            try:
                os.unlink(self.paths.blob(digest))
            except FileNotFoundError:
                pass
        return layer

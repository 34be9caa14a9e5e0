"""Images: an OCI image config plus the ordered layers it names.

The image ID is the sha256 of the config bytes exactly as stored, so the
same config always has the same ID, here and in any OCI tool.
"""

from __future__ import annotations

from overlayctl.errors import ConflictError, InvalidArgumentError, NotFoundError
from overlayctl.store import events
from overlayctl.store.catalog import transaction
from overlayctl.store.layers import Layer
from overlayctl.util import jsonio
from overlayctl.util.reference import Reference, familiar_name, looks_like_id_prefix, parse_reference, split_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    import builtins
    import sqlite3
    from typing import Any

    from overlayctl.paths import Paths


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The OCI chain ID of each stack prefix: a layer's identity in position."""
    import hashlib

    chain: list[str] = []
    for diff_id in diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            chain.append("sha256:" + hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest())
    return chain


class Image:
    """A committed image and what the catalog knows of it."""

    __slots__ = ("id", "config", "created", "tags", "layers", "digests")

    def __init__(
        self,
        id: str,
        config: dict[str, Any],
        created: str,
        tags: list[str],
        layers: list[Layer],
        digests: list[str] | None = None,
    ) -> None:
        self.id = id
        self.config = config
        self.created = created
        self.tags = tags
        self.layers = layers  # base first
        self.digests = digests or []  # RepoDigests: repository@sha256:...

    def __repr__(self) -> str:
        return f"Image({self.id!r}, tags={self.tags!r}, layers={len(self.layers)})"

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]

    @property
    def size(self) -> int:
        """Bytes on disk of all its layers (shared layers included)."""
        return sum(layer.size for layer in self.layers)

    @property
    def container_config(self) -> dict[str, Any]:
        return self.config.get("config") or {}


class ImageStore:
    """Create, resolve, tag and remove images."""

    def __init__(self, conn: sqlite3.Connection, paths: Paths | None = None) -> None:
        self.conn = conn
        self.paths = paths  # where events go (none: not recorded)

    def record(self, actor_id: str, action: str, name: str, labels: dict[str, str] | None = None) -> None:
        """Append an image event (store.events): Actor.ID is the image's ID
        (or the reference pulled or pushed), Attributes its labels and name,
        as Docker sets them."""
        if self.paths is None:
            return
        attributes = dict(labels or {})
        attributes["name"] = name
        events.record(self.paths, "image", action, actor_id, attributes)

    def _labels(self, image_id: str) -> dict[str, str] | None:
        row = self.conn.execute("SELECT config FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            return None
        return (jsonio.loads(bytes(row[0])).get("config") or {}).get("Labels")

    def create(self, config: dict[str, Any], tag: Reference | None = None, raw: bytes | None = None) -> Image:
        """Record an image whose layers (config.rootfs.diff_ids) are committed.

        ``raw`` is the config exactly as received (load, pull), when it is not
        in canonical form: its bytes, not ours, are what the ID hashes.
        """
        import hashlib

        if raw is None:
            raw = jsonio.canonical(config)
        image_id = "sha256:" + hashlib.sha256(raw).hexdigest()
        diff_ids = list(config["rootfs"]["diff_ids"])
        with transaction(self.conn):
            for diff_id in diff_ids:
                if self.conn.execute("SELECT 1 FROM layers WHERE diff_id = ?", (diff_id,)).fetchone() is None:
                    raise NotFoundError(f"layer {diff_id} is not in the store")
            exists = self.conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone()
            if exists is None:
                self.conn.execute(
                    "INSERT INTO images (id, config, created) VALUES (?, ?, ?)",
                    (image_id, raw, config.get("created", "")),
                )
                self.conn.executemany(
                    "INSERT INTO image_layers (image_id, position, diff_id) VALUES (?, ?, ?)",
                    [(image_id, pos, diff_id) for pos, diff_id in enumerate(diff_ids)],
                )
            if tag is not None:
                self._tag_in_tx(image_id, tag)
        return self.get(image_id)

    def tag(self, image: Image, tag: Reference) -> None:
        """Point repository:tag at image; the image it named before keeps its other tags."""
        with transaction(self.conn):
            self._tag_in_tx(image.id, tag)
        self.record(image.id, "tag", str(tag), image.container_config.get("Labels"))

    def _tag_in_tx(self, image_id: str, tag: Reference) -> None:
        self.conn.execute(
            "INSERT INTO tags (name, image_id) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id",
            (str(tag), image_id),
        )

    def get(self, image_id: str) -> Image:
        row = self.conn.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"image {image_id} not found")
        return self._load(row)

    def _load(self, row: sqlite3.Row) -> Image:
        image_id = row["id"]
        tags = [r[0] for r in self.conn.execute("SELECT name FROM tags WHERE image_id = ? ORDER BY name", (image_id,))]
        layers = [
            Layer.from_row(r)
            for r in self.conn.execute(
                "SELECT l.* FROM image_layers il JOIN layers l ON l.diff_id = il.diff_id "
                "WHERE il.image_id = ? ORDER BY il.position",
                (image_id,),
            )
        ]
        digests = [
            r[0]
            for r in self.conn.execute("SELECT name FROM repo_digests WHERE image_id = ? ORDER BY name", (image_id,))
        ]
        return Image(image_id, jsonio.loads(row["config"]), row["created"], tags, layers, digests)

    def add_digest(self, image_id: str, repository: str, digest: str) -> None:
        """Record repository@digest among the image's RepoDigests (after a
        pull or a push of the manifest with that digest)."""
        name = f"{familiar_name(repository)}@{digest}"
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO repo_digests (name, image_id) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id",
                (name, image_id),
            )

    def resolve(self, text: str) -> Image:
        """Find an image by repository[:tag], full ID or unique ID prefix."""
        image_id = self._resolve_id(text)
        if image_id is None:
            raise NotFoundError(f'image "{text}" not found; see "overlayctl image ls"')
        return self.get(image_id)

    def _resolve_id(self, text: str) -> str | None:
        if "@" in text:
            name = self._digest_name(text)
            row = self.conn.execute("SELECT image_id FROM repo_digests WHERE name = ?", (name,)).fetchone()
            return None if row is None else str(row[0])
        if looks_like_id_prefix(text):
            body = text[7:] if text.startswith("sha256:") else text
            rows = self.conn.execute(
                "SELECT id FROM images WHERE id >= ? AND id < ? LIMIT 2",
                ("sha256:" + body, "sha256:" + body + "g"),
            ).fetchall()
            if len(rows) > 1:
                raise InvalidArgumentError(f'image ID prefix "{text}" is ambiguous; give more characters')
            if rows and (len(body) >= 4 or text.startswith("sha256:")):
                return str(rows[0][0])
        try:
            ref = parse_reference(text)
        except InvalidArgumentError:
            if looks_like_id_prefix(text):
                return None
            raise
        row = self.conn.execute("SELECT image_id FROM tags WHERE name = ?", (str(ref),)).fetchone()
        return None if row is None else str(row[0])

    def config_bytes(self, image_id: str) -> bytes | None:
        """The image's config exactly as stored and hashed."""
        row = self.conn.execute("SELECT config FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            return None
        raw = row["config"]
        return raw if isinstance(raw, bytes) else str(raw).encode()

    def id_tagged(self, name: str) -> str | None:
        """The ID of the image the tag ``name`` (repository:tag) points at."""
        row = self.conn.execute("SELECT image_id FROM tags WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def kept_manifest(self, image_id: str) -> tuple[str, bytes] | None:
        """(media type, bytes) of the manifest the image was received with, if kept."""
        row = self.conn.execute(
            "SELECT media_type, manifest FROM image_manifests WHERE image_id = ?", (image_id,)
        ).fetchone()
        return None if row is None else (str(row["media_type"]), bytes(row["manifest"]))

    def keep_manifest(self, image_id: str, media_type: str, manifest: bytes) -> None:
        """Keep the manifest an image was received with, byte for byte (it
        replaces any kept before), to send it out again with its digest."""
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO image_manifests (image_id, media_type, manifest) VALUES (?, ?, ?) "
                "ON CONFLICT(image_id) DO UPDATE SET media_type = excluded.media_type, manifest = excluded.manifest",
                (image_id, media_type, manifest),
            )

    def layers_only_of(self, image_ids: set[str]) -> builtins.list[str]:
        """The layers no image but these uses (in first-use order)."""
        marks = ",".join("?" * len(image_ids))
        rows = self.conn.execute(
            f"SELECT diff_id FROM image_layers GROUP BY diff_id HAVING SUM(image_id NOT IN ({marks})) = 0 "
            "ORDER BY MIN(rowid)",
            tuple(image_ids),
        ).fetchall()
        return [row[0] for row in rows]

    def list(self) -> list[Image]:
        rows = self.conn.execute("SELECT * FROM images ORDER BY created DESC").fetchall()
        return [self._load(row) for row in rows]

    def remove(
        self, text: str, force: bool = False
    ) -> tuple[builtins.list[str], builtins.list[str], builtins.list[str]]:
        """Untag (and delete, once untagged) an image, as `docker rmi` does.

        By name (NAME[:TAG] or NAME@DIGEST), only that reference goes; the
        image goes with its last reference unless containers use it (then
        the untag needs --force, and the image stays for them). By ID, every
        reference goes with the image; an image in several repositories
        needs --force. Nothing changes when it is refused.

        Returns (untagged names, deleted image IDs, diff_ids no longer used
        by the deleted images, for the caller to hand to the layer store).
        """
        image_id = self._resolve_id(text) or ""
        labels = self._labels(image_id) if self.paths is not None else None
        untagged, deleted, diff_ids = self._remove(text, force)
        for name in untagged:
            self.record(image_id, "untag", name, labels)
        for gone in deleted:
            self.record(gone, "delete", gone, labels)
        return untagged, deleted, diff_ids

    def _remove(
        self, text: str, force: bool = False
    ) -> tuple[builtins.list[str], builtins.list[str], builtins.list[str]]:
        with transaction(self.conn):
            image_id = self._resolve_id(text)
            if image_id is None:
                raise NotFoundError(f'image "{text}" not found; see "overlayctl image ls"')
            tags = [r[0] for r in self.conn.execute("SELECT name FROM tags WHERE image_id = ?", (image_id,))]
            digests = [r[0] for r in self.conn.execute("SELECT name FROM repo_digests WHERE image_id = ?", (image_id,))]
            name = self._reference_name(text)
            users = self.conn.execute(
                "SELECT name, status FROM containers WHERE image_id = ? ORDER BY name", (image_id,)
            ).fetchall()
            if name is not None and (name in tags or name in digests):
                untagged = self._untag(name, tags, digests)
                if len(untagged) < len(tags) + len(digests):
                    return untagged, [], []
                if users and not force:
                    raise self._in_use(text, users)
                if users:
                    # Docker's -f with containers: untag, keep the image for them.
                    return untagged, [], []
            else:
                repositories = {ref.rpartition("@" if "@" in ref else ":")[0] for ref in tags + digests}
                if users and not force:
                    raise self._in_use(text, users)
                if len(repositories) > 1 and not force:
                    raise ConflictError(
                        f"unable to delete {text} (must be forced): the image is referenced in "
                        f"{len(repositories)} repositories ({', '.join(sorted(tags + digests))}); "
                        "remove them by name or use --force"
                    )
                untagged = sorted(tags) + sorted(digests)
                self.conn.execute("DELETE FROM tags WHERE image_id = ?", (image_id,))
                self.conn.execute("DELETE FROM repo_digests WHERE image_id = ?", (image_id,))
                if users:
                    return untagged, [], []
            diff_ids = [
                r[0] for r in self.conn.execute("SELECT diff_id FROM image_layers WHERE image_id = ?", (image_id,))
            ]
            diff_ids += self._stage_layers(image_id, set(diff_ids))
            self.conn.execute("DELETE FROM tags WHERE image_id = ?", (image_id,))
            self.conn.execute("DELETE FROM repo_digests WHERE image_id = ?", (image_id,))
            self.conn.execute("DELETE FROM image_layers WHERE image_id = ?", (image_id,))
            self.conn.execute("DELETE FROM images WHERE id = ?", (image_id,))
        return untagged, [image_id], diff_ids

    def _untag(self, name: str, tags: builtins.list[str], digests: builtins.list[str]) -> builtins.list[str]:
        """Remove one reference; a repository's last tag takes that
        repository's digests along, as Docker does."""
        if "@" in name:
            self.conn.execute("DELETE FROM repo_digests WHERE name = ?", (name,))
            return [name]
        self.conn.execute("DELETE FROM tags WHERE name = ?", (name,))
        repository = name.rpartition(":")[0]
        if any(t != name and t.rpartition(":")[0] == repository for t in tags):
            return [name]
        same = sorted(d for d in digests if d.rpartition("@")[0] == repository)
        for digest in same:
            self.conn.execute("DELETE FROM repo_digests WHERE name = ?", (digest,))
        return [name, *same]

    @staticmethod
    def _in_use(text: str, users: builtins.list[sqlite3.Row]) -> ConflictError:
        return ConflictError(
            f'image "{text}" is used by container "{users[0]["name"]}"'
            + (f" and {len(users) - 1} more" if len(users) > 1 else "")
            + '; remove it first ("overlayctl rm") or use --force'
        )

    def _reference_name(self, text: str) -> str | None:
        """The tag or digest reference text names, in stored form (None for an ID)."""
        if "@" in text:
            return self._digest_name(text)
        if looks_like_id_prefix(text):
            tag = self._tag_name(text)
            # A hex string is a name only where such a tag exists.
            if tag is None or self.conn.execute("SELECT 1 FROM tags WHERE name = ?", (str(tag),)).fetchone() is None:
                return None
            return str(tag)
        return str(parse_reference(text))

    def _stage_layers(self, image_id: str, own: set[str]) -> builtins.list[str]:
        """Layers of the other stages of a multi-stage build, which only
        the image's build cache rows name: they go with the image (and its
        rows), unless another image's rows name them too."""
        found: builtins.list[str] = []
        for (config,) in self.conn.execute("SELECT config FROM build_cache WHERE owner = ?", (image_id,)):
            for diff_id in jsonio.loads(bytes(config))["rootfs"]["diff_ids"]:
                if diff_id not in own and diff_id not in found:
                    found.append(diff_id)
        return [
            diff_id
            for diff_id in found
            if self.conn.execute(
                "SELECT 1 FROM build_cache WHERE owner != ? AND instr(config, ?) > 0 LIMIT 1",
                (image_id, diff_id.encode()),
            ).fetchone()
            is None
        ]

    @staticmethod
    def _digest_name(text: str) -> str:
        """NAME[:TAG]@DIGEST as the repo_digests row names it (the tag is
        ignored, as Docker ignores it)."""
        name, digest = split_digest(text)
        return f"{parse_reference(name).repository}@{digest}"

    @staticmethod
    def _tag_name(text: str) -> Reference | None:
        try:
            return parse_reference(text)
        except InvalidArgumentError:
            return None

"""Content-addressed blobs: <root>/blobs/sha256/<hex>.

A blob is a layer exactly as it was received or sent (usually compressed),
kept so that the same image goes out again with the same digests. A blob
is written to staging under <root>/tmp, hashed as it is written, flushed
and only then renamed into place: a blob file always holds the bytes its
name promises.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import BinaryIO

from overlayctl.errors import DigestMismatchError, InvalidArgumentError
from overlayctl.paths import Paths

_CHUNK = 1 << 20
_HEX = frozenset("0123456789abcdef")


def split_digest(digest: str) -> str:
    """The hex part of "sha256:<64 hex>"; InvalidArgumentError for anything else."""
    algo, _, hex_digest = digest.partition(":")
    if algo != "sha256" or len(hex_digest) != 64 or not set(hex_digest) <= _HEX:
        raise InvalidArgumentError(f'unsupported or malformed digest "{digest}" (expected sha256:<64 hex digits>)')
    return hex_digest


class BlobStore:
    """Put, find and open blobs by digest."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.dir = paths.blobs

    def path(self, digest: str) -> str:
        """Where the blob with this digest lives (the file may not exist)."""
        split_digest(digest)
        return self.paths.blob(digest)

    def has(self, digest: str) -> bool:
        return os.path.isfile(self.path(digest))

    def open(self, digest: str) -> BinaryIO:
        """The blob for reading; NotFoundError-like OSError if it is missing."""
        return open(self.path(digest), "rb")

    def put(
        self,
        stream: BinaryIO,
        expected_digest: str | None = None,
        expected_size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[str, int]:
        """Copy ``stream`` into the store; returns (digest, size).

        The bytes go to a staging file, are hashed on the way and made
        durable before the rename. A digest or size other than the expected
        one raises DigestMismatchError and keeps nothing.
        """
        if expected_digest is not None:
            split_digest(expected_digest)
        staged = os.path.join(self.paths.tmp, f"blob-{os.getpid()}-{os.urandom(6).hex()}")
        try:
            sha = hashlib.sha256()
            size = 0
            with open(staged, "xb") as out:
                while chunk := stream.read(_CHUNK):
                    sha.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    if expected_size is not None and size > expected_size:
                        break
                    if progress is not None:
                        progress(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            digest = "sha256:" + sha.hexdigest()
            check_digest("blob", expected_digest, expected_size, digest, size)
            self.adopt(staged, digest)
        finally:
            if os.path.lexists(staged):
                os.unlink(staged)
        return digest, size

    def adopt(self, staged: str, digest: str) -> str:
        """Rename an already verified and flushed file (on the store's
        filesystem, e.g. under <root>/tmp) into place as blob ``digest``."""
        target = self.path(digest)
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        if os.path.isfile(target):
            # Same name, same bytes: the copy we have is as good.
            os.unlink(staged)
            return target
        os.rename(staged, target)
        return target


def check_digest(what: str, expected_digest: str | None, expected_size: int | None, digest: str, size: int) -> None:
    """Raise DigestMismatchError unless the content matches what its descriptor said."""
    if expected_size is not None and size != expected_size:
        shown = f"more than {expected_size}" if size > expected_size else str(size)
        raise DigestMismatchError(
            f"{what} {expected_digest or digest} has {shown} bytes, its descriptor says {expected_size}; "
            "the source is corrupt or truncated"
        )
    if expected_digest is not None and digest != expected_digest:
        raise DigestMismatchError(
            f"{what} {expected_digest} does not match its digest (the content hashes to {digest}); "
            "the source is corrupt or was tampered with"
        )

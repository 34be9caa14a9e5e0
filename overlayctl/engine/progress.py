"""What a person waiting on a pull, push, save or load sees: the per-layer
display (oci.progress.Progress, handed out here) and the reporter that
draws the archive code's events on it.

A front end makes the display (quiet, one line per event, or live rows on
a terminal) and hands it in; the engine reports to it and never prints.
"""

from __future__ import annotations

from overlayctl.oci.progress import Progress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.oci.archive import Progress as ArchiveProgress

__all__ = ["Progress", "archive_reporter"]


def archive_reporter(display: Progress, verb: str) -> ArchiveProgress:
    """The events of a save or a load (verb), drawn on display."""
    from overlayctl.oci.archive import Progress as ArchiveProgress
    from overlayctl.oci.progress import short_digest

    # On a terminal the row carries a bar, which the display draws only for
    # its transfer statuses; a log gets Docker's words.
    busy = {"load": "Extracting", "save": "Writing"}[verb] if display.mode == "tty" else "Loading layer"

    class _Shown(ArchiveProgress):
        def layer_start(self, digest: str, size: int) -> None:
            display.add(short_digest(digest), busy, size)

        def layer_advance(self, digest: str, nbytes: int) -> None:
            display.advance(short_digest(digest), nbytes)

        def layer_done(self, digest: str, status: str) -> None:
            key = short_digest(digest)
            if status == "Already exists":
                display.add(key, status)
            else:
                display.status(key, status, line=verb == "save")

        def image_done(self, name: str) -> None:
            display.message(f"Loaded image ID: {name}" if name.startswith("sha256:") else f"Loaded image: {name}")

    return _Shown()

"""Who writes through a mount: fanotify(7) events, each with the pid of the
process that caused it and the path it wrote.

The group is notification only (FAN_CLASS_NOTIF): it never blocks the
writer. Each event carries an fd of the file the kernel opened for us
(read-only: opening an overlayfs file for reading never copies it up); its
/proc/self/fd link names the path as the mount's own namespace sees it,
so a container's root mount gives container paths ("/etc/passwd").
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from overlayctl.errors import KernelError
from overlayctl.runtime import syscalls

# struct fanotify_event_metadata: u32 event_len, u8 vers, u8 reserved,
# u16 metadata_len, u64 mask (aligned), s32 fd, s32 pid.
_METADATA = struct.Struct("=IBBHQii")
_VERSION = 3  # FANOTIFY_METADATA_VERSION
_DELETED = " (deleted)"

WRITES = syscalls.FAN_MODIFY | syscalls.FAN_CLOSE_WRITE


@dataclass(frozen=True)
class Record:
    """One event as the kernel packs it."""

    mask: int
    fd: int  # -1 for a queue overflow
    pid: int


@dataclass(frozen=True)
class Event:
    """One write seen: `path` as the mount shows it ("" for an overflow)."""

    mask: int
    pid: int
    path: str

    @property
    def overflow(self) -> bool:
        """The kernel's queue was full and events were lost."""
        return bool(self.mask & syscalls.FAN_Q_OVERFLOW)


def parse(buffer: bytes) -> list[Record]:
    """The records of one read(2) of a fanotify fd; a record of an unknown
    metadata version (a kernel newer than this code) is refused, as
    fanotify(7) asks."""
    records = []
    offset = 0
    while offset + _METADATA.size <= len(buffer):
        length, version, _, _, mask, fd, pid = _METADATA.unpack_from(buffer, offset)
        if version != _VERSION:
            raise KernelError(f"fanotify: metadata version {version}, overlayctl reads {_VERSION}")
        if length < _METADATA.size:
            break  # malformed: never loop on a zero length
        records.append(Record(mask, fd, pid))
        offset += length
    return records


class MountWatch:
    """The writes through the mount that holds `path` (for a container:
    /proc/<pid>/root, its root mount in its own mount namespace). Raises
    KernelError naming what the kernel refused (no fanotify, no
    CAP_SYS_ADMIN, the path gone)."""

    def __init__(self, path: str, mask: int = WRITES) -> None:
        self.fd = syscalls.fanotify_init(
            syscalls.FAN_CLASS_NOTIF | syscalls.FAN_CLOEXEC | syscalls.FAN_NONBLOCK, os.O_RDONLY | os.O_LARGEFILE
        )
        try:
            syscalls.fanotify_mark(self.fd, syscalls.FAN_MARK_ADD | syscalls.FAN_MARK_MOUNT, mask, path)
        except BaseException:
            os.close(self.fd)
            raise

    def fileno(self) -> int:
        """The fd to wait on (select/poll) for events."""
        return self.fd

    def read(self) -> list[Event]:
        """The events queued now (none if none); never blocks."""
        try:
            buffer = os.read(self.fd, 64 * 1024)
        except BlockingIOError:
            return []
        events = []
        for record in parse(buffer):
            if record.fd < 0:
                events.append(Event(record.mask, record.pid, ""))
                continue
            try:
                path = os.readlink(f"/proc/self/fd/{record.fd}")
            except OSError:
                path = ""
            finally:
                os.close(record.fd)
            if path.endswith(_DELETED):
                path = path[: -len(_DELETED)]
            events.append(Event(record.mask, record.pid, path))
        return events

    def close(self) -> None:
        """Remove the group (and its mark)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

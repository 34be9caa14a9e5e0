"""Types of the compiled batch file writer (_batchwrite.c)."""

# name, data, mode, uid, gid, mtime_ns, flags (CHOWN, CHMOD)
File = tuple[bytes, bytes | memoryview, int, int, int, int, int]

CHOWN: int
CHMOD: int

class Writer:
    """Creates batches of small files in one directory on a thread that does not hold the GIL."""

    def __init__(self) -> None: ...
    def submit(self, dir_fd: int, files: list[File], /) -> None: ...
    def wait(self) -> tuple[int, int]: ...
    def close(self) -> None: ...

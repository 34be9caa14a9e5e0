"""The attach protocol, over the stream socket <runroot>/containers/<id>.sock:
every message is an 8-byte header (kind, three zero bytes, length as a
32-bit big-endian number) and its payload, as Docker's multiplexed
streams. Supervisor to client: 1 stdout, 2 stderr, 3 the exit code (ASCII)
as the last message. Client to supervisor: 0 stdin bytes, 1 close stdin,
2 terminal size ("rows cols").

The monitor imports this: it must import nothing.
"""

STDIN, CLOSE_STDIN, RESIZE = 0, 1, 2
STDOUT_FRAME, STDERR_FRAME, EXIT_FRAME = 1, 2, 3
HEADER = 8


def frame(kind: int, payload: bytes) -> bytes:
    return bytes((kind, 0, 0, 0)) + len(payload).to_bytes(4, "big") + payload


def split_frames(buffer: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Whole messages at the start of `buffer`, and what is left of it."""
    out = []
    while len(buffer) >= HEADER:
        size = int.from_bytes(buffer[4:8], "big")
        if len(buffer) < HEADER + size:
            break
        out.append((buffer[0], buffer[HEADER : HEADER + size]))
        buffer = buffer[HEADER + size :]
    return out, buffer

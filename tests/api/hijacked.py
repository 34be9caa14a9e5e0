"""A raw client of the Engine API's hijacked streams (attach, exec start),
for the tests that look at the bytes themselves: the upgrade answer,
Docker's 8-byte frame headers, half-close."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any


class Stream:
    """One hijacked connection: the answer's status line and headers, then
    the raw stream."""

    def __init__(self, sock_path: Path, method: str, path: str, body: Any = None, upgrade: bool = True) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(str(sock_path))
        data = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", "Host: docker", f"Content-Length: {len(data)}"]
        if body is not None:
            head.append("Content-Type: application/json")
        if upgrade:
            head += ["Connection: Upgrade", "Upgrade: tcp"]
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            raw += chunk
        head_bytes, _, self.pending = raw.partition(b"\r\n\r\n")
        lines = head_bytes.decode().split("\r\n")
        self.status_line = lines[0]
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def read_all(self, timeout: float = 30) -> bytes:
        """Everything until the service closes the stream."""
        deadline = time.monotonic() + timeout
        out = self.pending
        self.pending = b""
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                return out
            out += chunk
        raise AssertionError(f"the stream did not end in {timeout}s; got {out!r}")

    def read_until(self, needle: bytes, timeout: float = 30) -> bytes:
        """What came until needle appears (the stream still open)."""
        deadline = time.monotonic() + timeout
        while needle not in self.pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {needle!r} in {self.pending!r}")
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"the stream ended before {needle!r}: {self.pending!r}")
            self.pending += chunk
        return self.pending

    def close(self) -> None:
        self.sock.close()


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """Docker's multiplexed stream as (stream, payload) pairs; the whole of
    data must be frames (a stray byte fails the test)."""
    out = []
    while data:
        assert len(data) >= 8, f"a truncated frame header: {data!r}"
        assert data[1:4] == b"\0\0\0", f"not a frame header: {data[:8]!r}"
        size = int.from_bytes(data[4:8], "big")
        assert len(data) >= 8 + size, f"a truncated frame: {data!r}"
        out.append((data[0], data[8 : 8 + size]))
        data = data[8 + size :]
    return out


def joined(pairs: list[tuple[int, bytes]], stream: int) -> bytes:
    return b"".join(payload for kind, payload in pairs if kind == stream)


def held_fds(pid: int) -> int:
    """How many pipes, sockets and pidfds process pid holds: what an
    attach or an exec would leak."""
    count = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith(("pipe:", "socket:", "anon_inode:[pidfd]")):
            count += 1
    return count

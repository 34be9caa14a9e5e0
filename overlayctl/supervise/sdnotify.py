"""sd_notify(3) without libsystemd: tell systemd about a Type=notify service.

systemd passes the socket in $NOTIFY_SOCKET: a path, or a name in the
abstract namespace when it starts with "@". A message is one datagram of
newline-separated assignments ("READY=1\\nSTATUS=Running"). Without the
variable, outside systemd, every call is a no-op that costs one dictionary
lookup; the socket module is imported only when a message is sent.

The foreground start path (`overlayctl start -a`, `run` without -d) sends
READY=1 and STATUS= once the container's command runs, STOPPING=1 when a
stop begins (a forwarded SIGTERM/SIGINT, or the container ending), and
MAINPID= the supervisor itself, which is the process whose exit code is
the container's.
"""

from __future__ import annotations

import os


def notify(state: str) -> bool:
    """Send `state` to $NOTIFY_SOCKET; True if it was sent.

    False when the variable is unset or empty, or the socket cannot be
    reached (systemd went away): the caller carries on either way."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or not state:
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    elif address[0] != "/":
        return False  # (vsock addresses are for VMs and not supported here)
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(address)
        sock.sendall(state.encode())
    except OSError:
        return False
    finally:
        sock.close()
    return True


def ready(status: str = "", main_pid: int | None = None) -> bool:
    """READY=1, with STATUS= and MAINPID= when given."""
    return notify(_join("READY=1", status, main_pid))


def stopping(status: str = "") -> bool:
    """STOPPING=1, with STATUS= when given."""
    return notify(_join("STOPPING=1", status, None))


def status(text: str) -> bool:
    """STATUS= alone: a line `systemctl status` shows."""
    return notify(_join("", text, None))


def _join(first: str, status: str, main_pid: int | None) -> str:
    parts = [first] if first else []
    if main_pid is not None:
        parts.append(f"MAINPID={main_pid}")
    if status:
        parts.append("STATUS=" + status.replace("\n", " "))
    return "\n".join(parts)

"""One exception tree for everything a user can be told.

Every error carries a message written for the person at the terminal (what
failed, why, what to do) and the exit code Docker would use: 125 when
overlayctl itself fails, 126 when the container's command cannot be run, 127
when it cannot be found.
"""

from __future__ import annotations

# An error line names what failed, and a name in it can be as long as a user
# or a layer makes it (a tar entry name has no limit): past this many
# characters its middle is cut, keeping how it starts and how it ends.
MAX_LINE = 400


def one_line(message: str, limit: int = MAX_LINE) -> str:
    """``message`` as one terminal line of at most ``limit`` characters."""
    if "\n" in message or "\r" in message:
        message = message.replace("\r", "\\r").replace("\n", "\\n")
    if len(message) <= limit:
        return message
    tail = limit // 4
    return message[: limit - tail - 1] + "\u2026" + message[-tail:]


class OverlayctlError(Exception):
    """Base of every error overlayctl reports to a user."""

    exit_code = 125

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class NotRootError(OverlayctlError):
    """The command needs root privileges."""


class NotFoundError(OverlayctlError):
    """An image, container or layer that does not exist."""


class ConflictError(OverlayctlError):
    """A name already in use, or an object still in use by another."""


class InvalidArgumentError(OverlayctlError):
    """Bad user input: reference format, option value, missing argument."""


class LayerRejectedError(OverlayctlError):
    """A layer archive that is unsafe or malformed; nothing was stored."""


class StoreError(OverlayctlError):
    """The store on disk is not in the state the catalog describes."""


class KernelError(OverlayctlError):
    """A syscall failed; the message names the operation, the path and errno."""


class CommandNotFoundError(OverlayctlError):
    """The container's command does not exist in the image."""

    exit_code = 127


class CommandNotExecutableError(OverlayctlError):
    """The container's command exists but cannot be executed."""

    exit_code = 126


class DigestMismatchError(OverlayctlError):
    """Content whose sha256 or size is not what its descriptor promised; nothing was kept."""


class UnsupportedMediaTypeError(OverlayctlError):
    """An image archive or manifest uses a media type overlayctl cannot read."""


class RegistryError(OverlayctlError):
    """A registry that cannot be reached or answers with an error; nothing partial was stored."""


class RegistryAuthError(RegistryError):
    """A registry refused our credentials, or wants some and we have none."""

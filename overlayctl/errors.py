"""One exception tree for everything a user can be told.

Every error carries a message written for the person at the terminal (what
failed, why, what to do) and the exit code Docker would use: 125 when
overlayctl itself fails, 126 when the container's command cannot be run, 127
when it cannot be found.
"""

from __future__ import annotations

# An error line names what failed, and a name in it can be as long as a user
# or a layer makes it (a tar entry name has no limit). A word past MAX_WORD
# characters has its middle cut, keeping how it starts and how it ends; the
# rest of the line stays whole, so that the way out it names (a command with
# the store's paths) can still be copied. Past MAX_LINE the line itself is cut.
MAX_WORD = 200
MAX_LINE = 1000


def _cut(text: str, limit: int) -> str:
    tail = limit // 4
    return text[: limit - tail - 1] + "\u2026" + text[-tail:]


def one_line(message: str, limit: int = MAX_LINE) -> str:
    """``message`` as one terminal line: no line break, no word longer than
    MAX_WORD, at most ``limit`` characters."""
    if "\n" in message or "\r" in message:
        message = message.replace("\r", "\\r").replace("\n", "\\n")
    if len(message) > MAX_WORD:
        message = " ".join(_cut(word, MAX_WORD) if len(word) > MAX_WORD else word for word in message.split(" "))
    return message if len(message) <= limit else _cut(message, limit)


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


class ManifestUnknownError(RegistryError, NotFoundError):
    """The registry has no manifest for the tag or digest asked for."""


class RegistryAuthError(RegistryError):
    """A registry refused our credentials, or wants some and we have none."""

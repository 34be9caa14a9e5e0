"""The host's platform as OCI names it (GOARCH), for the images this host
makes and the manifest it picks from an index.
"""

from __future__ import annotations

import platform

from overlayctl.errors import InvalidArgumentError

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}
# The variant OCI gives these machines; none for the others (as containerd
# normalises them: amd64 and arm64 have no variant by default).
_VARIANT = {"armv7l": "v7"}


def host_architecture() -> str:
    """This machine's architecture as OCI image configs name it (GOARCH)."""
    return _GOARCH.get(platform.machine(), platform.machine())


class Platform:
    """An OS/ARCH[/VARIANT] triple."""

    __slots__ = ("os", "arch", "variant")

    def __init__(self, os: str, arch: str, variant: str = "") -> None:
        self.os = os
        self.arch = arch
        self.variant = variant

    def __str__(self) -> str:
        return f"{self.os}/{self.arch}" + (f"/{self.variant}" if self.variant else "")

    def args(self) -> dict[str, str]:
        """BuildKit's automatic platform ARGs; the build's platform is the
        target's too, as only this host's platform is built."""
        values = {"PLATFORM": str(self), "OS": self.os, "ARCH": self.arch, "VARIANT": self.variant}
        return {prefix + key: value for prefix in ("TARGET", "BUILD") for key, value in values.items()}


def host_platform() -> Platform:
    """This host's platform (linux/amd64 on x86-64)."""
    return Platform("linux", host_architecture(), _VARIANT.get(platform.machine(), ""))


def check_platform(text: str, what: str, verb: str = "built") -> None:
    """Refuse a platform other than this host's: images for other machines
    are not built (no emulation)."""
    host = host_platform()
    parts = text.strip().lower().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgumentError(f'invalid {what} "{text}": use OS/ARCH[/VARIANT], e.g. {host}')
    os_name, arch = parts[0], parts[1]
    variant = parts[2] if len(parts) == 3 else host.variant
    # amd64/v1 is plain amd64, as containerd normalises it.
    if arch == "amd64" and variant == "v1":
        variant = ""
    if (os_name, arch, variant) != (host.os, host.arch, host.variant):
        raise InvalidArgumentError(f'{what} "{text}" is not this host\'s platform ({host}): only {host} can be {verb}')

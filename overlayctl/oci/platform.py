"""The host's platform as OCI names it (GOARCH), for the images this host
makes and the manifest it picks from an index.
"""

from __future__ import annotations

import platform

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def host_architecture() -> str:
    """This machine's architecture as OCI image configs name it (GOARCH)."""
    return _GOARCH.get(platform.machine(), platform.machine())

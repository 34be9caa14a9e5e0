"""`build`: a Dockerfile to an image, one cached layer per step.

The builder (overlayctl.builder) does the work; this is the verb front ends
call, with the options they fill in.
"""

from __future__ import annotations

from overlayctl.builder.builder import BuildOptions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.store import Store

__all__ = ["BuildOptions", "build", "read_secrets"]


def read_secrets(items: list[str]) -> dict[str, bytes]:
    """`build --secret` values by id: each file read, or variable taken from
    this process's environment, now (the build never sees where from)."""
    import os

    from overlayctl.builder.mounts import parse_secret
    from overlayctl.errors import InvalidArgumentError

    secrets: dict[str, bytes] = {}
    for item in items:
        source = parse_secret(item)
        if source.env:
            if source.env not in os.environ:
                raise InvalidArgumentError(f'--secret {source.id}: the variable {source.env} is not set')
            secrets[source.id] = os.environ[source.env].encode()
            continue
        try:
            with open(os.path.expanduser(source.src), "rb") as f:
                secrets[source.id] = f.read()
        except OSError as exc:
            raise InvalidArgumentError(f"--secret {source.id}: cannot read {source.src}: {exc.strerror}") from None
    return secrets


def build(store: Store, opts: BuildOptions) -> str:
    """Build the Dockerfile in opts.context; returns the image ID."""
    from overlayctl.builder.builder import build as build_steps

    return build_steps(store, opts)

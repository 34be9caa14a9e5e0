"""`build`: a Dockerfile to an image, one cached layer per step.

The builder (overlayctl.builder) does the work; this is the verb front ends
call, with the options they fill in.
"""

from __future__ import annotations

from overlayctl.builder.builder import BuildOptions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.store import Store

__all__ = ["BuildOptions", "build"]


def build(store: Store, opts: BuildOptions) -> str:
    """Build the Dockerfile in opts.context; returns the image ID."""
    from overlayctl.builder.builder import build as build_steps

    return build_steps(store, opts)

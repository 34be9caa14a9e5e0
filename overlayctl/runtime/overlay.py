"""How the container's overlay is described and mounted.

The store hands over a description (lowerdirs top first, upperdir, workdir);
this module turns it into the kernel's language. Two ways exist:

* the new mount API (Linux >= 6.8): one ``fsconfig("lowerdir+")`` per layer,
  so there is no page-size limit and images of up to the kernel's 500 layers
  (OVL_MAX_STACK) mount;
* classic mount(2) for older kernels: the whole option string has to fit in
  one page, so lowerdirs are written relative to a chdir, and a string that
  would not fit is refused. The kernel copies only the first page and
  silently drops the layers past the cut while returning success.
"""

from __future__ import annotations

import os

from overlayctl.errors import InvalidArgumentError, KernelError

PAGE_SIZE = 4096
MAX_LAYERS = 500  # OVL_MAX_STACK in fs/overlayfs/params.h


class OverlayLayout:
    """What the store gives the runtime: directories only, never a mount."""

    __slots__ = ("lowerdirs", "upperdir", "workdir")

    def __init__(self, lowerdirs: tuple[str, ...], upperdir: str, workdir: str) -> None:
        # Topmost first, as overlayfs orders them, each directory once.
        # Layers are stored once by content, so an image can hold the same
        # layer twice (two RUN steps that change nothing, say); overlayfs
        # refuses a directory that appears twice in the stack (ELOOP). The
        # lower copy can be dropped: every path in it is in the upper copy
        # too, with the same content, so it never shows through.
        self.lowerdirs = tuple(dict.fromkeys(lowerdirs))
        self.upperdir = upperdir
        self.workdir = workdir

    def __repr__(self) -> str:
        return f"OverlayLayout(lowerdirs={self.lowerdirs!r}, upperdir={self.upperdir!r}, workdir={self.workdir!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OverlayLayout) and (self.lowerdirs, self.upperdir, self.workdir) == (
            other.lowerdirs,
            other.upperdir,
            other.workdir,
        )


def check_layer_count(layout: OverlayLayout) -> None:
    """Refuse stacks the kernel cannot mount, before any syscall."""
    if not layout.lowerdirs:
        raise InvalidArgumentError("an image needs at least one layer to run")
    if len(layout.lowerdirs) > MAX_LAYERS:
        raise InvalidArgumentError(f"image has {len(layout.lowerdirs)} layers; overlayfs mounts at most {MAX_LAYERS}")


def classic_options(layout: OverlayLayout, base: str) -> str:
    """The mount(2) option string with every path relative to `base`.

    The caller chdirs to `base` before mounting. Raises instead of letting
    the kernel truncate: mount(2) copies one page, NUL included.
    """
    check_layer_count(layout)
    lower = ":".join(_escape(os.path.relpath(d, base)) for d in layout.lowerdirs)
    data = f"lowerdir={lower}"
    if layout.upperdir:  # none: a read-only view of the layers
        data += (
            f",upperdir={_escape(os.path.relpath(layout.upperdir, base))},"
            f"workdir={_escape(os.path.relpath(layout.workdir, base))}"
        )
    if len(data.encode()) + 1 > PAGE_SIZE:
        raise KernelError(
            f"overlay options for {len(layout.lowerdirs)} layers need {len(data.encode()) + 1} bytes; "
            f"mount(2) takes at most {PAGE_SIZE} on this kernel (upgrade to Linux >= 6.8 for the "
            "new mount API, or flatten the image)"
        )
    return data


def _escape(path: str) -> str:
    # overlayfs splits options on "," and lowerdirs on ":"; both are escaped with "\".
    for ch in ("\\", ",", ":"):
        path = path.replace(ch, "\\" + ch)
    return path

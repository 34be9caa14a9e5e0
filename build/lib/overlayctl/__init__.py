"""overlayctl: a daemonless overlayfs orchestrator.

Images are stacks of read-only, content-addressed layers; a container is an
image plus one thin writable layer, merged by the kernel's overlayfs inside a
private mount namespace.
"""

__version__ = "0.1.0"

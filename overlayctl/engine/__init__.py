"""The verbs both front ends call: create, start, run, stop, kill, restart,
wait, pause, exec, attach, rm, inspect, prune, commit/diff/export, and the
images, volumes, networks, registries, archives, builds, measurements and
system checks around them.

The CLI parses and prints; everything it does goes through a function here,
so a second front end gets the same behaviour by calling the same functions.
Functions return data and raise overlayctl.errors exceptions; none prints.

Every front end starts with `open_store`. The rest of this package stays
out of this file, and its imports stay inside the functions: `run` imports
the package on its fast path.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.store import Store


def open_store(root: str | None = None, runroot: str | None = None) -> Store:
    """Check for root, then open the store at root and runroot (None: the
    environment's, else the defaults)."""
    from overlayctl.paths import Paths
    from overlayctl.store import Store
    from overlayctl.supervise.supervisor import require_root

    require_root()
    return Store(Paths.from_env(root, runroot))


def store_error(root: str, exc: BaseException) -> str | None:
    """The one line for an error that says the catalog of the store at root
    cannot be trusted, or None when exc is about something else."""
    from overlayctl.store import health

    return health.error_for(root, exc)

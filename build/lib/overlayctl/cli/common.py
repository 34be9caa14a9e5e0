"""What several commands share: opening the store, building create options."""

from __future__ import annotations

from overlayctl.lifecycle import CreateOptions
from overlayctl.paths import Paths
from overlayctl.store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


def open_store(global_opts: Mapping[str, Any]) -> Store:
    """Check for root, then open the store named by --root/--runroot."""
    from overlayctl.runtime.supervisor import require_root

    require_root()
    return Store(Paths.from_env(global_opts.get("root"), global_opts.get("runroot")))


def create_options(opts: Mapping[str, Any], image: str, command: list[str]) -> CreateOptions:
    """CreateOptions from parsed create/run options (click or the fast path)."""
    return CreateOptions(
        image=image,
        command=list(command),
        name=opts.get("name"),
        env=list(opts.get("env") or []),
        workdir=opts.get("workdir"),
        hostname=opts.get("hostname"),
        user=opts.get("user"),
        entrypoint=opts.get("entrypoint"),
        tty=bool(opts.get("tty")),
        interactive=bool(opts.get("interactive")),
        auto_remove=bool(opts.get("rm")),
    )


def run_container(global_opts: Mapping[str, Any], opts: Mapping[str, Any], image: str, command: list[str]) -> int:
    """`run`: in the foreground, or with -d in the background."""
    from overlayctl import lifecycle

    store = open_store(global_opts)
    create = create_options(opts, image, command)
    if opts.get("detach"):
        container = lifecycle.create(store, create)
        lifecycle.start_detached(store, container)
        print(container.id)
        return 0
    return lifecycle.run(store, create)

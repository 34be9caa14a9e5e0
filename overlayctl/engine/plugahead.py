"""`run`'s plugger, forked as early as the options allow (network.plugger).

Apart from engine.containers, whose import is most of the run path: the
fast path calls plug_ahead before importing it, so the plugger loads its
rtnetlink classes while the run path loads."""

from __future__ import annotations


def plug_ahead(network: str | None) -> None:
    """For `run` on a bridge network (`network` as --network gave it, None
    for the default): fork the plugger now. Call plug_done() once the start
    is over. A second call is a no-op."""
    network = network or "bridge"
    if network in ("none", "host") or network.startswith("container:"):
        return
    from overlayctl.network import plugger

    plugger.prewarm()


def plug_done() -> None:
    """Reap plug_ahead's plugger (a no-op without one)."""
    import sys

    plugger = sys.modules.get("overlayctl.network.plugger")
    if plugger is not None:
        plugger.finish()  # type: ignore[attr-defined]


def preload(network: str | None) -> None:
    """For a long-lived process that starts many containers (the Engine API
    service): load the rtnetlink classes here, once, before a start on a
    bridge network (`network` as HostConfig.NetworkMode names it), so that
    every supervisor forked from this process has them, as the plugger has
    them for one `run`."""
    network = network or "bridge"
    if network in ("none", "host") or network.startswith("container:"):
        return
    from overlayctl.network import netlink

    netlink.load_messages()

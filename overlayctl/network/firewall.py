"""Our nftables table, `inet overlayctl`: isolation between our networks.

The table is host-wide, like the bridges it guards: every store (every
--root) on the host shares it, and so do test sessions. It holds

- a set `bridges` (type ifname) with every bridge device overlayctl made,
- a set `same` (type ifname . ifname) with a "B . B" pair for each of them,
- a chain `forward` (hook forward, priority filter, policy accept):
  `iifname . oifname @same accept`, then `iifname @bridges oifname @bridges drop`.

A packet routed from one of our bridges to another is dropped; traffic that
stays on one bridge (routed back out of it, or bridged with br_netfilter
loaded, where in and out are the bridge itself) passes our chain; everything
else is not ours and passes too. An accept here ends only this chain: a drop
in Docker's, podman's or the admin's own table still applies, and nothing
here touches theirs.

Networks join and leave by set element, keyed by device name: no rule
handles to track, and the rules never change after the table is made. The
table is made with the first bridge and deleted with the last. Every change
is made under a flock on one file under /run, host-wide, because two stores
may create or remove bridges at once; the bridge device itself is created
and deleted under the same lock (see `adding` and `removing`) so that a
sweep of elements whose device is gone never races a bridge being made.

Speaks nftables' JSON API through libnftables' own binding (Debian's
python3-nftables), imported only when a bridge is made or removed.
"""

from __future__ import annotations

import os

from overlayctl.errors import KernelError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

FAMILY = "inet"
TABLE = "overlayctl"
LOCK_PATH = "/run/overlayctl-firewall.lock"


class FirewallError(KernelError):
    """nftables refused a change, or libnftables' binding is missing."""


def _nft() -> Any:
    try:
        import nftables
    except ImportError:
        raise FirewallError(
            "cannot isolate the network: Python's nftables binding is missing; "
            "install it with: apt-get install python3-nftables (then run scripts/setup.sh again)"
        ) from None
    nft = nftables.Nftables()
    nft.set_json_output(True)
    return nft


def _run(nft: Any, commands: list[dict[str, Any]], what: str) -> Any:
    rc, output, error = nft.json_cmd({"nftables": commands})
    if rc != 0:
        reason = " ".join(str(error).split()) or f"error {rc}"
        raise FirewallError(f"nftables: cannot {what}: {reason}")
    return output


def table_commands() -> list[dict[str, Any]]:
    """The commands that make the table, its sets and its chain (one batch:
    nftables applies it whole or not at all)."""
    where = {"family": FAMILY, "table": TABLE}
    iif, oif = {"meta": {"key": "iifname"}}, {"meta": {"key": "oifname"}}
    return [
        {"add": {"table": {"family": FAMILY, "name": TABLE}}},
        {"add": {"set": {**where, "name": "bridges", "type": "ifname"}}},
        {"add": {"set": {**where, "name": "same", "type": ["ifname", "ifname"]}}},
        {
            "add": {
                "chain": {
                    **where,
                    "name": "forward",
                    "type": "filter",
                    "hook": "forward",
                    "prio": 0,
                    "policy": "accept",
                }
            }
        },
        {
            "add": {
                "rule": {
                    **where,
                    "chain": "forward",
                    "expr": [
                        {"match": {"op": "==", "left": {"concat": [iif, oif]}, "right": "@same"}},
                        {"accept": None},
                    ],
                }
            }
        },
        {
            "add": {
                "rule": {
                    **where,
                    "chain": "forward",
                    "expr": [
                        {"match": {"op": "==", "left": iif, "right": "@bridges"}},
                        {"match": {"op": "==", "left": oif, "right": "@bridges"}},
                        {"drop": None},
                    ],
                }
            }
        },
    ]


def element_commands(verb: str, bridges: list[str]) -> list[dict[str, Any]]:
    """`add` or `delete` the elements of these bridges in both sets."""
    where = {"family": FAMILY, "table": TABLE}
    return [
        {verb: {"element": {**where, "name": "bridges", "elem": list(bridges)}}},
        {verb: {"element": {**where, "name": "same", "elem": [{"concat": [b, b]} for b in bridges]}}},
    ]


def _bridges(nft: Any) -> list[str] | None:
    """The elements of the set `bridges`; None if the table does not exist."""
    rc, output, _error = nft.json_cmd(
        {"nftables": [{"list": {"set": {"family": FAMILY, "table": TABLE, "name": "bridges"}}}]}
    )
    if rc != 0:
        return None
    for item in output.get("nftables", []):
        if "set" in item:
            return [e for e in item["set"].get("elem", []) if isinstance(e, str)]
    return []


class _Lock:
    """The host-wide flock every change to the table is made under."""

    def __enter__(self) -> _Lock:
        import fcntl

        self.fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def adding(bridge: str, create: Callable[[], None]) -> None:
    """Put `bridge` in the table (made if missing), then `create()` the device.

    Elements first: the device never exists without isolation. If
    `create` fails, the elements go again (and the table, if they were
    its last)."""
    nft = _nft()
    with _Lock():
        present = _bridges(nft)
        commands = table_commands() if present is None else []
        if present is None or bridge not in present:
            commands += element_commands("add", [bridge])
        if commands:
            _run(nft, commands, f"add bridge {bridge} to table {FAMILY} {TABLE}")
        try:
            create()
        except BaseException:
            _forget(nft)
            raise


def removing(delete: Callable[[], object]) -> None:
    """`delete()` the device, then drop its elements and those of any of
    our bridges that no longer exists (deleted by hand, or by a tool that
    is not overlayctl); the table goes with the last.

    Without the nftables binding no table can have been made: the device
    is just deleted."""
    try:
        nft = _nft()
    except FirewallError:
        delete()
        return
    with _Lock():
        delete()
        _forget(nft)


def _forget(nft: Any) -> None:
    """Drop the elements of every bridge in the table whose device is gone.

    Bridges are made and deleted under the lock, so "in the set, no device"
    is never a bridge being made right now."""
    from overlayctl.runtime.netdev import link_exists

    present = _bridges(nft)
    if present is None:
        return
    gone = [b for b in present if not link_exists(b)]
    if len(gone) == len(present):
        _run(nft, [{"delete": {"table": {"family": FAMILY, "name": TABLE}}}], f"delete table {FAMILY} {TABLE}")
    elif gone:
        _run(nft, element_commands("delete", gone), f"remove {', '.join(gone)} from table {FAMILY} {TABLE}")


def table(nft: Any = None) -> dict[str, Any] | None:
    """The table as nftables lists it (JSON), None if there is none: for
    `inspect`-like checks and the tests."""
    nft = nft or _nft()
    rc, output, _error = nft.json_cmd({"nftables": [{"list": {"table": {"family": FAMILY, "name": TABLE}}}]})
    return output if rc == 0 else None

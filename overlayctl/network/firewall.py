"""Our nftables table, `inet overlayctl`: isolation between our networks, and their way out.

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

and, for the way out (see `outbound_commands`),

- a set `outbound` (type ipv4_addr . ifname, intervals) with "SUBNET . B"
  for each bridge whose network may reach beyond the host,
- a set `internal` (type ifname) with each bridge of an --internal network,
- a chain `postrouting` (hook postrouting, priority srcnat, nat):
  `ip saddr . oifname @outbound return` (staying on its own bridge), then
  `ip saddr . iifname @outbound masquerade` (anything else leaving it),
- two rules in `forward`: `iifname @internal drop`, `oifname @internal drop`
  (after the same-bridge accept, so an internal network's own traffic passes).

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


def outbound_commands() -> list[dict[str, Any]]:
    """The sets, the nat chain and the forward rules of the way out (one
    batch, added to a table made by `table_commands`)."""
    where = {"family": FAMILY, "table": TABLE}
    saddr = {"payload": {"protocol": "ip", "field": "saddr"}}
    iif, oif = {"meta": {"key": "iifname"}}, {"meta": {"key": "oifname"}}

    def rule(chain: str, left: dict[str, Any], right: str, verdict: dict[str, Any]) -> dict[str, Any]:
        return {"add": {"rule": {**where, "chain": chain, "expr": [_match(left, right), verdict]}}}

    return [
        {"add": {"set": {**where, "name": "outbound", "type": ["ipv4_addr", "ifname"], "flags": ["interval"]}}},
        {"add": {"set": {**where, "name": "internal", "type": "ifname"}}},
        {
            "add": {
                "chain": {
                    **where,
                    "name": "postrouting",
                    "type": "nat",
                    "hook": "postrouting",
                    "prio": 100,  # srcnat
                    "policy": "accept",
                }
            }
        },
        # Back out of its own bridge (a container answering a neighbour, or
        # the host): the source stays as it is.
        rule("postrouting", {"concat": [saddr, oif]}, "@outbound", {"return": None}),
        rule("postrouting", {"concat": [saddr, iif]}, "@outbound", {"masquerade": None}),
        # An internal network's bridge forwards to nothing but itself (the
        # same-bridge accept comes first in this chain).
        rule("forward", iif, "@internal", {"drop": None}),
        rule("forward", oif, "@internal", {"drop": None}),
    ]


def _match(left: dict[str, Any], right: str) -> dict[str, Any]:
    return {"match": {"op": "==", "left": left, "right": right}}


def way_out_commands(verb: str, bridge: str, subnet: str, internal: bool) -> list[dict[str, Any]]:
    """`add` or `delete` the element that gives `bridge` its way out (its
    subnet in `outbound`), or, for an internal network, the one that takes
    every way out away (the bridge in `internal`)."""
    where = {"family": FAMILY, "table": TABLE}
    if internal:
        return [{verb: {"element": {**where, "name": "internal", "elem": [bridge]}}}]
    addr, _, length = subnet.partition("/")
    elem = {"concat": [{"prefix": {"addr": addr, "len": int(length)}}, bridge]}
    return [{verb: {"element": {**where, "name": "outbound", "elem": [elem]}}}]


def enable_forwarding() -> None:
    """Turn on IPv4 forwarding for the host, as Docker does when its first
    bridge comes up; it is left on (other bridges and tools may rely on it)."""
    path = "/proc/sys/net/ipv4/ip_forward"
    with open(path, "rb") as f:
        if f.read(1) == b"1":
            return
    try:
        with open(path, "wb") as f:
            f.write(b"1")
    except OSError as exc:
        raise FirewallError(f"cannot enable IPv4 forwarding ({path}): {os.strerror(exc.errno or 0)}") from None


def iptables_forward_drops(nft: Any) -> bool:
    """Whether iptables' FORWARD chain (table `ip filter`) has the policy
    DROP, as Docker sets it when it turns forwarding on itself. Its verdict
    stands whatever our own chain accepts: in nftables every base chain on
    a hook must accept a packet, and a drop in any one is final."""
    rc, output, _error = nft.json_cmd(
        {"nftables": [{"list": {"chain": {"family": "ip", "table": "filter", "name": "FORWARD"}}}]}
    )
    if rc != 0:
        return False
    return any(item.get("chain", {}).get("policy") == "drop" for item in output.get("nftables", []))


def forward_drop_warning(bridge: str) -> str:
    """What to tell the user when iptables' FORWARD policy is DROP: the way
    Docker documents to let another bridge through (its DOCKER-USER chain,
    the one chain of Docker's meant for the host's own rules)."""
    return (
        f"iptables' FORWARD policy is DROP (Docker sets it when it turns on forwarding itself): containers on "
        f"{bridge} cannot reach beyond the host until it is let through, as Docker documents for other bridges: "
        f"iptables -I DOCKER-USER -i {bridge} -o {bridge} -j ACCEPT; "
        f"iptables -I DOCKER-USER -i {bridge} -o UPLINK -j ACCEPT; "
        f"iptables -I DOCKER-USER -i UPLINK -o {bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT "
        "(UPLINK: the host's interface out, e.g. eth0; see docs/networking.md)"
    )


def element_commands(verb: str, bridges: list[str]) -> list[dict[str, Any]]:
    """`add` or `delete` the elements of these bridges in both sets."""
    where = {"family": FAMILY, "table": TABLE}
    return [
        {verb: {"element": {**where, "name": "bridges", "elem": list(bridges)}}},
        {verb: {"element": {**where, "name": "same", "elem": [{"concat": [b, b]} for b in bridges]}}},
    ]


def _bridges(nft: Any) -> list[str] | None:
    """The elements of the set `bridges`; None if the table does not exist."""
    elements = _elements(nft, "bridges")
    return None if elements is None else [e for e in elements if isinstance(e, str)]


def _elements(nft: Any, name: str) -> list[Any] | None:
    """The elements of one of our sets as JSON; None if it does not exist."""
    where = {"family": FAMILY, "table": TABLE, "name": name}
    rc, output, _error = nft.json_cmd({"nftables": [{"list": {"set": where}}]})
    if rc != 0:
        return None
    for item in output.get("nftables", []):
        if "set" in item:
            return list(item["set"].get("elem", []))
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


def adding(bridge: str, create: Callable[[], None], subnet: str = "", internal: bool = False) -> None:
    """Put `bridge` in the table (made if missing), then `create()` the device.

    Elements first: the device never exists without isolation. If
    `create` fails, the elements go again (and the table, if they were
    its last). With its `subnet`, the bridge also gets its way out (or,
    `internal`, has every way out dropped) and IPv4 forwarding is turned on."""
    nft = _nft()
    with _Lock():
        present = _bridges(nft)
        commands = table_commands() if present is None else []
        if present is None or _elements(nft, "outbound") is None:
            # A table made before the way out existed gets it now.
            commands += outbound_commands()
        if present is None or bridge not in present:
            commands += element_commands("add", [bridge])
        if subnet:
            commands += way_out_commands("add", bridge, subnet, internal)
            if not internal:
                enable_forwarding()
                if iptables_forward_drops(nft):
                    import sys

                    sys.stderr.write(f"WARNING: {forward_drop_warning(bridge)}\n")
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
        commands = element_commands("delete", gone) + _way_out_of(nft, gone)
        _run(nft, commands, f"remove {', '.join(gone)} from table {FAMILY} {TABLE}")


def _way_out_of(nft: Any, bridges: list[str]) -> list[dict[str, Any]]:
    """The commands that delete these bridges' elements of `outbound` and
    `internal` (keyed by the bridge, whatever its subnet was)."""
    where = {"family": FAMILY, "table": TABLE}
    commands: list[dict[str, Any]] = []
    outbound = [e for e in _elements(nft, "outbound") or [] if e["concat"][1] in bridges]
    if outbound:
        commands.append({"delete": {"element": {**where, "name": "outbound", "elem": outbound}}})
    internal = [e for e in _elements(nft, "internal") or [] if e in bridges]
    if internal:
        commands.append({"delete": {"element": {**where, "name": "internal", "elem": internal}}})
    return commands


def table(nft: Any = None) -> dict[str, Any] | None:
    """The table as nftables lists it (JSON), None if there is none: for
    `inspect`-like checks and the tests."""
    nft = nft or _nft()
    rc, output, _error = nft.json_cmd({"nftables": [{"list": {"table": {"family": FAMILY, "name": TABLE}}}]})
    return output if rc == 0 else None


# -- published ports -----------------------------------------------------------
#
# Kernel DNAT, in the same table, in chains and maps of their own:
#
# - maps `ports_any` (protocol . host port : address . port) for ports
#   published on every address of the host, and `ports_ip` (host address .
#   protocol . host port : address . port) for those published on one;
#   publishing a container adds elements, never rules;
# - `ports_dnat`, jumped to from `ports_prerouting` (traffic from outside
#   the host and from containers: the hairpin) and `ports_output` (the
#   host's own traffic to its own addresses, 127.0.0.1 included);
# - `ports_postrouting` masquerades a DNAT'd connection that goes back out
#   of the bridge it came in by (container to a published port on the
#   same bridge: the reply must come back through the host to be
#   un-NAT'd), one from the host's 127.0.0.0/8 (a container cannot
#   answer a loopback address), and a container's connection to its own
#   published port (set `ports_self`, "A . A" for each publisher): with
#   br_netfilter loaded such a packet is DNAT'd while it is bridged and
#   meets postrouting with no input device, and without a new source it
#   would reach the container from its own address;
# - 127.0.0.1 needs route_localnet on the bridge (the kernel otherwise
#   refuses a loopback source on a real device). That also makes the
#   bridge accept packets addressed to 127.0.0.0/8 from containers, so
#   `ports_guard` (before conntrack) drops every packet for 127.0.0.0/8
#   that did not come from lo: they are martians everywhere else anyway,
#   and it keeps a neighbour's packet for 127.0.0.1:PORT from being DNAT'd
#   to a port published on loopback only;
# - `ports_forward` lets from outside into our bridges only what was
#   DNAT'd (a published port) and replies: a published port exposes that
#   port, not the container's others to whoever routes to its subnet;
# - a rule at the head of `forward` lets a DNAT'd connection cross from
#   one of our bridges to another (a container reaching another network's
#   published port through the host's address, as on Docker).

PORT_MAPS = ("ports_any", "ports_ip")

# In nftables' own language, not its JSON: libnftables 1.0.6 (Debian 12)
# crashes parsing the JSON of a dnat whose address and port come from a
# map with concatenated keys. One script is still one transaction.
PORTS_SCRIPT = """
add map inet overlayctl ports_any { type inet_proto . inet_service : ipv4_addr . inet_service; }
add map inet overlayctl ports_ip { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
add set inet overlayctl ports_self { type ipv4_addr . ipv4_addr; }
add chain inet overlayctl ports_dnat
add chain inet overlayctl ports_prerouting { type nat hook prerouting priority -100; policy accept; }
add chain inet overlayctl ports_output { type nat hook output priority -100; policy accept; }
add chain inet overlayctl ports_postrouting { type nat hook postrouting priority 100; policy accept; }
add chain inet overlayctl ports_guard { type filter hook prerouting priority -300; policy accept; }
add chain inet overlayctl ports_forward { type filter hook forward priority 0; policy accept; }
add rule inet overlayctl ports_dnat dnat ip to ip daddr . meta l4proto . th dport map @ports_ip
add rule inet overlayctl ports_dnat fib daddr type local dnat ip to meta l4proto . th dport map @ports_any
add rule inet overlayctl ports_prerouting jump ports_dnat
add rule inet overlayctl ports_output jump ports_dnat
add rule inet overlayctl ports_postrouting ct status dnat iifname . oifname @same masquerade
add rule inet overlayctl ports_postrouting ct status dnat ip saddr 127.0.0.0/8 oifname @bridges masquerade
add rule inet overlayctl ports_postrouting ct status dnat ip saddr . ip daddr @ports_self masquerade
add rule inet overlayctl ports_guard iifname != "lo" ip daddr 127.0.0.0/8 drop
add rule inet overlayctl ports_forward oifname @bridges iifname != @bridges ct status dnat accept
add rule inet overlayctl ports_forward oifname @bridges iifname != @bridges ct state established,related accept
add rule inet overlayctl ports_forward oifname @bridges iifname != @bridges drop
insert rule inet overlayctl forward ct status dnat accept
"""


def _run_script(nft: Any, script: str, what: str) -> None:
    nft.set_json_output(False)
    try:
        rc, _output, error = nft.cmd(script)
    finally:
        nft.set_json_output(True)
    if rc != 0:
        reason = " ".join(str(error).split()) or f"error {rc}"
        raise FirewallError(f"nftables: cannot {what}: {reason}")


def _port_key(host_ip: str, protocol: str, host_port: int) -> tuple[str, dict[str, Any]]:
    """(map, key) of a published host port."""
    if host_ip:
        return "ports_ip", {"concat": [host_ip, protocol, host_port]}
    return "ports_any", {"concat": [protocol, host_port]}


def _port_elements(nft: Any) -> dict[str, list[Any]]:
    """The elements of both maps, as nftables lists them."""
    found: dict[str, list[Any]] = {name: [] for name in PORT_MAPS}
    for name in PORT_MAPS:
        rc, output, _error = nft.json_cmd(
            {"nftables": [{"list": {"map": {"family": FAMILY, "table": TABLE, "name": name}}}]}
        )
        if rc != 0:
            continue
        for item in output.get("nftables", []):
            if "map" in item:
                found[name] = list(item["map"].get("elem", []))
    return found


def publish_ports(ports: list[tuple[str, str, int, str, int]]) -> None:
    """DNAT each (host_ip, protocol, host_port) to (address, port).

    The common case is one batch of new elements. Only when it fails (no
    table or chains yet, or an element already there for one of these keys,
    left by a publisher that died: the caller holds the port's claim) are
    the table and chains made, the stale elements deleted, and the batch
    sent again."""
    nft = _nft()
    where = {"family": FAMILY, "table": TABLE}
    adds: list[dict[str, Any]] = []
    for host_ip, protocol, host_port, address, port in ports:
        name, key = _port_key(host_ip, protocol, host_port)
        adds.append({"add": {"element": {**where, "name": name, "elem": [[key, {"concat": [address, port]}]]}}})
    for address in sorted({port[3] for port in ports}):
        adds.append({"add": {"element": {**where, "name": "ports_self", "elem": [{"concat": [address, address]}]}}})
    with _Lock():
        if nft.json_cmd({"nftables": adds})[0] == 0:
            return
        if _bridges(nft) is None:
            _run(nft, table_commands(), f"make table {FAMILY} {TABLE}")
        if nft.json_cmd({"nftables": [{"list": {"chain": {**where, "name": "ports_dnat"}}}]})[0] != 0:
            _run_script(nft, PORTS_SCRIPT, "add the chains of published ports")
        present = _port_elements(nft)
        stale = []
        for host_ip, protocol, host_port, _address, _port in ports:
            name, key = _port_key(host_ip, protocol, host_port)
            if any(elem[0] == key for elem in present[name]):
                stale.append({"delete": {"element": {**where, "name": name, "elem": [key]}}})
        _run(nft, stale + adds, "publish ports")


def unpublish_ports(keys: list[tuple[str, str, int]]) -> None:
    """Remove the DNAT of each (host_ip, protocol, host_port) still in the
    maps (the caller holds, or held, the port's claim). No binding: no
    table can have been made, nothing to do."""
    try:
        nft = _nft()
    except FirewallError:
        return
    with _Lock():
        present = _port_elements(nft)
        commands = []
        for host_ip, protocol, host_port in keys:
            name, key = _port_key(host_ip, protocol, host_port)
            for elem in present[name]:
                if elem[0] == key:
                    commands.append(
                        {"delete": {"element": {"family": FAMILY, "table": TABLE, "name": name, "elem": [key]}}}
                    )
                    present[name].remove(elem)
                    break
        # A publisher's "A . A" goes with the last element that DNATs to A.
        targets = {elem[1]["concat"][0] for name in PORT_MAPS for elem in present[name]}
        for pair in _self_elements(nft):
            if pair["concat"][0] not in targets:
                commands.append(
                    {"delete": {"element": {"family": FAMILY, "table": TABLE, "name": "ports_self", "elem": [pair]}}}
                )
        if commands:
            _run(nft, commands, "remove published ports")


def _self_elements(nft: Any) -> list[Any]:
    rc, output, _error = nft.json_cmd(
        {"nftables": [{"list": {"set": {"family": FAMILY, "table": TABLE, "name": "ports_self"}}}]}
    )
    if rc != 0:
        return []
    for item in output.get("nftables", []):
        if "set" in item:
            return list(item["set"].get("elem", []))
    return []


def published_elements() -> dict[str, list[Any]]:
    """The elements of the ports' maps, for checks and the tests."""
    return _port_elements(_nft())

"""Published ports at start and at the end: host ports chosen and refused,
claimed host-wide, recorded, and DNAT'd in our nftables table.

    published = publish(store, container, address)   # in attach.prepare, after the lease
    on_bridge(bridge, veth)                           # once the veth is on the bridge (on_namespaces)
    release(store, container_id)                      # NetworkPlan.release, leases.release_stale

A host port is refused, with one line and nothing left behind, when

- a container of this store publishes it (the catalog's `ports` table);
- another store on the host publishes it: each published port is claimed
  by a file /run/overlayctl-ports/<proto>/<port>/<host ip> naming the
  publisher's network lock (<runroot>/containers/<id>/network.lock). The
  supervisor holds that lock for as long as the container lives, so a
  claim is alive exactly while its lock is held: no descriptor per port
  has to be handed to the supervisor, and a claim left by a killed
  supervisor is seen as stale and taken over;
- another program has bound it: a bind test on the host address and port,
  for that protocol.

0.0.0.0 (every address) overlaps every single address on the same port.
Everything is decided under one host-wide flock, so two starts, in two
stores, cannot both win one port.
"""

from __future__ import annotations

import os

from overlayctl.errors import ConflictError, KernelError
from overlayctl.network import firewall, portspec
from overlayctl.network.lockfile import lock_held
from overlayctl.store.networks import PublishedPort

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from overlayctl.store import Store
    from overlayctl.store.containers import Container

CLAIM_DIR = "/run/overlayctl-ports"
LOCK_PATH = "/run/overlayctl-ports.lock"
_ANY = "0.0.0.0"


class _HostLock:
    """The host-wide flock every choice and release of ports is made under."""

    def __enter__(self) -> _HostLock:
        import fcntl

        self.fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def ephemeral_range() -> tuple[int, int]:
    """The host's ephemeral port range, where -P and "any free port" pick
    from, as Docker does (net.ipv4.ip_local_port_range)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def claim_path(protocol: str, host_ip: str, port: int) -> str:
    """The host-wide claim file of a published port."""
    return os.path.join(CLAIM_DIR, protocol, str(port), host_ip or _ANY)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _claimed_elsewhere(protocol: str, host_ip: str, port: int, owner: str) -> bool:
    """Whether a living publisher other than `owner` claims this port on an
    overlapping address. Stale claims met on the way are removed."""
    directory = os.path.dirname(claim_path(protocol, host_ip, port))
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return False
    for entry in entries:
        if host_ip and entry not in (host_ip, _ANY):
            continue
        path = os.path.join(directory, entry)
        holder = _read(path)
        if holder == owner:
            continue  # our own, from an earlier start: taken over below
        if holder and lock_held(holder):
            return True
        _remove_claim(path)
    return False


def _remove_claim(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    for directory in (os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
        try:
            os.rmdir(directory)
        except OSError:
            break


def _bind_error(protocol: str, host_ip: str, port: int) -> str | None:
    """Why another program keeps us from this port (a bind test), or None."""
    # The C module: `socket` itself imports enum and selectors (~2 ms of a start).
    import _socket as socket
    import errno

    kind, number = {
        "tcp": (socket.SOCK_STREAM, socket.IPPROTO_TCP),
        "udp": (socket.SOCK_DGRAM, socket.IPPROTO_UDP),
        "sctp": (socket.SOCK_STREAM, 132),  # IPPROTO_SCTP
    }[protocol]
    try:
        sock = socket.socket(socket.AF_INET, kind, number)
    except OSError:
        return None  # no SCTP in this kernel: nothing can hold the port either
    try:
        if protocol != "udp":
            # A TCP port in TIME_WAIT is free to publish; a listening one is not.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host_ip or _ANY, port))
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc)).lower()
        return reason
    finally:
        sock.close()
    return None


def _overlaps(a: str, b: str) -> bool:
    return not a or not b or a == b


def publish(store: Store, container: Container, address: str) -> list[PublishedPort]:
    """Choose, claim and record the host ports of a start; [] when the
    container publishes nothing. Raises ConflictError (one line) for a port
    that is taken; then nothing is left of this call.

    The DNAT itself (`dnat_rules`, then firewall.publish_ports) comes later,
    from the supervisor's on_namespaces, so that a `run`'s plugger can load
    nftables and send the batch while the container is being prepared. The
    claims already make the ports this container's; what another
    publisher left in the maps is replaced then (publish_ports)."""
    config = container.config
    bindings = portspec.wanted_bindings(
        config.host.port_bindings, config.config.exposed_ports, config.host.publish_all_ports
    )
    if not bindings:
        return []
    owner = store.paths.network_lock(container.id)
    with _HostLock():
        ports = store.ports.publish(
            container.id, lambda holder: _choose(store, container, address, bindings, owner, holder)
        )
        try:
            for p in ports:
                path = claim_path(p.protocol, p.host_ip, p.host_port)
                os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
                with open(path, "w") as f:
                    f.write(owner + "\n")
        except BaseException:
            _release_locked(store, container.id, owner)
            raise
    return ports


def dnat_rules(ports: list[PublishedPort], address: str) -> list[list[Any]]:
    """What firewall.publish_ports takes for these ports, as plain data:
    [host_ip, protocol, host_port, address, container_port] each."""
    return [[p.host_ip, p.protocol, p.host_port, address, p.container_port] for p in ports]


def _choose(
    store: Store,
    container: Container,
    address: str,
    bindings: list[portspec.Binding],
    owner: str,
    holder: Callable[[str, str, int], str | None],
) -> list[PublishedPort]:
    chosen: list[PublishedPort] = []
    ephemeral = ephemeral_range()
    for b in bindings:
        low, high = (b.host_low, b.host_high) if b.host_low else ephemeral
        why = ""
        for port in range(low, high + 1):
            why = _why_taken(store, b, port, address, owner, holder, chosen)
            if not why:
                chosen.append(PublishedPort(container.id, b.protocol, b.host_ip, port, b.container_port))
                break
            if low == high:
                raise ConflictError(why)
        else:
            where = f"{b.host_ip or _ANY}:{low}-{high}"
            raise ConflictError(
                f"no free host port in {where} for {b.key}: all are published or bound ({why}); "
                "choose another range"
            )
    return chosen


def _why_taken(
    store: Store,
    b: portspec.Binding,
    port: int,
    address: str,
    owner: str,
    holder: Callable[[str, str, int], str | None],
    chosen: list[PublishedPort],
) -> str:
    where = f"{b.host_ip or _ANY}:{port}"
    allocated = f"Bind for {where} failed: port is already allocated"
    for p in chosen:
        if p.protocol == b.protocol and p.host_port == port and _overlaps(p.host_ip, b.host_ip):
            return f"{allocated} (twice by this container)"
    other = holder(b.protocol, b.host_ip, port)
    if other is not None:
        return f"{allocated} (by container {_name_of(store, other)})"
    if _claimed_elsewhere(b.protocol, b.host_ip, port, owner):
        return f"{allocated} (by a container of another overlayctl store)"
    reason = _bind_error(b.protocol, b.host_ip, port)
    if reason:
        return f"failed to bind host port for {where}:{address}:{b.key}: {reason}"
    return ""


def _name_of(store: Store, container_id: str) -> str:
    from overlayctl.errors import NotFoundError

    try:
        return f'"{store.containers.get(container_id).name}"'
    except NotFoundError:
        return container_id[:12]


def release(store: Store, container_id: str) -> None:
    """Unpublish a container's ports: DNAT elements, claims, rows. Elements
    and claims another publisher took over meanwhile stay. Idempotent."""
    if not store.ports.list(container_id):
        return
    with _HostLock():
        _release_locked(store, container_id, store.paths.network_lock(container_id))


def _release_locked(store: Store, container_id: str, owner: str) -> None:
    ports = store.ports.list(container_id)
    mine = []
    for p in ports:
        path = claim_path(p.protocol, p.host_ip, p.host_port)
        holder = _read(path)
        if holder in (owner, None):
            mine.append((p.host_ip, p.protocol, p.host_port))
            if holder is not None:
                _remove_claim(path)
    if mine:
        firewall.unpublish_ports(mine)
    store.ports.release(container_id)


def on_bridge(bridge: str, veth: str) -> None:
    """Once the container is on its bridge (in the supervisor):

    - route_localnet on the bridge: the host's own connections to a port
      published on 127.0.0.1 (or on every address) leave with a loopback
      source, which the kernel refuses on a real device without it (the
      table's `ports_guard` drops what this would otherwise let in);
    - hairpin mode on the container's bridge port: with br_netfilter
      loaded (Docker loads it), a container's connection to its own
      published port is DNAT'd while it is being bridged and must go back
      out of the port it came in by, which a bridge refuses otherwise."""
    for path, what in (
        (f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet", f"net.ipv4.conf.{bridge}.route_localnet"),
        (f"/sys/class/net/{veth}/brport/hairpin_mode", f"hairpin mode of {veth}"),
    ):
        try:
            with open(path, "w") as f:
                f.write("1")
        except OSError as exc:
            raise KernelError(f"cannot set {what}: {exc.strerror}") from None


def network_settings_ports(store: Store, container: Container) -> dict[str, Any]:
    """NetworkSettings.Ports of a running container: each exposed port with
    its host bindings, null when it is exposed but not published."""
    out: dict[str, Any] = {key: None for key in container.config.config.exposed_ports or {}}
    for p in store.ports.list(container.id):
        key = f"{p.container_port}/{p.protocol}"
        if out.get(key) is None:
            out[key] = []
        out[key].append({"HostIp": p.host_ip or _ANY, "HostPort": str(p.host_port)})
    return dict(sorted(out.items(), key=lambda item: portspec.split_key(item[0])))

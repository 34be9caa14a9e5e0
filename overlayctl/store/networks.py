"""Networks and address leases: the catalog side.

A network row describes a bridge (its device, subnet and gateway); a lease
row says which container holds which address on it. Addresses are chosen
inside one write transaction, so two containers starting at once never get
the same one. Whether a lease is still held is not stored here: the runtime
decides that (overlayctl.network.attach) and calls `release`.

No devices, no namespaces: this module only reads and writes rows.
"""

from __future__ import annotations

from overlayctl.errors import ConflictError, InvalidArgumentError, NotFoundError
from overlayctl.store import events
from overlayctl.store.catalog import transaction
from overlayctl.util import jsonio

TYPE_CHECKING = False
if TYPE_CHECKING:
    import builtins
    import sqlite3
    from collections.abc import Callable, Iterable
    from typing import Any

    from overlayctl.paths import Paths


class Network:
    """A network as the catalog knows it."""

    __slots__ = ("name", "id", "driver", "bridge", "subnet", "gateway", "created", "options")

    def __init__(
        self,
        name: str,
        id: str,
        driver: str,
        bridge: str,
        subnet: str,
        gateway: str,
        created: str,
        options: dict[str, Any],
    ) -> None:
        self.name = name
        self.id = id
        self.driver = driver
        self.bridge = bridge  # the host's bridge device
        self.subnet = subnet  # "10.77.0.0/16"
        self.gateway = gateway  # the bridge's own address
        self.created = created
        self.options = options

    def __repr__(self) -> str:
        return f"Network({self.name!r}, {self.bridge}, {self.subnet})"

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def prefixlen(self) -> int:
        return int(self.subnet.partition("/")[2])

    @property
    def subnet6(self) -> str:
        """The IPv6 subnet of a network made with --ipv6; "" otherwise."""
        return str(self.options.get("ipv6_subnet") or "")

    @property
    def gateway6(self) -> str:
        """The bridge's IPv6 address: the gateway's host number in subnet6."""
        return str(self.options.get("ipv6_gateway") or "")

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Network:
        return cls(
            row["name"],
            row["id"],
            row["driver"],
            row["bridge"],
            row["subnet"],
            row["gateway"],
            row["created"],
            jsonio.loads(row["options"] or "{}"),
        )


class Lease:
    """One address of one network, held by one container, with the extra
    names (network aliases) it answers to there."""

    __slots__ = ("network", "address", "container", "mac", "aliases")

    def __init__(
        self, network: str, address: str, container: str, mac: str, aliases: builtins.list[str] | None = None
    ) -> None:
        self.network = network
        self.address = address
        self.container = container
        self.mac = mac
        self.aliases = list(aliases or [])

    def __repr__(self) -> str:
        return f"Lease({self.network}: {self.address} -> {self.container[:12]})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lease) and (self.network, self.address, self.container, self.mac, self.aliases) == (
            other.network,
            other.address,
            other.container,
            other.mac,
            other.aliases,
        )

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Lease:
        return cls(row["network"], row["address"], row["container"], row["mac"], jsonio.loads(row["aliases"] or "[]"))


class NetworkStore:
    """Create, find and remove networks; lease and release addresses."""

    def __init__(self, conn: sqlite3.Connection, paths: Paths | None = None) -> None:
        self.conn = conn
        self.paths = paths  # where events go (none: not recorded)

    def _record(self, action: str, network: Network | str, container_id: str | None = None) -> None:
        """Append a network event (store.events): Actor.ID is the network's
        ID; Attributes its labels, name and type (and the container's ID for
        connect and disconnect), as Docker's."""
        if self.paths is None:
            return
        if isinstance(network, str):
            found = self.find(network)
            if found is None:
                return
            network = found
        labels = network.options.get("Labels") if isinstance(network.options, dict) else None
        attributes = dict(labels) if isinstance(labels, dict) else {}
        if container_id is not None:
            attributes["container"] = container_id
        attributes["name"] = network.name
        attributes["type"] = network.driver
        events.record(self.paths, "network", action, network.id, attributes)

    # Networks

    def find(self, text: str) -> Network | None:
        """A network by name, full ID or unique ID prefix; None if there is none."""
        row = self.conn.execute("SELECT * FROM networks WHERE name = ? OR id = ?", (text, text)).fetchone()
        if row is None and text and len(text) <= 64 and text.isalnum():
            rows = self.conn.execute(
                "SELECT * FROM networks WHERE id >= ? AND id < ? LIMIT 2", (text, text + "g")
            ).fetchall()
            if len(rows) > 1:
                raise InvalidArgumentError(f'network ID prefix "{text}" is ambiguous; give more characters')
            row = rows[0] if rows else None
        return Network.from_row(row) if row is not None else None

    def get(self, text: str) -> Network:
        network = self.find(text)
        if network is None:
            raise NotFoundError(f'network "{text}" not found; see "overlayctl network ls"')
        return network

    def list(self) -> builtins.list[Network]:
        rows = self.conn.execute("SELECT * FROM networks ORDER BY name").fetchall()
        return [Network.from_row(row) for row in rows]

    def add(self, network: Network, overlaps: Callable[[Iterable[Network]], str | None] | None = None) -> None:
        """Record a network. `overlaps(others)` returns why the new subnet
        clashes with one of the networks already recorded (or None); it is
        asked inside the write transaction, so two creates cannot both pass."""
        with transaction(self.conn):
            if self.conn.execute("SELECT 1 FROM networks WHERE name = ?", (network.name,)).fetchone():
                raise ConflictError(f'network with name "{network.name}" already exists')
            others = [Network.from_row(row) for row in self.conn.execute("SELECT * FROM networks")]
            for other in others:
                if other.bridge == network.bridge:
                    raise ConflictError(
                        f'bridge device "{network.bridge}" is already used by network "{other.name}"'
                    )
            if overlaps is not None:
                why = overlaps(others)
                if why:
                    raise InvalidArgumentError(why)
            self.conn.execute(
                "INSERT INTO networks (name, id, driver, bridge, subnet, gateway, created, options) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    network.name,
                    network.id,
                    network.driver,
                    network.bridge,
                    network.subnet,
                    network.gateway,
                    network.created,
                    jsonio.dumps(network.options),
                ),
            )
        self._record("create", network)

    def readdress(self, name: str, bridge: str, subnet: str, gateway: str) -> None:
        """Give a network with no leases a new device, subnet and gateway."""
        with transaction(self.conn):
            if self.conn.execute("SELECT 1 FROM leases WHERE network = ?", (name,)).fetchone():
                raise ConflictError(
                    f'network "{name}" has running containers; stop them before changing its subnet'
                )
            self.conn.execute(
                "UPDATE networks SET bridge = ?, subnet = ?, gateway = ? WHERE name = ?",
                (bridge, subnet, gateway, name),
            )

    def remove(self, name: str) -> None:
        """Delete a network's row; refused while any container holds a lease on it."""
        network = self.find(name) if self.paths is not None else None
        with transaction(self.conn):
            row = self.conn.execute("SELECT container FROM leases WHERE network = ? LIMIT 1", (name,)).fetchone()
            if row is not None:
                raise ConflictError(
                    f'network "{name}" is in use by container {self._container_name(row["container"])}; '
                    "stop or remove it first"
                )
            if self.conn.execute("DELETE FROM networks WHERE name = ?", (name,)).rowcount == 0:
                raise NotFoundError(f'network "{name}" not found; see "overlayctl network ls"')
        if network is not None:
            self._record("destroy", network)

    def _container_name(self, container_id: str) -> str:
        row = self.conn.execute("SELECT name FROM containers WHERE id = ?", (container_id,)).fetchone()
        return f'"{row["name"]}"' if row is not None else container_id[:12]

    # Leases

    def lease(
        self,
        network: Network,
        container_id: str,
        choose: Callable[[set[str]], str],
        mac_of: Callable[[str], str],
        aliases: builtins.list[str] | None = None,
    ) -> Lease:
        """Lease an address on `network` for a container.

        `choose(taken)` returns the address to lease given the addresses
        already leased (it raises if the one asked for is taken, or if the
        subnet is full). A lease the container still had on this network
        is dropped first: a container that is starting holds nothing from
        an earlier run. Its leases on other networks stay (a container may
        be on several).
        """
        with transaction(self.conn):
            self.conn.execute(
                "DELETE FROM leases WHERE container = ? AND network = ?", (container_id, network.name)
            )
            taken = {
                row["address"]
                for row in self.conn.execute("SELECT address FROM leases WHERE network = ?", (network.name,))
            }
            address = choose(taken)
            mac = mac_of(address)
            self.conn.execute(
                "INSERT INTO leases (network, address, container, mac, aliases) VALUES (?, ?, ?, ?, ?)",
                (network.name, address, container_id, mac, jsonio.dumps(list(aliases or []))),
            )
        self._record("connect", network, container_id)
        return Lease(network.name, address, container_id, mac, aliases)

    def leases(self, network: str | None = None, container_id: str | None = None) -> builtins.list[Lease]:
        query, args = "SELECT * FROM leases", []
        conditions = []
        if network is not None:
            conditions.append("network = ?")
            args.append(network)
        if container_id is not None:
            conditions.append("container = ?")
            args.append(container_id)
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        rows = self.conn.execute(query + " ORDER BY network, address", args).fetchall()
        return [Lease.from_row(row) for row in rows]

    def release(self, container_id: str, network: str | None = None) -> builtins.list[Lease]:
        """Free every lease of a container, or only its lease on `network`;
        returns what was freed."""
        where, args = "container = ?", [container_id]
        if network is not None:
            where, args = where + " AND network = ?", args + [network]
        with transaction(self.conn):
            rows = self.conn.execute(f"SELECT * FROM leases WHERE {where}", args).fetchall()
            self.conn.execute(f"DELETE FROM leases WHERE {where}", args)
        freed = [Lease.from_row(row) for row in rows]
        for lease in freed:
            self._record("disconnect", lease.network, container_id)
        return freed

    # Names (the per-network DNS responder reads these)

    def names(self, network: str) -> builtins.list[tuple[str, str, str, builtins.list[str], str]]:
        """(address, container ID, container name, aliases, config JSON) of
        every lease on `network`: what its DNS responder answers for."""
        rows = self.conn.execute(
            "SELECT l.address, l.container, l.aliases, c.name, c.config FROM leases l "
            "LEFT JOIN containers c ON c.id = l.container WHERE l.network = ? ORDER BY l.address",
            (network,),
        ).fetchall()
        return [(row[0], row[1], row[3] or "", jsonio.loads(row[2] or "[]"), row[4] or "{}") for row in rows]

    def gateways(self) -> set[str]:
        """Every network's gateway address (a responder never forwards to one:
        that would be itself or another responder, a loop)."""
        return {row[0] for row in self.conn.execute("SELECT gateway FROM networks")}

    def data_version(self) -> int:
        """SQLite's data_version: it changes when another connection commits,
        so a long-lived reader knows, in microseconds, when to read again."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

# Published ports ---------------------------------------------------------------


class PublishedPort:
    """One host port a running container publishes (a row of `ports`)."""

    __slots__ = ("container", "protocol", "host_ip", "host_port", "container_port")

    def __init__(self, container: str, protocol: str, host_ip: str, host_port: int, container_port: int) -> None:
        self.container = container
        self.protocol = protocol  # tcp, udp or sctp
        self.host_ip = host_ip  # "" for every address of the host
        self.host_port = host_port
        self.container_port = container_port

    def __repr__(self) -> str:
        return f"PublishedPort({self.host_ip or '0.0.0.0'}:{self.host_port}->{self.container_port}/{self.protocol})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublishedPort) and all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> PublishedPort:
        return cls(row["container"], row["protocol"], row["host_ip"], row["host_port"], row["container_port"])


class PortStore:
    """The `ports` table: which container publishes which host port."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def publish(
        self, container_id: str, choose: Callable[[Callable[[str, str, int], str | None]], builtins.list[PublishedPort]]
    ) -> builtins.list[PublishedPort]:
        """Record a container's published ports, in one write transaction.

        `choose(holder)` returns the ports to record; `holder(protocol,
        host_ip, port)` names the container of this store that already
        publishes that port on that address (or on every address, or, for
        every address, on any one), None if it is free. Rows the container
        had from an earlier start are dropped first."""
        with transaction(self.conn):
            self.conn.execute("DELETE FROM ports WHERE container = ?", (container_id,))

            def holder(protocol: str, host_ip: str, port: int) -> str | None:
                query = "SELECT container FROM ports WHERE protocol = ? AND host_port = ?"
                args: builtins.list[Any] = [protocol, port]
                if host_ip:
                    query += " AND host_ip IN ('', ?)"
                    args.append(host_ip)
                row = self.conn.execute(query + " LIMIT 1", args).fetchone()
                return row["container"] if row is not None else None

            ports = choose(holder)
            self.conn.executemany(
                "INSERT INTO ports (container, protocol, host_ip, host_port, container_port) VALUES (?, ?, ?, ?, ?)",
                [(p.container, p.protocol, p.host_ip, p.host_port, p.container_port) for p in ports],
            )
        return ports

    def list(self, container_id: str | None = None) -> builtins.list[PublishedPort]:
        """Published ports (of one container), by container port and protocol."""
        query, args = "SELECT * FROM ports", []
        if container_id is not None:
            query, args = query + " WHERE container = ?", [container_id]
        rows = self.conn.execute(query + " ORDER BY container, container_port, protocol, host_ip, host_port", args)
        return [PublishedPort.from_row(row) for row in rows.fetchall()]

    def containers(self) -> set[str]:
        """The containers that have published ports."""
        return {row["container"] for row in self.conn.execute("SELECT DISTINCT container FROM ports")}

    def release(self, container_id: str) -> builtins.list[PublishedPort]:
        """Forget every published port of a container; returns what was forgotten."""
        with transaction(self.conn):
            rows = self.conn.execute("SELECT * FROM ports WHERE container = ?", (container_id,)).fetchall()
            self.conn.execute("DELETE FROM ports WHERE container = ?", (container_id,))
        return [PublishedPort.from_row(row) for row in rows]

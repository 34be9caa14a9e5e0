"""The host's network devices through rtnetlink: the only user of pyroute2.

Every operation is one netlink request answered by one acknowledgement, as
`ip link`/`ip addr`/`ip route` send them: pyroute2's message classes encode
the requests (nested attributes included) and this module sends them over
a plain NETLINK_ROUTE socket. A socket belongs to the network namespace it
was created in, whatever the thread does afterwards, so one socket made
inside a container's namespace configures that namespace from the host.

Why not pyroute2's IPRoute: importing the `pyroute2` package runs an
`__init__` that loads every netlink family it supports (asyncio,
multiprocessing, conntrack, nftables, ...), about 200 ms, and IPRoute adds
an event loop. The message classes alone cost about 30 ms, and they are all
a container start needs. `_rtnl()` registers the package without running its
`__init__`; the `__init__` still runs, in full, the first time anything asks
the package for a name only it defines, so other users of pyroute2 in the
same process see the whole library. If that lean import fails (a pyroute2
whose layout differs), the whole library is imported instead.
"""

from __future__ import annotations

import os
import sys

from overlayctl.errors import KernelError
from overlayctl.runtime.netdev import ipv6_off, ipv6_on, link_exists

_NLMSG_ERROR = 2
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_EXCL, _NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
_RTM_NEWLINK, _RTM_DELLINK, _RTM_GETLINK, _RTM_NEWADDR, _RTM_NEWROUTE = 16, 17, 18, 20, 24
_IFF_UP = 0x1
_AF_INET, _AF_INET6 = 2, 10
_IFA_F_NODAD = 0x02
_RT_TABLE_MAIN, _RTPROT_BOOT, _RT_SCOPE_UNIVERSE, _RTN_UNICAST = 254, 3, 0, 1
_CLONE_NEWNET = 0x40000000


class NetlinkError(KernelError):
    """A netlink request the kernel refused; `errno` says why."""

    def __init__(self, message: str, errno: int) -> None:
        super().__init__(message)
        self.errno = errno


# -- loading pyroute2's message classes -----------------------------------


class _Rtnl:
    """The three message classes and nothing else."""

    def __init__(self, ifinfmsg: type, ifaddrmsg: type, rtmsg: type) -> None:
        self.ifinfmsg = ifinfmsg
        self.ifaddrmsg = ifaddrmsg
        self.rtmsg = rtmsg


_loaded: _Rtnl | None = None


def _rtnl() -> _Rtnl:
    global _loaded
    if _loaded is None:
        try:
            _register_without_init()
            _loaded = _import_messages()
        except ImportError:
            # The named fallback: forget the partial import, take the whole library.
            for name in [n for n in sys.modules if n == "pyroute2" or n.startswith("pyroute2.")]:
                del sys.modules[name]
            import pyroute2  # noqa: F401

            _loaded = _import_messages()
    return _loaded


def load_messages() -> None:
    """Import pyroute2's message classes now (network.plugger does, ahead
    of the request that needs them)."""
    _rtnl()


def _import_messages() -> _Rtnl:
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    return _Rtnl(ifinfmsg, ifaddrmsg, rtmsg)


def _register_without_init() -> None:
    if "pyroute2" in sys.modules:
        return
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec("pyroute2")
    if spec is None or not spec.submodule_search_locations or spec.loader is None:
        raise ImportError("pyroute2 is not installed; install it with: pip install pyroute2")
    package = _PackageWithDeferredInit("pyroute2")
    package.__spec__ = spec
    package.__loader__ = spec.loader
    package.__file__ = spec.origin
    package.__path__ = list(spec.submodule_search_locations)
    package.__package__ = "pyroute2"
    sys.modules["pyroute2"] = package


class _PackageWithDeferredInit(type(sys)):  # type: ignore[misc]  # types.ModuleType, without importing types
    """A package whose `__init__` runs when a name it defines is first asked for."""

    def __getattr__(self, name: str) -> object:
        state = self.__dict__
        # Dunders and submodules are the import system's business: saying
        # "no such attribute" makes it import the submodule.
        if name.startswith("__") or state.get("_init_ran") or self._is_submodule(name):
            raise AttributeError(name)
        state["_init_ran"] = True
        state["__spec__"].loader.exec_module(self)
        try:
            return state[name]
        except KeyError:
            raise AttributeError(f"module 'pyroute2' has no attribute {name!r}") from None

    def _is_submodule(self, name: str) -> bool:
        return any(
            os.path.exists(os.path.join(path, name + ".py")) or os.path.isdir(os.path.join(path, name))
            for path in self.__dict__["__path__"]
        )


# -- the socket --------------------------------------------------------------


class Rtnl:
    """A NETLINK_ROUTE socket in the caller's network namespace, or in the
    one of `netns_fd` (an open /proc/PID/ns/net)."""

    def __init__(self, netns_fd: int | None = None) -> None:
        import socket

        self.msg = _rtnl()
        self._seq = 0
        if netns_fd is None:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        else:
            self.sock = _socket_in(netns_fd)
        self.sock.bind((0, 0))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, msg, msg_type: int, flags: int, what: str) -> bytes:  # type: ignore[no-untyped-def]
        """Send one request, wait for its answer; raise NetlinkError naming `what`.

        Returns the answer when it is data (a GET), b"" for a plain ack."""
        import struct

        self._seq += 1
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = flags | _NLM_F_REQUEST
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        self.sock.send(msg.data)
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
                if length < 16:
                    break
                if seq == self._seq:
                    if kind != _NLMSG_ERROR:
                        return data[offset : offset + length]
                    (error,) = struct.unpack_from("=i", data, offset + 16)
                    if error:
                        raise NetlinkError(f"{what}: {os.strerror(-error)}", -error)
                    return b""
                offset += (length + 3) & ~3

    def index(self, name: str) -> int | None:
        """The ifindex of a device by name, None if there is none."""
        import struct

        answer = self._get_link(name)
        # struct ifinfomsg after the 16-byte header: family, pad, type, index.
        return struct.unpack_from("=i", answer, 20)[0] if answer else None

    def link(self, name: str) -> tuple[int, str] | None:
        """A device's ifindex and IFLA_INFO_KIND ("bridge", "veth"; "" for a
        physical one), None if there is no such device."""
        answer = self._get_link(name)
        if not answer:
            return None
        msg = self.msg.ifinfmsg(answer)
        msg.decode()
        return msg["index"], msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or ""

    def _get_link(self, name: str) -> bytes:
        msg = self.msg.ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name)]
        try:
            return self.request(msg, _RTM_GETLINK, 0, f"look up {name}")
        except NetlinkError as exc:
            if exc.errno == 19:  # ENODEV
                return b""
            raise

    def set_up(self, index: int, name: str) -> None:
        msg = self.msg.ifinfmsg()
        msg["index"] = index
        msg["flags"] = _IFF_UP
        msg["change"] = _IFF_UP
        self.request(msg, _RTM_NEWLINK, _NLM_F_ACK, f"set {name} up")

    def add_bridge(self, name: str, mac: str) -> None:
        msg = self.msg.ifinfmsg()
        msg["attrs"] = [
            ("IFLA_IFNAME", name),
            # A fixed address: a bridge otherwise takes the lowest address
            # of its ports and changes it as containers come and go, and
            # every neighbour's ARP entry for the gateway goes stale.
            ("IFLA_ADDRESS", mac),
            ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge")]}),
        ]
        self.request(msg, _RTM_NEWLINK, _NLM_F_ACK | _NLM_F_CREATE | _NLM_F_EXCL, f"create bridge {name}")

    def add_veth(self, name: str, master: int, peer: str, peer_netns_fd: int, peer_mac: str) -> None:
        """A veth pair: `name` here on bridge `master`, `peer` created
        directly in another namespace (no rename, no window where it is on
        the host)."""
        msg = self.msg.ifinfmsg()
        peer_attrs = [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", peer_netns_fd), ("IFLA_ADDRESS", peer_mac)]
        msg["attrs"] = [
            ("IFLA_IFNAME", name),
            ("IFLA_MASTER", master),
            (
                "IFLA_LINKINFO",
                {
                    "attrs": [
                        ("IFLA_INFO_KIND", "veth"),
                        ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]}),
                    ]
                },
            ),
        ]
        self.request(msg, _RTM_NEWLINK, _NLM_F_ACK | _NLM_F_CREATE | _NLM_F_EXCL, f"create veth pair {name}")

    def add_address(self, index: int, name: str, address: str, prefixlen: int, broadcast: str | None) -> None:
        """An IPv4 address (with its broadcast), or an IPv6 one (broadcast
        None), the latter without duplicate address detection: the address
        is ours by lease, and DAD would hold it unusable for a second or two."""
        msg = self.msg.ifaddrmsg()
        msg["prefixlen"] = prefixlen
        msg["index"] = index
        if broadcast is None:
            msg["family"] = _AF_INET6
            msg["flags"] = _IFA_F_NODAD
            msg["attrs"] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
        else:
            msg["family"] = _AF_INET
            msg["attrs"] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address), ("IFA_BROADCAST", broadcast)]
        self.request(
            msg, _RTM_NEWADDR, _NLM_F_ACK | _NLM_F_CREATE | _NLM_F_EXCL, f"add {address}/{prefixlen} to {name}"
        )

    def add_default_route(self, index: int, gateway: str) -> None:
        msg = self.msg.rtmsg()
        msg["family"] = _AF_INET6 if ":" in gateway else _AF_INET
        msg["table"] = _RT_TABLE_MAIN
        msg["proto"] = _RTPROT_BOOT
        msg["scope"] = _RT_SCOPE_UNIVERSE
        msg["type"] = _RTN_UNICAST
        msg["attrs"] = [("RTA_GATEWAY", gateway), ("RTA_OIF", index)]
        self.request(msg, _RTM_NEWROUTE, _NLM_F_ACK | _NLM_F_CREATE | _NLM_F_EXCL, f"add default route via {gateway}")

    def delete(self, index: int, name: str) -> None:
        msg = self.msg.ifinfmsg()
        msg["index"] = index
        self.request(msg, _RTM_DELLINK, _NLM_F_ACK, f"delete {name}")


def _socket_in(netns_fd: int):  # type: ignore[no-untyped-def]
    """A netlink socket created inside another network namespace (it
    stays there whatever the thread does afterwards)."""
    import socket

    return _in_namespace(netns_fd, socket.socket, socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)


def _in_namespace(netns_fd: int, call, *args):  # type: ignore[no-untyped-def]
    """`call(*args)` with this thread in another network namespace (a
    socket is made in the namespace of its maker, a sysctl under
    /proc/sys/net is its opener's), then back: setns(CLONE_NEWNET) moves
    only the calling thread."""
    from overlayctl.runtime import syscalls as sc

    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.setns(netns_fd, _CLONE_NEWNET)
        try:
            return call(*args)
        finally:
            sc.setns(own, _CLONE_NEWNET)
    finally:
        os.close(own)


# -- what the rest of overlayctl asks for -----------------------------------


def ensure_bridge(
    rtnl: Rtnl, name: str, gateway: str, prefixlen: int, broadcast: str, mac: str, internal: bool = False
) -> int:
    """The bridge device with its gateway address, up; made if missing (with
    its way out, or none if `internal`: see firewall).

    Two containers may start at once: "exists" is success. A device of that
    name that is not a bridge is never touched."""
    found = rtnl.link(name)
    if found is not None and found[1] != "bridge":
        raise KernelError(
            f'device "{name}" exists and is not a bridge ({found[1] or "a physical device"}); '
            "give the network another device (OVERLAYCTL_BRIDGE_NAME for the default bridge)"
        )
    index = found[0] if found is not None else None
    if index is None:
        from overlayctl.network import firewall

        def create() -> None:
            try:
                rtnl.add_bridge(name, mac)
            except NetlinkError as exc:
                if exc.errno != 17:  # EEXIST: made meanwhile by another start, which did the rest
                    raise
                return
            ipv6_off(name)

        # Only a bridge made here pays for nftables: a start that finds its
        # bridge costs nothing more.
        import ipaddress

        subnet = str(ipaddress.IPv4Interface(f"{gateway}/{prefixlen}").network)
        firewall.adding(name, create, subnet, internal)
        index = rtnl.index(name)
        if index is None:
            raise KernelError(f"bridge {name} vanished right after it was created; try again")
    try:
        rtnl.add_address(index, name, gateway, prefixlen, broadcast)
    except NetlinkError as exc:
        if exc.errno != 17:
            raise
    rtnl.set_up(index, name)
    return index


def attach_container(
    rtnl: Rtnl,
    pid: int,
    bridge_index: int,
    host_name: str,
    address: str,
    prefixlen: int,
    broadcast: str,
    gateway: str | None,
    mac: str,
    interface: str = "eth0",
    ipv6: tuple[str, int, str | None] | None = None,
) -> None:
    """Give the network namespace of `pid` an `interface` on the bridge:
    address, up, and with a `gateway` the default route through it. On an
    IPv6 network, `ipv6` is (address, prefix length, gateway or None), and
    the interface is the only one inside with IPv6 turned on."""
    netns_fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    # The descriptor keeps the namespace alive: it must not outlive this call.
    try:
        try:
            rtnl.add_veth(host_name, bridge_index, interface, netns_fd, mac)
        except NetlinkError as exc:
            if exc.errno != 17:
                raise
            # Left over from an earlier start of the same container.
            _delete_if_present(rtnl, host_name, "veth")
            rtnl.add_veth(host_name, bridge_index, interface, netns_fd, mac)
        host_index = rtnl.index(host_name)
        if host_index is None:
            raise KernelError(f"veth {host_name} vanished right after it was created; try again")
        ipv6_off(host_name)
        rtnl.set_up(host_index, host_name)
        with Rtnl(netns_fd) as inside:
            index = inside.index(interface)
            if index is None:
                raise KernelError(f"{interface} did not appear in the container's network namespace")
            inside.add_address(index, interface, address, prefixlen, broadcast)
            if ipv6 is not None:
                _in_namespace(netns_fd, ipv6_on, interface)
                inside.add_address(index, interface, ipv6[0], ipv6[1], None)
            inside.set_up(index, interface)
            if gateway is not None:
                inside.add_default_route(index, gateway)
            if ipv6 is not None and ipv6[2] is not None:
                inside.add_default_route(index, ipv6[2])
    finally:
        os.close(netns_fd)


def plug(rtnl: Rtnl, pid: int, request: dict) -> None:  # type: ignore[type-arg]
    """Carry out one attachment's plug request (attach.Attachment.plug_request):
    its bridge, made if missing, then the namespace of `pid` on it."""
    bridge = ensure_bridge(
        rtnl,
        request["bridge"],
        request["bridge_gateway"],
        request["prefixlen"],
        request["broadcast"],
        request["bridge_mac"],
        internal=request["internal"],
    )
    if request["bridge6"] is not None:
        ensure_bridge6(rtnl, request["bridge"], *request["bridge6"])
    ipv6 = request["ipv6"]
    attach_container(
        rtnl,
        pid,
        bridge,
        request["veth"],
        request["address"],
        request["prefixlen"],
        request["broadcast"],
        request["gateway"],
        request["mac"],
        interface=request["interface"],
        ipv6=tuple(ipv6) if ipv6 is not None else None,  # type: ignore[arg-type]
    )


def ensure_bridge6(rtnl: Rtnl, name: str, gateway6: str, prefixlen6: int) -> None:
    """IPv6 on the bridge of a network made with --ipv6, with its gateway
    address (router advertisements still refused)."""
    index = rtnl.index(name)
    if index is None:
        raise KernelError(f"bridge {name} vanished; try again")
    ipv6_on(name)
    try:
        rtnl.add_address(index, name, gateway6, prefixlen6, None)
    except NetlinkError as exc:
        if exc.errno != 17:
            raise




def _delete_if_present(rtnl: Rtnl, name: str, kind: str | None = None) -> bool:
    found = rtnl.link(name)
    if found is None or (kind is not None and found[1] != kind):
        return False
    try:
        rtnl.delete(found[0], name)
    except NetlinkError as exc:
        if exc.errno != 19:  # gone meanwhile: the kernel tore its namespace down
            raise
        return False
    return True


def delete_link(name: str, kind: str) -> bool:
    """Delete a device of the host's namespace if it is of this kind
    ("bridge", "veth": a device of any other kind is someone else's and
    stays); a veth end takes its peer with it. False if nothing was deleted.

    A bridge leaves the firewall's table with its device (the table goes
    with the last bridge)."""
    if kind == "bridge":
        from overlayctl.network import firewall

        deleted = [False]

        def delete() -> None:
            if link_exists(name):
                with Rtnl() as rtnl:
                    deleted[0] = _delete_if_present(rtnl, name, kind)

        firewall.removing(delete)
        return deleted[0]
    if not link_exists(name):
        return False
    with Rtnl() as rtnl:
        return _delete_if_present(rtnl, name, kind)



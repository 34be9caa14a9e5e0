"""The DNS responder of one user-defined network: a small process of its own.

Started by network.dns (never imported on the run path: it loads dnslib),
it binds port 53 (UDP and TCP) on the network's gateway address, gives up
every capability, and then answers the containers of that network:

- A queries for a container's name, its 12-character short ID and its
  network aliases (`Lease.aliases`), each also followed by the network's
  name ("db.app"), for every container holding a lease on this network,
  read from the catalog; AAAA and other types for those
  names get an empty answer (the name exists, with no such record);
- PTR queries for addresses of the network's subnet (NXDOMAIN for one that
  is not leased: private reverse names never leave the host);
- anything else is forwarded to the upstream resolvers: the container's
  own `--dns` servers, else the host's (network.etcfiles.host_resolv_conf:
  systemd-resolved's stub is replaced by its upstreams, as Docker does);
  on an --internal network, nothing is (REFUSED).

A TCP client (one whose answer was too large for a datagram) gets a thread
of its own, at most MAX_TCP at once, idle at most TCP_IDLE seconds; what it
asks that is not a name here is forwarded over TCP too.

The catalog is read again whenever it changed (SQLite's data_version, a
few microseconds to ask), so a start, a stop, a connect or a disconnect
shows at the next query. The process exits by itself once no lease of its
network is held (rows gone, or only rows whose supervisor died).

Queries come from containers and are treated as hostile: only sources in
the network's subnet are answered (nothing from other networks or from
beyond the host), a datagram that is a response or does not parse is
dropped, at most MAX_PENDING forwards are in flight, a forwarded answer is
accepted only from the upstream it was sent to, on a socket of its own,
with the random ID it was sent with, and never is a query forwarded to a
gateway of ours (that would be this responder or another one: a loop).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import secrets
import select
import signal
import socket
import sys
import time

from dnslib import AAAA, PTR, QTYPE, RCODE, RR, A, DNSError, DNSHeader, DNSRecord  # noqa: F401

from overlayctl.network import etcfiles, lockfile
from overlayctl.paths import Paths
from overlayctl.store import catalog
from overlayctl.store.networks import NetworkStore
from overlayctl.util import jsonio

TTL = 0  # the catalog is the truth: a leave must show at once
MAX_DATAGRAM = 4096
MAX_PENDING = 256
UPSTREAM_TIMEOUT = 2.0  # seconds per upstream before the next one
MAX_TCP = 16  # TCP clients served at once; more are closed
TCP_IDLE = 5.0  # seconds a TCP client may take to send its next query
TICK = 0.5  # how often, idle, the catalog is looked at (a freed lease, a dead supervisor)
READY = b"ok"


class Records:
    """The names of one network, from the catalog."""

    def __init__(self, rows: list[tuple[str, str, str, list[str], str]]) -> None:
        self.by_name: dict[str, list[str]] = {}
        self.by_address: dict[str, list[str]] = {}
        self.upstreams_of: dict[str, list[str]] = {}
        self.container_of: dict[str, str] = {}
        for address, container_id, name, aliases, config in rows:
            self.container_of[address] = container_id
            names = [n for n in [name, container_id[:12], *aliases] if n]
            for n in names:
                addresses = self.by_name.setdefault(n.lower().rstrip("."), [])
                if address not in addresses:
                    addresses.append(address)
            if name:
                self.by_address.setdefault(address, []).append(name)
            dns = _container_dns(config)
            if dns:
                self.upstreams_of[address] = dns

    def lookup(self, name: str, network: str) -> list[str] | None:
        """The addresses of `name` (or of `name` less ".<network>", as Docker
        answers "db.app"), None if it is not a name here."""
        addresses = self.by_name.get(name)
        suffix = "." + network.lower()
        if addresses is None and name.endswith(suffix):
            addresses = self.by_name.get(name[: -len(suffix)])
        return addresses


def _container_dns(config: str) -> list[str]:
    """A container's --dns servers, from its stored configuration."""
    from overlayctl.container.model import ContainerConfig

    try:
        servers = ContainerConfig.from_json(jsonio.loads(config)).host.dns or []
    except (ValueError, TypeError, AttributeError):
        return []
    return [s for s in servers if isinstance(s, str)]


class Pending:
    """One forwarded query waiting for its upstream's answer."""

    __slots__ = ("sock", "client", "client_id", "query", "upstreams", "index", "deadline", "sent_id", "question")

    def __init__(self, client: tuple[str, int], query: bytes, question: tuple[str, int], upstreams: list[str]) -> None:
        self.client = client
        self.client_id = query[:2]
        self.query = query
        self.question = question
        self.upstreams = upstreams
        self.index = -1
        self.sock: socket.socket | None = None
        self.deadline = 0.0
        self.sent_id = b""


class Responder:
    """The responder's state and its loop."""

    def __init__(self, paths: Paths, network: str, address: str, subnet: str) -> None:
        self.network = network
        self.address = address
        self.subnet = ipaddress.IPv4Network(subnet)
        self.paths = paths
        self.store = NetworkStore(catalog.connect(paths.catalog))
        self.version = -1
        self.records = Records([])
        # A client's other user-defined networks, with their names: a
        # container on several networks asks this responder (eth0's) for
        # all of them, as Docker's embedded resolver answers for each.
        self.elsewhere: dict[str, list[tuple[str, Records]]] = {}
        self.gateways: set[str] = set()
        self.pending: dict[int, Pending] = {}
        self.resolv_stamp: tuple[float, int] | None = None
        self.host_upstreams: list[str] = []
        self.sock: socket.socket | None = None
        self.tcp: socket.socket | None = None
        import threading

        self.tcp_slots = threading.BoundedSemaphore(MAX_TCP)
        self.recheck = False
        self.stop = False
        self.internal = False  # `network create --internal`: no way out, names only

    # -- the catalog ----------------------------------------------------------

    def refresh(self) -> bool:
        """Read the names again if the catalog changed; whether it did."""
        version = self.store.data_version()
        if version == self.version:
            return False
        self.version = version
        self.records = Records(self.store.names(self.network))
        self.elsewhere = self._elsewhere()
        self.gateways = self.store.gateways()
        network = self.store.find(self.network)
        self.internal = bool(network is not None and network.options.get("internal"))
        return True

    def _elsewhere(self) -> dict[str, list[tuple[str, Records]]]:
        """{client address: [(network, its names)]} for the other networks
        of the containers on this one (never the default bridge: it has no
        names, as in Docker)."""
        from overlayctl.network.manage import DEFAULT_NETWORK

        ours = set(self.records.container_of.values())
        networks_of: dict[str, list[str]] = {}
        for lease in self.store.leases():
            if lease.container in ours and lease.network not in (self.network, DEFAULT_NETWORK):
                networks_of.setdefault(lease.container, []).append(lease.network)
        records = {n: Records(self.store.names(n)) for n in {n for ns in networks_of.values() for n in ns}}
        return {
            address: [(n, records[n]) for n in sorted(networks_of[container])]
            for address, container in self.records.container_of.items()
            if container in networks_of
        }

    def unused(self) -> bool:
        """No lease of the network is held: no rows, or only rows whose
        supervisor is gone (its lock is free)."""
        self.refresh()
        containers = {c for _, c, _, _, _ in self.store.names(self.network)}
        return not any(lockfile.lock_held(self.paths.network_lock(c)) for c in containers)

    # -- upstreams --------------------------------------------------------------

    def upstreams(self, client: str) -> list[str]:
        own = self.records.upstreams_of.get(client)
        candidates = own if own else self._host_upstreams()
        return [u for u in candidates if _usable_upstream(u, self.gateways | {self.address})]

    def _host_upstreams(self) -> list[str]:
        path = etcfiles.host_resolv_path()
        try:
            st = os.stat(path)
            stamp: tuple[float, int] | None = (st.st_mtime, st.st_ino)
        except OSError:
            stamp = None
        if stamp != self.resolv_stamp or not self.host_upstreams:
            self.resolv_stamp = stamp
            text = etcfiles.host_resolv_conf()
            rows = [line.split() for line in text.splitlines()]
            servers = [f[1] for f in rows if f[:1] == ["nameserver"] and len(f) > 1]
            self.host_upstreams = servers or list(etcfiles.FALLBACK_NAMESERVERS)
        return self.host_upstreams

    # -- answering --------------------------------------------------------------

    def handle(self, data: bytes, client: tuple[str, int]) -> bytes | None:
        """The answer to one datagram from a container, None to send none
        (dropped, or forwarded: the answer comes later)."""
        answer = self.answer(data, client, fresh=True)
        if isinstance(answer, tuple):
            self.forward(data, client, answer)
            return None
        return answer

    def answer(self, data: bytes, client: tuple[str, int], fresh: bool) -> bytes | tuple[str, int] | None:
        """The answer to one query from this network: the reply, None to
        send none, or the question (name, type) when it is to be forwarded.
        `fresh`: look at the catalog first (the main thread only: the
        catalog's connection is its own; TCP threads use the names as last
        read, at most TICK old)."""
        if len(data) < 12 or data[2] & 0x80:
            return None  # too short for a header, or a response: never answer those
        if ipaddress.IPv4Address(client[0]) not in self.subnet:
            return None
        try:
            request = DNSRecord.parse(data)
        except (DNSError, ValueError, IndexError, UnicodeError):
            return _error_reply(data, RCODE.FORMERR)
        if request.header.opcode != 0:
            return _error_reply(data, RCODE.NOTIMP)
        if len(request.questions) != 1:
            return _error_reply(data, RCODE.FORMERR)
        q = request.q
        if fresh:
            self.refresh()
        name = str(q.qname).lower().rstrip(".")
        addresses = self.records.lookup(name, self.network)
        for network, records in self.elsewhere.get(client[0], ()) if addresses is None else ():
            addresses = records.lookup(name, network)
            if addresses is not None:
                break
        reply = request.reply()
        if addresses is not None:
            if q.qtype in (QTYPE.A, QTYPE.ANY):
                for address in addresses:
                    reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(address), ttl=TTL))
            return reply.pack()
        if q.qtype == QTYPE.PTR:
            reverse = _reverse_address(name)
            if reverse is not None and ipaddress.IPv4Address(reverse) in self.subnet:
                for target in self.records.by_address.get(reverse, []):
                    reply.add_answer(RR(q.qname, QTYPE.PTR, rdata=PTR(target + "."), ttl=TTL))
                if not reply.rr:
                    reply.header.rcode = RCODE.NXDOMAIN
                return reply.pack()
        return (name, q.qtype)

    def forward(self, data: bytes, client: tuple[str, int], question: tuple[str, int]) -> None:
        if self.internal:
            # As Docker: an internal network has no way out, for names either.
            self.send(_error_reply(data, RCODE.REFUSED), client)
            return
        upstreams = self.upstreams(client[0])
        if not upstreams or len(self.pending) >= MAX_PENDING:
            self.send(_error_reply(data, RCODE.SERVFAIL), client)
            return
        self.next_upstream(Pending(client, data, question, upstreams))

    def next_upstream(self, p: Pending) -> None:
        """Send `p` to its next upstream, on a socket of its own with a fresh
        random ID; SERVFAIL to the client when none is left."""
        if p.sock is not None:
            self.pending.pop(p.sock.fileno(), None)
            p.sock.close()
            p.sock = None
        while p.index + 1 < len(p.upstreams):
            p.index += 1
            upstream = p.upstreams[p.index]
            family = socket.AF_INET6 if ":" in upstream else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
            p.sent_id = secrets.token_bytes(2)
            try:
                sock.connect((upstream, 53))  # answers from anyone else are not delivered
                sock.send(p.sent_id + p.query[2:])
            except OSError:
                sock.close()
                continue
            p.sock = sock
            p.deadline = time.monotonic() + UPSTREAM_TIMEOUT
            self.pending[sock.fileno()] = p
            return
        self.send(_error_reply(p.query, RCODE.SERVFAIL), p.client)

    def upstream_answer(self, p: Pending) -> None:
        assert p.sock is not None
        try:
            data = p.sock.recv(MAX_DATAGRAM)
        except OSError:
            self.next_upstream(p)  # e.g. ICMP port unreachable
            return
        if len(data) < 12 or data[:2] != p.sent_id or not data[2] & 0x80:
            return  # not the answer to what we sent: keep waiting
        try:
            answer = DNSRecord.parse(data)
            q = answer.q
            if (str(q.qname).lower().rstrip("."), q.qtype) != p.question:
                return
        except (DNSError, ValueError, IndexError, UnicodeError, AttributeError):
            return
        self.pending.pop(p.sock.fileno(), None)
        p.sock.close()
        p.sock = None
        self.send(p.client_id + data[2:], p.client)

    def send(self, data: bytes | None, client: tuple[str, int]) -> None:
        if data is None or self.sock is None:
            return
        try:
            self.sock.sendto(data, client)
        except OSError:
            pass  # the client is gone, or its buffer is full: it will retry

    # -- TCP ---------------------------------------------------------------------

    def accept(self) -> None:
        """Take every waiting connection: one thread each, at most
        MAX_TCP at once (more are closed at once), only from this network."""
        import threading

        assert self.tcp is not None
        while True:
            try:
                conn, client = self.tcp.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if ipaddress.IPv4Address(client[0]) not in self.subnet or not self.tcp_slots.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(target=self.serve_tcp, args=(conn, client), daemon=True).start()

    def serve_tcp(self, conn: socket.socket, client: tuple[str, int]) -> None:
        """One TCP client: length-prefixed queries until it closes, idles
        TCP_IDLE seconds, or sends something that is not a query."""
        try:
            conn.settimeout(TCP_IDLE)
            while True:
                head = _recv_exact(conn, 2)
                size = int.from_bytes(head, "big") if head else 0
                query = _recv_exact(conn, size) if size >= 12 else b""
                if not query:
                    return
                answer = self.answer(query, client, fresh=False)
                if isinstance(answer, tuple):
                    answer = self.forward_tcp(query, client, answer)
                if answer is None:
                    return
                conn.sendall(len(answer).to_bytes(2, "big") + answer)
        except OSError:
            pass
        finally:
            conn.close()
            self.tcp_slots.release()

    def forward_tcp(self, query: bytes, client: tuple[str, int], question: tuple[str, int]) -> bytes:
        """Forward over TCP (a client on TCP wants an answer too large for a
        datagram), upstream after upstream; SERVFAIL when none answers."""
        if self.internal:
            return _error_reply(query, RCODE.REFUSED)
        for upstream in self.upstreams(client[0]):
            sent_id = secrets.token_bytes(2)
            try:
                with socket.create_connection((upstream, 53), timeout=UPSTREAM_TIMEOUT) as up:
                    up.sendall(len(query).to_bytes(2, "big") + sent_id + query[2:])
                    head = _recv_exact(up, 2)
                    data = _recv_exact(up, int.from_bytes(head, "big")) if head else b""
            except OSError:
                continue
            if len(data) < 12 or data[:2] != sent_id or not data[2] & 0x80:
                continue
            try:
                q = DNSRecord.parse(data).q
                if (str(q.qname).lower().rstrip("."), q.qtype) != question:
                    continue
            except (DNSError, ValueError, IndexError, UnicodeError, AttributeError):
                continue
            return query[:2] + data[2:]
        return _error_reply(query, RCODE.SERVFAIL)

    # -- the loop ---------------------------------------------------------------

    def serve(self, wake: socket.socket, lock_path: str, pid_fd: int, pid_path: str) -> None:
        assert self.sock is not None
        next_check = time.monotonic() + TICK
        while True:
            now = time.monotonic()
            timeout = min([next_check] + [p.deadline for p in self.pending.values()]) - now
            readable = [self.sock, wake] + [p.sock for p in self.pending.values() if p.sock is not None]
            if self.tcp is not None:
                readable.append(self.tcp)
            try:
                ready, _, _ = select.select(readable, [], [], max(0.0, timeout))
            except InterruptedError:
                ready = []
            for sock in ready:
                if sock is self.sock:
                    self.receive()
                elif sock is self.tcp:
                    self.accept()
                elif sock is wake:
                    try:
                        wake.recv(64)
                    except OSError:
                        pass
                else:
                    p = self.pending.get(sock.fileno())
                    if p is not None:
                        self.upstream_answer(p)
            now = time.monotonic()
            for p in [p for p in self.pending.values() if p.deadline <= now]:
                self.next_upstream(p)
            if self.stop:
                return
            if self.recheck or now >= next_check or self.refresh():
                self.recheck = False
                next_check = now + TICK
                if self.try_exit(lock_path, pid_fd, pid_path):
                    return

    def receive(self) -> None:
        """Every datagram waiting on the socket (one select, many queries)."""
        assert self.sock is not None
        for _ in range(64):
            try:
                data, client = self.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            try:
                answer = self.handle(data, client)
            except Exception as exc:  # noqa: BLE001 - one bad query never stops the responder
                sys.stderr.write(f"dns: query from {client[0]} dropped: {exc!r}\n")
                continue
            self.send(answer, client)

    def try_exit(self, lock_path: str, pid_fd: int, pid_path: str) -> bool:
        """Leave if the network is unused, deciding under the start lock so
        that a container starting now either sees this process gone (and
        starts another) or is seen here (and this one stays)."""
        fd = lockfile.take_lock(lock_path, block=False)
        if fd is None:
            return False  # a start is deciding right now: look again later
        try:
            if not self.unused():
                return False
            # Gone from the pid file's lock before the start lock is let go.
            lockfile.unlock_and_remove(pid_path, pid_fd)
            return True
        finally:
            lockfile.unlock_and_remove(lock_path, fd)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    """`size` bytes from a stream, b"" if it ends first."""
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            return b""
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _usable_upstream(server: str, ours: set[str]) -> bool:
    try:
        address = ipaddress.ip_address(server)
    except ValueError:
        return False
    return not address.is_unspecified and server not in ours


def _reverse_address(name: str) -> str | None:
    """ "4.3.2.1.in-addr.arpa" -> "1.2.3.4"; None for anything else."""
    if not name.endswith(".in-addr.arpa"):
        return None
    parts = name[: -len(".in-addr.arpa")].split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 and len(p) <= 3 for p in parts):
        return None
    return ".".join(reversed(parts))


def _error_reply(query: bytes, rcode: int) -> bytes:
    """A header-only answer to a query that is not read further: its ID,
    QR set, its opcode and RD kept, and `rcode`."""
    flags = 0x8000 | (query[2] & 0x79) << 8 | 0x80 | rcode  # QR, opcode+RD, RA
    return query[:2] + flags.to_bytes(2, "big") + b"\0" * 8


# -- the process ----------------------------------------------------------------


def _bound(kind: int, address: str) -> socket.socket:
    """A non-blocking socket bound to `address` port 53."""
    sock = socket.socket(socket.AF_INET, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    if kind == socket.SOCK_STREAM:
        # A new responder must bind again while its predecessor's closed
        # connections sit in TIME_WAIT (it still refuses a second listener).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, 53))
    except OSError as exc:
        sock.close()
        reason = (
            "another DNS server listens there; make it bind only its own addresses (dnsmasq: bind-interfaces)"
            if exc.errno == errno.EADDRINUSE
            else exc.strerror
        )
        what = "TCP" if kind == socket.SOCK_STREAM else "UDP"
        raise OSError(exc.errno, f"cannot bind {address}:53 ({what}: {reason})") from None
    return sock


def _drop_privileges() -> None:
    """After binding port 53, nothing privileged is needed any more: every
    capability goes (bounding set included) and no_new_privs is set. The
    process stays uid 0 only to read the catalog and the lock files, which
    root owns; it never executes anything."""
    import _prctl

    from overlayctl.runtime import capabilities

    capabilities.drop_to(())
    _prctl.prctl(_prctl.PR_SET_NO_NEW_PRIVS, 1)


def main(argv: list[str]) -> int:
    """The responder's process: ROOT RUNROOT NETWORK_ID NETWORK ADDRESS SUBNET READY_FD.
    It writes "ok" to READY_FD once it answers, or why it cannot."""
    root, runroot, network_id, network, address, subnet, ready = argv
    paths = Paths(root, runroot)
    directory = paths.dns_dir(network_id)
    ready_fd = int(ready)
    for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_DFL if signum != signal.SIGPIPE else signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    os.chdir("/")
    os.umask(0o077)
    pid_path = os.path.join(directory, "pid")
    lock_path = os.path.join(directory, "start.lock")
    try:
        pid_fd = lockfile.take_lock(pid_path, block=True)
        assert pid_fd is not None
        os.ftruncate(pid_fd, 0)
        os.write(pid_fd, f"{os.getpid()}\n".encode())
        responder = Responder(paths, network, address, subnet)
        responder.sock = _bound(socket.SOCK_DGRAM, address)
        responder.tcp = _bound(socket.SOCK_STREAM, address)
        responder.tcp.listen(MAX_TCP)
        responder.refresh()
        _drop_privileges()
    except Exception as exc:  # noqa: BLE001 - reported to the starter, which says it in one line
        os.write(ready_fd, f"{exc.args[-1] if isinstance(exc, OSError) else exc}".encode())
        return 1
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno())

    def on_hup(signum: int, frame: object) -> None:
        responder.recheck = True

    def on_term(signum: int, frame: object) -> None:
        responder.stop = True

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_term)
    os.write(ready_fd, READY)
    os.close(ready_fd)
    responder.serve(wake_r, lock_path, pid_fd, pid_path)
    if responder.stop:
        lockfile.unlock_and_remove(pid_path, pid_fd)
    # The runroot's dns directory too when this was the last responder: the
    # `rm` that asked it to look may have tried before this process let go.
    for empty in (directory, os.path.dirname(directory)):
        try:
            os.rmdir(empty)
        except FileNotFoundError:
            continue  # the pid file's lock took it already
        except OSError:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

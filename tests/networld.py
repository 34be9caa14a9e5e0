"""A simulated outside world for the network tests: "the internet" is a
network namespace on this machine, reached from the host through a veth.

Use it as the `outside_world` fixture (registered in tests/conftest.py, so a
test only names it as an argument):

    def test_fetch(cli, bb, outside_world):
        server = outside_world.serve_http(80)
        out = cli.ok("run", "--rm", "bb:1", "sh", "-c",
                     f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc {outside_world.address} 80")
        assert server.body in out
        assert server.sources() == [outside_world.host_address]   # masqueraded

or, for a wider scope, as a context manager: `with OutsideWorld() as world:`.

The world is a namespace named `octest-out-<random>` holding one end of a veth
pair (`eth0` inside); the other end (`octo<random>`) stays on the host. Both
ends are numbered from 198.18.0.0/24 (RFC 2544's benchmarking range, never
a real address, and apart from the documentation ranges the tests give their
networks, so a world up in one suite never overlaps a network another makes):
each world takes one free /30 of it, so that several suites can run at once
(the first world is 198.18.0.1 on the host and 198.18.0.2 inside). The
namespace has only its connected /30 route and no default route, so it
cannot answer any container subnet: a container that reaches it proves the
host masqueraded the container's traffic.

Servers run inside the namespace as `python -m tests.networld serve ...`
(this file), each logging the source address of every client to a file, so
a test can tell whose address the outside saw. Everything (servers, any other
process left in the namespace, the veth, the namespace, the log directory) is
removed on exit, even when the test failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# RFC 2544's benchmarking range: routed nowhere real, and used by no test's networks.
WORLD_RANGE = ipaddress.IPv4Network("198.18.0.0/24")
NETNS_PREFIX = "octest-out-"
VETH_PREFIX = "octo"
# Held while a world picks its /30 and numbers its veth, so two suites
# starting at once do not pick the same one.
LOCK_PATH = "/run/lock/overlayctl-test-networld.lock"
HTTP_BODY = "hello from the outside world"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _used_addresses() -> set[ipaddress.IPv4Address]:
    out = _ip("-4", "-o", "addr", "show").stdout
    used = set()
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields:
            addr = ipaddress.IPv4Interface(fields[fields.index("inet") + 1]).ip
            if addr in WORLD_RANGE:
                used.add(addr)
    return used


def world_netns_names() -> list[str]:
    """The outside-world namespaces present on the host (for leftover checks)."""
    out = _ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(NETNS_PREFIX)]


class Server:
    """One server running inside the outside world."""

    def __init__(self, kind: str, port: int, proc: subprocess.Popen, log: Path, body: str = "") -> None:
        self.kind = kind
        self.port = port
        self.proc = proc
        self.log = log
        self.body = body

    def events(self) -> list[dict]:
        """Everything the server logged, one dict per request or datagram
        (`source` is the client's address; DNS adds `name` and `type`)."""
        try:
            text = self.log.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    def sources(self) -> list[str]:
        """The source address of every client seen so far, in order."""
        return [e["source"] for e in self.events()]

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class OutsideWorld:
    """A network namespace standing for the internet (see the module doc)."""

    def __init__(self) -> None:
        token = secrets.token_hex(4)
        self.netns = NETNS_PREFIX + token
        self.host_veth = VETH_PREFIX + token  # 12 characters, under IFNAMSIZ
        self.address = ""
        self.host_address = ""
        self.network = ""
        self.servers: list[Server] = []
        self._logs = Path(tempfile.mkdtemp(prefix="octest-out-"))

    # -- life --

    def __enter__(self) -> OutsideWorld:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create(self) -> None:
        os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
        with open(LOCK_PATH, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = _used_addresses()
            for subnet in WORLD_RANGE.subnets(new_prefix=30):
                host, inside = list(subnet.hosts())
                if host not in used and inside not in used:
                    break
            else:
                raise RuntimeError(f"no free /30 left in {WORLD_RANGE} for an outside world")
            self.network = str(subnet)
            self.host_address, self.address = str(host), str(inside)
            _ip("netns", "add", self.netns)
            _ip("link", "add", self.host_veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
            _ip("addr", "add", f"{host}/30", "dev", self.host_veth)
            _ip("link", "set", self.host_veth, "up")
        self.run(["ip", "addr", "add", f"{inside}/30", "dev", "eth0"], check=True)
        self.run(["ip", "link", "set", "eth0", "up"], check=True)
        self.run(["ip", "link", "set", "lo", "up"], check=True)

    def close(self) -> None:
        """Tear everything down; safe to call twice and on a half-made world."""
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop()
        # Anything else a test started in there (ip netns exec ... &).
        pids = _ip("netns", "pids", self.netns, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _ip("link", "del", self.host_veth, check=False)
        _ip("netns", "delete", self.netns, check=False)
        shutil.rmtree(self._logs, ignore_errors=True)

    # -- use --

    def run(self, argv: Sequence[str], check: bool = False, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        """Run a command inside the outside world; output is captured as text."""
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
            **kw,
        )

    def _serve(self, kind: str, port: int, config: dict, body: str = "") -> Server:
        log = self._logs / f"{kind}-{port}.log"
        argv = [
            "ip",
            "netns",
            "exec",
            self.netns,
            sys.executable,
            "-m",
            "tests.networld",
            "serve",
            kind,
            str(port),
            str(log),
            json.dumps(config),
        ]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
        server = Server(kind, port, proc, log, body)
        self.servers.append(server)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        line = proc.stdout.readline().decode() if ready else ""
        if line.strip() != "ready":
            server.stop()
            raise RuntimeError(f"{kind} server on port {port} did not start: {line!r}")
        return server

    def serve_http(self, port: int = 80, body: str = HTTP_BODY) -> Server:
        """An HTTP server answering every GET with `body` (plus a newline)."""
        return self._serve("http", port, {"body": body}, body)

    def serve_dns(self, port: int = 53, records: dict[str, str] | None = None) -> Server:
        """A UDP DNS server answering A (IPv4) and AAAA (IPv6) queries for
        `records` ({name: address}) and NXDOMAIN for any other name."""
        return self._serve("dns", port, {"records": records or {}})

    def serve_udp_echo(self, port: int = 7) -> Server:
        """A UDP server sending every datagram back to its sender."""
        return self._serve("udp-echo", port, {})


@contextlib.contextmanager
def outside_world() -> Iterator[OutsideWorld]:
    """A fresh outside world for the `with` block (the fixture's body)."""
    with OutsideWorld() as world:
        yield world


# -- the servers, run inside the namespace by OutsideWorld._serve --


def _log(log_file, **event: str) -> None:
    log_file.write(json.dumps(event) + "\n")
    log_file.flush()


def _serve_http(port: int, log_file, config: dict) -> None:
    from http.server import BaseHTTPRequestHandler, HTTPServer

    payload = (config["body"] + "\n").encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            _log(log_file, source=self.client_address[0], path=self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("0.0.0.0", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


def _serve_dns(port: int, log_file, config: dict) -> None:
    from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord

    records = {name.rstrip(".").lower(): addr for name, addr in config["records"].items()}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    print("ready", flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        try:
            request = DNSRecord.parse(data)
        except Exception:
            continue
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        _log(log_file, source=peer[0], name=name, type=qtype)
        reply = request.reply()
        addr = records.get(name)
        if addr is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif qtype == "A" and ":" not in addr:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(addr), ttl=60))
        elif qtype == "AAAA" and ":" in addr:
            reply.add_answer(RR(request.q.qname, QTYPE.AAAA, rdata=AAAA(addr), ttl=60))
        sock.sendto(reply.pack(), peer)


def _serve_udp_echo(port: int, log_file, config: dict) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    print("ready", flush=True)
    while True:
        data, peer = sock.recvfrom(65535)
        _log(log_file, source=peer[0])
        sock.sendto(data, peer)


def _main(argv: list[str]) -> None:
    if len(argv) != 5 or argv[0] != "serve":
        raise SystemExit("usage: python -m tests.networld serve KIND PORT LOG CONFIG_JSON")
    kind, port, log, config = argv[1], int(argv[2]), argv[3], json.loads(argv[4])
    serve = {"http": _serve_http, "dns": _serve_dns, "udp-echo": _serve_udp_echo}[kind]
    with open(log, "a") as log_file:
        serve(port, log_file, config)


if __name__ == "__main__":
    # A killed server is the normal way out; keep its exit quiet.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _main(sys.argv[1:])

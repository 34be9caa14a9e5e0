"""Names on the real kernel: the per-network DNS responder, the generated
/etc/resolv.conf and /etc/hosts, and --dns, --dns-search, --dns-option and
--add-host.

No query ever leaves this machine: every test points the host's resolver
file (OVERLAYCTL_RESOLV_CONF) at a file of its own, naming either the
simulated outside world's DNS server (tests/networld.py) or no reachable
server at all. The host's /etc/resolv.conf is never read or touched.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sqlite3
import subprocess
import time

import pytest

from tests.integration.test_network import Net, _fails, net  # noqa: F401 - net is a fixture


def _responders(cli) -> dict[str, int]:
    """{network short ID: responder pid} of this store's living responders."""
    found = {}
    root = cli.runroot / "dns"
    if not root.is_dir():
        return found
    for entry in root.iterdir():
        pid_file = entry / "pid"
        try:
            text = pid_file.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and os.path.exists(f"/proc/{text}") and _holds(int(text), pid_file):
            found[entry.name] = int(text)
    return found


def _holds(pid: int, path) -> bool:
    """Whether process `pid` still has `path` open (and so its lock)."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
    except OSError:
        return False
    return False


def _gone(pid: int) -> bool:
    """The process has ended (a zombie waiting for whoever reaps orphans counts)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _resolv(cli, tmp_path, *servers: str, search: str = "") -> None:
    path = tmp_path / "host-resolv.conf"
    path.write_text("".join(f"nameserver {s}\n" for s in servers) + (f"search {search}\n" if search else ""))
    cli.env["OVERLAYCTL_RESOLV_CONF"] = str(path)


def _lookup(cli, where: list[str], name: str) -> list[str]:
    """The addresses busybox nslookup finds for `name`, from a container
    made by `run --rm` with `where` or in `exec` of a running one."""
    out = cli(*where, "nslookup", "-type=a", name, timeout=60).stdout.decode()
    answers = out.split("Name:", 1)[1] if "Name:" in out else ""
    return [line.split()[1] for line in answers.splitlines() if line.startswith("Address:")]


@pytest.fixture
def dns(net, tmp_path):  # noqa: F811 - the imported fixture
    """The network environment, with the host's resolvers pointing at the
    test network's own gateway address: a responder never forwards to one
    of our gateways, so an unknown name fails at once and nothing leaves."""
    spare = ipaddress.IPv4Network(net.spare)
    _resolv(net.cli, tmp_path, str(spare.network_address + 1))
    yield net
    ids = net.cli("ps", "-aq", "--no-trunc").stdout.decode().split()
    if ids:
        net.cli("rm", "-f", *ids)
    assert _wait(lambda: not _responders(net.cli)), "a DNS responder outlived its network's containers"


def test_containers_find_each_other_by_name_alias_and_short_id(dns):
    cli = dns.cli
    cli.ok("network", "create", "--subnet", dns.spare, "app")
    gateway = str(ipaddress.IPv4Network(dns.spare).network_address + 1)
    db = cli.ok(
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "app",
        "bb:1",
        "sh",
        "-c",
        "while true; do echo pong | nc -l -p 5000; done",
    ).strip()
    db_ip = dns.inspect("db")["NetworkSettings"]["IPAddress"]
    assert len(_responders(cli)) == 1

    run = ["run", "--rm", "--network", "app", "bb:1"]
    out = cli.ok(*run[:-1], "bb:1", "cat", "/etc/resolv.conf")
    assert f"nameserver {gateway}\n" in out and "options ndots:0" in out
    assert out.count("nameserver") == 1
    assert _lookup(cli, run, "db") == [db_ip]
    assert _lookup(cli, run, "DB.") == [db_ip]
    assert _lookup(cli, run, db[:12]) == [db_ip]
    assert _lookup(cli, run, "db.app") == [db_ip]
    # the reverse name of its address; an address of the subnet nobody holds is not forwarded
    out = cli(*run, "sh", "-c", f"nslookup {db_ip}; nslookup {gateway[:-1]}77").stdout.decode()
    assert "in-addr.arpa\tname = db\n" in out and "NXDOMAIN" in out
    # and a connection to the name
    assert cli.ok(*run, "sh", "-c", "nc db 5000 </dev/null").strip() == "pong"

    # An alias in the lease (what `network connect --alias` records) shows at the next query.
    assert _lookup(cli, run, "database") == []
    conn = sqlite3.connect(cli.root / "catalog.db")
    try:
        conn.execute("UPDATE leases SET aliases = ? WHERE container = ?", (json.dumps(["database"]), db))
        conn.commit()
    finally:
        conn.close()
    assert _lookup(cli, run, "database") == [db_ip]


@pytest.mark.slow
def test_other_networks_and_the_default_bridge_get_no_names(dns):
    cli = dns.cli
    spare = ipaddress.IPv4Network(dns.spare)
    app_gw = str(spare.network_address + 1)
    cli.ok("network", "create", "--subnet", dns.spare, "app")
    cli.ok("network", "create", "other")
    cli.ok("run", "-d", "--name", "db", "--network", "app", "bb:1", "sleep", "60")
    # Its own responder does not know db, nor does app's answer it.
    assert _lookup(cli, ["run", "--rm", "--network", "other", "bb:1"], "db") == []
    out = cli("run", "--rm", "--network", "other", "bb:1", "nslookup", "-timeout=1", "-retry=1", "db", app_gw).stdout
    assert b"timed out" in out and b"Name:" not in out  # not answered at all: not its network
    # The default bridge: the host's resolvers (here: none reachable), no names, no responder.
    out = cli.ok("run", "--rm", "--network", "bridge", "bb:1", "cat", "/etc/resolv.conf")
    assert f"nameserver {app_gw}" not in out or "options ndots:0" not in out
    assert _lookup(cli, ["run", "--rm", "--network", "bridge", "bb:1"], "db") == []  # asks app_gw: refused
    networks = {
        json.loads(line)["Name"]: json.loads(line)["ID"][:12]
        for line in cli.ok("network", "ls", "--no-trunc", "--format", "json").splitlines()
    }
    assert networks["bridge"] not in _responders(cli)


def test_a_name_comes_with_its_container_and_goes_with_it(dns):
    cli = dns.cli
    cli.ok("network", "create", "--subnet", dns.spare, "app")
    cli.ok("run", "-d", "--name", "client", "--network", "app", "bb:1", "sleep", "60")
    inside = ["exec", "client"]
    assert _lookup(cli, inside, "late") == []
    cli.ok("run", "-d", "--name", "late", "--network", "app", "bb:1", "sleep", "60")
    late_ip = dns.inspect("late")["NetworkSettings"]["IPAddress"]
    assert _lookup(cli, inside, "late") == [late_ip]
    cli.ok("stop", "-t", "0", "late")
    assert _lookup(cli, inside, "late") == []
    cli.ok("start", "late")
    assert _lookup(cli, inside, "late") == [dns.inspect("late")["NetworkSettings"]["IPAddress"]]


def test_other_names_are_forwarded_to_the_hosts_resolvers(net, tmp_path, outside_world):  # noqa: F811
    cli = net.cli
    server = outside_world.serve_dns(records={"www.example.test": "198.51.100.77"})
    _resolv(cli, tmp_path, outside_world.address, search="example.test")
    cli.ok("network", "create", "--subnet", net.spare, "app")
    try:
        run = ["run", "--rm", "--network", "app", "bb:1"]
        assert _lookup(cli, run, "www.example.test") == ["198.51.100.77"]
        assert _lookup(cli, run, "nothing.example.test") == []
        assert _lookup(cli, run, "www") == ["198.51.100.77"]  # the host's search domain
        assert "search example.test" in cli.ok(*run, "cat", "/etc/resolv.conf")
        # The responder asked, from the host, and the world answered it.
        assert set(server.sources()) == {outside_world.host_address}
        assert "www.example.test" in {e.get("name") for e in server.events()}
        # An --internal network (its option in the catalog) forwards nothing.
        _set_network_option(cli, "app", internal=True)
        asked = len(server.events())
        assert _lookup(cli, run, "www.example.test") == []
        assert len(server.events()) == asked
        _set_network_option(cli, "app", internal=False)
        # A container's own --dns servers are its upstreams instead.
        _resolv(cli, tmp_path, str(ipaddress.IPv4Network(net.spare).network_address + 1))
        cli.ok("run", "-d", "--name", "keep", "--network", "app", "bb:1", "sleep", "60")  # the responder stays
        assert _lookup(cli, run, "www.example.test") == []
        own = ["run", "--rm", "--network", "app", "--dns", outside_world.address, "bb:1"]
        assert _lookup(cli, own, "www.example.test") == ["198.51.100.77"]
    finally:
        cli("rm", "-f", "keep")
        assert _wait(lambda: not _responders(cli))


def _set_network_option(cli, network: str, **options) -> None:
    conn = sqlite3.connect(cli.root / "catalog.db")
    try:
        current = json.loads(conn.execute("SELECT options FROM networks WHERE name = ?", (network,)).fetchone()[0])
        current.update(options)
        conn.execute("UPDATE networks SET options = ? WHERE name = ?", (json.dumps(current), network))
        conn.commit()
    finally:
        conn.close()


def test_the_responder_goes_with_the_last_container(dns):
    cli = dns.cli
    cli.ok("network", "create", "--subnet", dns.spare, "app")
    cli.ok("run", "-d", "--name", "ca", "--network", "app", "bb:1", "sleep", "60")
    cli.ok("run", "-d", "--name", "cb", "--network", "app", "bb:1", "sleep", "60")
    (pid,) = _responders(cli).values()
    cli.ok("rm", "-f", "ca")
    assert _responders(cli) == {dns.network("app")["Id"][:12]: pid}  # cb still holds a lease
    cli.ok("rm", "-f", "cb")
    assert _wait(lambda: not _responders(cli))
    assert _wait(lambda: _gone(pid))
    assert not (cli.runroot / "dns").exists()
    # The next container starts a new one.
    assert len(_lookup(cli, ["run", "--rm", "--name", "solo", "--network", "app", "bb:1"], "solo")) == 1
    assert _wait(lambda: not _responders(cli))


def test_the_responder_goes_after_a_killed_supervisor_and_reconcile(dns):
    cli = dns.cli
    cli.ok("network", "create", "--subnet", dns.spare, "app")
    cli.ok("run", "-d", "--name", "victim", "--network", "app", "bb:1", "sleep", "60")
    (pid,) = _responders(cli).values()
    pid1 = dns.inspect("victim")["State"]["Pid"]
    with open(f"/proc/{pid1}/stat") as f:
        supervisor = int(f.read().rsplit(")", 1)[1].split()[1])
    os.kill(supervisor, 9)
    cli.ok("system", "reconcile")
    assert _wait(lambda: _gone(pid), timeout=3)
    assert not _responders(cli)


def test_the_responder_drops_its_capabilities(dns):
    cli = dns.cli
    cli.ok("network", "create", "--subnet", dns.spare, "app")
    cli.ok("run", "-d", "--name", "ca", "--network", "app", "bb:1", "sleep", "60")
    (pid,) = _responders(cli).values()
    status = dict(line.split(":\t", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":\t" in line)
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[key], 16) == 0, (key, status[key])
    assert status["NoNewPrivs"].strip() == "1"


def test_hostile_datagrams_do_not_stop_the_responder(dns):
    cli = dns.cli
    cli.ok("network", "create", "--subnet", dns.spare, "app")
    gateway = str(ipaddress.IPv4Network(dns.spare).network_address + 1)
    cli.ok("run", "-d", "--name", "db", "--network", "app", "bb:1", "sleep", "60")
    (pid,) = _responders(cli).values()
    header = bytes.fromhex("abcd01000001000000000000")
    loop = header + b"\xc0\x0c" + b"\x00\x01\x00\x01"  # a name that points at itself
    bad = [
        b"",
        b"\x00",
        os.urandom(11),
        os.urandom(4096),
        bytes.fromhex("abcd81800001000000000000") + b"\x02db\x00\x00\x01\x00\x01",  # a response
        loop,
        header + b"\x3f" + b"a" * 63 + b"\x00\x00\x01\x00\x01",
        bytes.fromhex("abcd01000005000000000000") + b"\x02db\x00\x00\x01\x00\x01",  # 5 questions, 1 there
        header + b"\x02db\x00\x00\x01",  # cut short
        bytes.fromhex("abcd29000001000000000000") + b"\x02db\x00\x00\x01\x00\x01",  # opcode UPDATE
    ] + [os.urandom(n) for n in range(12, 200, 7)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        # A response is never answered: two responders (or a forged
        # source) must not be able to bounce datagrams between them.
        s.sendto(bytes.fromhex("abcd81800001000000000000") + b"\x02db\x00\x00\x01\x00\x01", (gateway, 53))
        with pytest.raises(TimeoutError):
            s.recv(4096)
        for packet in bad * 3:
            s.sendto(packet, (gateway, 53))
        replies = []
        try:
            while True:
                replies.append(s.recv(4096))
        except TimeoutError:
            pass
    # Over TCP: garbage, a zero length, a length promising more than comes.
    for stream in [os.urandom(300), b"\x00\x00", b"\xff\xff" + os.urandom(100), b"\x00\x20" + os.urandom(32)]:
        with socket.create_connection((gateway, 53), timeout=2) as t:
            t.sendall(stream)
            t.shutdown(socket.SHUT_WR)
            try:
                while t.recv(4096):
                    pass
            except (TimeoutError, ConnectionResetError):
                pass
    # Nothing answered a response (no loops, no reflection), every answer is a response.
    assert all(r[2] & 0x80 for r in replies)
    assert not _gone(pid) and _responders(cli) == {dns.network("app")["Id"][:12]: pid}
    ip = dns.inspect("db")["NetworkSettings"]["IPAddress"]
    assert _lookup(cli, ["run", "--rm", "--network", "app", "bb:1"], "db") == [ip]


def test_dns_flags_and_add_host_write_the_files(dns):
    cli = dns.cli
    spare = ipaddress.IPv4Network(dns.spare)
    cli.ok("network", "create", "--subnet", dns.spare, "app")
    flags = [
        "--dns",
        "192.0.2.53",
        "--dns-search",
        "corp.example",
        "--dns-search",
        "lab.example",
        "--dns-option",
        "ndots:2",
        "--dns-option",
        "timeout:1",
        "--add-host",
        "svc:192.0.2.10",
        "--add-host",
        "v6=2001:db8::1",
        "--add-host",
        "home:host-gateway",
    ]
    script = "cat /etc/resolv.conf; echo ---; cat /etc/hosts"
    out = cli.ok("run", "--rm", "--name", "b1", *flags, "--network", "bridge", "bb:1", "sh", "-c", script)
    resolv, hosts = out.split("---\n")
    assert resolv == "nameserver 192.0.2.53\nsearch corp.example lab.example\noptions ndots:2 timeout:1\n"
    dflt_gw = str(ipaddress.IPv4Network(dns.subnet).network_address + 1)
    lines = hosts.splitlines()
    assert lines[-4:-1] == ["192.0.2.10\tsvc", "2001:db8::1\tv6", f"{dflt_gw}\thome"]
    assert lines[-1].endswith("\tb1") or " b1" in lines[-1]
    # On a user-defined network the responder stays the nameserver; --dns is where it forwards.
    out = cli.ok("run", "--rm", "--name", "u1", *flags, "--network", "app", "bb:1", "sh", "-c", script)
    resolv, hosts = out.split("---\n")
    assert (
        resolv
        == f"nameserver {spare.network_address + 1}\nsearch corp.example lab.example\noptions ndots:2 timeout:1\n"
    )
    assert f"{spare.network_address + 1}\thome" in hosts
    # --dns-search . : no search line. Host mode: the host's files plus the extra line.
    out = cli.ok("run", "--rm", "--dns-search", ".", "--network", "bridge", "bb:1", "cat", "/etc/resolv.conf")
    assert "search" not in out
    out = cli.ok("run", "--rm", "--add-host", "x:192.0.2.1", "--network", "host", "bb:1", "tail", "-n1", "/etc/hosts")
    assert out == "192.0.2.1\tx\n"
    cid = cli.ok("create", *flags, "bb:1", "true").strip()
    host = json.loads(cli.ok("inspect", cid))[0]["HostConfig"]
    assert host["Dns"] == ["192.0.2.53"] and host["DnsSearch"] == ["corp.example", "lab.example"]
    assert host["DnsOptions"] == ["ndots:2", "timeout:1"]
    assert host["ExtraHosts"] == ["svc:192.0.2.10", "v6=2001:db8::1", "home:host-gateway"]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--add-host", "nocolon"],
            'invalid argument "nocolon" for "--add-host" flag: bad format for add-host: "nocolon"',
        ),
        (
            ["--add-host", "x:1.2"],
            'invalid argument "x:1.2" for "--add-host" flag: invalid IP address in add-host: "1.2"',
        ),
        (["--add-host", ":1.2.3.4"], 'bad format for add-host: ":1.2.3.4"'),
        (["--add-host", "a\nb:1.2.3.4"], "bad format for add-host"),
        (["--dns", "1.2.3"], 'invalid argument "1.2.3" for "--dns" flag: IP address is not correctly formatted: 1.2.3'),
        (["--dns-search", "-bad"], 'invalid argument "-bad" for "--dns-search" flag: -bad is not a valid domain'),
        (["--dns-option", "ndots:1\nnameserver 6.6.6.6"], 'for "--dns-option" flag'),
    ],
)
def test_bad_dns_flags_are_refused_and_nothing_is_made(dns, args, message):
    cli = dns.cli
    err = _fails(cli, "run", "--rm", *args, "bb:1", "true")
    assert message in err and len(err.strip().splitlines()) == 1
    assert cli.ok("ps", "-aq") == ""


def test_concurrent_first_starts_make_one_responder(dns):
    cli = dns.cli
    cli.ok("network", "create", "--subnet", dns.spare, "app")
    names = [f"c{i}" for i in range(5)]
    procs = [
        subprocess.Popen(
            cli.argv("run", "-d", "--name", n, "--network", "app", "bb:1", "sleep", "60"),
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in names
    ]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert len(_responders(cli)) == 1
    ips = {n: dns.inspect(n)["NetworkSettings"]["IPAddress"] for n in names}
    assert _lookup(cli, ["exec", "c0"], "c4") == [ips["c4"]]


def test_a_killed_responder_comes_back_with_reconcile_or_the_next_start(dns):
    cli = dns.cli
    cli.ok("network", "create", "--subnet", dns.spare, "app")
    cli.ok("run", "-d", "--name", "db", "--network", "app", "bb:1", "sleep", "60")
    ip = dns.inspect("db")["NetworkSettings"]["IPAddress"]
    (pid,) = _responders(cli).values()
    os.kill(pid, 9)
    assert _wait(lambda: not _responders(cli))
    assert "DNS responder started: network app" in cli.ok("system", "reconcile")
    (again,) = _responders(cli).values()
    assert again != pid
    assert _lookup(cli, ["exec", "db"], "db") == [ip]
    os.kill(again, 9)
    assert _wait(lambda: not _responders(cli))
    assert _lookup(cli, ["run", "--rm", "--network", "app", "bb:1"], "db") == [ip]


def test_a_network_made_again_on_the_same_subnet_gets_its_own_responder(dns):
    cli = dns.cli
    cli.ok("network", "create", "--subnet", dns.spare, "app")
    cli.ok("run", "-d", "--name", "db", "--network", "app", "bb:1", "sleep", "60")
    cli.ok("rm", "-f", "db")
    cli.ok("network", "rm", "app")
    cli.ok("network", "create", "--subnet", dns.spare, "app2")
    cli.ok("run", "-d", "--name", "db2", "--network", "app2", "bb:1", "sleep", "60")
    ip = dns.inspect("db2")["NetworkSettings"]["IPAddress"]
    assert _lookup(cli, ["exec", "db2"], "db2") == [ip]
    assert list(_responders(cli)) == [dns.network("app2")["Id"][:12]]


def test_port_53_taken_on_the_gateway_fails_the_start_with_one_line(dns):
    cli = dns.cli
    cli.ok("network", "create", "--subnet", dns.spare, "app")
    gateway = str(ipaddress.IPv4Network(dns.spare).network_address + 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((gateway, 53))
        err = _fails(cli, "run", "--rm", "--network", "app", "bb:1", "true")
        assert f"cannot start the DNS responder of network \"app\": cannot bind {gateway}:53" in err
        assert "another DNS server listens there" in err
        assert dns.leases() == [] and not _responders(cli)
    assert cli.ok("run", "--rm", "--network", "app", "bb:1", "echo", "ok") == "ok\n"


def _tcp_query(address: str, name: str, timeout: float = 5.0, sock=None) -> bytes:
    """One query over TCP (length-prefixed), its answer."""
    from dnslib import DNSRecord

    query = DNSRecord.question(name).pack()
    s = sock or socket.create_connection((address, 53), timeout=timeout)
    try:
        s.sendall(len(query).to_bytes(2, "big") + query)
        head = s.recv(2)
        size = int.from_bytes(head, "big")
        data = b""
        while len(data) < size:
            chunk = s.recv(size - len(data))
            if not chunk:
                break
            data += chunk
        return data
    finally:
        if sock is None:
            s.close()


def test_tcp_names_limits_and_forwarding(net, tmp_path, outside_world):  # noqa: F811
    from dnslib import DNSRecord

    cli = net.cli
    spare = ipaddress.IPv4Network(net.spare)
    gateway = str(spare.network_address + 1)
    _resolv(cli, tmp_path, outside_world.address)
    cli.ok("network", "create", "--subnet", net.spare, "app")
    # A DNS server on TCP in the outside world (the world's own serves UDP).
    server_code = (
        "import socket\n"
        "from dnslib import DNSRecord, RR, A, QTYPE\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('0.0.0.0', 53)); s.listen(4); print('ready', flush=True)\n"
        "while True:\n"
        "    c, _ = s.accept(); size = int.from_bytes(c.recv(2), 'big'); q = DNSRecord.parse(c.recv(size))\n"
        "    r = q.reply(); r.add_answer(RR(q.q.qname, QTYPE.A, rdata=A('198.51.100.99'), ttl=60))\n"
        "    p = r.pack(); c.sendall(len(p).to_bytes(2, 'big') + p); c.close()\n"
    )
    server = subprocess.Popen(
        ["ip", "netns", "exec", outside_world.netns, "/opt/overlayctl/venv/bin/python", "-c", server_code],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout.readline().strip() == "ready"
        cli.ok("run", "-d", "--name", "db", "--network", "app", "bb:1", "sleep", "60")
        ip = net.inspect("db")["NetworkSettings"]["IPAddress"]
        answer = DNSRecord.parse(_tcp_query(gateway, "db"))
        assert [str(rr.rdata) for rr in answer.rr] == [ip]
        # Several queries on one connection.
        with socket.create_connection((gateway, 53), timeout=5) as s:
            for _ in range(3):
                assert [str(rr.rdata) for rr in DNSRecord.parse(_tcp_query(gateway, "db", sock=s)).rr] == [ip]
        # Forwarded over TCP.
        answer = DNSRecord.parse(_tcp_query(gateway, "big.example.test"))
        assert [str(rr.rdata) for rr in answer.rr] == ["198.51.100.99"]
        # At most 16 clients at once: the 17th is closed at once, and UDP still answers.
        idle = [socket.create_connection((gateway, 53), timeout=5) for _ in range(16)]
        try:
            time.sleep(0.2)
            extra = socket.create_connection((gateway, 53), timeout=5)
            assert extra.recv(1) == b""
            extra.close()
            assert _lookup(cli, ["exec", "db"], "db") == [ip]
        finally:
            for s in idle:
                s.close()
        time.sleep(0.2)
        assert [str(rr.rdata) for rr in DNSRecord.parse(_tcp_query(gateway, "db")).rr] == [ip]
    finally:
        server.kill()
        server.wait()
        cli("rm", "-f", "db")
        assert _wait(lambda: not _responders(cli))


def test_a_container_on_two_networks_finds_the_names_of_both(dns):
    from tests.integration.test_network_connect import _two_networks

    cli = dns.cli
    _two_networks(dns)
    db = cli.ok("run", "-d", "--name", "db", "--network", "back", "bb:1", "sleep", "60").strip()
    cli.ok("run", "-d", "--name", "web", "--network", "front", "bb:1", "sleep", "60")
    cli.ok("run", "-d", "--name", "lone", "--network", "front", "bb:1", "sleep", "60")
    # web's resolver is front's responder (eth0's); db is only on back.
    assert _lookup(cli, ["exec", "web"], "db") == []
    cli.ok("network", "connect", "back", "web")
    info = json.loads(cli.ok("inspect", db))[0]
    db_ip = info["NetworkSettings"]["Networks"]["back"]["IPAddress"]
    assert _lookup(cli, ["exec", "web"], "db") == [db_ip]
    assert _lookup(cli, ["exec", "web"], "db.back") == [db_ip]
    # Only web is on back: another container of front does not see db.
    assert _lookup(cli, ["exec", "lone"], "db") == []
    cli.ok("network", "disconnect", "back", "web")
    assert _lookup(cli, ["exec", "web"], "db") == []

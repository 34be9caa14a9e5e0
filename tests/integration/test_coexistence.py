"""The way out beside Docker's and podman's own rules on the same host.

Each test starts its peer itself: dockerd with a temporary data root, exec
root, pidfile and socket (and its iptables rules, through iptables-nft),
or podman with a private store on its default network (CNI on Debian's
podman 4). While the peer's rules are in place, containers of ours and of
the peer's both reach the outside world of tests/networld.py, as the host;
neither side's rules change the other's. Afterwards everything the peer
made is gone: its daemon, its mounts, docker0, and Docker's iptables chains
(dockerd leaves them behind when it stops).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from overlayctl.network import firewall
from tests.integration import test_network, test_save_load
from tests.integration.test_outbound import fetch_argv

# The same fixtures as there: a private default bridge and spare subnets
# (every device the test made deleted afterwards), and podman with a
# private store.
net = test_network.net
podman = test_save_load.podman

pytestmark = [pytest.mark.slow, pytest.mark.peers]
DOCKER_KEY = "/etc/docker/key.json"


def _iptables_save() -> list[str]:
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    # Counters move with traffic: only the rules and chains count.
    return [line.split(" [")[0] if line.startswith(":") else line for line in out.splitlines() if line[:1] != "#"]


def _mentioning(lines: list[str], *words: str) -> list[str]:
    return [line for line in lines if any(w in line for w in words)]


# The chains and sets of our table this test looks at: isolation and the
# way out (other parts of the table are other tests' to watch).
_WATCHED = {"forward", "postrouting", "bridges", "same", "outbound", "internal"}


def _our_rules() -> list[dict]:
    """Our table's isolation and way out: chains, rules and set declarations,
    not the elements, which other sessions' bridges change at any time."""
    listed = firewall.table()
    assert listed is not None, "no inet overlayctl table"
    kept = []
    for item in listed["nftables"]:
        (kind, body), *_ = item.items()
        name = body.get("chain") if kind == "rule" else body.get("name")
        if kind in ("chain", "rule", "set") and name in _WATCHED:
            kept.append({kind: {k: v for k, v in body.items() if k not in ("handle", "elem")}})
    return kept


def _link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


class Dockerd:
    """A dockerd of the test's own: everything under `top`, its socket too."""

    def __init__(self, top: Path) -> None:
        self.top = top
        self.sock = top / "docker.sock"
        self.pidfile = top / "docker.pid"
        self.proc: subprocess.Popen | None = None
        self.rules_before = _iptables_save()
        # dockerd 20.10 writes its trust key there whatever its roots.
        self.key_made = not os.path.exists(DOCKER_KEY)
        self.cli = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker") or "docker"

    def start(self) -> None:
        argv = [
            shutil.which("dockerd") or "dockerd",
            "--data-root", str(self.top / "data"),
            "--exec-root", str(self.top / "exec"),
            "--pidfile", str(self.pidfile),
            "-H", f"unix://{self.sock}",
            "--iptables=true",
            # Works on any filesystem under /tmp; the test's images are tiny.
            "--storage-driver=vfs",
        ]  # fmt: skip
        log = open(self.top / "dockerd.log", "wb")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 60
        while self("version", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("dockerd did not come up:\n" + (self.top / "dockerd.log").read_text()[-3000:])
            time.sleep(0.2)

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([self.cli, "-H", f"unix://{self.sock}", *args], capture_output=True, timeout=timeout)
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def stop(self) -> None:
        """Stop dockerd and remove what it made: mounts, docker0, the
        iptables rules and chains it added (and left behind)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for line in reversed(open("/proc/self/mountinfo").read().splitlines()):
            target = line.split()[4]
            if target.startswith(str(self.top)):
                subprocess.run(["umount", "-l", target], capture_output=True)
        if _link_exists("docker0"):
            subprocess.run(["ip", "link", "del", "docker0"], capture_output=True)
        remove_docker_rules(self.rules_before)
        if self.key_made and os.path.exists(DOCKER_KEY):
            os.unlink(DOCKER_KEY)
        shutil.rmtree(self.top, ignore_errors=True)


def remove_docker_rules(before: list[str]) -> None:
    """Delete the rules naming Docker's chains or docker0 and Docker's own
    chains that were not there `before` (iptables-save lines); nothing else,
    since other tools may be changing the same tables meanwhile."""
    table = ""
    rules: list[tuple[str, str]] = []
    chains: list[tuple[str, str]] = []
    for line in _iptables_save():
        if line.startswith("*"):
            table = line[1:]
        elif line in before:
            continue
        elif line.startswith("-A ") and ("DOCKER" in line or "docker0" in line):
            rules.append((table, line))
        elif line.startswith(":DOCKER"):
            chains.append((table, line[1:].split()[0]))
    for table, line in rules:
        subprocess.run(["iptables", "-t", table, "-D", *line.split()[1:]], capture_output=True)
    for table, chain in chains:
        subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True)


@pytest.fixture
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd is not installed (scripts/setup.sh test installs docker.io)")
    if _link_exists("docker0"):
        pytest.skip("docker0 exists: another Docker runs on this host")
    daemon = Dockerd(tmp_path_factory.mktemp("dockerd"))
    try:
        yield daemon
    finally:
        daemon.stop()
        assert not _link_exists("docker0")
        left = [line for line in _mentioning(_iptables_save(), "DOCKER", "docker0") if line not in daemon.rules_before]
        assert not left, f"Docker's rules left behind: {left}"


def test_outbound_beside_dockerd(net, outside_world, busybox_tar, dockerd):
    cli = net.cli
    server = outside_world.serve_http(80)
    cli.ok("run", "--rm", "bb:1", "true")  # our bridge, so our table, exists
    ours = _our_rules()

    dockerd.start()
    docker = _mentioning(_iptables_save(), "DOCKER", "docker0")
    assert docker, "dockerd made no iptables rules"
    # Forwarding was on (our bridge turned it on): Docker leaves the
    # FORWARD policy as it found it (it sets DROP only when it turns
    # forwarding on itself), so nothing of Docker's stands in our way.
    assert "-P FORWARD ACCEPT" in subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True).stdout

    out = cli.ok("run", "--rm", "bb:1", *fetch_argv(outside_world))
    assert server.body in out
    cli.ok("network", "create", "--subnet", net.spare, "front")
    out = cli.ok("run", "--rm", "--network", "front", "bb:1", *fetch_argv(outside_world))
    assert server.body in out
    # Docker's own containers get out too, beside ours.
    dockerd("import", str(busybox_tar), "octtest-bb:1")
    out = dockerd("run", "--rm", "octtest-bb:1", *fetch_argv(outside_world)).stdout.decode()
    assert server.body in out
    assert server.sources() == [outside_world.host_address] * 3
    cli.ok("network", "rm", "front")

    # Neither side touched the other's rules.
    assert _mentioning(_iptables_save(), "DOCKER", "docker0") == docker
    assert _our_rules() == ours

    # A Docker started first on a host whose forwarding was off sets
    # FORWARD's policy to DROP, and no accept of ours overrides that drop
    # (every base chain on the hook must accept). Stand in for the policy
    # with a drop at the end of FORWARD for this test's bridge alone (the
    # host's policy is not a test's to flip), then let the bridge through
    # the way Docker documents for other bridges, as docs/networking.md says.
    cli.ok("run", "-d", "--name", "peer", "bb:1", "sleep", "60")
    peer = net.inspect("peer")["NetworkSettings"]["IPAddress"]
    ping = ("run", "--rm", "bb:1", "ping", "-c1", "-W2", peer)
    drop = ["FORWARD", "-i", net.bridge, "-j", "DROP"]
    _iptables("-A", *drop)
    try:
        cut = cli("run", "--rm", "bb:1", *fetch_argv(outside_world, wait=2))
        assert server.body.encode() not in cut.stdout
        # Docker loads br_netfilter: traffic bridged between two containers
        # on one bridge goes through FORWARD too.
        bridged = pathlib.Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
        if bridged.exists() and bridged.read_text().strip() == "1":
            assert cli(*ping).returncode != 0
        uplink = outside_world.host_veth
        _iptables("-I", "DOCKER-USER", "-i", net.bridge, "-o", net.bridge, "-j", "ACCEPT")
        _iptables("-I", "DOCKER-USER", "-i", net.bridge, "-o", uplink, "-j", "ACCEPT")
        established = ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"]
        _iptables("-I", "DOCKER-USER", "-i", uplink, "-o", net.bridge, *established)
        out = cli.ok("run", "--rm", "bb:1", *fetch_argv(outside_world))
        assert server.body in out
        cli.ok(*ping)
    finally:
        _iptables("-D", *drop)  # the DOCKER-USER rules go with Docker's


def _iptables(*args: str) -> None:
    subprocess.run(["iptables", *args], capture_output=True, text=True, check=True)


def test_outbound_beside_podman(net, outside_world, busybox_tar, podman):
    cli = net.cli
    server = outside_world.serve_http(80)
    cli.ok("run", "--rm", "bb:1", "true")
    ours = _our_rules()
    podman("import", str(busybox_tar), "octtest-bb:1")
    address = ""
    try:
        name = "octtest-" + os.urandom(4).hex()
        # Its default network (cni-podman0 with CNI's bridge, firewall and
        # masquerade), no --network given.
        podman("run", "-d", "--name", name, "octtest-bb:1", "sleep", "120")
        address = podman("inspect", "--format", "{{.NetworkSettings.IPAddress}}", name).stdout.decode().strip()
        assert address, "podman's container has no address on its default network"
        # Its container's own rules (other podman containers on this host
        # may come and go meanwhile: only this one's are watched).
        assert _mentioning(_iptables_save(), f"{address}/32"), "podman's network made no rules"
        out = cli.ok("run", "--rm", "bb:1", *fetch_argv(outside_world))
        assert server.body in out
        out = podman("exec", name, *fetch_argv(outside_world)).stdout.decode()
        assert server.body in out
        assert server.sources() == [outside_world.host_address] * 2
        assert _our_rules() == ours
        podman("rm", "-f", "-t", "0", name)
    finally:
        podman("rm", "-a", "-f", "-t", "0", check=False)
        podman("rmi", "-f", "octtest-bb:1", check=False)
    # podman took its per-container rules away with the container.
    assert not _mentioning(_iptables_save(), f"{address}/32")
    assert _our_rules() == ours
    # Only our own table holds rules of ours: nothing in podman's.
    assert not _mentioning(_iptables_save(), "overlayctl")

#!/usr/bin/env python3
"""Benchmark published ports: `run -d -p` against podman's, and throughput
through a published port against throughput to the container's address.

    scripts/setup.sh                              # installs /usr/local/bin/overlayctl
    python3 scripts/bench/bench_ports.py [-n 10] [--mb 512] [--json FILE]

Run as root. It measures, in one run:

1. start: wall time of `run -d -p HOSTPORT:80 IMAGE sleep 3600` (each
   round a new host port, the container removed untimed afterwards),
   overlayctl and podman interleaved, one warm-up each; goal: overlayctl's
   median <= 0.30 x podman's;
2. throughput: a container drains TCP port 80 into /dev/null (busybox nc);
   the host sends --mb MiB to the container's own address, then the same
   through the published port on the host's first non-loopback address
   (kernel DNAT, the output chain), alternating, -n rounds; goal: the median
   through the port >= 0.90 x the median to the address. A Python socket
   sends and waits until the receiver has closed, so every byte counts.

overlayctl runs on a private store, runroot and default bridge (device
`octlbench`, 10.253.<pid%256>.0/24), all removed at the end, as are podman's
containers and its uniquely tagged image. Stdlib only; the helpers are
bench_run.py's.

Exit status: 0 when the benchmark ran (goals are reported, not asserted);
1 when overlayctl failed; 2 on a usage or environment error.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_run import (  # noqa: E402
    IMAGE,
    REPO,
    ROOTFS_SH,
    VENV,
    Overlayctl,
    SetupError,
    finish_cleanup,
    first_line,
    mounts,
    peers_env,
    run,
    run_main,
    say,
    tail,
)

START_GOAL_RATIO = 0.30  # overlayctl's median run -d -p <= 0.30 x podman's
THROUGHPUT_GOAL = 0.90  # through the published port >= 0.90 x to the address
BRIDGE = "octlbench"
SINK = "while true; do nc -l -p 80 >/dev/null; done"


def free_port() -> int:
    """A host port below the ephemeral range that nothing binds now."""
    for port in range(21000, 29000):
        try:
            with socket.socket() as s:
                s.bind(("0.0.0.0", port))
            return port
        except OSError:
            continue
    raise SetupError("no free host port in 21000-29000")


def host_address() -> str:
    """The host's first non-loopback IPv4 address (a local address: its
    traffic to itself takes the output chain)."""
    out = run(["ip", "-4", "-o", "addr", "show", "scope", "global"]).stdout
    for line in out.splitlines():
        fields = line.split()
        if fields[1].startswith(("octl", "br-", "veth")):
            continue
        return fields[3].split("/")[0]
    raise SetupError("the host has no global IPv4 address to publish on")


def send(host: str, port: int, mib: int) -> float:
    """MiB/s of `mib` MiB sent to host:port, until the receiver closed."""
    block = b"\0" * (1 << 20)
    deadline = time.monotonic() + 5
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=30)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # the receiver's next nc is starting
    with sock:
        t0 = time.perf_counter()
        for _ in range(mib):
            sock.sendall(block)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)
        return mib / (time.perf_counter() - t0)


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "n": len(ordered),
    }


class Bench:
    def __init__(self, args: argparse.Namespace, cmd: list[str]) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="overlayctl-bench-ports."))
        self.tmp.chmod(0o755)
        subnet = f"10.253.{os.getpid() % 256}.0/24"
        env = dict(os.environ, OVERLAYCTL_BRIDGE_NAME=BRIDGE, OVERLAYCTL_BRIDGE_SUBNET=subnet)
        self.ctl = Overlayctl(cmd, self.tmp / "store", self.tmp / "run", env)
        self.podman: str | None = None
        self.podman_env: dict[str, str] = dict(os.environ)
        self.podman_ref: str | None = None
        self.mounts_before = set(mounts())

    def podman_run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.podman is not None
        return run([self.podman, *args], env=self.podman_env, check=check)

    def run(self) -> dict:
        args, ctl, tmp = self.args, self.ctl, self.tmp
        tar = tmp / "bb.tar"
        try:
            run(["sh", str(ROOTFS_SH), str(tar)])
        except subprocess.CalledProcessError as exc:
            raise SetupError(f"busybox-rootfs.sh failed: {tail(exc.stderr)}") from exc
        peers = peers_env(tmp / "peers", install=not args.no_install)
        ctl("import", str(tar), IMAGE)
        self.podman = peers.get("PEER_PODMAN") or None
        skipped = None
        if self.podman is None:
            skipped = "podman is not installed"
        else:
            if peers.get("CONTAINERS_CONF"):
                self.podman_env["CONTAINERS_CONF"] = peers["CONTAINERS_CONF"]
            ref = f"localhost/overlayctl-bench-ports:{os.getpid()}"
            proc = self.podman_run("import", "--quiet", str(tar), ref, check=False)
            if proc.returncode == 0:
                self.podman_ref = ref
            else:
                skipped = "podman import failed: " + (tail(proc.stderr).splitlines() or ["?"])[-1]
        return {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "start": self.measure_start(skipped),
            "throughput": self.measure_throughput(),
            "versions": self.versions(),
        }

    def start_ours(self) -> float:
        port = free_port()
        t0 = time.perf_counter()
        cid = self.ctl("run", "-d", "-p", f"{port}:80", IMAGE, "sleep", "3600").strip()
        took = (time.perf_counter() - t0) * 1000
        self.ctl("rm", "-f", cid)
        return took

    def start_theirs(self) -> float:
        port = free_port()
        t0 = time.perf_counter()
        proc = self.podman_run("run", "-d", "-p", f"{port}:80", self.podman_ref or "", "sleep", "3600", check=False)
        took = (time.perf_counter() - t0) * 1000
        if proc.returncode != 0:
            raise SetupError(f"podman run -d -p failed: {tail(proc.stderr)}")
        self.podman_run("rm", "-f", "-t", "0", proc.stdout.strip())
        return took

    def measure_start(self, skipped: str | None) -> dict:
        say(f"start: {self.args.rounds} rounds of run -d -p, interleaved")
        steps = [("overlayctl", self.start_ours)] + ([("podman", self.start_theirs)] if skipped is None else [])
        for _name, step in steps:
            step()  # warm-up: first-use costs (the bridge, podman's network) are not the subject
        times: dict[str, list[float]] = {name: [] for name, _ in steps}
        for i in range(self.args.rounds):
            for name, step in steps if i % 2 == 0 else list(reversed(steps)):
                times[name].append(step())
        out: dict = {"command": f"run -d -p HOSTPORT:80 {IMAGE} sleep 3600"}
        out.update({name: summary(values) for name, values in times.items()})
        if skipped is None:
            ratio = out["overlayctl"]["median"] / out["podman"]["median"]
            out.update(ratio=ratio, goal=START_GOAL_RATIO, met=ratio <= START_GOAL_RATIO)
        else:
            out.update(podman={"skipped": skipped}, met=None)
        return out

    def measure_throughput(self) -> dict:
        args, ctl = self.args, self.ctl
        port = free_port()
        host = host_address()
        cid = ctl("run", "-d", "-p", f"{port}:80", IMAGE, "sh", "-c", SINK).strip()
        try:
            address = json.loads(ctl("inspect", cid))[0]["NetworkSettings"]["IPAddress"]
            say(f"throughput: {args.rounds} rounds of {args.mb} MiB to {address}:80 and through {host}:{port}")
            send(address, 80, 16)
            send(host, port, 16)  # warm-up of both paths
            direct, published = [], []
            for _ in range(args.rounds):
                direct.append(send(address, 80, args.mb))
                published.append(send(host, port, args.mb))
        finally:
            ctl("rm", "-f", cid)
        out = {
            "mib_per_round": args.mb,
            "to_address_mib_s": summary(direct),
            "through_port_mib_s": summary(published),
            "path": f"host -> {host}:{port} (output chain DNAT) vs host -> {address}:80",
        }
        ratio = out["through_port_mib_s"]["median"] / out["to_address_mib_s"]["median"]
        out.update(ratio=ratio, goal=THROUGHPUT_GOAL, met=ratio >= THROUGHPUT_GOAL)
        return out

    def versions(self) -> dict[str, str]:
        v = {"overlayctl": first_line([*self.ctl.cmd, "--version"])}
        if self.podman:
            v["podman"] = first_line([self.podman, "--version"], self.podman_env)
            v["podman network backend"] = first_line(
                [self.podman, "info", "--format", "{{.Host.NetworkBackend}}"], self.podman_env
            )
        v["kernel"] = f"{os.uname().release}, {os.cpu_count()} cpus"
        return v

    def cleanup(self) -> None:
        problems = []
        left = self.ctl.argv("ps", "-aq", "--no-trunc")
        ids = run(left, env=self.ctl.env, check=False).stdout.split()
        if ids:
            run(self.ctl.argv("rm", "-f", *ids), env=self.ctl.env, check=False)
        if self.podman and self.podman_ref:
            theirs = self.podman_run("ps", "-a", "-q", "--filter", f"ancestor={self.podman_ref}", check=False)
            if theirs.stdout.split():
                self.podman_run("rm", "-f", "-t", "0", *theirs.stdout.split(), check=False)
            if self.podman_run("rmi", self.podman_ref, check=False).returncode != 0:
                problems.append("podman rmi failed")
        # The private bridge, through overlayctl's own deletion (it leaves the
        # firewall's table too), in the venv that has pyroute2.
        code = f"from overlayctl.network import netlink; netlink.delete_link({BRIDGE!r}, 'bridge')"
        python = str(VENV / "bin" / "python")
        proc = run([python, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)), check=False)
        if proc.returncode != 0 or os.path.exists(f"/sys/class/net/{BRIDGE}"):
            problems.append(f"bridge {BRIDGE} not deleted: {tail(proc.stderr)}")
        finish_cleanup(self.tmp, self.mounts_before, problems, "containers, images, the bridge, mounts")


def report(result: dict) -> str:
    start, tp = result["start"], result["throughput"]
    lines = [f"run -d -p (median of {start['overlayctl']['n']}):"]
    lines.append(f"  overlayctl {start['overlayctl']['median']:8.1f} ms")
    if "median" in start.get("podman", {}):
        lines.append(f"  podman     {start['podman']['median']:8.1f} ms")
        verdict = "met" if start["met"] else "NOT met"
        lines.append(f"  ratio {start['ratio']:.2f}x (goal <= {START_GOAL_RATIO:.2f}x): {verdict}")
    else:
        lines.append(f"  podman: skipped ({start['podman']['skipped']})")
    lines.append(f"throughput ({tp['mib_per_round']} MiB a round, median of {tp['to_address_mib_s']['n']}):")
    lines.append(f"  to the container's address {tp['to_address_mib_s']['median']:8.0f} MiB/s")
    lines.append(f"  through the published port {tp['through_port_mib_s']['median']:8.0f} MiB/s")
    verdict = "met" if tp["met"] else "NOT met"
    lines.append(f"  ratio {tp['ratio']:.2f} (goal >= {THROUGHPUT_GOAL:.2f}): {verdict}")
    lines.append("versions: " + "; ".join(f"{k} {v}" for k, v in result["versions"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--rounds", type=int, default=10, help="timed rounds of each measurement (default 10)")
    p.add_argument("--mb", type=int, default=512, help="MiB sent per throughput round (default 512)")
    p.add_argument("--overlayctl", default="overlayctl", metavar="CMD", help="the CLI under test (default: overlayctl)")
    p.add_argument("--checkout", metavar="DIR", help="the CLI of this checkout, started as the launcher starts it")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install missing peers")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.mb < 1:
        p.error("--rounds and --mb must be positive")
    return run_main(args, Bench, report)


if __name__ == "__main__":
    sys.exit(main())

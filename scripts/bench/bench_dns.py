#!/usr/bin/env python3
"""Benchmark the DNS responder: how fast a container's query for a peer is answered.

    python3 scripts/bench/bench_dns.py [-n 5000] [--warmup 200] [--json FILE]

Run as root, from a checkout (it runs `python -m overlayctl` from it with
the venv's Python). It makes a throw-away store and a user-defined network
on a free /24 of 10.252.0.0/16, starts two containers on it (`peer` and
`client`, both `sleep`), and then, inside the client's network namespace
(nsenter --net), sends N queries "A peer" one after another to the
network's gateway, port 53, from a plain UDP socket, timing each from send
to answer with a monotonic clock. It reports the median, p90, p99 and
maximum, and queries per second. Goal: median <= 1 ms.

The answer is checked (the peer's address); no query is forwarded (the
host's resolver file the responder reads is a file of the benchmark's,
naming the gateway itself, which the responder never forwards to), so
nothing leaves the machine. Everything is removed at the end.

Exit status: 0 when the benchmark ran (the goal is reported, not
asserted); 1 when overlayctl failed; 2 on a usage or environment error.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
ROOTFS_SH = REPO / "scripts" / "busybox-rootfs.sh"
PYTHON = os.environ.get("OVERLAYCTL_PYTHON", "/opt/overlayctl/venv/bin/python")
GOAL_MEDIAN_MS = 1.0

# Runs in the client's network namespace: stdlib only, a query built by hand.
CLIENT = r"""
import json, socket, struct, sys, time
server, name, count, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((server, 53))
s.settimeout(2)
times, answer = [], None
for i in range(warmup + count):
    qid = i & 0xFFFF
    query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)
    t0 = time.perf_counter_ns()
    s.send(query)
    while True:
        data = s.recv(4096)
        if data[:2] == query[:2]:
            break
    t1 = time.perf_counter_ns()
    if i >= warmup:
        times.append(t1 - t0)
    answer = data
ancount = struct.unpack("!H", answer[6:8])[0]
address = socket.inet_ntoa(answer[-4:]) if ancount else ""
print(json.dumps({"ns": times, "address": address, "rcode": answer[3] & 0xF}))
"""


def run(argv: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])} ...: {result.stderr.strip()[-800:]}")
    return result


def free_subnet() -> str:
    routes = []
    for line in subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout.splitlines():
        word = line.split()[0]
        if word != "default":
            try:
                routes.append(ipaddress.IPv4Network(word, strict=False))
            except ValueError:
                pass
    for subnet in ipaddress.IPv4Network("10.252.0.0/16").subnets(new_prefix=24):
        if not any(subnet.overlaps(r) for r in routes):
            return str(subnet)
    raise SystemExit("no free /24 in 10.252.0.0/16")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=5000, help="timed queries (default 5000)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed queries first (default 200)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_dns: run as root", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-dns-"))
    subnet = free_subnet()
    gateway = str(ipaddress.IPv4Network(subnet).network_address + 1)
    (tmp / "resolv.conf").write_text(f"nameserver {gateway}\n")
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        OVERLAYCTL_RESOLV_CONF=str(tmp / "resolv.conf"),
        OVERLAYCTL_BRIDGE_NAME="octbdns" + os.urandom(2).hex(),
        OVERLAYCTL_BRIDGE_SUBNET="10.253.255.0/24",
    )
    ctl = [PYTHON, "-m", "overlayctl", "--root", str(tmp / "root"), "--runroot", str(tmp / "run")]
    status = 0
    try:
        subprocess.run(["sh", str(ROOTFS_SH), str(tmp / "bb.tar")], check=True, capture_output=True)
        run([*ctl, "import", str(tmp / "bb.tar"), "bb:1"], env)
        run([*ctl, "network", "create", "--subnet", subnet, "benchnet"], env)
        run([*ctl, "run", "-d", "--name", "peer", "--network", "benchnet", "bb:1", "sleep", "3600"], env)
        run([*ctl, "run", "-d", "--name", "client", "--network", "benchnet", "bb:1", "sleep", "3600"], env)
        inspect = json.loads(run([*ctl, "inspect", "peer", "client"], env).stdout)
        peer_ip = inspect[0]["NetworkSettings"]["IPAddress"]
        client_pid = inspect[1]["State"]["Pid"]
        probe = [sys.executable, "-c", CLIENT, gateway, "peer", str(args.count), str(args.warmup)]
        out = run(["nsenter", f"--net=/proc/{client_pid}/ns/net", *probe], env).stdout
        result = json.loads(out)
        ms = [t / 1e6 for t in result["ns"]]
        figures = {
            "queries": len(ms),
            "answer": result["address"],
            "expected": peer_ip,
            "median_ms": round(percentile(ms, 0.5), 4),
            "p90_ms": round(percentile(ms, 0.9), 4),
            "p99_ms": round(percentile(ms, 0.99), 4),
            "max_ms": round(max(ms), 4),
            "qps": round(len(ms) / (sum(ms) / 1000), 1),
            "goal_median_ms": GOAL_MEDIAN_MS,
        }
        ok = result["address"] == peer_ip and result["rcode"] == 0
        verdict = "met" if figures["median_ms"] <= GOAL_MEDIAN_MS else "NOT met"
        print(f"DNS responder, {len(ms)} queries 'A peer' from the client container's namespace:")
        print(
            f"  median {figures['median_ms']:.3f} ms  p90 {figures['p90_ms']:.3f} ms  "
            f"p99 {figures['p99_ms']:.3f} ms  max {figures['max_ms']:.3f} ms  ({figures['qps']:.0f} queries/s)"
        )
        print(f"  answer {result['address']} (peer is {peer_ip}): {'right' if ok else 'WRONG'}")
        print(f"  goal: median <= {GOAL_MEDIAN_MS} ms: {verdict}")
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        if not ok:
            status = 1
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"bench_dns: {exc}", file=sys.stderr)
        status = 1
    finally:
        run([*ctl, "rm", "-f", "peer", "client"], env, check=False)
        run([*ctl, "network", "rm", "benchnet"], env, check=False)
        if os.path.exists(f"/sys/class/net/{env['OVERLAYCTL_BRIDGE_NAME']}"):
            subprocess.run(["ip", "link", "del", env["OVERLAYCTL_BRIDGE_NAME"]], check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark overlayctl's Engine API (`system service`) against dockerd.

    scripts/setup.sh test                       # docker.io: dockerd and /usr/bin/docker
    python3 scripts/bench/bench_api.py [-n 15] [--containers 100] [--json FILE]

Run as root. It starts both peers itself: `overlayctl system service` on a
private store and socket, and Debian's dockerd with a temporary --data-root
and --exec-root, its own unix socket, --bridge=none and --iptables=false (the
host keeps no bridge, rule or daemon; dockerd is stopped whatever happens).
The same busybox rootfs (scripts/busybox-rootfs.sh) is imported into both.
In one run it measures:

1. run: `docker run --rm --network none IMAGE true` with Debian's docker
   client (/usr/bin/docker) against each socket, interleaved rounds, the
   order swapped every round; goal: ours <= 0.5 x dockerd's median;
2. list: `GET /containers/json?all=1` with N created containers on each
   side, by the same raw HTTP client (a new connection per request, the
   whole answer read); goal: ours <= 0.5 x dockerd's median;
3. idle memory: the service's VmRSS (and PSS) after those requests and a
   few seconds idle; goal <= 40 MB;
4. cold start: from the first connection to a socket held by
   systemd-socket-activate to the answer of `/_ping`, a new service each
   round, with the CPU time the service used until then; goal <= 300 ms.

An endpoint the service does not serve yet (404 "page not found") makes
its measurement say so instead of failing the run.

Exit status: 0 when the benchmark ran (goals are reported, not asserted);
1 when overlayctl failed; 2 on a usage or environment error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_run import (  # noqa: E402
    ROOTFS_SH,
    Overlayctl,
    OverlayctlFailed,
    SetupError,
    finish_cleanup,
    first_line,
    mounts,
    run,
    run_main,
    say,
    tail,
)

RUN_GOAL_RATIO = 0.5
LIST_GOAL_RATIO = 0.5
RSS_GOAL_KB = 40 * 1024
COLD_GOAL_MS = 300.0
IMAGE = "overlayctl-bench-api:1"
DOCKER = "/usr/bin/docker"  # Debian's client, API 1.41; not a newer one elsewhere on PATH
DOCKER_KEY = "/etc/docker/key.json"  # dockerd 20.10 writes its trust key there, whatever its roots


# --------------------------------------------------------------------------
# a raw HTTP client: the same few lines for both sides


def http(sock: Path, method: str, path: str, body: bytes = b"", timeout: float = 120) -> tuple[int, bytes]:
    """One request on a new connection (Connection: close); the status and
    the whole body (chunked answers are read to their end)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(sock))
        head = f"{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        conn.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while chunk := conn.recv(1 << 16):
            data += chunk
    header, _, payload = data.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    if b"\r\ntransfer-encoding: chunked" in header.lower():
        payload = _dechunk(payload)
    return status, payload


def _dechunk(data: bytes) -> bytes:
    out, i = b"", 0
    while True:
        end = data.index(b"\r\n", i)
        size = int(data[i:end].split(b";")[0], 16)
        if size == 0:
            return out
        out += data[end + 2 : end + 2 + size]
        i = end + 2 + size + 2


def not_served(sock: Path, method: str, path: str) -> bool:
    """Whether the service answers 404 "page not found": no such route yet."""
    status, body = http(sock, method, path, b"{}" if method == "POST" else b"")
    return status == 404 and b"page not found" in body


# --------------------------------------------------------------------------
# the peers


class Dockerd:
    """Debian's dockerd, everything under `top`, its socket too."""

    def __init__(self, top: Path) -> None:
        self.top = top
        self.sock = top / "docker.sock"
        self.proc: subprocess.Popen | None = None
        self.key_made = not os.path.exists(DOCKER_KEY)

    def start(self) -> None:
        exe = shutil.which("dockerd")
        if exe is None:
            raise SetupError("dockerd is missing: apt-get install docker.io (scripts/setup.sh test installs it)")
        argv = [
            exe,
            "--data-root", str(self.top / "data"),
            "--exec-root", str(self.top / "exec"),
            "--pidfile", str(self.top / "docker.pid"),
            "-H", f"unix://{self.sock}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
        ]  # fmt: skip
        with open(self.top / "dockerd.log", "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError, ValueError, IndexError):
                if http(self.sock, "GET", "/_ping", timeout=5)[0] == 200:
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SetupError("dockerd did not come up:\n" + tail((self.top / "dockerd.log").read_bytes()))
            time.sleep(0.2)

    def stop(self, problems: list[str]) -> None:
        """SIGTERM (SIGKILL to its group after 30 s), then its mounts and key."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                problems.append("dockerd did not stop on SIGTERM: killed")
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for point in reversed(mounts()):
            if point.startswith(str(self.top) + "/"):
                subprocess.run(["umount", "-l", point], capture_output=True)
        if self.key_made and os.path.exists(DOCKER_KEY):
            os.unlink(DOCKER_KEY)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(DOCKER_KEY))


class Service:
    """`overlayctl system service --time 0` on a socket of the benchmark's."""

    def __init__(self, ctl: Overlayctl, sock: Path, log: Path) -> None:
        self.ctl, self.sock, self.log = ctl, sock, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.ctl.argv("system", "service", "--time", "0", f"unix://{self.sock}"),
                env=self.ctl.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError, ValueError, IndexError):
                if http(self.sock, "GET", "/_ping", timeout=5)[0] == 200:
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise OverlayctlFailed("the service did not come up:\n" + tail(self.log.read_bytes()))
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def proc_memory(pid: int) -> dict[str, int] | None:
    """VmRSS and PSS of a process, in KiB; None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        with open(f"/proc/{pid}/smaps_rollup") as f:
            pss = next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return None
    return {"rss_kb": rss, "pss_kb": pss}


def cpu_ms(pid: int) -> float | None:
    """User + system CPU time of a process so far, in ms."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def summary(values: list[float]) -> dict[str, float]:
    xs = sorted(values)
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1], "n": len(xs)}


# --------------------------------------------------------------------------
# the benchmark


class Bench:
    def __init__(self, args: argparse.Namespace, cmd: list[str]) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="overlayctl-bench-api."))
        self.tmp.chmod(0o755)
        self.ctl = Overlayctl(cmd, self.tmp / "store", self.tmp / "run", dict(os.environ))
        self.service = Service(self.ctl, self.tmp / "ours.sock", self.tmp / "service.log")
        self.dockerd = Dockerd(self.tmp / "dockerd")
        self.mounts_before = set(mounts())
        self.cold_procs: list[subprocess.Popen] = []

    def docker(self, sock: Path, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        env = dict(os.environ, DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(self.tmp / "docker-config"))
        return run([DOCKER, *args], env=env, check=check, timeout=timeout)

    def run(self) -> dict:
        args, tmp = self.args, self.tmp
        if not os.path.exists(DOCKER):
            raise SetupError(f"{DOCKER} is missing: apt-get install docker.io (scripts/setup.sh test installs it)")
        (tmp / "docker-config").mkdir()
        self.dockerd.top.mkdir()
        tar = tmp / "bb.tar"
        try:
            run(["sh", str(ROOTFS_SH), str(tar)])
        except subprocess.CalledProcessError as exc:
            raise SetupError(f"busybox-rootfs.sh failed: {tail(exc.stderr)}") from exc
        self.ctl("import", str(tar), IMAGE)
        self.service.start()
        say("dockerd: starting with a temporary data root")
        self.dockerd.start()
        self.docker(self.dockerd.sock, "import", str(tar), IMAGE)
        sides = {"overlayctl": self.service.sock, "dockerd": self.dockerd.sock}
        result: dict = {"rounds": args.rounds, "containers": args.containers, "image": IMAGE}
        result["run"] = self.measure_run(sides)
        result["list"] = self.measure_list(sides)
        time.sleep(args.settle)
        assert self.service.proc is not None
        result["idle_memory_kb"] = proc_memory(self.service.proc.pid)
        result["cold_start"] = self.measure_cold_start()
        result["versions"] = self.versions()
        result["goals"] = goals(result)
        return result

    def measure_run(self, sides: dict[str, Path]) -> dict:
        # What `docker run --rm` asks for, besides /_ping and /info.
        needed = [("POST", "/containers/create")] + [
            ("POST", f"/containers/x/{verb}") for verb in ("attach", "start", "wait")
        ]
        missing = [f"{m} {p}" for m, p in needed if not_served(sides["overlayctl"], m, p)]
        if missing:
            return {"skipped": "not served yet (404): " + ", ".join(missing)}
        argv = ("run", "--rm", "--network", "none", IMAGE, "true")
        times: dict[str, list[float]] = {name: [] for name in sides}
        total = self.args.warmups + self.args.rounds
        for i in range(total):
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            for name in order:
                began = time.perf_counter()
                proc = self.docker(sides[name], *argv, check=False)
                took = (time.perf_counter() - began) * 1000
                if proc.returncode != 0:
                    return {"failed": f"{name}: docker {' '.join(argv)} exited {proc.returncode}: {tail(proc.stderr)}"}
                if i >= self.args.warmups:
                    times[name].append(took)
            say(f"run: round {i + 1}/{total}")
        return {name: summary(ms) for name, ms in times.items()}

    def measure_list(self, sides: dict[str, Path]) -> dict:
        if not_served(sides["overlayctl"], "GET", "/containers/json"):
            return {"skipped": "GET /containers/json is not served yet (404)"}
        n = self.args.containers
        say(f"list: creating {n} containers on each side")
        for i in range(n):
            # Ours through the CLI (the same store): what is measured is the list.
            self.ctl("create", "--network", "none", "--name", f"bench-{i}", IMAGE, "true")
            self.docker(sides["dockerd"], "create", "--network", "none", "--name", f"bench-{i}", IMAGE, "true")
        times: dict[str, list[float]] = {name: [] for name in sides}
        counts: dict[str, int] = {}
        total = self.args.warmups + self.args.rounds * 2
        for i in range(total):
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            for name in order:
                began = time.perf_counter()
                status, body = http(sides[name], "GET", "/v1.41/containers/json?all=1")
                took = (time.perf_counter() - began) * 1000
                if status != 200:
                    return {"failed": f"{name}: GET /containers/json answered {status}: {tail(body)}"}
                counts[name] = len(json.loads(body))
                if i >= self.args.warmups:
                    times[name].append(took)
        out: dict = {name: summary(ms) for name, ms in times.items()}
        out["listed"] = counts
        return out

    def measure_cold_start(self) -> dict:
        """A fresh service under systemd-socket-activate each round: the
        time from connect() to the whole /_ping answer, and the CPU the
        service had used by then."""
        activate = shutil.which("systemd-socket-activate")
        if activate is None:
            return {"skipped": "systemd-socket-activate is missing (package systemd)"}
        walls, cpus = [], []
        total = self.args.warmups + self.args.rounds
        for i in range(total):
            sock = self.tmp / f"cold-{i}.sock"
            service = self.ctl.argv("system", "service", "--time", "0")
            argv = [activate, "-l", str(sock), "--fdname=docker", "--setenv=PATH", *service]
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.cold_procs.append(proc)
            try:
                deadline = time.monotonic() + 10
                while not sock.exists():
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise OverlayctlFailed("systemd-socket-activate did not listen: " + tail(proc.stderr.read()))
                    time.sleep(0.01)
                time.sleep(0.05)  # listening, not only bound
                began = time.perf_counter()
                status, body = http(sock, "GET", "/_ping", timeout=30)
                wall = (time.perf_counter() - began) * 1000
                cpu = cpu_ms(proc.pid)
                if (status, body) != (200, b"OK"):
                    raise OverlayctlFailed(f"cold /_ping answered {status}: {tail(body)}")
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                if proc.stderr:
                    proc.stderr.close()
            if i >= self.args.warmups:
                walls.append(wall)
                if cpu is not None:
                    cpus.append(cpu)
        return {"wall_ms": summary(walls), "cpu_ms": summary(cpus) if cpus else None}

    def versions(self) -> dict[str, str]:
        return {
            "overlayctl": self.ctl("--version").strip(),
            "dockerd": first_line(["dockerd", "--version"]),
            "docker client": first_line([DOCKER, "--version"]),
            "kernel": os.uname().release,
        }

    def cleanup(self) -> None:
        problems: list[str] = []
        for proc in self.cold_procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        try:
            names = self.ctl("ps", "-a", "-q").split()
            if names:
                self.ctl("rm", "-f", *names)
        except OverlayctlFailed as exc:
            problems.append(f"overlayctl containers: {exc}")
        self.service.stop()
        if self.dockerd.proc is not None and self.dockerd.proc.poll() is None:
            ids = self.docker(self.dockerd.sock, "ps", "-a", "-q", check=False).stdout.split()
            if ids:
                self.docker(self.dockerd.sock, "rm", "-f", *ids, check=False)
        self.dockerd.stop(problems)
        # Everything mounted for this run lies under its temporary tree (the
        # store, dockerd's roots); what other processes mounted meanwhile is
        # theirs, and not reported as left behind.
        others = {point for point in mounts() if not point.startswith(str(self.tmp) + "/")}
        finish_cleanup(self.tmp, self.mounts_before | others, problems, "containers, daemons, mounts")


def goals(result: dict) -> dict:
    out: dict = {}
    for key, ratio in (("run", RUN_GOAL_RATIO), ("list", LIST_GOAL_RATIO)):
        got = result[key]
        if "overlayctl" in got:
            value = got["overlayctl"]["median"] / got["dockerd"]["median"]
            out[key] = {"goal": ratio, "ratio": value, "met": value <= ratio}
        else:
            out[key] = {"goal": ratio, "met": None}
    mem = result["idle_memory_kb"]
    out["idle_rss"] = {"goal_kb": RSS_GOAL_KB, "met": None if mem is None else mem["rss_kb"] <= RSS_GOAL_KB}
    cold = result["cold_start"]
    out["cold_start"] = {
        "goal_ms": COLD_GOAL_MS,
        "met": None if "wall_ms" not in cold else cold["wall_ms"]["median"] <= COLD_GOAL_MS,
    }
    return out


def _verdict(met: bool | None) -> str:
    return "n/a" if met is None else "MET" if met else "MISSED"


def report(result: dict) -> str:
    g = result["goals"]
    lines = [f"Engine API benchmark: {result['rounds']} rounds, interleaved; medians in ms", ""]
    for key, what in (
        ("run", f"docker run --rm --network none {result['image']} true"),
        ("list", f"GET /containers/json?all=1, {result['containers']} containers"),
    ):
        got = result[key]
        if "overlayctl" not in got:
            lines.append(f"{what}: {got.get('skipped') or got.get('failed')}")
        else:
            ours, theirs = got["overlayctl"], got["dockerd"]
            lines.append(
                f"{what}: overlayctl {ours['median']:.1f} (min {ours['min']:.1f}), "
                f"dockerd {theirs['median']:.1f} (min {theirs['min']:.1f})"
            )
            if "listed" in got:
                lines.append(f"  listed: {got['listed']}")
        line = f"goal  {key} <= {g[key]['goal']:.2f} x dockerd: "
        lines.append(line + (f"{g[key]['ratio']:.2f}x -> " if "ratio" in g[key] else "") + _verdict(g[key]["met"]))
        lines.append("")
    mem = result["idle_memory_kb"]
    if mem:
        lines.append(f"idle service: VmRSS {mem['rss_kb'] / 1024:.1f} MB, PSS {mem['pss_kb'] / 1024:.1f} MB")
        lines.append(
            f"goal  idle VmRSS <= {RSS_GOAL_KB / 1024:.0f} MB: {mem['rss_kb'] / 1024:.1f} MB -> "
            + _verdict(g["idle_rss"]["met"])
        )
    else:
        lines.append("idle service: gone before it was measured -> n/a")
    cold = result["cold_start"]
    if "wall_ms" in cold:
        wall, cpu = cold["wall_ms"], cold["cpu_ms"]
        cpu_text = f", CPU {cpu['median']:.0f} ms" if cpu else ""
        lines.append(
            f"cold start (socket activation to /_ping): {wall['median']:.0f} ms (min {wall['min']:.0f}){cpu_text}"
        )
        lines.append(
            f"goal  cold start <= {COLD_GOAL_MS:.0f} ms: {wall['median']:.0f} ms -> " + _verdict(g["cold_start"]["met"])
        )
    else:
        lines.append(f"cold start: {cold['skipped']}")
    lines += ["", "versions:"] + [f"  {k:<14} {v}" for k, v in result["versions"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--rounds", type=int, default=15, help="timed rounds of each measure (default 15)")
    p.add_argument("--warmups", type=int, default=2, help="untimed rounds first (default 2)")
    p.add_argument("--containers", type=int, default=100, help="containers of each side to list (default 100)")
    p.add_argument("--settle", type=float, default=3.0, help="idle seconds before the memory is read (default 3)")
    p.add_argument("--overlayctl", default="overlayctl", metavar="CMD", help="the CLI under test (default: overlayctl)")
    p.add_argument("--checkout", metavar="DIR", help="the CLI of this checkout, started as the launcher starts it")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.containers < 1 or args.warmups < 0:
        p.error("--rounds and --containers must be positive, --warmups 0 or more")
    return run_main(args, Bench, report)


if __name__ == "__main__":
    sys.exit(main())

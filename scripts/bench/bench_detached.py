#!/usr/bin/env python3
"""Benchmark `overlayctl run -d` against `podman run -d`: 100 containers each.

    scripts/setup.sh                              # installs /usr/local/bin/overlayctl
    python3 scripts/bench/bench_detached.py [-n 100] [--json FILE]

Run as root. Both start N containers of the same busybox image
(`run -d --network none IMAGE sleep 3600`), one at a time and interleaved
(overlayctl's i-th, then podman's i-th, the order swapped every round), so
that both see the same machine. It reports:

1. the total wall time of the N `run -d` commands of each (goal:
   overlayctl <= 0.30 x podman), and the median and p90 of one;
2. that all N of each are running afterwards (`ps`, and every PID 1 alive);
3. the memory of an idle supervisor: overlayctl's (the process in
   State.SupervisorPid) against podman's conmon (State.ConmonPid), VmRSS
   and PSS (smaps_rollup: shared pages divided among their users) from
   /proc; goal VmRSS <= 15 MB.

Everything runs against throw-away state (a private overlayctl store and
runroot, a uniquely tagged podman image) and is removed at the end, the
200 containers included. Stdlib only; the helpers are bench_run.py's.

Exit status: 0 when the benchmark ran (goals are reported, not asserted);
1 when overlayctl failed; 2 on a usage or environment error.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_run import (  # noqa: E402
    IMAGE,
    ROOTFS_SH,
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

TIME_GOAL_RATIO = 0.30  # overlayctl's total <= 0.30 x podman's
RSS_GOAL_KB = 15 * 1024  # an idle supervisor's VmRSS
COMMAND = ("sleep", "3600")


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


def summary(values: list[float]) -> dict[str, float]:
    xs = sorted(values)
    p90 = statistics.quantiles(xs, n=10, method="inclusive")[-1] if len(xs) > 1 else xs[0]
    return {"median": statistics.median(xs), "p90": p90, "min": xs[0], "max": xs[-1], "total": sum(xs)}


class Bench:
    def __init__(self, args: argparse.Namespace, cmd: list[str]) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="overlayctl-bench-detached."))
        self.tmp.chmod(0o755)
        self.ctl = Overlayctl(cmd, self.tmp / "store", self.tmp / "run", dict(os.environ))
        self.peers: dict[str, str] = {}
        self.podman: str | None = None
        self.podman_env: dict[str, str] = dict(os.environ)
        self.podman_ref: str | None = None
        self.ours: list[str] = []
        self.theirs: list[str] = []
        self.mounts_before = set(mounts())

    def podman_run(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        assert self.podman is not None
        return run([self.podman, *args], env=self.podman_env, check=check, timeout=timeout)

    def run(self) -> dict:
        args, ctl, tmp = self.args, self.ctl, self.tmp
        tar = tmp / "bb.tar"
        try:
            run(["sh", str(ROOTFS_SH), str(tar)])
        except subprocess.CalledProcessError as exc:
            raise SetupError(f"busybox-rootfs.sh failed: {tail(exc.stderr)}") from exc
        self.peers = peers_env(tmp / "peers", install=not args.no_install)
        ctl("import", str(tar), IMAGE)
        self.podman = self.peers.get("PEER_PODMAN") or None
        skipped = None
        if self.podman is None:
            skipped = "podman is not installed"
        else:
            if self.peers.get("CONTAINERS_CONF"):
                self.podman_env["CONTAINERS_CONF"] = self.peers["CONTAINERS_CONF"]
            ref = f"localhost/overlayctl-bench-detached:{os.getpid()}"
            proc = self.podman_run("import", "--quiet", str(tar), ref, check=False)
            if proc.returncode == 0:
                self.podman_ref = ref
            else:
                skipped = "podman import failed: " + (tail(proc.stderr).splitlines() or ["?"])[-1]
        # A warm-up of each, removed at once: first-use costs are not the subject.
        ctl("rm", "-f", ctl("run", "-d", "--network", "none", IMAGE, *COMMAND).strip())
        if skipped is None:
            warm = self.podman_run("run", "-d", "--network=none", self.podman_ref, *COMMAND).stdout.strip()
            self.podman_run("rm", "-f", "-t", "0", warm)

        ours_ms: list[float] = []
        theirs_ms: list[float] = []
        say(f"starting {args.containers} containers with each (interleaved)")
        for i in range(args.containers):
            steps = [("ours", ours_ms)] + ([("theirs", theirs_ms)] if skipped is None else [])
            for which, times in steps if i % 2 == 0 else reversed(steps):
                t0 = time.perf_counter()
                if which == "ours":
                    self.ours.append(ctl("run", "-d", "--network", "none", IMAGE, *COMMAND).strip())
                else:
                    proc = self.podman_run(
                        "run", "-d", "--network=none", self.podman_ref, *COMMAND, check=False  # type: ignore[arg-type]
                    )
                    if proc.returncode != 0:
                        raise SetupError(f"podman run -d failed: {tail(proc.stderr)}")
                    self.theirs.append(proc.stdout.strip())
                times.append((time.perf_counter() - t0) * 1000)
            if (i + 1) % 20 == 0:
                say(f"{i + 1}/{args.containers}")
        time.sleep(args.settle)  # let every supervisor go idle

        ours_running = self.check_ours()
        theirs_running = self.check_theirs() if skipped is None else None
        ours_mem = [m for m in (proc_memory(p) for p in self.supervisor_pids()) if m]
        theirs_mem = [m for m in (proc_memory(p) for p in self.conmon_pids()) if m] if skipped is None else []
        result = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "containers": args.containers,
            "command": f"run -d --network none {IMAGE} {' '.join(COMMAND)}",
            "overlayctl": self.side(ours_ms, ours_running, ours_mem),
            "podman": {"skipped": skipped} if skipped else self.side(theirs_ms, theirs_running, theirs_mem),
            "versions": self.versions(),
        }
        result["goals"] = goals(result)
        return result

    @staticmethod
    def side(times: list[float], running: int | None, memory: list[dict[str, int]]) -> dict:
        rss = [m["rss_kb"] for m in memory]
        pss = [m["pss_kb"] for m in memory]
        return {
            "run_ms": summary(times),
            "times_ms": [round(t, 2) for t in times],
            "running": running,
            "supervisors_measured": len(memory),
            "rss_kb": summary(rss) if rss else None,
            "pss_kb": summary(pss) if pss else None,
        }

    def check_ours(self) -> int:
        listed = set(self.ctl("ps", "-q", "--no-trunc").split())
        states = json.loads(self.ctl("inspect", *self.ours))
        alive = sum(1 for s in states if s["State"]["Running"] and os.path.exists(f"/proc/{s['State']['Pid']}"))
        return min(len(listed & set(self.ours)), alive)

    def check_theirs(self) -> int:
        listed = self.podman_run("ps", "-q", "--no-trunc").stdout.split()
        return len(set(listed) & set(self.theirs))

    def supervisor_pids(self) -> list[int]:
        return [s["State"]["SupervisorPid"] for s in json.loads(self.ctl("inspect", *self.ours))]

    def conmon_pids(self) -> list[int]:
        # (check=False: inspect prints what it found even if one is gone.)
        out = self.podman_run("inspect", "--format", "{{.State.ConmonPid}}", *self.theirs, check=False).stdout
        return [int(x) for x in out.split() if x.isdigit() and x != "0"]

    def versions(self) -> dict[str, str]:
        v = {"overlayctl": first_line([*self.ctl.cmd, "--version"])}
        if self.podman:
            v["podman"] = first_line([self.podman, "--version"], self.podman_env)
            v["conmon"] = first_line(["conmon", "--version"])
        v["kernel"] = f"{os.uname().release}, {os.cpu_count()} cpus"
        return v

    def cleanup(self) -> None:
        problems = []
        if self.ours:
            proc = run(self.ctl.argv("rm", "-f", *self.ours), check=False, timeout=1200)
            if proc.returncode != 0:
                problems.append(f"overlayctl rm -f failed: {tail(proc.stderr)}")
        if self.podman and self.podman_ref:
            conf = self.podman_env.get("CONTAINERS_CONF")
            if conf and not os.path.exists(conf):
                problems.append(f"{conf} vanished; cleaning podman up without it")
                self.podman_env.pop("CONTAINERS_CONF")
            left = self.podman_run(
                "ps", "-a", "-q", "--filter", f"ancestor={self.podman_ref}", check=False
            ).stdout.split()
            if left:
                self.podman_run("rm", "-f", "-t", "0", *left, check=False, timeout=1200)
            proc = self.podman_run("rmi", self.podman_ref, check=False)
            if proc.returncode != 0:
                problems.append(f"podman rmi failed: {tail(proc.stderr)}")
        finish_cleanup(self.tmp, self.mounts_before, problems, "containers, images, mounts")


def goals(result: dict) -> dict:
    ours, theirs = result["overlayctl"], result["podman"]
    out: dict = {"time_ratio": TIME_GOAL_RATIO, "rss_kb": RSS_GOAL_KB}
    if theirs.get("skipped"):
        out["time_met"] = None
    else:
        ratio = ours["run_ms"]["total"] / theirs["run_ms"]["total"]
        out.update(ratio=ratio, time_met=ratio <= TIME_GOAL_RATIO)
    out["rss_met"] = ours["rss_kb"] is not None and ours["rss_kb"]["max"] <= RSS_GOAL_KB
    return out


def report(result: dict) -> str:
    n = result["containers"]
    lines = [f"run -d benchmark: {n} containers each, `{result['command']}`, interleaved", ""]
    header = f"{'':<12} {'total s':>8} {'median ms':>10} {'p90 ms':>8} {'running':>8}"
    header += "  supervisor VmRSS / PSS (median, max)"
    lines += [header, "-" * len(header)]
    for key, label in (("overlayctl", "overlayctl"), ("podman", "podman")):
        side = result[key]
        if side.get("skipped"):
            lines.append(f"{label:<12} skipped: {side['skipped']}")
            continue
        r = side["run_ms"]
        mem = "-"
        if side["rss_kb"]:
            rss, pss = side["rss_kb"], side["pss_kb"]
            mem = (
                f"{rss['median'] / 1024:.1f} / {pss['median'] / 1024:.1f} MB, "
                f"max {rss['max'] / 1024:.1f} / {pss['max'] / 1024:.1f} MB"
                + (" (conmon)" if key == "podman" else "")
            )
        lines.append(
            f"{label:<12} {r['total'] / 1000:>8.2f} {r['median']:>10.1f} {r['p90']:>8.1f} "
            f"{side['running']!s:>8}  {mem}"
        )
    g = result["goals"]
    lines.append("")
    if g["time_met"] is None:
        lines.append(f"goal  total <= {g['time_ratio']:.2f} x podman: n/a (podman skipped)")
    else:
        verdict = "MET" if g["time_met"] else "MISSED"
        lines.append(f"goal  total <= {g['time_ratio']:.2f} x podman: {g['ratio']:.2f}x -> {verdict}")
    ours = result["overlayctl"]
    if ours["rss_kb"]:
        lines.append(
            f"goal  idle supervisor VmRSS <= {g['rss_kb'] / 1024:.0f} MB: max {ours['rss_kb']['max'] / 1024:.1f} MB"
            f" -> {'MET' if g['rss_met'] else 'MISSED'}"
        )
    lines += ["", "versions:"] + [f"  {k:<12} {v}" for k, v in result["versions"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--containers", type=int, default=100, help="containers of each (default 100)")
    p.add_argument("--settle", type=float, default=2.0, help="seconds to wait before measuring memory (default 2)")
    p.add_argument("--overlayctl", default="overlayctl", metavar="CMD", help="the CLI under test (default: overlayctl)")
    p.add_argument("--checkout", metavar="DIR", help="the CLI of this checkout, started as the launcher starts it")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install missing peers")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    args = p.parse_args(argv)
    if args.containers < 1:
        p.error("--containers must be positive")
    return run_main(args, Bench, report)

if __name__ == "__main__":
    sys.exit(main())

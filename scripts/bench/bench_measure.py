#!/usr/bin/env python3
"""Benchmark overlayctl's size accounting against podman and GNU du.

    scripts/setup.sh                              # installs /usr/local/bin/overlayctl
    python3 scripts/bench/bench_measure.py [-n 10] [--json FILE]

Run as root. Three measurements, each against throw-away state (a private
overlayctl store, uniquely named podman containers and image), removed at
the end:

1. `ps -a -s` with 100 containers: overlayctl against `podman ps -a -s` on
   100 containers of the same busybox image (goal: <= 0.5 x podman),
   interleaved rounds, medians.
2. Sizing an upper dir of 100,000 files (100 directories of 1,000 files of
   0 to 8 KiB): overlayctl's measuring function (`disk_usage`, in a warm
   interpreter) against `du -s --block-size=1` on the same directory,
   interleaved, same bytes checked every round (goal: <= 1.5 x du); also
   `overlayctl inspect -s` end to end, interpreter start-up included.
3. `system df -v` on a store with 20 images and 100 containers (goal: under
   1 s), with `podman system df -v` on its 100 containers for reference.

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
    OverlayctlFailed,
    Row,
    SetupError,
    bench_parser,
    finish_cleanup,
    first_line,
    importtime_argv,
    is_python,
    mounts,
    parse_bench_args,
    peers_env,
    run,
    run_main,
    say,
    tail,
    time_rows,
)

PS_GOAL_RATIO = 0.5
DU_GOAL_RATIO = 1.5
DF_GOAL_MS = 1000.0
CONTAINERS = 100
IMAGES = 20
BIG_DIRS, BIG_FILES = 100, 1000

# Run by overlayctl's own interpreter: the measuring function and du, in
# turn, in one warm process; prints JSON.
SIZING = r"""
import json, subprocess, sys, time
from overlayctl.layer.du import disk_usage
path, rounds = sys.argv[1], int(sys.argv[2])
ours, theirs = [], []
for i in range(rounds + 2):
    order = (0, 1) if i % 2 else (1, 0)
    for which in order:
        t = time.perf_counter()
        if which == 0:
            got = disk_usage(path).bytes
        else:
            out = subprocess.run(["du", "-s", "--block-size=1", path], capture_output=True, check=True)
            du = int(out.stdout.split()[0])
        ms = (time.perf_counter() - t) * 1000
        if i >= 2:
            (ours if which == 0 else theirs).append(ms)
    if got != du:
        sys.exit(f"disk_usage gave {got} bytes, du {du}")
print(json.dumps({"ours": ours, "du": theirs, "bytes": du}))
"""


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return parse_bench_args(bench_parser(__doc__, 10, 2), argv)


class Bench:
    def __init__(self, args: argparse.Namespace, cmd: list[str]) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="overlayctl-bench-measure."))
        self.tmp.chmod(0o755)
        self.ctl = Overlayctl(cmd, self.tmp / "store", self.tmp / "run", dict(os.environ))
        self.peers: dict[str, str] = {}
        self.podman: str | None = None
        self.podman_env: dict[str, str] = dict(os.environ)
        self.podman_ref: str | None = None
        self.podman_names: list[str] = []
        self.mounts_before = set(mounts())

    def podman_run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.podman is not None
        return run([self.podman, *args], env=self.podman_env, check=check, timeout=600)

    def run(self) -> dict:
        args, ctl, tmp = self.args, self.ctl, self.tmp
        tar = tmp / "bb.tar"
        try:
            run(["sh", str(ROOTFS_SH), str(tar)])
        except subprocess.CalledProcessError as exc:
            raise SetupError(f"busybox-rootfs.sh failed: {tail(exc.stderr)}") from exc
        self.peers = peers_env(tmp / "peers", install=not args.no_install)
        ctl("import", str(tar), IMAGE)
        self.setup_podman(tar)

        result: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "iterations": args.iterations}
        result["sizing"] = self.sizing()
        result["ps"] = self.ps()
        result["df"] = self.df()
        result["versions"] = {
            "overlayctl": first_line([*ctl.cmd, "--version"]),
            "podman": first_line(["podman", "--version"]) if self.podman else "not installed",
            "du": first_line(["du", "--version"]),
            "kernel": f"{os.uname().release}, {os.cpu_count()} cpus",
        }
        return result

    def setup_podman(self, tar: Path) -> None:
        self.podman = self.peers.get("PEER_PODMAN") or None
        if self.podman is None:
            return
        if self.peers.get("CONTAINERS_CONF"):
            self.podman_env["CONTAINERS_CONF"] = self.peers["CONTAINERS_CONF"]
        ref = f"localhost/overlayctl-bench-measure:{os.getpid()}"
        proc = self.podman_run("import", "--quiet", str(tar), ref, check=False)
        if proc.returncode != 0:
            say(f"podman import failed, podman skipped: {tail(proc.stderr)}")
            self.podman = None
            return
        self.podman_ref = ref

    # -- 2. one big upper dir ---------------------------------------------

    def sizing(self) -> dict:
        ctl = self.ctl
        cid = ctl("create", "--network", "none", "--name", "big", IMAGE, "true").strip()
        upper = ctl.root / "containers" / cid / "upper"
        say(f"sizing: writing {BIG_DIRS * BIG_FILES} files into {upper}")
        for d in range(BIG_DIRS):
            sub = upper / f"d{d:03}"
            sub.mkdir()
            for f in range(BIG_FILES):
                (sub / f"f{f:04}").write_bytes(b"x" * ((d * BIG_FILES + f) * 37 % 8193))
        interp = importtime_argv(ctl.cmd)[0][0]
        if not is_python(interp):
            raise SetupError(f"cannot find overlayctl's interpreter in {ctl.cmd}")
        rounds = self.args.iterations
        say(f"sizing: {rounds} interleaved rounds of disk_usage and du -s")
        proc = run([interp, "-c", SIZING, str(upper), str(rounds)], check=False, timeout=1800)
        if proc.returncode != 0:
            raise OverlayctlFailed(f"sizing failed: {tail(proc.stderr)}")
        found = json.loads(proc.stdout)
        rows = [
            Row("overlayctl", "overlayctl inspect -s", ctl.argv("inspect", "-s", "big"), ctl.env),
            Row("du", "du -s", ["du", "-s", "--block-size=1", str(upper)]),
        ]
        say(f"sizing: {rounds} interleaved rounds of `overlayctl inspect -s` and du -s")
        time_rows(rows, rounds, self.args.warmups)
        size_rw = json.loads(ctl("inspect", "-s", "big"))[0]["SizeRw"]
        ctl("rm", "big")
        ours, theirs = median(found["ours"]), median(found["du"])
        cli, du_cli = median(rows[0].times), median(rows[1].times)
        return {
            "files": BIG_DIRS * BIG_FILES,
            "bytes": found["bytes"],
            "inspect_size_rw": size_rw,
            "function_ms": ours,
            "du_ms": theirs,
            "ratio": ours / theirs,
            "cli_ms": cli,
            "du_cli_ms": du_cli,
            "cli_ratio": cli / du_cli,
            "goal_met": ours <= DU_GOAL_RATIO * theirs and size_rw == found["bytes"],
        }

    # -- 1. ps -a -s ------------------------------------------------------

    def ps(self) -> dict:
        ctl = self.ctl
        say(f"ps: creating {CONTAINERS} containers with each")
        for i in range(CONTAINERS):
            ctl("create", "--network", "none", "--name", f"c{i:03}", IMAGE, "sh", "-c", "true")
            if self.podman:
                name = f"overlayctl-bench-measure-{os.getpid()}-{i:03}"
                self.podman_run("create", "--network=none", "--name", name, self.podman_ref, "true")
                self.podman_names.append(name)
        # Some containers with something in their upper dirs.
        for i in range(0, CONTAINERS, 10):
            (ctl.root / "containers").joinpath(self.container_id(f"c{i:03}"), "upper", "data").write_bytes(b"y" * 5000)
        rows = [Row("overlayctl", "overlayctl ps -a -s", ctl.argv("ps", "-a", "-s"), ctl.env)]
        if self.podman:
            rows.append(Row("podman", "podman ps -a -s", [self.podman, "ps", "-a", "-s"], self.podman_env))
        time_rows(rows, self.args.iterations, self.args.warmups)
        ours = median(rows[0].times)
        theirs = median(rows[1].times) if self.podman else None
        return {
            "containers": CONTAINERS,
            "overlayctl_ms": ours,
            "podman_ms": theirs,
            "ratio": ours / theirs if theirs else None,
            "goal_met": ours <= PS_GOAL_RATIO * theirs if theirs else None,
        }

    def container_id(self, name: str) -> str:
        return json.loads(self.ctl("inspect", name))[0]["Id"]

    # -- 3. system df -v --------------------------------------------------

    def df(self) -> dict:
        ctl = self.ctl
        say(f"df: committing {IMAGES - 1} more images")
        for i in range(1, IMAGES):
            ctl("run", "--network", "none", "--name", f"img{i}", IMAGE, "sh", "-c", f"echo {i} > /f{i}")
            ctl("commit", f"img{i}", f"img:{i}")
            ctl("rm", f"img{i}")
        rows = [Row("overlayctl", "overlayctl system df -v", ctl.argv("system", "df", "-v"), ctl.env)]
        if self.podman:
            rows.append(Row("podman", "podman system df -v", [self.podman, "system", "df", "-v"], self.podman_env))
        time_rows(rows, self.args.iterations, self.args.warmups)
        report = json.loads(ctl("system", "df", "-v", "--format", "json"))
        store_du = int(run(["du", "-s", "--block-size=1", str(ctl.root)]).stdout.split()[0])
        ours = median(rows[0].times)
        return {
            "images": len(report["Images"]),
            "containers": len(report["Containers"]),
            "overlayctl_ms": ours,
            "podman_ms": median(rows[1].times) if self.podman else None,
            "total": report["Total"],
            "du_of_store": store_du,
            "goal_met": ours < DF_GOAL_MS,
        }

    # -- clean-up ---------------------------------------------------------

    def cleanup(self) -> None:
        problems = []
        if self.podman and self.podman_names:
            proc = self.podman_run("rm", "-f", *self.podman_names, check=False)
            if proc.returncode != 0:
                problems.append(f"podman rm failed: {tail(proc.stderr)}")
        if self.podman and self.podman_ref:
            proc = self.podman_run("rmi", self.podman_ref, check=False)
            if proc.returncode != 0:
                problems.append(f"podman rmi {self.podman_ref} failed: {tail(proc.stderr)}")
        finish_cleanup(self.tmp, self.mounts_before, problems, "containers, images, mounts")


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("MET" if met else "MISSED")


def report(result: dict) -> str:
    s, p, d = result["sizing"], result["ps"], result["df"]
    podman = f"{p['podman_ms']:.1f} ms" if p["podman_ms"] else "n/a"
    ratio = f"{p['ratio']:.2f}x" if p["ratio"] else "n/a"
    lines = [
        f"size accounting benchmark, {result['iterations']} interleaved rounds, medians",
        "",
        f"ps -a -s, {p['containers']} containers: overlayctl {p['overlayctl_ms']:.1f} ms, podman {podman} "
        f"-> {ratio}; goal <= {PS_GOAL_RATIO}x: {verdict(p['goal_met'])}",
        f"sizing an upper dir of {s['files']} files ({s['bytes']} bytes, same as du every round):",
        f"  disk_usage {s['function_ms']:.1f} ms, du -s {s['du_ms']:.1f} ms -> {s['ratio']:.2f}x; "
        f"goal <= {DU_GOAL_RATIO}x: {verdict(s['goal_met'])}",
        f"  end to end: overlayctl inspect -s {s['cli_ms']:.1f} ms, du -s {s['du_cli_ms']:.1f} ms "
        f"-> {s['cli_ratio']:.2f}x (SizeRw {s['inspect_size_rw']})",
        f"system df -v, {d['images']} images, {d['containers']} containers: {d['overlayctl_ms']:.1f} ms"
        + (f" (podman system df -v: {d['podman_ms']:.1f} ms)" if d["podman_ms"] else "")
        + f"; goal < {DF_GOAL_MS:.0f} ms: {verdict(d['goal_met'])}",
        f"  its total {d['total']} bytes, du -s of the store {d['du_of_store']} bytes",
        "",
        "versions:",
    ]
    lines += [f"  {k:<12} {v}" for k, v in result["versions"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return run_main(parse_args(argv), Bench, report)


if __name__ == "__main__":
    sys.exit(main())

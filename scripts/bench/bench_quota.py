#!/usr/bin/env python3
"""Benchmark what per-container size limits (`--storage-opt size=`) cost.

    scripts/setup.sh test-setup                   # overlayctl, podman, mkfs.ext4
    python3 scripts/bench/bench_quota.py [-n 10] [--containers 1000] [--json FILE]

Run as root on a kernel with project quotas (CONFIG_QUOTA, CONFIG_QFMT_V2:
Debian's; scripts/vagrant-test.sh brings up such a VM). The script makes
its own filesystems, two loop-mounted ext4 images of the same size: one
with the features quota and project, mounted -o prjquota, the other plain.
Everything (the images, their mounts and loop devices, the stores, podman's
root) is removed at the end.

1. `ps -a -s` with 1000 containers: overlayctl on the prjquota filesystem,
   every container created with `--storage-opt size=`, so that its size is
   read from its project's accounting; overlayctl on the plain filesystem,
   no limits, so that each upper dir is walked; `podman ps -a -s` with
   1000 containers in a temporary root (`podman --root --runroot`) on the
   plain filesystem. One container in ten has 5000 bytes in its upper dir.
   Interleaved rounds, medians.
2. The start cost of a limit: `run --rm --storage-opt size=` against a
   plain `run --rm` on the same prjquota store, interleaved in the same
   rounds (goal: under 2 ms more).

Exit status: 0 when the benchmark ran (goals are reported, not asserted);
1 when overlayctl failed; 2 on a usage or environment error (no project
quotas here, among others).
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_run import (  # noqa: E402
    IMAGE,
    ROOTFS_SH,
    Overlayctl,
    Row,
    SetupError,
    bench_parser,
    finish_cleanup,
    first_line,
    mounts,
    parse_bench_args,
    peers_env,
    run,
    run_main,
    say,
    tail,
    time_rows,
    unmount_under,
)

START_GOAL_MS = 2.0  # run --rm --storage-opt size= at most 2 ms slower than run --rm
SIZE = "100M"  # every limited container's --storage-opt size=
IMAGE_MB = 4096  # each loop filesystem: room for 2 x 1000 containers and podman's
DATA_EVERY = 10  # one container in ten gets DATA_BYTES in its upper dir
DATA_BYTES = 5000
PARALLEL = 4  # creates at a time while setting up (untimed)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = bench_parser(__doc__, 10, 2)
    p.add_argument("--containers", type=int, default=1000, help="containers for ps -a -s (default 1000)")
    p.add_argument("--only", choices=("ps", "start"), help="run one of the two measurements")
    return parse_bench_args(p, argv, ("containers",))


class LoopFs:
    """An ext4 image of its own, loop-mounted; `quota`: with the features
    quota and project and mounted -o prjquota."""

    def __init__(self, top: Path, name: str, quota: bool) -> None:
        self.image = top / f"{name}.img"
        self.mnt = top / name
        self.quota = quota
        self.loop = ""

    def make(self) -> None:
        self.mnt.mkdir()
        with open(self.image, "wb") as f:
            f.truncate(IMAGE_MB << 20)
        features = ["-O", "quota,project", "-E", "quotatype=prjquota"] if self.quota else []
        run(["mkfs.ext4", "-q", "-F", *features, str(self.image)])
        self.loop = run(["losetup", "--find", "--show", str(self.image)]).stdout.strip()
        proc = run(
            ["mount", "-t", "ext4", "-o", "prjquota" if self.quota else "defaults", self.loop, str(self.mnt)],
            check=False,
        )
        if proc.returncode != 0:
            raise SetupError(f"mount -o prjquota failed: {tail(proc.stderr)} (no project quotas in this kernel?)")

    def remove(self) -> list[str]:
        problems = []
        if self.loop:
            unmount_under(self.mnt)
            proc = run(["losetup", "-d", self.loop], check=False)
            if proc.returncode != 0:
                problems.append(f"losetup -d {self.loop}: {tail(proc.stderr)}")
        return problems


class Bench:
    def __init__(self, args: argparse.Namespace, cmd: list[str]) -> None:
        self.args = args
        self.cmd = cmd
        self.tmp = Path(tempfile.mkdtemp(prefix="overlayctl-bench-quota."))
        self.tmp.chmod(0o755)
        self.quota_fs = LoopFs(self.tmp, "prjquota", quota=True)
        self.plain_fs = LoopFs(self.tmp, "plain", quota=False)
        self.podman: list[str] | None = None
        self.podman_env: dict[str, str] = dict(os.environ)
        self.mounts_before = set(mounts())

    def run(self) -> dict:
        args, tmp = self.args, self.tmp
        tar = tmp / "bb.tar"
        try:
            run(["sh", str(ROOTFS_SH), str(tar)])
        except subprocess.CalledProcessError as exc:
            raise SetupError(f"busybox-rootfs.sh failed: {tail(exc.stderr)}") from exc
        peers = peers_env(tmp / "peers", install=not args.no_install)
        for fs in (self.quota_fs, self.plain_fs):
            fs.make()
        limited = Overlayctl(self.cmd, self.quota_fs.mnt / "store", tmp / "run-limited", dict(os.environ))
        plain = Overlayctl(self.cmd, self.plain_fs.mnt / "store", tmp / "run-plain", dict(os.environ))
        for ctl in (limited, plain):
            ctl("import", str(tar), IMAGE)
        why = json.loads(limited("info", "--format", "json"))
        self.setup_podman(peers, tar)

        result: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "iterations": args.iterations}
        result["start"] = self.start(limited) if args.only != "ps" else None
        result["ps"] = self.ps(limited, plain) if args.only != "start" else None
        result["versions"] = {
            "overlayctl": first_line([*self.cmd, "--version"]),
            "podman": first_line([*self.podman, "--version"]) if self.podman else "not installed",
            "kernel": f"{os.uname().release}, {os.cpu_count()} cpus",
            "store": _quota_line(why),
        }
        return result

    def setup_podman(self, peers: dict[str, str], tar: Path) -> None:
        exe = peers.get("PEER_PODMAN")
        if not exe:
            return
        if peers.get("CONTAINERS_CONF"):
            self.podman_env["CONTAINERS_CONF"] = peers["CONTAINERS_CONF"]
        root = self.plain_fs.mnt / "podman"
        self.podman = [
            exe,
            "--root",
            str(root),
            "--runroot",
            str(self.tmp / "podman-run"),
            "--storage-driver",
            "overlay",
        ]
        proc = run([*self.podman, "import", "--quiet", str(tar), "localhost/bb:1"], env=self.podman_env, check=False)
        if proc.returncode != 0:
            say(f"podman import failed, podman skipped: {tail(proc.stderr)}")
            self.podman = None

    # -- 2. the start cost of a limit -----------------------------------------

    def start(self, ctl: Overlayctl) -> dict:
        base = ["run", "--rm", "--network", "none"]
        sized = [*base, "--storage-opt", f"size={SIZE}"]
        rows = [
            Row("overlayctl", "run --rm", ctl.argv(*base, IMAGE, "true"), ctl.env),
            Row("overlayctl", f"run --rm --storage-opt size={SIZE}", ctl.argv(*sized, IMAGE, "true"), ctl.env),
        ]
        say(f"start: {self.args.iterations} interleaved rounds of run --rm with and without --storage-opt")
        time_rows(rows, self.args.iterations, self.args.warmups)
        plain_ms, sized_ms = median(rows[0].times), median(rows[1].times)
        return {
            "plain_ms": plain_ms,
            "sized_ms": sized_ms,
            "extra_ms": sized_ms - plain_ms,
            "plain_stats": rows[0].stats(),
            "sized_stats": rows[1].stats(),
            "goal_met": sized_ms - plain_ms < START_GOAL_MS,
        }

    # -- 1. ps -a -s ------------------------------------------------------------

    def ps(self, limited: Overlayctl, plain: Overlayctl) -> dict:
        n = self.args.containers
        say(f"ps: creating {n} containers in each store" + (" and podman's" if self.podman else ""))
        t0 = time.monotonic()
        jobs = []
        for i in range(n):
            name = f"c{i:04}"
            jobs.append(
                lambda name=name: limited(
                    "create", "--network", "none", "--storage-opt", f"size={SIZE}", "--name", name, IMAGE, "true"
                )
            )
            jobs.append(lambda name=name: plain("create", "--network", "none", "--name", name, IMAGE, "true"))
            if self.podman:
                jobs.append(lambda name=name: self.podman_create(name))
        with ThreadPoolExecutor(PARALLEL) as pool:
            for done, _ in enumerate(pool.map(lambda job: job(), jobs), 1):
                if done % 300 == 0:
                    say(f"ps: {done}/{len(jobs)} created")
        say(f"ps: created in {time.monotonic() - t0:.0f} s")
        for ctl in (limited, plain):
            listing = ctl("ps", "-a", "--no-trunc", "--format", "{{.Names}} {{.ID}}")
            ids = dict(line.split() for line in listing.splitlines())
            for i in range(0, n, DATA_EVERY):
                (ctl.root / "containers" / ids[f"c{i:04}"] / "upper" / "data").write_bytes(b"y" * DATA_BYTES)
        rows = [
            Row("overlayctl", "overlayctl ps -a -s, limited (prjquota)", limited.argv("ps", "-a", "-s"), limited.env),
            Row("overlayctl", "overlayctl ps -a -s, no limits", plain.argv("ps", "-a", "-s"), plain.env),
        ]
        if self.podman:
            rows.append(Row("podman", "podman ps -a -s", [*self.podman, "ps", "-a", "-s"], self.podman_env))
        time_rows(rows, self.args.iterations, self.args.warmups)
        sizes = {}
        for label, ctl in (("limited", limited), ("plain", plain)):
            lines = ctl("ps", "-a", "-s", "--format", "{{.Names}} {{.Size}}").splitlines()
            sizes[label] = sorted({line.split(" ", 1)[1] for line in lines})
        return {
            "containers": n,
            "limited_ms": median(rows[0].times),
            "plain_ms": median(rows[1].times),
            "podman_ms": median(rows[2].times) if self.podman else None,
            "sizes_shown": sizes,
            "stats": {r.label: r.stats() for r in rows},
        }

    def podman_create(self, name: str) -> None:
        assert self.podman is not None
        proc = run(
            [*self.podman, "create", "--network=none", "--name", name, "localhost/bb:1", "true"],
            env=self.podman_env,
            check=False,
        )
        if proc.returncode != 0:
            raise SetupError(f"podman create failed: {tail(proc.stderr)}")

    # -- clean-up ---------------------------------------------------------------

    def cleanup(self) -> None:
        problems = []
        if self.podman:
            proc = run([*self.podman, "rm", "-a", "-f"], env=self.podman_env, check=False, timeout=1800)
            if proc.returncode != 0:
                problems.append(f"podman rm -a -f failed: {tail(proc.stderr)}")
        for fs in (self.quota_fs, self.plain_fs):
            problems += fs.remove()
        finish_cleanup(self.tmp, self.mounts_before, problems, "containers, loop devices, mounts")


def _quota_line(info: dict) -> str:
    """What `info` says of the limited store's filesystem (DriverStatus:
    the backing filesystem, whether it enforces project quotas)."""
    return ", ".join(f"{k}: {v}" for k, v in info.get("DriverStatus") or []) or "(info has no DriverStatus)"


def report(result: dict) -> str:
    s, p = result["start"], result["ps"]
    lines = [f"size limit benchmark, {result['iterations']} interleaved rounds, medians", ""]
    if p:
        podman = f"{p['podman_ms']:.1f} ms" if p["podman_ms"] else "n/a"
        lines += [
            f"ps -a -s, {p['containers']} containers: limited (sizes from the quota accounting) "
            f"{p['limited_ms']:.1f} ms, no limits (upper dirs walked) {p['plain_ms']:.1f} ms, podman {podman}",
            f"  sizes shown: limited {p['sizes_shown']['limited']}, no limits {p['sizes_shown']['plain']}",
        ]
    if s:
        lines.append(
            f"run --rm: {s['plain_ms']:.1f} ms; with --storage-opt size={SIZE}: {s['sized_ms']:.1f} ms "
            f"-> {s['extra_ms']:+.1f} ms; goal < {START_GOAL_MS:.0f} ms more: {'MET' if s['goal_met'] else 'MISSED'}"
        )
    lines += ["", "versions:"]
    lines += [f"  {k:<12} {v}" for k, v in result["versions"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return run_main(parse_args(argv), Bench, report)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark a rebuild that reuses a `RUN --mount=type=cache` directory
against the same rebuild without the cache mount, reported as a ratio;
podman build does the same two rebuilds alongside, when installed.

    scripts/setup.sh                          # installs /usr/local/bin/overlayctl
    python3 scripts/bench/bench_build_cachemount.py [-n 10] [--json FILE]

Run as root. The workload is a dependency install as real Dockerfiles do it:
a step "downloads" PACKAGES packages of PACKAGE_BYTES bytes (each one made by
its own process, as a fetch is) into a download directory, then installs
them into /app. With the cache mount the download directory is the cache,
and a download is skipped when its file is already there:

    FROM bb:1
    COPY stamp /stamp
    RUN --mount=type=cache,target=/downloads  sh -c 'fetch-missing; install'

Without it, the directory is made and removed by the step itself:

    FROM bb:1
    COPY stamp /stamp
    RUN sh -c 'mkdir /downloads; fetch-all; install; rm -rf /downloads'

Each round changes `stamp` (a source edit), so the RUN step runs again in
both builds, and times one rebuild of each. The first build of each, which
fills the cache, is a warm-up and is not timed. Both images hold the same
/app, checked once (file count and bytes); the cache mount's build has no
/downloads in its image.

Everything lives in one temporary directory (overlayctl --root/--runroot,
podman --root/--runroot/--tmpdir), removed at the end. Stdlib only.

Exit status: 0 when the benchmark ran; 1 when overlayctl itself failed; 2
on a usage or environment error; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_run import (  # noqa: E402 - the path above makes bench_run importable
    REPO,
    ROOTFS_SH,
    Overlayctl,
    OverlayctlFailed,
    Row,
    SetupError,
    bench_parser,
    finish_cleanup,
    first_line,
    fmt_ms,
    is_python,
    mounts,
    parse_bench_args,
    peers_env,
    run,
    run_main,
    say,
    tail,
)

BASE = "bb:1"
PACKAGES = 300
PACKAGE_BYTES = 32 * 1024
# One process per package, as a fetch is; `cat` of the file is the install.
FETCH = "head -c {bytes} /dev/urandom > /downloads/p$i.pkg"
WITH_MOUNT = """\
FROM {base}
COPY stamp /stamp
RUN --mount=type=cache,target=/downloads,id=bench-downloads sh -c '\
i=0; while [ $i -lt {packages} ]; do [ -f /downloads/p$i.pkg ] || {fetch}; i=$((i+1)); done; \
mkdir -p /app && cat /downloads/*.pkg > /app/deps.bin'
"""
WITHOUT_MOUNT = """\
FROM {base}
COPY stamp /stamp
RUN sh -c 'mkdir /downloads; \
i=0; while [ $i -lt {packages} ]; do {fetch}; i=$((i+1)); done; \
mkdir -p /app && cat /downloads/*.pkg > /app/deps.bin; rm -rf /downloads'
"""
CHECK = "wc -c < /app/deps.bin; test -e /downloads && echo downloads-in-image || echo clean"
CHECK_EXPECTED = [str(PACKAGES * PACKAGE_BYTES), "clean"]
VARIANTS = ("cache-mount", "no-mount")


@dataclass
class Variant:
    """One tool building one of the two Dockerfiles from its own context."""

    tool: str  # "overlayctl" or "podman"
    name: str  # "cache-mount" or "no-mount"
    prefix: list[str]
    context: Path
    image: str  # as `run` names it
    env: dict[str, str]
    build_opts: list[str] = field(default_factory=list)
    run_opts: list[str] = field(default_factory=list)
    row: Row | None = None
    skipped: str | None = None
    check: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.tool}-{self.name}"

    def argv(self) -> list[str]:
        return [*self.prefix, "build", *self.build_opts, "-q", "-t", self.image, str(self.context)]

    def touch(self, round_no: int) -> None:
        """A source edit: the COPY, and so the RUN after it, miss the cache."""
        (self.context / "stamp").write_text(f"{self.key} {round_no} {time.time_ns()}\n")


def write_context(ctx: Path, dockerfile: str, base: str) -> None:
    ctx.mkdir(parents=True)
    fetch = FETCH.format(bytes=PACKAGE_BYTES)
    (ctx / "Dockerfile").write_text(dockerfile.format(base=base, packages=PACKAGES, fetch=fetch))
    (ctx / "stamp").write_text("0\n")


def once(v: Variant, round_no: int, timed: bool) -> None:
    assert v.row is not None
    v.touch(round_no)
    try:
        ms, rc, err = v.row.once()
    except subprocess.TimeoutExpired as exc:
        ms, rc, err = exc.timeout * 1000, -1, f"timed out after {exc.timeout:.0f}s".encode()
    if rc != 0:
        if v.tool == "overlayctl":
            raise OverlayctlFailed(f"{shlex.join(v.row.argv)} exited {rc} in round {round_no}\n{tail(err)}")
        v.row.failures += 1
        v.row.last_error = f"exit {rc}: {tail(err)}"
    elif timed:
        v.row.times.append(ms)


def ratio(a: Row | None, b: Row | None) -> float | None:
    sa, sb = (a.stats() if a else None), (b.stats() if b else None)
    if not sa or not sb:
        return None
    return sa["median"] / sb["median"]


def report(result: dict) -> str:
    lines = [
        f"RUN --mount=type=cache rebuild benchmark: {PACKAGES} packages x {PACKAGE_BYTES // 1024} KiB fetched "
        f"(one process each) then installed, on {BASE}; {result['iterations']} rounds after "
        f"{result['warmups']} warm-ups (ms, wall time; each round edits a source file first)",
        f"stores on: {result['filesystem']}",
        "",
    ]
    header = f"{'rebuild':<36} {'median':>8} {'p90':>8} {'min':>8}  n"
    lines += [header, "-" * len(header)]
    for key, r in result["runs"].items():
        if r["skipped"]:
            lines.append(f"{key:<36} skipped: {r['skipped']}")
            continue
        fails = f"  ({r['failures']} failed: {r['last_error'].splitlines()[0][:60]})" if r["failures"] else ""
        lines.append(
            f"{r['label']:<36} {fmt_ms(r['median']):>8} {fmt_ms(r['p90']):>8} {fmt_ms(r['min']):>8}  "
            f"{len(r['times_ms'])}{fails}"
        )
    lines.append("")
    for tool, value in result["ratios"].items():
        text = f"{value:.3f}" if value is not None else "n/a"
        lines.append(f"ratio {tool}: rebuild with the cache mount / without = {text}")
    lines.append("")
    lines.append(f"checks (/app bytes, /downloads absent; expected {CHECK_EXPECTED}):")
    for key, check in result["checks"].items():
        lines.append(f"  {key:<24} {check} {'ok' if check == CHECK_EXPECTED else 'WRONG'}")
    lines.append("")
    lines.append("versions:")
    for k, v in result["versions"].items():
        lines.append(f"  {k:<12} {v}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = bench_parser(__doc__, 10, 1)
    p.add_argument("--no-podman", action="store_true", help="leave podman out")
    return parse_bench_args(p, argv)


class Bench:
    """One benchmark run and everything it has to clean up afterwards."""

    def __init__(self, args: argparse.Namespace, cmd: list[str]) -> None:
        self.args = args
        # Short: podman refuses a runroot longer than 50 characters.
        self.tmp = Path(tempfile.mkdtemp(prefix="overlayctl-cm."))
        self.tmp.chmod(0o755)
        self.ctl = Overlayctl(cmd, self.tmp / "store", self.tmp / "run", dict(os.environ))
        self.mounts_before = set(mounts())
        self.podman_prefix: list[str] = []
        self.podman_env: dict[str, str] = {}

    def run(self) -> dict:
        args, tmp, ctl = self.args, self.tmp, self.ctl
        found = first_line(["findmnt", "-n", "-o", "FSTYPE,SOURCE,TARGET", "-T", str(tmp)]).split()
        filesystem = f"{found[0]} ({found[1]} on {found[2]})" if len(found) == 3 else " ".join(found)
        tar = tmp / "bb.tar"
        say(f"base image: sh {ROOTFS_SH.relative_to(REPO)} {tar}")
        try:
            run(["sh", str(ROOTFS_SH), str(tar)])
        except subprocess.CalledProcessError as exc:
            raise SetupError(f"busybox-rootfs.sh failed: {tail(exc.stderr)}") from exc
        ctl("import", str(tar), BASE)
        variants = []
        for name, dockerfile in zip(VARIANTS, (WITH_MOUNT, WITHOUT_MOUNT), strict=True):
            ctx = tmp / f"ctx-overlayctl-{name}"
            write_context(ctx, dockerfile, BASE)
            variants.append(
                Variant(
                    "overlayctl",
                    name,
                    ctl.argv(),
                    ctx,
                    f"cm-{name}:1",
                    ctl.env,
                    ["--network", "none"],
                    ["--network", "none"],
                )
            )
        if not args.no_podman:
            variants += self.podman_variants(tar)
        for v in variants:
            v.row = Row(v.key, f"{v.tool} rebuild, {v.name}", v.argv(), v.env)

        say("probe: the first build of each (fills the cache mount), then a look inside the image")
        for v in variants:
            if v.skipped:
                continue
            once(v, 0, timed=False)
            assert v.row is not None
            if v.row.failures:
                v.skipped = v.row.last_error.splitlines()[0][:200]
                continue
            proc = run([*v.prefix, "run", "--rm", *v.run_opts, v.image, "sh", "-c", CHECK], env=v.env, check=False)
            v.check = proc.stdout.split() if proc.returncode == 0 else [f"exit {proc.returncode}", tail(proc.stderr)]
        active = [v for v in variants if not v.skipped]
        total = args.warmups + args.iterations
        for i in range(total):
            order = active if i % 2 == 0 else active[::-1]
            for v in order:
                once(v, i + 1, timed=i >= args.warmups)
            say(f"round {i + 1}/{total}" + (" (warm-up)" if i < args.warmups else ""))
        by_key = {v.key: v for v in variants}
        ratios = {}
        for tool in ("overlayctl", "podman"):
            a, b = by_key.get(f"{tool}-cache-mount"), by_key.get(f"{tool}-no-mount")
            if a and b and not a.skipped and not b.skipped:
                ratios[tool] = ratio(a.row, b.row)
        return {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "iterations": args.iterations,
            "warmups": args.warmups,
            "filesystem": filesystem,
            "workload": {
                "packages": PACKAGES,
                "package_bytes": PACKAGE_BYTES,
                "dockerfiles": {v.key: (v.context / "Dockerfile").read_text() for v in variants},
            },
            "runs": {v.key: self.row_result(v) for v in variants},
            "ratios": ratios,
            "checks": {v.key: v.check for v in variants if not v.skipped},
            "versions": self.versions(),
        }

    @staticmethod
    def row_result(v: Variant) -> dict:
        st = (v.row.stats() if v.row else None) or {}
        return {
            "label": v.row.label if v.row else v.key,
            "argv": v.row.argv if v.row else [],
            "skipped": v.skipped,
            "median": st.get("median"),
            "p90": st.get("p90"),
            "min": st.get("min"),
            "times_ms": [round(t, 3) for t in (v.row.times if v.row else [])],
            "failures": v.row.failures if v.row else 0,
            "last_error": v.row.last_error if v.row else "",
        }

    def podman_variants(self, tar: Path) -> list[Variant]:
        peers = peers_env(self.tmp / "peers", install=not self.args.no_install)
        podman = peers.get("PEER_PODMAN") or ""
        env = dict(os.environ)
        if peers.get("CONTAINERS_CONF"):
            env["CONTAINERS_CONF"] = peers["CONTAINERS_CONF"]
        store = self.tmp / "pod"
        (store / "scratch").mkdir(parents=True)
        env["TMPDIR"] = str(store / "scratch")
        prefix = [
            podman or "podman",
            "--root",
            str(store / "root"),
            "--runroot",
            str(store / "run"),
            "--tmpdir",
            str(store / "tmp"),
        ]
        variants = []
        for name, dockerfile in zip(VARIANTS, (WITH_MOUNT, WITHOUT_MOUNT), strict=True):
            ctx = self.tmp / f"ctx-podman-{name}"
            write_context(ctx, dockerfile, f"localhost/{BASE}")
            variants.append(
                Variant(
                    "podman", name, prefix, ctx, f"localhost/cm-{name}:1", env, ["--network=none"], ["--network=none"]
                )
            )
        if not podman:
            for v in variants:
                v.skipped = "not installed"
            return variants
        self.podman_prefix, self.podman_env = prefix, env
        proc = run([*prefix, "import", "--quiet", str(tar), BASE], env=env, check=False)
        if proc.returncode != 0:
            for v in variants:
                v.skipped = "podman import failed: " + (tail(proc.stderr).splitlines() or ["?"])[-1]
        return variants

    def versions(self) -> dict[str, str]:
        v = {"overlayctl": first_line([*self.ctl.cmd, "--version"], self.ctl.env)}
        if is_python(self.ctl.cmd[0]):
            v["python"] = f"{first_line([self.ctl.cmd[0], '--version'])} ({self.ctl.cmd[0]})"
        if self.podman_prefix:
            v["podman"] = first_line([self.podman_prefix[0], "--version"], self.podman_env)
        v["kernel"] = f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} cpus"
        return v

    def cleanup(self) -> None:
        problems = []
        if self.podman_prefix:
            left = run([*self.podman_prefix, "ps", "-a", "-q", "--external"], env=self.podman_env, check=False)
            if left.stdout.split():
                problems.append(f"podman build containers left: {left.stdout.split()} (removed)")
                run([*self.podman_prefix, "rm", "-f", *left.stdout.split()], env=self.podman_env, check=False)
            proc = run([*self.podman_prefix, "rmi", "-a", "-f"], env=self.podman_env, check=False)
            if proc.returncode != 0:
                problems.append(f"podman rmi -a failed: {tail(proc.stderr)}")
        finish_cleanup(self.tmp, self.mounts_before, problems, "mounts, containers, images")


def main(argv: list[str] | None = None) -> int:
    return run_main(parse_args(argv), Bench, report)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark `overlayctl build` against `podman build`, in one interleaved run.

    scripts/setup.sh                          # installs /usr/local/bin/overlayctl
    python3 scripts/bench/bench_build.py [-n 10] [--case NAME] [--json FILE]

Run as root. Each case is one Dockerfile (see CASES):

copy-run, over a context of 1000 files of 100 bytes in 10 directories:

    FROM bb:1                  (localhost/bb:1 for podman)
    COPY . /app
    RUN sh -c 'echo hi > /hello'
    CMD ["/bin/sh"]

two-stage: two stages that do not depend on each other, each RUNning some
CPU and disk work, and a last stage that copies from both; podman gets
`--jobs=2`, its way of building independent stages at once.

Each round times, for both tools and every case, a cold build
(`--no-cache`), then a fully cached rebuild (the cold build fills the cache;
a probe before the rounds checks that the rebuild reports a cache hit for
every step); then it removes the built image so that the next cold build
starts from a store holding only bb:1. Goals, per case: cold median <= 0.50
x podman's, cached median <= 0.30 x podman's.

SELF_RATIOS is where cases that time one overlayctl build against another
(not against podman) go, each reported as a ratio.

Both tools work on private stores in one temporary directory (overlayctl
--root/--runroot, podman --root/--runroot/--tmpdir), removed at the end.
podman's configuration comes from peers.sh, as for bench_run.py, whose helpers
this script imports. Stdlib only.

Exit status: 0 when the benchmark ran, whether or not a goal was met; 1 when
overlayctl itself failed; 2 on a usage or environment error; 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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

COLD_GOAL_RATIO = 0.50  # overlayctl build --no-cache median <= 0.50 x podman's
CACHED_GOAL_RATIO = 0.30  # overlayctl cached rebuild median <= 0.30 x podman's
BASE = "bb:1"
CONTEXT_DIRS = 10
CONTEXT_FILES = 1000
FILE_BYTES = 100
CONTEXT_MTIME = 1_700_000_000  # fixed, so the context is the same in every run
PHASES = ("cold", "cached")


@dataclass(frozen=True)
class Case:
    """One Dockerfile timed with both tools."""

    name: str
    title: str  # what the report calls it
    dockerfile: str  # FROM {base}
    check_script: str  # run once in the built image...
    check_expected: list[str]  # ...prints these words
    cached_hits: int  # "Using cache" lines a rebuild must show at least
    podman_opts: tuple[str, ...] = ()


# Each stage spends about as long in its RUN: CPU (hashing 100 MiB of
# zeros) and disk (a 4 MiB file of random bytes, which the last stage copies).
_STAGE_RUN = (
    "RUN dd if=/dev/zero bs=1M count=100 2>/dev/null | md5sum > /{name}.sum"
    " && head -c 4194304 /dev/urandom > /{name}.bin"
)
CASES = {
    "copy-run": Case(
        "copy-run",
        f"{CONTEXT_FILES} files x {FILE_BYTES} B context, COPY + RUN + CMD",
        """\
FROM {base}
COPY . /app
RUN sh -c 'echo hi > /hello'
CMD ["/bin/sh"]
""",
        "cat /hello; find /app -type f | wc -l; wc -c < /app/d0/f0000.txt",
        ["hi", str(CONTEXT_FILES), str(FILE_BYTES)],
        2,
    ),
    "two-stage": Case(
        "two-stage",
        "two independent stages (RUN: 100 MiB md5sum + 4 MiB file), the last COPY --from both",
        "FROM {base} AS left\n"
        + _STAGE_RUN.format(name="left")
        + "\nFROM {base} AS right\n"
        + _STAGE_RUN.format(name="right")
        + "\nFROM {base}\nCOPY --from=left /left.sum /left.bin /out/\nCOPY --from=right /right.sum /right.bin /out/\n"
        'CMD ["/bin/sh"]\n',
        "cat /out/left.sum /out/right.sum; wc -c < /out/left.bin",
        ["2f282b84e7e608d5852449ed940bfc51", "-", "2f282b84e7e608d5852449ed940bfc51", "-", "4194304"],
        4,
        ("--jobs=2",),
    ),
}


@dataclass
class SelfRatio:
    """A case that times one overlayctl build against another one."""

    name: str
    title: str
    # (bench) -> {"a_ms": ..., "b_ms": ..., "a": label, "b": label}: medians
    # of the two builds, timed interleaved over the bench's iterations.
    measure: Callable[[Bench], dict]


# Cases of overlayctl against itself (e.g. a rebuild that reuses a RUN
# --mount=type=cache directory against the same build without it). Each is
# run after the podman comparisons, and reported as b_ms / a_ms.
def _cache_mount(bench: Bench) -> dict:
    """bench_build_cachemount.py's two overlayctl rebuilds (its workload and
    its checks; podman left out), timed in this run with this CLI."""
    import bench_build_cachemount as cm

    argv = ["-n", str(bench.args.iterations), "--warmups", str(bench.args.warmups), "--no-podman", "--no-install"]
    inner = cm.Bench(cm.parse_args(argv), bench.ctl.cmd)
    try:
        result = inner.run()
    finally:
        inner.cleanup()
    runs = result["runs"]
    with_mount, without = runs["overlayctl-cache-mount"], runs["overlayctl-no-mount"]
    return {
        "a": with_mount["label"],
        "b": without["label"],
        "a_ms": with_mount["median"],
        "b_ms": without["median"],
        "checks": result["checks"],
    }


SELF_RATIOS: list[SelfRatio] = [
    SelfRatio(
        "cache-mount",
        "a rebuild reusing a RUN --mount=type=cache directory, against the same rebuild without the mount",
        _cache_mount,
    )
]


# --------------------------------------------------------------------------
# the workload


def write_context(ctx: Path) -> None:
    """CONTEXT_FILES files of FILE_BYTES bytes, spread over CONTEXT_DIRS directories."""
    ctx.mkdir()
    dirs = [ctx / f"d{d}" for d in range(CONTEXT_DIRS)]
    for d in dirs:
        d.mkdir()
    for i in range(CONTEXT_FILES):
        path = dirs[i % CONTEXT_DIRS] / f"f{i:04d}.txt"
        line = f"{path.relative_to(ctx)} "
        path.write_text(line + "x" * (FILE_BYTES - len(line) - 1) + "\n")
        os.utime(path, (CONTEXT_MTIME, CONTEXT_MTIME))
    for d in [*dirs, ctx]:
        os.utime(d, (CONTEXT_MTIME, CONTEXT_MTIME))


def write_dockerfile(path: Path, case: Case, base: str) -> Path:
    """The Dockerfile lives outside the context, so that COPY . sees only the files."""
    path.write_text(case.dockerfile.format(base=base))
    return path


def tag(case: Case) -> str:
    return f"bench-{case.name}:1"


def cache_hits(output: str) -> int:
    """Steps reported as cache hits in Docker-classic or podman build output."""
    return sum("Using cache" in line for line in output.splitlines())


# --------------------------------------------------------------------------
# the two tools


@dataclass
class Builder:
    """One tool building the workload against its private store."""

    key: str  # "overlayctl" or "podman"
    case: Case
    prefix: list[str]  # the tool and its global options (private store)
    image_ref: str  # the built image as `run` names it
    dockerfile: Path
    context: Path
    env: dict[str, str]
    build_opts: list[str] = field(default_factory=list)
    run_opts: list[str] = field(default_factory=list)
    skipped: str | None = None
    rows: dict[str, Row] = field(default_factory=dict)

    def build_argv(self, phase: str, quiet: bool = True) -> list[str]:
        argv = [*self.prefix, "build", *self.build_opts, "-t", tag(self.case), "-f", str(self.dockerfile)]
        if phase == "cold":
            argv.append("--no-cache")
        if quiet:
            argv.append("-q")
        return [*argv, str(self.context)]

    def make_rows(self) -> None:
        labels = {"cold": f"{self.key} build --no-cache", "cached": f"{self.key} build (cached)"}
        for phase in PHASES:
            key = f"{self.key}-{self.case.name}-{phase}"
            self.rows[phase] = Row(key, labels[phase], self.build_argv(phase), self.env)

    def command(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run([*self.prefix, *args], env=self.env, check=False, timeout=timeout)

    def remove_built(self) -> str | None:
        """Remove the built image (and its intermediate images); the error, if any."""
        proc = self.command("rmi", self.image_ref)
        if proc.returncode != 0:
            return f"rmi {self.image_ref}: exit {proc.returncode}: {tail(proc.stderr)}"
        if self.key == "podman":
            # rmi takes the untagged parents along; prune catches anything
            # an interrupted build left dangling.
            proc = self.command("image", "prune", "-f")
            if proc.returncode != 0:
                return f"image prune: exit {proc.returncode}: {tail(proc.stderr)}"
        return None


def fail(builder: Builder, what: str) -> None:
    """overlayctl failing stops the benchmark; podman failing skips it."""
    if builder.key == "overlayctl":
        raise OverlayctlFailed(what)
    builder.skipped = what.splitlines()[0][:200]
    say(f"podman: not usable: {what}")


def probe(builder: Builder) -> dict:
    """One cold and one cached build with their output, and a look inside the image.

    Returns the checks for the report; marks podman skipped (or raises, for
    overlayctl) when a build fails.
    """
    checks: dict = {}
    for phase in PHASES:
        argv = builder.build_argv(phase, quiet=False)
        proc = run(argv, env=builder.env, check=False, timeout=300)
        if proc.returncode != 0:
            fail(builder, f"{shlex.join(argv)} exited {proc.returncode}\n{tail(proc.stderr or proc.stdout)}")
            return checks
        checks[f"{phase}_cache_hits"] = cache_hits(proc.stdout)
    case = builder.case
    argv = [*builder.prefix, "run", "--rm", *builder.run_opts, builder.image_ref, "sh", "-c", case.check_script]
    proc = run(argv, env=builder.env, check=False, timeout=120)
    got = proc.stdout.split()
    checks["content"] = got
    checks["content_ok"] = proc.returncode == 0 and got == case.check_expected
    if proc.returncode != 0:
        checks["content_error"] = f"exit {proc.returncode}: {tail(proc.stderr)}"
    # A cold build should hit no cache; the rebuild right after it (as in the
    # timed rounds) should hit it for every COPY and RUN at least.
    checks["cache_ok"] = checks["cold_cache_hits"] == 0 and checks["cached_cache_hits"] >= case.cached_hits
    error = builder.remove_built()
    if error:
        fail(builder, error)
    return checks


def one(builder: Builder, row: Row, round_no: int, timed: bool) -> None:
    """Time one build; a failure of overlayctl stops the benchmark, one of podman is counted."""
    try:
        ms, rc, err = row.once()
    except subprocess.TimeoutExpired as exc:
        ms, rc, err = exc.timeout * 1000, -1, f"timed out after {exc.timeout:.0f}s".encode()
    if rc != 0:
        if builder.key == "overlayctl":
            raise OverlayctlFailed(f"{shlex.join(row.argv)} exited {rc} in round {round_no}\n{tail(err)}")
        row.failures += 1
        row.last_error = f"exit {rc}: {tail(err)}"
    elif timed:
        row.times.append(ms)


def time_rounds(builders: list[Builder], iterations: int, warmups: int) -> dict[str, int]:
    """Interleaved rounds: for every case, cold builds, cached rebuilds,
    removal of the built images.

    Within each step the tool that goes first alternates from round to round.
    Returns how often the clean-up between rounds failed, per tool.
    """
    active = [b for b in builders if b.skipped is None]
    clean_failures = {b.key: 0 for b in active}
    cases = list(dict.fromkeys(b.case.name for b in active))
    total = warmups + iterations
    for i in range(total):
        timed = i >= warmups
        for case in cases:
            pair = [b for b in active if b.case.name == case]
            order = pair if i % 2 == 0 else pair[::-1]
            for b in order:
                one(b, b.rows["cold"], i + 1, timed)
            for b in order:
                one(b, b.rows["cached"], i + 1, timed)
            for b in order:
                error = b.remove_built()
                if error:
                    if b.key == "overlayctl":
                        raise OverlayctlFailed(error)
                    clean_failures[b.key] += 1
        if (i + 1) % 2 == 0 or i + 1 == total:
            say(f"round {i + 1}/{total}" + (" (warm-up)" if not timed else ""))
    return clean_failures


def du_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    return int(run(["du", "-s", "--block-size=1", str(path)]).stdout.split()[0])


# --------------------------------------------------------------------------
# results


def goal(builders: dict[str, Builder], phase: str, ratio: float) -> dict:
    """One case's goal: `builders` are its two, by tool."""
    o = builders["overlayctl"].rows[phase].stats()
    pod = builders.get("podman")
    if pod is None or pod.skipped:
        return {"met": None, "why": f"podman: {pod.skipped if pod else 'not installed'}"}
    p = pod.rows[phase].stats()
    if o is None or p is None:
        return {"met": None, "why": "no timings"}
    return {
        "met": o["median"] <= ratio * p["median"],
        "overlayctl_ms": o["median"],
        "podman_ms": p["median"],
        "limit_ms": ratio * p["median"],
        "ratio": o["median"] / p["median"],
        "goal_ratio": ratio,
    }


def row_result(builder: Builder, row: Row) -> dict:
    st = row.stats() or {}
    return {
        "label": row.label,
        "argv": row.argv,
        "skipped": builder.skipped,
        "median": st.get("median"),
        "p90": st.get("p90"),
        "min": st.get("min"),
        "max": st.get("max"),
        "mean": st.get("mean"),
        "times_ms": [round(t, 3) for t in row.times],
        "failures": row.failures,
        "last_error": row.last_error,
    }


def goal_line(name: str, g: dict) -> str:
    ratio = g.get("goal_ratio")
    if g["met"] is None:
        return f"goal  {name}: n/a ({g['why']})"
    return (
        f"goal  {name}: overlayctl median <= {ratio:.2f} x podman median: "
        f"{g['overlayctl_ms']:.1f} ms vs {ratio:.2f} x {g['podman_ms']:.1f} = {g['limit_ms']:.1f} ms "
        f"({g['ratio']:.2f}x) -> {'MET' if g['met'] else 'MISSED'}"
    )


def report(result: dict) -> str:
    lines: list[str] = []
    n, w = result["iterations"], result["warmups"]
    lines.append(f"overlayctl build benchmark on {BASE}: {n} interleaved rounds after {w} warm-ups (ms, wall time)")
    lines.append(f"stores and context on: {result['workload']['filesystem']}")
    runs = result["runs"]
    for name, case in result["cases"].items():
        lines.append("")
        lines.append(f"case {name}: {case['title']}")
        header = f"{'build':<30} {'median':>8} {'p90':>8} {'min':>8} {'x podman':>9}  n"
        lines.append(header)
        lines.append("-" * len(header))
        for phase in PHASES:
            podman = runs.get(f"podman-{name}-{phase}", {})
            pmed = None if podman.get("skipped") else podman.get("median")
            for tool in ("overlayctl", "podman"):
                r = runs.get(f"{tool}-{name}-{phase}")
                if r is None:
                    continue
                if r["skipped"]:
                    lines.append(f"{r['label']:<30} skipped: {r['skipped']}")
                    continue
                ratio = f"{r['median'] / pmed:.2f}x" if pmed and r["median"] is not None else "-"
                fails = f"  ({r['failures']} failed: {r['last_error'].splitlines()[0][:60]})" if r["failures"] else ""
                lines.append(
                    f"{r['label']:<30} {fmt_ms(r['median']):>8} {fmt_ms(r['p90']):>8} {fmt_ms(r['min']):>8} "
                    f"{ratio:>9}  {len(r['times_ms'])}{fails}"
                )
        lines.append(goal_line("cold (--no-cache)", case["goal_cold"]))
        lines.append(goal_line("cached rebuild", case["goal_cached"]))
    for name, r in result["self_ratios"].items():
        lines.append("")
        lines.append(
            f"case {name}: {r['title']}: {r['b']} {r['b_ms']:.1f} ms against {r['a']} {r['a_ms']:.1f} ms "
            f"({r['b_ms'] / r['a_ms']:.2f}x)"
        )

    lines.append("")
    lines.append("checks (one cold and one cached build with output, then the image run once):")
    for key, c in result["checks"].items():
        if not c:
            continue
        tool, _, name = key.partition("/")
        expected = CASES[name].check_expected
        content = "ok" if c.get("content_ok") else f"WRONG {c.get('content')} {c.get('content_error', '')}".strip()
        cache = "ok" if c.get("cache_ok") else "UNEXPECTED"
        lines.append(
            f"  {tool:<11} {name:<10} 'Using cache' lines: cold {c.get('cold_cache_hits')}, "
            f"cached {c.get('cached_cache_hits')} ({cache}); content {expected}: {content}"
        )
    for tool, s in result["stores"].items():
        fails = f"; {s['clean_failures']} failed removals" if s["clean_failures"] else ""
        lines.append(
            f"  {tool:<11} store {s['bytes_after_import']} B after importing {BASE}, "
            f"{s['bytes_at_end']} B after the last round{fails}"
        )

    lines.append("")
    lines.append("versions:")
    for k, v in result["versions"].items():
        lines.append(f"  {k:<16} {v}")
    return "\n".join(lines)


# --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = bench_parser(__doc__, 10, 2)
    p.add_argument(
        "--case",
        dest="cases",
        action="append",
        choices=[*CASES, *(r.name for r in SELF_RATIOS)],
        metavar="NAME",
        help="run only this case (repeatable; default: all): " + ", ".join([*CASES, *(r.name for r in SELF_RATIOS)]),
    )
    p.add_argument(
        "--podman-network",
        default="none",
        metavar="MODE",
        help="podman build --network for RUN (default none; 'default' leaves the option out, "
        "so RUN gets podman's bridge network)",
    )
    p.add_argument(
        "--tmpfs",
        action="store_true",
        help="mount a tmpfs on the temporary directory, so that both stores and the context are in memory",
    )
    return parse_bench_args(p, argv)


class Bench:
    """One benchmark run and everything it has to clean up afterwards."""

    def __init__(self, args: argparse.Namespace, cmd: list[str]) -> None:
        self.args = args
        # Short: podman refuses a runroot longer than 50 characters.
        self.tmp = Path(tempfile.mkdtemp(prefix="overlayctl-build."))
        self.tmp.chmod(0o755)
        self.ctl = Overlayctl(cmd, self.tmp / "store", self.tmp / "run", dict(os.environ))
        self.podman: Builder | None = None
        self.mounts_before = set(mounts())
        self.tmpfs = False

    def run(self) -> dict:
        args, ctl, tmp = self.args, self.ctl, self.tmp
        if args.tmpfs:
            try:
                run(["mount", "-t", "tmpfs", "-o", "mode=0755", "overlayctl-build", str(tmp)])
            except subprocess.CalledProcessError as exc:
                raise SetupError(f"cannot mount a tmpfs on {tmp}: {tail(exc.stderr)}") from exc
            self.tmpfs = True
        found = first_line(["findmnt", "-n", "-o", "FSTYPE,SOURCE,TARGET", "-T", str(tmp)]).split()
        filesystem = f"{found[0]} ({found[1]} on {found[2]})" if len(found) == 3 else " ".join(found)
        say(f"working directory {tmp}, on {filesystem}")
        tar = tmp / "bb.tar"
        say(f"base image: sh {ROOTFS_SH.relative_to(REPO)} {tar}")
        try:
            run(["sh", str(ROOTFS_SH), str(tar)])
        except subprocess.CalledProcessError as exc:
            raise SetupError(f"busybox-rootfs.sh failed: {tail(exc.stderr)}") from exc
        ctx = tmp / "context"
        write_context(ctx)
        say(f"context: {CONTEXT_FILES} files of {FILE_BYTES} bytes in {CONTEXT_DIRS} directories, {ctx}")

        say("peers: " + ("" if args.no_install else "installing what is missing, ") + "writing their configuration")
        peers = peers_env(tmp / "peers", install=not args.no_install)

        say(f"overlayctl: import {tar.name} as {BASE} into a private store under {tmp}")
        ctl("import", str(tar), BASE)
        chosen = args.cases or [*CASES, *(r.name for r in SELF_RATIOS)]
        cases = [CASES[name] for name in CASES if name in chosen]
        self.import_podman(peers, tar)
        builders: list[Builder] = []
        for case in cases:
            overlayctl = Builder(
                "overlayctl",
                case,
                ctl.argv(),
                tag(case),
                write_dockerfile(tmp / f"Dockerfile.{case.name}.overlayctl", case, BASE),
                ctx,
                ctl.env,
            )
            builders += [overlayctl, self.make_podman(case, ctx)]
        for b in builders:
            b.make_rows()

        checks = {}
        for b in builders:
            if b.skipped is None:
                say(f"{b.key}: {b.case.name}: probe (one cold and one cached build, then a look inside the image)")
                checks[f"{b.key}/{b.case.name}"] = probe(b)
                if b.skipped:
                    del checks[f"{b.key}/{b.case.name}"]
        stores = {b.key: {"bytes_after_import": du_bytes(self.store_of(b))} for b in builders if b.skipped is None}

        say(
            f"timing: {args.warmups} warm-up + {args.iterations} rounds over "
            + ", ".join(b.key for b in builders if b.skipped is None)
        )
        clean_failures = time_rounds(builders, args.iterations, args.warmups)
        for key, s in stores.items():
            b = next(b for b in builders if b.key == key)
            s["bytes_at_end"] = du_bytes(self.store_of(b))
            s["clean_failures"] = clean_failures.get(key, 0)

        self_ratios = {}
        for ratio in SELF_RATIOS:
            if ratio.name in chosen:
                say(f"timing: {ratio.name}")
                self_ratios[ratio.name] = {"title": ratio.title, **ratio.measure(self)}
        results_by_case = {}
        for case in cases:
            by_key = {b.key: b for b in builders if b.case is case}
            results_by_case[case.name] = {
                "title": case.title,
                "dockerfile": {key: b.dockerfile.read_text() for key, b in by_key.items()},
                "goal_cold": goal(by_key, "cold", COLD_GOAL_RATIO),
                "goal_cached": goal(by_key, "cached", CACHED_GOAL_RATIO),
            }
        return {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "iterations": args.iterations,
            "warmups": args.warmups,
            "workload": {
                "context_files": CONTEXT_FILES,
                "context_dirs": CONTEXT_DIRS,
                "file_bytes": FILE_BYTES,
                "podman_network": args.podman_network,
                "filesystem": filesystem,
            },
            "runs": {row.key: row_result(b, row) for b in builders for row in b.rows.values()},
            "cases": results_by_case,
            "self_ratios": self_ratios,
            "checks": checks,
            "stores": stores,
            "versions": self.versions(),
        }

    def store_of(self, b: Builder) -> Path:
        return self.ctl.root if b.key == "overlayctl" else self.tmp / "pod" / "root"

    def import_podman(self, peers: dict[str, str], tar: Path) -> None:
        """podman's private store, with bb:1 imported; self.podman_skipped says why not."""
        podman = peers.get("PEER_PODMAN") or None
        env = dict(os.environ)
        if peers.get("CONTAINERS_CONF"):
            env["CONTAINERS_CONF"] = peers["CONTAINERS_CONF"]
        # Build scratch files (otherwise in /var/tmp) stay in the benchmark's directory.
        env["TMPDIR"] = str(self.tmp / "pod" / "scratch")
        store = self.tmp / "pod"
        self.podman_prefix = [
            podman or "podman",
            "--root",
            str(store / "root"),
            "--runroot",
            str(store / "run"),
            "--tmpdir",
            str(store / "tmp"),
        ]
        self.podman_env = env
        self.podman_skipped: str | None = None
        if podman is None:
            self.podman_skipped = "not installed"
            return
        (store / "scratch").mkdir(parents=True)
        say(f"podman: import {tar.name} as localhost/{BASE} into a private store under {store}")
        proc = run([*self.podman_prefix, "import", "--quiet", str(tar), BASE], env=env, check=False, timeout=300)
        if proc.returncode != 0:
            self.podman_skipped = "podman import failed: " + (tail(proc.stderr).splitlines() or ["?"])[-1]
            say(f"podman: {self.podman_skipped}")

    def make_podman(self, case: Case, ctx: Path) -> Builder:
        network = [] if self.args.podman_network == "default" else [f"--network={self.args.podman_network}"]
        b = Builder(
            "podman",
            case,
            self.podman_prefix,
            f"localhost/{tag(case)}",
            write_dockerfile(self.tmp / f"Dockerfile.{case.name}.podman", case, f"localhost/{BASE}"),
            ctx,
            self.podman_env,
            build_opts=[*network, *case.podman_opts],
            run_opts=["--network=none"],
        )
        b.skipped = self.podman_skipped
        if self.podman_skipped != "not installed":
            self.podman = b
        return b

    def versions(self) -> dict[str, str]:
        v = {"overlayctl": first_line([*self.ctl.cmd, "--version"], self.ctl.env)}
        if is_python(self.ctl.cmd[0]):
            v["python"] = f"{first_line([self.ctl.cmd[0], '--version'])} ({self.ctl.cmd[0]})"
        if self.podman is not None:
            v["podman"] = first_line([self.podman.prefix[0], "--version"], self.podman.env)
            proc = self.podman.command("version", "--format", "{{.Client.BuildOrigin}}")
            if proc.returncode == 0 and proc.stdout.strip():
                v["podman origin"] = proc.stdout.strip()
        for key, argv in (("crun", ["crun", "--version"]), ("buildah", ["buildah", "--version"])):
            if shutil.which(argv[0]):
                v[key] = first_line(argv)
        v["kernel"] = f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} cpus"
        return v

    # -- clean-up ---------------------------------------------------------

    def cleanup(self) -> None:
        problems = []
        if self.podman is not None and self.store_of(self.podman).exists():
            # An interrupted build can leave a build container (with its
            # layer mounted) behind; remove it before the store goes.
            left = self.podman.command("ps", "-a", "-q", "--external").stdout.split()
            if left:
                problems.append(f"podman build containers left: {' '.join(left)} (removed)")
                self.podman.command("rm", "-f", *left)
            proc = self.podman.command("rmi", "-a", "-f")
            if proc.returncode != 0:
                problems.append(f"podman rmi -a failed: {tail(proc.stderr)}")
        if self.tmpfs:
            # Not lazily: a busy tmpfs means something is still running in it.
            proc = run(["umount", str(self.tmp)], check=False)
            if proc.returncode != 0:
                problems.append(f"umount {self.tmp}: {tail(proc.stderr)}")
        finish_cleanup(self.tmp, self.mounts_before, problems, "mounts, containers, images")


def main(argv: list[str] | None = None) -> int:
    return run_main(parse_args(argv), Bench, report)


if __name__ == "__main__":
    sys.exit(main())

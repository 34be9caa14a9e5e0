#!/usr/bin/env python3
"""Benchmark `overlayctl run` against its peers, in one interleaved run.

    scripts/setup.sh                          # installs /usr/local/bin/overlayctl
    python3 scripts/bench/bench_run.py [-n 30] [--json FILE]

Run as root. It measures, in this order:

1. disk: bytes per idle created container (`du` of the store root before and
   after 20 `overlayctl create bb:1 true`); goal <= 12 KiB;
2. run: wall time of `/bin/true` in a fresh container, round-robin over
   overlayctl, podman, systemd-nspawn, bwrap and a bare unshare+overlay+chroot
   floor (3 warm-up rounds, then N timed ones); goals: overlayctl median <=
   0.20 x podman median, and <= 3 x the floor's median, from the same rounds;
3. start-up imports: `python -X importtime` of the same `overlayctl run`.

Everything runs against throw-away state: a private overlayctl --root and
--runroot, a uniquely tagged podman image, and one temporary directory, all
removed at the end. The peers' packages are installed if missing and their
configuration is made by peers.sh (beside this file), in the temporary
directory. Stdlib only.

Exit status: 0 when the benchmark ran, whether or not a goal was met (it
reports, it does not assert); 1 when overlayctl itself failed; 2 on a usage
or environment error (not root, no overlayctl).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PEERS_SH = HERE / "peers.sh"
ROOTFS_SH = REPO / "scripts" / "busybox-rootfs.sh"

RUN_GOAL_RATIO = 0.20  # overlayctl median <= 0.20 x podman median (both --network none)
FLOOR_GOAL_RATIO = 3.0  # overlayctl median (--network none) <= 3 x the unshare+overlay+chroot floor
BRIDGE_GOAL_RATIO = 0.30  # overlayctl --network bridge <= 0.30 x podman on its default bridge
DISK_GOAL_BYTES = 12 * 1024  # <= 12 KiB per idle created container
IMAGE = "bb:1"
STDERR_TAIL = 1500  # characters of a failing command's stderr to show

# The floor: what any overlay runtime has to do at the least, as one shell
# command. A fresh container directory (upper, work, mount point), an overlay
# mounted inside private mount/PID/UTS/IPC/net namespaces, chroot and exec,
# then the writable layer removed. $1 = container dir, $2 = lower dir.
FLOOR_SCRIPT = r"""
c=$1
mkdir "$c" "$c/upper" "$c/work" "$c/merged" || exit 125
unshare -m -p -f -u -i -n sh -c '
mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$2/merged" &&
exec chroot "$2/merged" /bin/true' sh "$2" "$c"
rc=$?
rm -rf "$c"
exit $rc
"""


class OverlayctlFailed(Exception):
    """overlayctl itself failed: the benchmark exits non-zero."""


class SetupError(Exception):
    """The benchmark cannot run here (exit 2)."""


def say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def tail(text: str | bytes | None) -> str:
    if not text:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    text = text.strip()
    return text if len(text) <= STDERR_TAIL else "..." + text[-STDERR_TAIL:]


def run(
    argv: list[str], env: dict[str, str] | None = None, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output as text; raise on failure if check."""
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, argv, proc.stdout, proc.stderr)
    return proc


def first_line(argv: list[str], env: dict[str, str] | None = None) -> str:
    try:
        proc = run(argv, env=env, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    out = (proc.stdout or proc.stderr).strip().splitlines()
    return out[0].strip() if out else f"unknown (rc {proc.returncode})"


# --------------------------------------------------------------------------
# overlayctl


@dataclass
class Overlayctl:
    """The CLI under test, always with the benchmark's private store."""

    cmd: list[str]
    root: Path
    runroot: Path
    env: dict[str, str]

    def argv(self, *args: str) -> list[str]:
        return [*self.cmd, "--root", str(self.root), "--runroot", str(self.runroot), *args]

    def __call__(self, *args: str, timeout: float = 600) -> str:
        argv = self.argv(*args)
        try:
            proc = run(argv, env=self.env, check=False, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise OverlayctlFailed(f"{shlex.join(argv)} timed out after {timeout:.0f}s") from exc
        except OSError as exc:
            raise OverlayctlFailed(f"{shlex.join(argv)}: {exc}") from exc
        if proc.returncode != 0:
            raise OverlayctlFailed(f"{shlex.join(argv)} exited {proc.returncode}\n{tail(proc.stderr)}")
        return proc.stdout


def resolve_overlayctl(spec: str) -> list[str]:
    cmd = shlex.split(spec)
    if not cmd:
        raise SetupError("--overlayctl is empty")
    exe = shutil.which(cmd[0])
    if exe is None:
        raise SetupError(
            f'"{cmd[0]}" not found; install it with scripts/setup.sh, or pass '
            '--overlayctl "python3 -m overlayctl" with PYTHONPATH set to the checkout'
        )
    return [exe, *cmd[1:]]


# How a checkout is run the way /usr/local/bin/overlayctl runs the installed
# package (scripts/setup.sh): the venv's interpreter with -IS, the checkout
# first on sys.path and the venv's site-packages after it.
VENV = Path(os.environ.get("OVERLAYCTL_VENV", "/opt/overlayctl/venv"))
BOOT = (
    "import sys;sys.path[:0]=sys.argv[1:3];del sys.argv[1:3];"
    "from overlayctl.util.codebundle import install;install();from overlayctl.cli import main;main()"
)


def venv_site_packages() -> str:
    """The venv's site-packages, which the launcher adds by hand (it runs -S)."""
    try:
        out = subprocess.run(
            [str(VENV / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SetupError(f"no usable venv at {VENV} (run scripts/setup.sh, or set OVERLAYCTL_VENV): {exc}") from exc
    return out.stdout.strip()


def checkout_command(source: Path) -> list[str]:
    """The command that runs the checkout ``source`` as the launcher would."""
    source = source.resolve()
    if not (source / "overlayctl" / "__init__.py").is_file():
        raise SetupError(f"{source} is not an overlayctl checkout")
    return [str(VENV / "bin" / "python"), "-IS", "-c", BOOT, str(source), venv_site_packages()]


def is_python(path: str) -> bool:
    return re.fullmatch(r"python[0-9.]*", os.path.basename(path)) is not None


def importtime_argv(cmd: list[str]) -> tuple[list[str], dict[str, str]]:
    """The overlayctl command, run by its interpreter with -X importtime.

    Handles `python3 -m overlayctl ...` and a script with a python shebang
    (the launcher setup.sh writes runs `python -I`, which ignores
    PYTHONPROFILEIMPORTTIME); anything else gets that variable and a hope.
    """
    exe, rest = cmd[0], cmd[1:]
    if is_python(exe):
        return [exe, "-X", "importtime", *rest], {}
    try:
        with open(exe, "rb") as f:
            line = f.readline(512).decode(errors="replace")
    except OSError:
        line = ""
    if line.startswith("#!"):
        words = line[2:].split()
        if words and os.path.basename(words[0]) == "env":
            words = [w for w in words[1:] if not w.startswith("-")]
            if words:
                words[0] = shutil.which(words[0]) or words[0]
        if words and is_python(words[0]):
            return [*words, "-X", "importtime", exe, *rest], {}
    return list(cmd), {"PYTHONPROFILEIMPORTTIME": "1"}


# --------------------------------------------------------------------------
# timing


@dataclass
class Row:
    key: str
    label: str
    argv: list[str]
    env: dict[str, str] | None = None
    skipped: str | None = None
    times: list[float] = field(default_factory=list)
    failures: int = 0
    last_error: str = ""

    def once(self) -> tuple[float, int, bytes]:
        t0 = time.perf_counter_ns()
        proc = subprocess.run(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )
        ms = (time.perf_counter_ns() - t0) / 1e6
        return ms, proc.returncode, proc.stderr

    def stats(self) -> dict[str, float] | None:
        if not self.times:
            return None
        xs = sorted(self.times)
        p90 = statistics.quantiles(xs, n=10, method="inclusive")[-1] if len(xs) > 1 else xs[0]
        return {"median": statistics.median(xs), "p90": p90, "min": xs[0], "max": xs[-1], "mean": statistics.fmean(xs)}


def probe(row: Row) -> None:
    """Run a row once; mark it skipped (peers) or raise (overlayctl) on failure."""
    try:
        _, rc, err = row.once()
    except (OSError, subprocess.TimeoutExpired) as exc:
        rc, err = -1, str(exc).encode()
    if rc == 0:
        return
    msg = f"exit {rc}: {tail(err)}"
    if row.key == "overlayctl":
        raise OverlayctlFailed(f"{shlex.join(row.argv)} {msg}")
    row.skipped = f"not usable ({msg.splitlines()[0] if msg else rc})"
    say(f"{row.label}: {row.skipped}")


def time_rows(rows: list[Row], iterations: int, warmups: int) -> None:
    active = [r for r in rows if r.skipped is None]
    total = warmups + iterations
    for i in range(total):
        timed = i >= warmups
        # Round-robin, starting one later each round: no row always runs
        # right after the same neighbour.
        k = i % len(active)
        for row in active[k:] + active[:k]:
            try:
                ms, rc, err = row.once()
            except subprocess.TimeoutExpired as exc:
                ms, rc, err = exc.timeout * 1000, -1, f"timed out after {exc.timeout:.0f}s".encode()
            if rc != 0:
                if row.key == "overlayctl":
                    raise OverlayctlFailed(f"{shlex.join(row.argv)} exited {rc} in round {i + 1}\n{tail(err)}")
                row.failures += 1
                row.last_error = f"exit {rc}: {tail(err)}"
            elif timed:
                row.times.append(ms)
        if (i + 1) % 5 == 0 or i + 1 == total:
            say(f"round {i + 1}/{total}" + (" (warm-up)" if not timed else ""))


# --------------------------------------------------------------------------
# disk


def du_bytes(*paths: Path) -> int:
    out = run(["du", "-s", "--block-size=1", "--total", *map(str, paths)]).stdout
    return int(out.strip().splitlines()[-1].split()[0])


def du_entries(root: Path) -> dict[str, int]:
    """Disk usage of each top-level entry of the store (one du: hardlinks once)."""
    entries = sorted(root.iterdir())
    if not entries:
        return {}
    out = run(["du", "-s", "--block-size=1", *map(str, entries)]).stdout
    sizes: dict[str, int] = {}
    for line in out.splitlines():
        size, _, path = line.partition("\t")
        sizes[os.path.basename(path)] = int(size)
    return sizes


def measure_disk(ctl: Overlayctl, count: int) -> dict:
    ctl.root.mkdir(parents=True, exist_ok=True)
    before, before_parts = du_bytes(ctl.root), du_entries(ctl.root)
    ids = [ctl("create", IMAGE, "true").strip().splitlines()[-1] for _ in range(count)]
    after, after_parts = du_bytes(ctl.root), du_entries(ctl.root)
    per = (after - before) / count
    parts = {
        name: after_parts.get(name, 0) - before_parts.get(name, 0)
        for name in sorted(set(before_parts) | set(after_parts))
    }
    ctl("rm", *ids)
    return {
        "containers": count,
        "store_bytes_before": before,
        "store_bytes_after": after,
        "bytes_per_container": per,
        "growth_by_entry": {k: v for k, v in parts.items() if v},
        "goal_bytes": DISK_GOAL_BYTES,
        "goal_met": per <= DISK_GOAL_BYTES,
    }


# --------------------------------------------------------------------------
# import time

_IMPORT_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S.*)$")


def parse_importtime(stderr: str) -> list[tuple[str, int, int, int]]:
    """(module, self us, cumulative us, depth) for each -X importtime line."""
    rows = []
    for line in stderr.splitlines():
        m = _IMPORT_LINE.match(line)
        if m:
            rows.append((m.group(4).strip(), int(m.group(1)), int(m.group(2)), (len(m.group(3)) - 1) // 2))
    return rows


def measure_imports(ctl: Overlayctl, runs: int, top: int = 8) -> dict:
    argv, extra_env = importtime_argv(ctl.argv("run", "--rm", "--network", "none", IMAGE, "/bin/true"))
    env = {**ctl.env, **extra_env}
    samples = []
    for _ in range(runs):
        proc = run(argv, env=env, check=False)
        if proc.returncode != 0:
            raise OverlayctlFailed(f"{shlex.join(argv)} exited {proc.returncode}\n{tail(proc.stderr)}")
        mods = parse_importtime(proc.stderr)
        if not mods:
            return {"argv": argv, "error": "no -X importtime output (is overlayctl a python program?)"}
        samples.append((sum(m[1] for m in mods) / 1000, mods))
    samples.sort(key=lambda s: s[0])
    total_ms, mods = samples[len(samples) // 2]
    top_mods = sorted(mods, key=lambda m: m[2], reverse=True)[:top]
    # Interpreter start-up (site and what its .pth files pull in) is not
    # overlayctl's doing; its own modules are.
    site_ms = sum(m[2] for m in mods if m[0] == "site" and m[3] == 0) / 1000
    own_ms = sum(m[1] for m in mods if m[0].split(".")[0] == "overlayctl") / 1000
    return {
        "argv": argv,
        "runs": runs,
        "site_cumulative_ms": site_ms,
        "overlayctl_self_ms": own_ms,
        "total_self_ms_median": total_ms,
        "total_self_ms_all": [round(s[0], 2) for s in sorted(samples, key=lambda s: s[0])],
        "modules": len(mods),
        "top_cumulative": [
            {"module": m[0], "cumulative_ms": m[2] / 1000, "self_ms": m[1] / 1000, "depth": m[3]} for m in top_mods
        ],
        "overlayctl_modules": sorted(m[0] for m in mods if m[0].split(".")[0] == "overlayctl"),
        "heavy_modules_imported": sorted(
            {m[0] for m in mods} & {"click", "psutil", "pyroute2", "zstandard", "prctl", "sqlite3", "tarfile"}
        ),
    }


# --------------------------------------------------------------------------
# set-up and clean-up


def peers_env(dest: Path, install: bool) -> dict[str, str]:
    argv = ["sh", str(PEERS_SH), str(dest)]
    if not install:
        argv.insert(2, "--no-install")
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SetupError(f"peers.sh failed (exit {proc.returncode})")
    env: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, _, value = words[1].partition("=")
            env[key] = value
    return env


def make_rootfs(tar: Path, dest: Path) -> None:
    """The image as a plain directory, for systemd-nspawn, bwrap and the floor."""
    dest.mkdir()
    run(["tar", "-xf", str(tar), "-C", str(dest)])
    # nspawn refuses a tree without an OS (/usr/lib/os-release) and creates its
    # mount points if they are missing: create them now so the tree is stable.
    (dest / "usr" / "lib").mkdir(parents=True, exist_ok=True)
    (dest / "usr" / "lib" / "os-release").write_text('ID=busybox\nNAME="BusyBox"\n')
    for d in ("root", "var", "lib", "run", "etc"):
        (dest / d).mkdir(exist_ok=True)


def mounts() -> list[str]:
    """Mount points of this mount namespace."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            points.append(line.split()[4].encode().decode("unicode_escape"))
    return points


def unmount_under(top: Path) -> list[str]:
    """Lazily unmount anything left under top (deepest first); return what was there."""
    prefix = str(top) + "/"
    left = sorted({m for m in mounts() if m == str(top) or m.startswith(prefix)}, key=len, reverse=True)
    for m in left:
        subprocess.run(["umount", "-l", m], stdin=subprocess.DEVNULL, capture_output=True)
    return left


def remove_tree(top: Path) -> None:
    if unmount_under(top):
        say(f"warning: mounts were left under {top}; unmounted them")
    if unmount_under(top):
        say(f"warning: could not unmount everything under {top}; leaving it in place")
        return
    # --one-file-system: never follow into anything still mounted.
    subprocess.run(["rm", "-rf", "--one-file-system", str(top)], stdin=subprocess.DEVNULL)


# Why storage benchmarks give every timed command fresh stores and delete
# them only at the end (their reports say so). Measured on this kind of host
# (ext4 without a journal, the root of the VM): creating 3000 files in a new
# directory costs ~25 us each on a fresh filesystem and ~450 us each for
# minutes after 3000 others were deleted there; with a journal, 25 us both
# times. Deleting one side's store between rounds made the other side's
# next command pay for it.
FRESH_STORES_NOTE = "every command gets fresh, initialised stores, all removed at the end (not between rounds)"


def fresh_podman(podman: str, top: Path, round_no: int, env: dict[str, str]) -> list[str]:
    """podman with new private storage (root and runroot) under ``top`` for
    this round, initialised untimed; unmount_podman_stores(top) at the end."""
    root = top / f"podman-{round_no}"
    argv = [podman, "--root", str(root), "--runroot", f"{root}-run", "--storage-driver", "overlay"]
    run([*argv, "images"], env=env, check=False)
    return argv


def fresh_overlayctl(cmd: list[str], top: Path, round_no: int, env: dict[str, str]) -> Overlayctl:
    """overlayctl with a new store under ``top`` for this round, initialised untimed."""
    ctl = Overlayctl(cmd, top / f"store-{round_no}", top / f"store-{round_no}-run", env)
    ctl("images")
    return ctl


def unmount_podman_stores(top: Path) -> None:
    """podman's overlay driver keeps its storage bind-mounted on itself: undo
    that for every fresh_podman store under ``top`` (remove_tree would warn)."""
    for root in top.glob("podman-*"):
        unmount_under(root)


def finish_cleanup(tmp: Path, mounts_before: set[str], problems: list[str], left: str) -> None:
    """The end of every benchmark's clean-up: remove its temporary tree,
    check that no mount it made is left, and say what is (or that nothing
    is: `left` names what it looked for, e.g. "containers, images")."""
    remove_tree(tmp)
    if tmp.exists():
        problems.append(f"{tmp} could not be removed")
    new_mounts = sorted(set(mounts()) - mounts_before)
    if new_mounts:
        problems.append("mounts left behind: " + ", ".join(new_mounts))
    for p in problems:
        say("clean-up: " + p)
    if not problems:
        say(f"clean-up: done; no {left} or files left")


def remove_empty_dirs(top: Path) -> None:
    """Remove top and its subdirectories, bottom-up, where they are empty."""
    if not top.is_dir():
        return
    for dirpath, _, _ in sorted(os.walk(top), key=lambda w: len(w[0]), reverse=True):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


# --------------------------------------------------------------------------
# report


def fmt_ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def report(result: dict) -> str:
    lines: list[str] = []
    n, w = result["iterations"], result["warmups"]
    lines.append(
        f"overlayctl run benchmark: /bin/true in a fresh container, {n} interleaved rounds "
        f"after {w} warm-ups (ms, wall time)"
    )
    lines.append("")
    header = f"{'runtime':<24} {'median':>8} {'p90':>8} {'min':>8} {'x podman':>9}  n"
    lines.append(header)
    lines.append("-" * len(header))
    podman = result["runs"].get("podman", {}).get("median")
    for r in result["runs"].values():
        if r["skipped"]:
            lines.append(f"{r['label']:<24} skipped: {r['skipped']}")
            continue
        ratio = f"{r['median'] / podman:.2f}x" if podman and r["median"] is not None else "-"
        fails = f"  ({r['failures']} failed: {r['last_error'].splitlines()[0][:60]})" if r["failures"] else ""
        lines.append(
            f"{r['label']:<24} {fmt_ms(r['median']):>8} {fmt_ms(r['p90']):>8} {fmt_ms(r['min']):>8} "
            f"{ratio:>9}  {len(r['times_ms'])}{fails}"
        )
    lines.append("")
    goals = (
        ("podman median (--network none)", result["goal_run"]),
        ("podman median (bridge)", result["goal_bridge"]),
        ("the floor's median (--network none)", result["goal_floor"]),
    )
    for what, g in goals:
        r = g["goal_ratio"]
        if g["met"] is None:
            lines.append(f"goal  overlayctl median <= {r:.2f} x {what}: n/a ({g['why']})")
        else:
            lines.append(
                f"goal  overlayctl median <= {r:.2f} x {what}: "
                f"{g['overlayctl_ms']:.1f} ms vs {r:.2f} x {g['peer_ms']:.1f} = "
                f"{g['limit_ms']:.1f} ms ({g['ratio']:.2f}x) -> {'MET' if g['met'] else 'MISSED'}"
            )

    d = result["disk"]
    lines.append("")
    lines.append(f"disk: {d['containers']} idle containers (overlayctl create {IMAGE} true), du of the store root")
    lines.append(
        f"  store before {d['store_bytes_before']} B, after {d['store_bytes_after']} B: "
        f"{d['bytes_per_container']:.0f} B per container "
        f"({d['bytes_per_container'] / 1024:.1f} KiB)"
    )
    growth = ", ".join(f"{k} {v / d['containers']:+.0f}" for k, v in d["growth_by_entry"].items())
    lines.append(f"  per container by store entry (B): {growth or 'none'}")
    lines.append(f"goal  <= {DISK_GOAL_BYTES // 1024} KiB per idle container: {'MET' if d['goal_met'] else 'MISSED'}")

    it = result["importtime"]
    lines.append("")
    if "error" in it:
        lines.append(f"imports: {it['error']}")
    else:
        lines.append(
            f"imports of `overlayctl run` (-X importtime, median of {it['runs']} runs): "
            f"{it['total_self_ms_median']:.1f} ms total self time, {it['modules']} modules"
        )
        lines.append(
            f"  of which site (interpreter start-up, .pth files) {it['site_cumulative_ms']:.1f} ms, "
            f"overlayctl's own {len(it['overlayctl_modules'])} modules {it['overlayctl_self_ms']:.1f} ms self"
        )
        lines.append(f"  heavy modules on the run path: {', '.join(it['heavy_modules_imported']) or 'none'}")
        lines.append(f"  {'top by cumulative':<44} {'cum ms':>8} {'self ms':>8}")
        for m in it["top_cumulative"]:
            name = "  " * m["depth"] + m["module"]
            lines.append(f"  {name:<44} {m['cumulative_ms']:>8.1f} {m['self_ms']:>8.1f}")

    lines.append("")
    lines.append("versions:")
    for k, v in result["versions"].items():
        lines.append(f"  {k:<16} {v}")
    return "\n".join(lines)


# --------------------------------------------------------------------------


def bench_parser(doc: str, iterations: int, warmups: int) -> argparse.ArgumentParser:
    """The options every benchmark script takes: rounds, warm-ups, the CLI
    under test, whether peers may be installed, and a JSON copy."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--iterations", type=int, default=iterations, help=f"timed rounds (default {iterations})")
    p.add_argument("--warmups", type=int, default=warmups, help=f"untimed rounds first (default {warmups})")
    p.add_argument(
        "--overlayctl",
        default="overlayctl",
        metavar="CMD",
        help="the CLI under test, split like a shell would (default: overlayctl from PATH; "
        'e.g. "python3 -m overlayctl" with PYTHONPATH=the checkout)',
    )
    p.add_argument(
        "--checkout",
        metavar="DIR",
        help="benchmark the overlayctl package of this checkout, started as the launcher starts the installed one "
        "(the venv's python -IS, the checkout first on sys.path); overrides --overlayctl",
    )
    p.add_argument("--no-install", action="store_true", help="do not apt-get install missing peers")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    return p


def parse_bench_args(
    p: argparse.ArgumentParser, argv: list[str] | None, positive: tuple[str, ...] = ()
) -> argparse.Namespace:
    """Parse, refusing counts that make no benchmark (`positive`: more
    options that must be at least 1)."""
    args = p.parse_args(argv)
    if args.iterations < 1 or args.warmups < 0 or any(getattr(args, name) < 1 for name in positive):
        p.error("counts must be positive")
    return args


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = bench_parser(__doc__, 30, 3)
    p.add_argument("--containers", type=int, default=20, help="idle containers for the disk cost (default 20)")
    p.add_argument("--importtime-runs", type=int, default=5, help="runs under -X importtime (default 5)")
    return parse_bench_args(p, argv, ("containers", "importtime_runs"))


class Bench:
    """One benchmark run and everything it has to clean up afterwards."""

    def __init__(self, args: argparse.Namespace, cmd: list[str]) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="overlayctl-bench."))
        self.tmp.chmod(0o755)
        # Its own default bridge device and subnet, deleted at the end: the
        # host's octl0 (and whatever uses it) is left alone.
        self.bridge = f"octlb{os.getpid() % 100000}"
        env = dict(os.environ, OVERLAYCTL_BRIDGE_NAME=self.bridge, OVERLAYCTL_BRIDGE_SUBNET="10.248.0.0/24")
        self.ctl = Overlayctl(cmd, self.tmp / "store", self.tmp / "run", env)
        self.peers: dict[str, str] = {}
        self.podman_ref: str | None = None
        self.podman_env: dict[str, str] | None = None
        self.mounts_before = set(mounts())
        self.nspawn_dir = Path("/run/systemd/nspawn")
        self.nspawn_dir_existed = self.nspawn_dir.exists()

    # -- the run ----------------------------------------------------------

    def run(self) -> dict:
        args, ctl, tmp = self.args, self.ctl, self.tmp
        tar = tmp / "bb.tar"
        say(f"base image: sh {ROOTFS_SH.relative_to(REPO)} {tar}")
        try:
            run(["sh", str(ROOTFS_SH), str(tar)])
        except subprocess.CalledProcessError as exc:
            raise SetupError(f"busybox-rootfs.sh failed: {tail(exc.stderr)}") from exc

        say("peers: " + ("" if args.no_install else "installing what is missing, ") + "writing their configuration")
        self.peers = peers_env(tmp / "peers", install=not args.no_install)

        say(f"overlayctl: import into a private store under {tmp}")
        ctl("import", str(tar), IMAGE)

        say(f"disk: {args.containers} x overlayctl create {IMAGE} true")
        disk = measure_disk(ctl, args.containers)

        rootfs = tmp / "rootfs"
        make_rootfs(tar, rootfs)
        rows = self.rows(tar, rootfs)
        for row in rows:
            if row.skipped is None:
                probe(row)
        say(
            f"timing: {args.warmups} warm-up + {args.iterations} rounds over "
            + ", ".join(r.label for r in rows if r.skipped is None)
        )
        time_rows(rows, args.iterations, args.warmups)

        say(f"imports: {args.importtime_runs} x overlayctl run under -X importtime")
        imports = measure_imports(ctl, args.importtime_runs)

        runs = {}
        for r in rows:
            st = r.stats() or {}
            runs[r.key] = {
                "label": r.label,
                "argv": r.argv,
                "skipped": r.skipped,
                "median": st.get("median"),
                "p90": st.get("p90"),
                "min": st.get("min"),
                "max": st.get("max"),
                "mean": st.get("mean"),
                "times_ms": [round(t, 3) for t in r.times],
                "failures": r.failures,
                "last_error": r.last_error,
            }
        return {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "iterations": args.iterations,
            "warmups": args.warmups,
            "runs": runs,
            "goal_run": run_goal(runs),
            "goal_bridge": run_goal(runs, "overlayctl-bridge", "podman-bridge", BRIDGE_GOAL_RATIO),
            "goal_floor": run_goal(runs, "overlayctl", "floor", FLOOR_GOAL_RATIO),
            "disk": disk,
            "importtime": imports,
            "versions": self.versions(imports),
        }

    def rows(self, tar: Path, rootfs: Path) -> list[Row]:
        ctl, peers = self.ctl, self.peers
        rows = [
            Row(
                "overlayctl",
                "overlayctl run",
                ctl.argv("run", "--rm", "--network", "none", IMAGE, "/bin/true"),
                ctl.env,
            ),
            Row(
                "overlayctl-bridge",
                "overlayctl run (bridge)",
                ctl.argv("run", "--rm", "--network", "bridge", IMAGE, "/bin/true"),
                ctl.env,
            ),
        ]

        podman = peers.get("PEER_PODMAN") or None
        if podman is None:
            rows.append(Row("podman", "podman run", [], skipped="not installed"))
        else:
            self.podman_env = dict(os.environ)
            if peers.get("CONTAINERS_CONF"):
                self.podman_env["CONTAINERS_CONF"] = peers["CONTAINERS_CONF"]
            ref = f"localhost/overlayctl-bench-bb:{os.getpid()}"
            row = Row(
                "podman", "podman run", [podman, "run", "--rm", "--network=none", ref, "/bin/true"], self.podman_env
            )
            bridge = Row(
                "podman-bridge", "podman run (bridge)", [podman, "run", "--rm", ref, "/bin/true"], self.podman_env
            )
            say(f"podman: import {tar.name} as {ref}")
            proc = run([podman, "import", "--quiet", str(tar), ref], env=self.podman_env, check=False)
            if proc.returncode == 0:
                self.podman_ref = ref
            else:
                row.skipped = bridge.skipped = "podman import failed: " + (tail(proc.stderr).splitlines() or ["?"])[-1]
            rows += [row, bridge]

        nspawn = peers.get("PEER_NSPAWN") or None
        rows.append(
            Row(
                "nspawn",
                "systemd-nspawn",
                [
                    nspawn or "systemd-nspawn",
                    "-q",
                    "--register=no",
                    "--keep-unit",
                    "--private-network",
                    "-D",
                    str(rootfs),
                    "/bin/true",
                ],
                skipped=None if nspawn else "not installed",
            )
        )

        bwrap = peers.get("PEER_BWRAP") or None
        rows.append(
            Row(
                "bwrap",
                "bwrap",
                [
                    bwrap or "bwrap",
                    "--ro-bind",
                    str(rootfs),
                    "/",
                    "--proc",
                    "/proc",
                    "--dev",
                    "/dev",
                    "--unshare-all",
                    "--die-with-parent",
                    "/bin/true",
                ],
                skipped=None if bwrap else "not installed",
            )
        )

        unshare = peers.get("PEER_UNSHARE") or None
        (self.tmp / "floor").mkdir()
        rows.append(
            Row(
                "floor",
                "unshare+overlay (floor)",
                ["sh", "-c", FLOOR_SCRIPT, "floor", str(self.tmp / "floor" / "c"), str(rootfs)],
                skipped=None if unshare else "unshare not installed",
            )
        )
        return rows

    def versions(self, imports: dict) -> dict[str, str]:
        v = {"overlayctl": first_line([*self.ctl.cmd, "--version"], self.ctl.env)}
        interp = (imports.get("argv") or [""])[0]
        if is_python(interp):
            v["python"] = f"{first_line([interp, '--version'])} ({interp})"
        for key, argv in (
            ("podman", ["podman", "--version"]),
            ("crun", ["crun", "--version"]),
            ("conmon", ["conmon", "--version"]),
            ("systemd-nspawn", ["systemd-nspawn", "--version"]),
            ("bwrap", ["bwrap", "--version"]),
            ("unshare", ["unshare", "--version"]),
        ):
            if shutil.which(argv[0]):
                v[key] = first_line(argv, self.podman_env if key == "podman" else None)
        v["kernel"] = f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} cpus"
        return v

    # -- clean-up ---------------------------------------------------------

    def cleanup(self) -> None:
        try:
            self._cleanup()
        finally:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def _cleanup(self) -> None:
        problems = []
        if self.podman_ref:
            podman = self.peers.get("PEER_PODMAN") or "podman"
            left = run(
                [podman, "ps", "-a", "-q", "--filter", f"ancestor={self.podman_ref}"], env=self.podman_env, check=False
            ).stdout.split()
            if left:
                problems.append(f"podman containers left: {' '.join(left)} (removed)")
                run([podman, "rm", "-f", *left], env=self.podman_env, check=False)
            proc = run([podman, "rmi", self.podman_ref], env=self.podman_env, check=False)
            if proc.returncode != 0:
                problems.append(f"podman rmi {self.podman_ref} failed: {tail(proc.stderr)}")
        remove_tree(self.tmp)
        if self.tmp.exists():
            problems.append(f"{self.tmp} could not be removed")
        if not self.nspawn_dir_existed:
            remove_empty_dirs(self.nspawn_dir)
        new_mounts = sorted(set(mounts()) - self.mounts_before)
        if new_mounts:
            problems.append("mounts left behind: " + ", ".join(new_mounts))
        for p in problems:
            say("clean-up: " + p)
        if not problems:
            say("clean-up: done; no mounts, containers, images or files left")


def run_goal(runs: dict, ours: str = "overlayctl", theirs: str = "podman", ratio: float = RUN_GOAL_RATIO) -> dict:
    """Whether row `ours` has a median <= `ratio` x row `theirs`'s, from the same rounds."""
    o = runs.get(ours, {}).get("median")
    pod = runs.get(theirs, {})
    if pod.get("skipped") or pod.get("median") is None or o is None:
        return {"met": None, "why": f"{theirs} {pod.get('skipped') or 'has no timings'}", "goal_ratio": ratio}
    p = pod["median"]
    return {
        "met": o <= ratio * p,
        "overlayctl_ms": o,
        "peer": theirs,
        "peer_ms": p,
        "limit_ms": ratio * p,
        "ratio": o / p,
        "goal_ratio": ratio,
    }


def run_main(args: argparse.Namespace, make_bench: Callable, make_report: Callable[[dict], str]) -> int:
    """What every benchmark script's main does with its parsed arguments:
    check root, find the CLI, run `make_bench(args, cmd).run()`, always clean
    up, print `make_report(result)`, write --json. Exit codes: 0 (goals met
    or not), 1 (overlayctl failed), 2 (cannot run), 130 (interrupted)."""
    if os.geteuid() != 0:
        say("needs root (overlay mounts, namespaces, podman): sudo python3 " + shlex.join(sys.argv))
        return 2
    try:
        checkout = getattr(args, "checkout", None)
        cmd = checkout_command(Path(checkout)) if checkout else resolve_overlayctl(args.overlayctl)
    except SetupError as exc:
        say(str(exc))
        return 2

    # SIGTERM and SIGHUP clean up as Ctrl-C does.
    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    bench = make_bench(args, cmd)
    try:
        result = bench.run()
    except OverlayctlFailed as exc:
        say(f"overlayctl failed: {exc}")
        return 1
    except SetupError as exc:
        say(str(exc))
        return 2
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        try:
            bench.cleanup()
        except Exception as exc:  # noqa: BLE001 - report, never mask the run's own outcome
            say(f"clean-up failed: {exc!r}; check {bench.tmp}, podman images and /proc/self/mountinfo")
    print(make_report(result), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        say(f"results written to {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main(parse_args(argv), Bench, report)


if __name__ == "__main__":
    sys.exit(main())

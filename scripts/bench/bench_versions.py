#!/usr/bin/env python3
"""Two checkouts of overlayctl against each other, in one interleaved run.

    python3 scripts/bench/bench_versions.py --before DIR --after DIR [-n 20]

Run as root, after scripts/setup.sh (it uses the venv's interpreter and its
site-packages, with each checkout's own `overlayctl` package in front, the
way /usr/local/bin/overlayctl starts: `python -IS`). For each checkout a
private store and runroot get the busybox image; then, round after round,
the two checkouts take turns (the order swapped every round) at:

1. `run --rm --network none bb:1 /bin/true` (wall time of the command);
2. `run -d --network none bb:1 sleep 3600` (wall time until it returns),
   the container removed untimed afterwards.

It prints each figure's median and p90 and the ratio after/before of the
medians. It reports; it asserts nothing. Exit 1 when a command failed,
2 on a usage or environment error. Everything it made is removed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_run import BOOT, ROOTFS_SH, VENV, SetupError, tail, venv_site_packages  # noqa: E402


class Checkout:
    """One checkout with its private store."""

    def __init__(self, label: str, source: Path, state: Path, site: str) -> None:
        self.label = label
        self.source = source
        self.root = state / label / "root"
        self.runroot = state / label / "run"
        (state / label).mkdir()
        self.prefix = [str(VENV / "bin" / "python"), "-IS", "-c", BOOT, str(source), site]
        self.times: dict[str, list[float]] = {"run --rm": [], "run -d": []}

    def argv(self, *args: str) -> list[str]:
        return [*self.prefix, "--root", str(self.root), "--runroot", str(self.runroot), *args]

    def call(self, *args: str) -> tuple[float, str]:
        t0 = time.perf_counter_ns()
        proc = subprocess.run(self.argv(*args), stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        ms = (time.perf_counter_ns() - t0) / 1e6
        if proc.returncode != 0:
            raise RuntimeError(f"{self.label}: {' '.join(args)} exited {proc.returncode}: {tail(proc.stderr)}")
        return ms, proc.stdout.decode()


def _round(checkouts: list[Checkout], timed: bool) -> None:
    for c in checkouts:
        ms, _ = c.call("run", "--rm", "--network", "none", "bb:1", "/bin/true")
        if timed:
            c.times["run --rm"].append(ms)
    for c in reversed(checkouts):
        ms, out = c.call("run", "-d", "--network", "none", "bb:1", "sleep", "3600")
        if timed:
            c.times["run -d"].append(ms)
        c.call("rm", "-f", out.strip())


def _report(before: Checkout, after: Checkout) -> None:
    print(f"{'figure':<10} {'before median':>14} {'p90':>8} {'after median':>13} {'p90':>8} {'after/before':>13}")
    for key in before.times:
        rows = []
        for c in (before, after):
            xs = sorted(c.times[key])
            p90 = statistics.quantiles(xs, n=10, method="inclusive")[-1] if len(xs) > 1 else xs[0]
            rows.append((statistics.median(xs), p90))
        ratio = rows[1][0] / rows[0][0]
        (b_med, b_p90), (a_med, a_p90) = rows
        print(f"{key:<10} {b_med:>11.1f} ms {b_p90:>5.1f} ms {a_med:>10.1f} ms {a_p90:>5.1f} ms {ratio:>12.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, type=Path, help="checkout of the earlier version")
    parser.add_argument("--after", required=True, type=Path, help="checkout of the later version")
    parser.add_argument("-n", type=int, default=20, help="timed rounds (after 3 warm-ups)")
    args = parser.parse_args()
    try:
        if os.geteuid() != 0:
            raise SetupError("needs root")
        for d in (args.before, args.after):
            if not (d / "overlayctl" / "__init__.py").is_file():
                raise SetupError(f"{d} is not an overlayctl checkout")
        site = venv_site_packages()
    except (SetupError, OSError, subprocess.CalledProcessError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-versions-") as tmp:
        state = Path(tmp)
        rootfs = state / "rootfs.tar"
        subprocess.run(["sh", str(ROOTFS_SH), str(rootfs)], check=True, capture_output=True)
        checkouts = [
            Checkout("before", args.before.resolve(), state, site),
            Checkout("after", args.after.resolve(), state, site),
        ]
        try:
            for c in checkouts:
                c.call("import", str(rootfs), "bb:1")
            for i in range(3 + args.n):
                _round(checkouts if i % 2 == 0 else checkouts[::-1], timed=i >= 3)
            _report(*checkouts)
        except RuntimeError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
        finally:
            for c in checkouts:
                ids = subprocess.run(c.argv("ps", "-aq"), capture_output=True, text=True).stdout.split()
                if ids:
                    subprocess.run(c.argv("rm", "-f", *ids), capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark `overlayctl load` against `podman load`, and layer extraction
against GNU tar, in one interleaved run.

    scripts/setup.sh                              # installs /usr/local/bin/overlayctl
    python3 scripts/bench/bench_load.py [-n 5] [--warmups 1] [--json FILE]

Run as root. It builds a three-layer image of ~100 MB on the busybox base
(each layer: one 20 MB file and 1500 files of 8 KB, random data), saves it
with `overlayctl save` (gzip layers, as `podman save --format oci-archive`
writes them), then measures:

1. load: wall time of `overlayctl load -i ARCHIVE` into an empty store and
   of `podman load -i ARCHIVE` into an empty private podman store, the same
   archive, round-robin (--warmups untimed rounds, then N timed ones); each
   load goes into a fresh store initialised untimed, after an untimed
   `sync`; no store is deleted before the end (bench_run.FRESH_STORES_NOTE
   says why); goal: overlayctl median <= 0.7 x podman;
2. extraction, max(15, 3 x N) rounds: one layer's uncompressed tar (the
   largest) unpacked by overlayctl's extract_layer (timed inside the
   Python process, so without
   the interpreter's start-up) and by `tar -xf` (GNU tar as root: owners,
   modes, times), into a fresh directory each time (after an untimed
   `sync`), kept to the end as the stores are; goal: within 1.3 x tar;
3. the same extraction on a tmpfs the benchmark mounts (and unmounts):
   no disk, so what is compared is the CPU each side spends, without this
   host's swings in file creation; a third contender there is
   extract_layer without the compiled batch writer (Python alone).

Everything runs against throw-away state (private overlayctl stores, a
private podman --root/--runroot, one temporary directory), removed at the
end. Stdlib only; the helpers are bench_run.py's.

Exit status: 0 when the benchmark ran (goals are reported, not asserted);
1 when overlayctl failed; 2 on a usage or environment error.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_run import (  # noqa: E402
    FRESH_STORES_NOTE,
    IMAGE,
    REPO,
    ROOTFS_SH,
    Overlayctl,
    OverlayctlFailed,
    Row,
    SetupError,
    bench_parser,
    finish_cleanup,
    first_line,
    fresh_overlayctl,
    fresh_podman,
    mounts,
    parse_bench_args,
    peers_env,
    run,
    run_main,
    say,
    tail,
    unmount_podman_stores,
)

LOAD_GOAL_RATIO = 0.7  # overlayctl load median <= 0.7 x podman load median
EXTRACT_GOAL_RATIO = 1.3  # extract_layer <= 1.3 x GNU tar -x
BENCH_IMAGE = "loadbench:1"
DOCKERFILE = "FROM {base}\n" + "".join(
    f"RUN mkdir /l{i} && head -c 20000000 /dev/urandom > /l{i}/big && "
    f"n=0; while [ $n -lt 1500 ]; do head -c 8192 /dev/urandom > /l{i}/f$n; n=$((n+1)); done\n"
    for i in (1, 2, 3)
)
# extract_layer timed inside the interpreter: argv = tar, destination, and
# "python-only" to leave the compiled batch writer out.
EXTRACT_SNIPPET = (
    "import sys, time\n"
    "from overlayctl.layer import extract\n"
    "if sys.argv[3:] == ['python-only']:\n"
    "    extract._batchwrite = None\n"
    "t0 = time.perf_counter()\n"
    "with open(sys.argv[1], 'rb') as f:\n"
    "    extract.extract_layer(f, sys.argv[2])\n"
    "print((time.perf_counter() - t0) * 1000)\n"
)


def extraction_rounds(iterations: int) -> int:
    """Timed extraction rounds: a pair takes a second or less, and this
    host's file creation swings from minute to minute, so more of them."""
    return max(15, 3 * iterations)


class Bench:
    def __init__(self, args: argparse.Namespace, cmd: list[str]) -> None:
        self.args = args
        self.cmd = cmd
        self.tmp = Path(tempfile.mkdtemp(prefix="overlayctl-bench-load."))
        self.tmp.chmod(0o755)
        self.env = dict(os.environ)
        self.src = Overlayctl(cmd, self.tmp / "src", self.tmp / "run", self.env)
        self.podman: str | None = None  # the binary
        self.podman_env = dict(os.environ)
        self.mounts_before = set(mounts())

    # -- set-up ------------------------------------------------------------

    def make_archive(self) -> tuple[Path, Path]:
        """The image, saved as an OCI archive; and its largest layer as a plain tar."""
        tar = self.tmp / "bb.tar"
        try:
            run(["sh", str(ROOTFS_SH), str(tar)])
        except subprocess.CalledProcessError as exc:
            raise SetupError(f"busybox-rootfs.sh failed: {tail(exc.stderr)}") from exc
        self.src("import", str(tar), IMAGE)
        ctx = self.tmp / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=IMAGE))
        say("building the 3-layer image (~100 MB of random data)")
        self.src("build", "-q", "-t", BENCH_IMAGE, str(ctx), timeout=1800)
        archive = self.tmp / "image.tar"
        self.src("save", "-o", str(archive), BENCH_IMAGE)
        plain = self.tmp / "plain.tar"
        self.src("save", "--compression", "none", "-o", str(plain), BENCH_IMAGE)
        layer = self.tmp / "layer.tar"
        with tarfile.open(plain) as t:
            biggest = max((m for m in t if m.name.startswith("blobs/")), key=lambda m: m.size)
            with t.extractfile(biggest) as src, open(layer, "wb") as out:  # type: ignore[union-attr]
                shutil.copyfileobj(src, out, 1 << 20)
        plain.unlink()
        return archive, layer

    def setup_podman(self) -> str | None:
        peers = peers_env(self.tmp / "peers", install=not self.args.no_install)
        podman = peers.get("PEER_PODMAN")
        if not podman:
            return "podman is not installed"
        if peers.get("CONTAINERS_CONF"):
            self.podman_env["CONTAINERS_CONF"] = peers["CONTAINERS_CONF"]
        self.podman = podman
        return None

    # -- measuring -----------------------------------------------------------

    def time_loads(self, archive: Path, podman_skipped: str | None) -> dict[str, Row]:
        rows = {"overlayctl": Row("overlayctl", "overlayctl load", [])}
        rows["podman"] = Row("podman", "podman load", [], env=self.podman_env, skipped=podman_skipped)
        warmups = self.args.warmups
        total = warmups + self.args.iterations
        for i in range(total):
            order = ["overlayctl", "podman"] if i % 2 == 0 else ["podman", "overlayctl"]
            for key in order:
                row = rows[key]
                if row.skipped:
                    continue
                # A fresh store each time (bench_run.FRESH_STORES_NOTE says why).
                if key == "overlayctl":
                    base = fresh_overlayctl(self.cmd, self.tmp, i, self.env).argv()
                else:
                    assert self.podman is not None
                    base = fresh_podman(self.podman, self.tmp, i, self.podman_env)
                row.argv = [*base, "load", "-q", "-i", str(archive)]
                # Neither side pays for the other's dirty pages (overlayctl
                # flushes its layers with syncfs, which waits for all).
                run(["sync"])
                ms, rc, err = row.once()
                if rc != 0:
                    if key == "overlayctl":
                        raise OverlayctlFailed(f"load exited {rc}: {tail(err)}")
                    row.skipped = f"podman load failed: {tail(err).splitlines()[-1:]}"
                    continue
                if i >= warmups:
                    row.times.append(ms)
            say(f"load round {i + 1}/{total}" + (" (warm-up)" if i < warmups else ""))
        return rows

    def time_extraction(
        self, layer: Path, top: Path, *, keep: bool, python_only: bool = False
    ) -> dict[str, list[float]]:
        """The extractors, round-robin (the order turned each round), each
        into a fresh directory under ``top``: kept to the end when ``keep``
        (on disk, see time_loads), removed after each round otherwise
        (tmpfs frees at once)."""
        keys = ["extract_layer", "tar"] + (["python_only"] if python_only else [])
        times: dict[str, list[float]] = {key: [] for key in keys}
        env = dict(self.env, PYTHONPATH=str(REPO))
        python = self.python()
        warmups = self.args.warmups
        for i in range(warmups + extraction_rounds(self.args.iterations)):
            for key in keys[i % len(keys) :] + keys[: i % len(keys)]:
                dest = top / f"x-{i}-{key}"
                dest.mkdir()
                run(["sync"])  # untimed, as for the loads: no one writes back the other's pages
                if key == "tar":
                    t0 = time.perf_counter()
                    run(["tar", "-xf", str(layer), "-C", str(dest)])
                    ms = (time.perf_counter() - t0) * 1000
                else:
                    flag = ["python-only"] if key == "python_only" else []
                    proc = run([python, "-c", EXTRACT_SNIPPET, str(layer), str(dest), *flag], env=env)
                    ms = float(proc.stdout.strip())
                if i >= warmups:
                    times[key].append(ms)
                if not keep:
                    shutil.rmtree(dest)
        return times

    def time_extraction_on_tmpfs(self, layer: Path) -> dict[str, list[float]]:
        mnt = self.tmp / "tmpfs"
        mnt.mkdir()
        size = 4 * layer.stat().st_size + (64 << 20)  # the tar and two extractions at a time
        run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "overlayctl-bench", str(mnt)])
        try:
            shutil.copyfile(layer, mnt / "layer.tar")
            return self.time_extraction(mnt / "layer.tar", mnt, keep=False, python_only=True)
        finally:
            run(["umount", str(mnt)])

    def python(self) -> str:
        # The interpreter overlayctl runs with: the launcher's, or this one.
        if "python" in os.path.basename(self.cmd[0]):
            return self.cmd[0]
        try:
            line = Path(self.cmd[0]).read_text(errors="replace").splitlines()[0]
        except (OSError, IndexError):
            return sys.executable
        words = line[2:].split() if line.startswith("#!") else []
        return words[0] if words and "python" in os.path.basename(words[0]) else sys.executable

    def run(self) -> dict:
        archive, layer = self.make_archive()
        podman_skipped = self.setup_podman()
        say(f"archive: {archive.stat().st_size / 1e6:.1f} MB; largest layer tar {layer.stat().st_size / 1e6:.1f} MB")
        rows = self.time_loads(archive, podman_skipped)
        say("extraction: extract_layer vs tar -x")
        extraction = self.time_extraction(layer, self.tmp, keep=True)
        say("extraction on tmpfs: extract_layer vs tar -x")
        on_tmpfs = self.time_extraction_on_tmpfs(layer)
        result: dict = {
            "method": FRESH_STORES_NOTE,
            "archive_bytes": archive.stat().st_size,
            "layer_bytes": layer.stat().st_size,
            "rounds": self.args.iterations,
            "extract_rounds": extraction_rounds(self.args.iterations),
            "load_ms": {k: {"stats": r.stats(), "skipped": r.skipped} for k, r in rows.items()},
            "extract_ms": {k: Row(k, k, [], times=v).stats() for k, v in extraction.items()},
            "extract_tmpfs_ms": {k: Row(k, k, [], times=v).stats() for k, v in on_tmpfs.items()},
            "versions": {
                "podman": first_line([self.podman, "--version"]) if self.podman else "not installed",
                "tar": first_line(["tar", "--version"]),
            },
        }
        ours, theirs = result["load_ms"]["overlayctl"]["stats"], result["load_ms"]["podman"]["stats"]
        if ours and theirs:
            result["load_ratio"] = ours["median"] / theirs["median"]
        for key, times in (("extract", extraction), ("extract_tmpfs", on_tmpfs)):
            ex = result[f"{key}_ms"]
            result[f"{key}_ratio"] = ex["extract_layer"]["median"] / ex["tar"]["median"]
            # Each round's pair ran back to back: the median of their ratios
            # is shown too, as it is less moved by the host's slow minutes.
            pairs = zip(times["extract_layer"], times["tar"], strict=True)
            result[f"{key}_paired_ratio"] = statistics.median(ours / tar for ours, tar in pairs)
        return result

    def cleanup(self) -> None:
        unmount_podman_stores(self.tmp)
        finish_cleanup(self.tmp, self.mounts_before, [], "stores, images, mounts")


def report(result: dict) -> str:
    mb = result["archive_bytes"] / 1e6
    lines = [f"load benchmark: a 3-layer {mb:.0f} MB OCI archive (gzip layers), {result['rounds']} timed rounds", ""]
    lines.append(f"{'':<16} {'median ms':>10} {'p90 ms':>8} {'min ms':>8}")
    for key, side in result["load_ms"].items():
        if side["stats"] is None:
            lines.append(f"{key + ' load':<16} skipped: {side['skipped']}")
            continue
        s = side["stats"]
        lines.append(f"{key + ' load':<16} {s['median']:>10.0f} {s['p90']:>8.0f} {s['min']:>8.0f}")
    for where, label in (("extract_ms", ""), ("extract_tmpfs_ms", " tmpfs")):
        for key, s in result[where].items():
            name = key.replace("_only", " only") + label
            lines.append(f"{name:<20} {s['median']:>6.0f} {s['p90']:>8.0f} {s['min']:>8.0f}")
    lines.append("")
    if "load_ratio" in result:
        r = result["load_ratio"]
        lines.append(
            f"goal  load <= {LOAD_GOAL_RATIO:.1f} x podman: {r:.2f}x -> {'MET' if r <= LOAD_GOAL_RATIO else 'MISSED'}"
        )
    else:
        lines.append(f"goal  load <= {LOAD_GOAL_RATIO:.1f} x podman: n/a (podman skipped)")
    layer_mb = result["layer_bytes"] / 1e6
    for key, where in (("extract", "on disk"), ("extract_tmpfs", "on tmpfs")):
        r = result[f"{key}_ratio"]
        verdict = "MET" if r <= EXTRACT_GOAL_RATIO else "MISSED"
        lines.append(
            f"goal  extracting a {layer_mb:.0f} MB layer {where} <= {EXTRACT_GOAL_RATIO:.1f} x tar -x: "
            f"{r:.2f}x -> {verdict} (median of each round's ratio {result[f'{key}_paired_ratio']:.2f}x)"
        )
    lines.append(f"      (extraction: {result['extract_rounds']} rounds each)")
    lines.append(f"peers: {result['versions']['podman']}; {result['versions']['tar']}")
    lines.append(f"method: {result['method']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return parse_bench_args(bench_parser(__doc__, iterations=5, warmups=1), argv)


def main(argv: list[str] | None = None) -> int:
    return run_main(parse_args(argv), Bench, report)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark `overlayctl pull` against `podman pull` from a local registry.

    scripts/setup.sh                              # installs /usr/local/bin/overlayctl
    python3 scripts/bench/bench_pull.py [-n 5] [--json FILE]

Run as root. A throw-away registry (scripts/registry.sh: docker-registry on
127.0.0.1) is given one image of three gzip layers, about 100 MB unpacked
(each layer: a third of random bytes, the rest text-like, so that gzip has
work to do as with real images). Then, interleaved and swapping order each
round, both pull it cold:

- overlayctl pull into a fresh store;
- podman pull into fresh private storage (--root/--runroot in the
  temporary directory).

Each store is initialised untimed and `sync` runs before each pull; no
store is deleted before the end (bench_run.FRESH_STORES_NOTE says why).

The goal: overlayctl's median <= 0.7 x podman's. Both verify every digest
and unpack every layer; neither runs anything. Everything (registry,
stores, podman's storage) is removed at the end. Stdlib only; the helpers
are bench_run.py's.

Exit status: 0 when the benchmark ran (goals are reported, not asserted);
1 when overlayctl failed; 2 on a usage or environment error.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shlex
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_run import (  # noqa: E402
    FRESH_STORES_NOTE,
    REPO,
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
    run_goal,
    run_main,
    say,
    tail,
    unmount_podman_stores,
)

PULL_GOAL_RATIO = 0.7
REGISTRY_SH = REPO / "scripts" / "registry.sh"
LAYER_BYTES = 33 * 1000 * 1000  # three of them: ~100 MB unpacked
REPOSITORY = "bench/pull"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def text_bytes(rng: random.Random, words: list[bytes], size: int) -> bytes:
    """size bytes of random words: compresses about 2:1 with gzip, as text does."""
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choices(words, k=4096)) + b"\n"
    return bytes(out[:size])


def layer_tar(index: int, size: int) -> bytes:
    """A layer of a few files: a third random bytes, two thirds text-like."""
    rng = random.Random(index)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        words = [rng.randbytes(rng.randint(3, 9)).hex().encode() for _ in range(2000)]
        parts = [
            (f"layer{index}/random.bin", rng.randbytes(size // 3)),
            (f"layer{index}/text.txt", text_bytes(rng, words, size - size // 3)),
        ]
        for n in range(100):  # many small files too, as real layers have
            parts.append((f"layer{index}/small/{n:03d}.conf", b"key = value\n" * rng.randint(10, 400)))
        dirs = sorted({os.path.dirname(name) for name, _ in parts} | {f"layer{index}"})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name, data in parts:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def upload(registry: str, repository: str, tag: str, layers: list[bytes]) -> tuple[str, int]:
    """Put an image of these layer tars into an open registry (plain HTTP,
    monolithic uploads); returns (manifest digest, total blob bytes)."""
    blobs = [gzip.compress(t, compresslevel=6, mtime=0) for t in layers]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [sha(t) for t in layers]},
        }
    ).encode()
    base = f"http://{registry}/v2/{repository}"
    for blob in blobs + [config]:
        post = urllib.request.Request(f"{base}/blobs/uploads/", method="POST", data=b"")
        with urllib.request.urlopen(post, timeout=60) as r:
            location = r.headers["Location"]
        if location.startswith("/"):
            location = f"http://{registry}{location}"
        sep = "&" if "?" in location else "?"
        put = urllib.request.Request(f"{location}{sep}digest={sha(blob)}", method="PUT", data=blob)
        put.add_header("Content-Type", "application/octet-stream")
        urllib.request.urlopen(put, timeout=300).close()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(b), "size": len(b)}
                for b in blobs
            ],
        }
    ).encode()
    put = urllib.request.Request(f"{base}/manifests/{tag}", method="PUT", data=manifest)
    put.add_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
    urllib.request.urlopen(put, timeout=60).close()
    return sha(manifest), sum(len(b) for b in blobs)


class Bench:
    """One benchmark run and everything it has to clean up afterwards."""

    def __init__(self, args, cmd: list[str]) -> None:  # type: ignore[no-untyped-def]
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="overlayctl-bench."))
        self.tmp.chmod(0o755)
        self.ctl = Overlayctl(cmd, self.tmp / "store", self.tmp / "run", dict(os.environ))
        self.registry_dir: str | None = None
        self.podman_env: dict[str, str] = dict(os.environ)
        self.podman: str | None = None  # the binary, when installed
        self.mounts_before = set(mounts())

    def start_registry(self) -> str:
        proc = run(["sh", str(REGISTRY_SH), "start"], check=False, timeout=600)
        if proc.returncode != 0:
            raise SetupError(f"cannot start the registry: {tail(proc.stderr)}")
        env = dict(item.split("=", 1) for item in proc.stdout.split()[1:])
        self.registry_dir = env["REGISTRY_DIR"]
        return env["REGISTRY"]

    def run(self) -> dict:
        args = self.args
        registry = self.start_registry()
        say(f"registry on {registry}; making the image (3 layers, {3 * LAYER_BYTES / 1e6:.0f} MB unpacked)")
        layers = [layer_tar(i, LAYER_BYTES) for i in range(3)]
        digest, blob_bytes = upload(registry, REPOSITORY, "1", layers)
        ref = f"{registry}/{REPOSITORY}:1"
        say(f"image {ref}: {blob_bytes / 1e6:.1f} MB of gzip blobs, manifest {digest[:19]}")

        peers = peers_env(self.tmp / "peers", install=not args.no_install)
        self.podman_env.update({k: v for k, v in peers.items() if k == "CONTAINERS_CONF"})
        podman = peers.get("PEER_PODMAN")
        self.podman = podman or None

        ours = Row("overlayctl", "overlayctl pull", [], self.ctl.env)
        theirs = Row("podman", "podman pull", [], self.podman_env)
        if not podman:
            theirs.skipped = "podman is not installed"
        rows = [ours, theirs]
        # Interleaved, the order swapped every round; every pull is a cold
        # one into fresh stores (bench_run.FRESH_STORES_NOTE).
        total = args.warmups + args.iterations
        for i in range(total):
            for row in rows if i % 2 == 0 else rows[::-1]:
                if row.skipped:
                    continue
                if row.key == "overlayctl":
                    self.ctl = fresh_overlayctl(self.ctl.cmd, self.tmp, i, self.ctl.env)
                    row.argv = self.ctl.argv("pull", ref)
                else:
                    assert self.podman is not None
                    base = fresh_podman(self.podman, self.tmp, i, self.podman_env)
                    row.argv = [*base, "pull", "--tls-verify=false", ref]
                run(["sync"])  # untimed: no one pays for the other's dirty pages
                ms, rc, err = row.once()
                if rc != 0 and row.key == "overlayctl":
                    raise OverlayctlFailed(f"{shlex.join(row.argv)} exited {rc}\n{tail(err)}")
                if rc != 0:
                    row.failures += 1
                    row.last_error = f"exit {rc}: {tail(err)}"
                elif i >= args.warmups:
                    row.times.append(ms)
            self.check(ref)
            say(f"round {i + 1}/{total}" + (" (warm-up)" if i < args.warmups else ""))
        result = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "method": FRESH_STORES_NOTE,
            "image": {"layers": 3, "unpacked_bytes": sum(len(t) for t in layers), "blob_bytes": blob_bytes},
            "runs": {
                r.key: ({"skipped": r.skipped} if r.skipped else {**(r.stats() or {}), "failures": r.failures,
                                                                  "times_ms": [round(t, 1) for t in r.times]})
                for r in rows
            },
            "versions": self.versions(),
        }  # fmt: skip
        result["goal"] = run_goal(result["runs"], ratio=PULL_GOAL_RATIO)
        return result

    def check(self, ref: str) -> None:
        """overlayctl got the image."""
        image_id = json.loads(self.ctl("image", "inspect", ref))[0]["Id"]
        if not image_id.startswith("sha256:"):
            raise SetupError(f"overlayctl pulled no image for {ref}")

    def versions(self) -> dict[str, str]:
        v = {"overlayctl": first_line([*self.ctl.cmd, "--version"])}
        if self.podman:
            v["podman"] = first_line([self.podman, "--version"], self.podman_env)
        v["docker-registry"] = first_line(["docker-registry", "--version"])
        v["kernel"] = f"{os.uname().release}, {os.cpu_count()} cpus"
        return v

    def cleanup(self) -> None:
        problems = []
        unmount_podman_stores(self.tmp)
        if self.registry_dir:
            proc = run(["sh", str(REGISTRY_SH), "stop", self.registry_dir], check=False)
            if proc.returncode != 0:
                problems.append(f"registry stop failed: {tail(proc.stderr)}")
        finish_cleanup(self.tmp, self.mounts_before, problems, "registry, images, mounts")


def report(result: dict) -> str:
    img = result["image"]
    lines = [
        f"pull benchmark: 3 gzip layers, {img['unpacked_bytes'] / 1e6:.0f} MB unpacked, "
        f"{img['blob_bytes'] / 1e6:.0f} MB of blobs, from docker-registry on 127.0.0.1, cold each round",
        "",
        f"{'':<12} {'median ms':>10} {'p90 ms':>8} {'min ms':>8} {'max ms':>8}",
    ]
    for key in ("overlayctl", "podman"):
        r = result["runs"][key]
        if r.get("skipped"):
            lines.append(f"{key:<12} skipped: {r['skipped']}")
        else:
            lines.append(f"{key:<12} {r['median']:>10.0f} {r['p90']:>8.0f} {r['min']:>8.0f} {r['max']:>8.0f}")
    g = result["goal"]
    lines.append("")
    if g["met"] is None:
        lines.append(f"goal  median <= {g['goal_ratio']:.2f} x podman: n/a ({g['why']})")
    else:
        lines.append(
            f"goal  median <= {g['goal_ratio']:.2f} x podman: {g['ratio']:.2f}x -> {'MET' if g['met'] else 'MISSED'}"
        )
    lines.append(f"method: {result['method']}")
    lines += ["", "versions:"] + [f"  {k:<16} {v}" for k, v in result["versions"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_bench_args(bench_parser(__doc__, 5, 1), argv)
    return run_main(args, Bench, report)


if __name__ == "__main__":
    sys.exit(main())

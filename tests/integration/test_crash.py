"""Crash safety, proved: each store-changing command is killed (SIGKILL,
its whole process group) at every fault point it reaches (overlayctl/
faults.py) and at random moments, again and again on one store. After each
kill: `system fsck --repair` leaves nothing to report, staging is empty,
every image still runs, and the command then succeeds."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_registry import registry  # noqa: F401 - the session's registry fixture

pytestmark = pytest.mark.slow

NONE = ("--network", "none")
RANDOM_KILLS = 20  # per command, at random moments within a normal run's duration
KILLED = -signal.SIGKILL


@dataclass
class Scenario:
    """A command, what it needs before each run, and its fault points."""

    prepare: Callable[[int], list[str]]  # iteration -> the command's argv
    points: list[str]
    # A removal killed after its commit is done: run again, it finds
    # nothing to remove (Docker's "not found"), which is its success.
    done_if: bytes | None = None


class Harness:
    def __init__(self, cli, tmp_path: Path, busybox: Path) -> None:
        self.cli = cli
        self.tmp = tmp_path
        self.busybox = busybox
        self.kills = 0
        self.rng = random.Random(0x0C7A5)
        cli.env["OVERLAYCTL_FSCK_GRACE"] = "0"

    def again(self, scenario: Scenario, argv: list[str]) -> None:
        """The command run once more succeeds (or finds its work done)."""
        if scenario.done_if is None:
            assert self.run(argv) == 0
            return
        result = self.cli(*argv)
        assert result.returncode == 0 or scenario.done_if in result.stderr, (argv, result.stderr)

    def run(self, argv: list[str], faults: str | None = None, kill_after: float | None = None) -> int:
        env = dict(self.cli.env)
        if faults:
            env["OVERLAYCTL_FAULTS"] = faults
        proc = subprocess.Popen(
            self.cli.argv(*argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # a fault's kill takes this group, not pytest
        )
        if kill_after is not None:
            try:
                proc.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
        if proc.returncode not in (0, KILLED):
            raise AssertionError((argv, faults, proc.returncode, out[-2000:], err[-2000:]))
        return proc.returncode

    def repaired(self, what: str) -> None:
        """Right after a crash: whatever fsck finds, it can repair."""
        result = self.cli("system", "fsck", "--repair")
        assert result.returncode == 0, (what, result.stdout.decode(), result.stderr.decode())

    def verify(self, what: str) -> None:
        """The store is clean and usable: no problem left, staging empty,
        every image runs."""
        assert self.cli.ok("system", "fsck") == "no problems found\n", what
        assert os.listdir(self.cli.root / "tmp") == [], (what, os.listdir(self.cli.root / "tmp"))
        for image in self.cli.ok("images", "-q", "--no-trunc").split():
            assert self.cli.ok("run", "--rm", *NONE, image, "true") == "", (what, image)

    def exercise(self, scenario: Scenario) -> None:
        """Every fault point, each kill followed by the repair, the command
        run again, unharmed, and the checks; then kills at random moments,
        each followed by the repair and the checks (the next iteration's
        set-up commands, then its command, are the next commands to work)."""
        iteration = 0
        durations = []
        for point in scenario.points:
            iteration += 1
            argv = scenario.prepare(iteration)
            rc = self.run(argv, faults=f"{point}=kill")
            assert rc == KILLED, f"{argv}: fault point {point} was never reached"
            self.kills += 1
            self.repaired(f"{argv} killed at {point}")
            start = time.monotonic()
            self.again(scenario, argv)
            durations.append(time.monotonic() - start)
            self.verify(f"{argv} after the crash at {point}")
        # Within a typical run, so that nearly every one is a kill.
        typical = 0.9 * sorted(durations)[len(durations) // 2]
        for _ in range(RANDOM_KILLS):
            iteration += 1
            argv = scenario.prepare(iteration)
            moment = self.rng.uniform(0.05, typical)
            if self.run(argv, kill_after=moment) == KILLED:
                self.kills += 1
            self.repaired(f"{argv} killed after {moment:.2f} s")
            self.verify(f"{argv} killed after {moment:.2f} s")
        argv = scenario.prepare(iteration + 1)
        assert self.run(argv) == 0
        self.verify(f"{argv}, the last")

    # -- what the commands work on ------------------------------------------------

    def rootfs_tar(self, n: int, files: int = 40) -> Path:
        """busybox plus files of its own (new content: a new layer)."""
        path = self.tmp / f"rootfs-{n}.tar"
        with tarfile.open(self.busybox) as base, tarfile.open(path, "w") as tar:
            for member in base:
                tar.addfile(member, base.extractfile(member) if member.isreg() else None)
            for i in range(files):
                data = f"{n}-{i}\n".encode() * 200
                info = tarfile.TarInfo(f"d{i % 4}/f{i}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path

    def context(self, n: int) -> Path:
        ctx = self.tmp / f"ctx-{n}"
        ctx.mkdir(exist_ok=True)
        (ctx / "data").write_text(f"{n}\n" * 1000)
        (ctx / "Dockerfile").write_text(
            "FROM bb:1\nCOPY data /data\nRUN cat /data > /copy\nRUN echo done >> /copy\n"
        )
        return ctx

    def build(self, n: int, tag: str) -> None:
        self.cli.ok("build", "-q", "--no-cache", "-t", tag, str(self.context(n)))

    def drop(self, *images: str) -> None:
        for image in images:
            self.cli("rmi", "-f", image)


KILLS: dict[str, int] = {}  # test name -> processes killed in it


@pytest.fixture
def harness(request, cli, bb, tmp_path, busybox_tar):
    h = Harness(cli, tmp_path, busybox_tar)
    yield h
    KILLS[request.node.name] = h.kills


def test_import(harness):
    def prepare(n: int) -> list[str]:
        harness.drop(f"imp:{n - 1}")
        return ["import", str(harness.rootfs_tar(n)), f"imp:{n}"]

    harness.exercise(Scenario(prepare, ["layer-staged", "layer-placed", "import-layer"]))


def test_build(harness):
    def prepare(n: int) -> list[str]:
        harness.drop(f"b:{n - 1}")
        return ["build", "-q", "--no-cache", "-t", f"b:{n}", str(harness.context(n))]

    points = ["build-from"] + [f"{p}#{i}" for i in (1, 2, 3) for p in ("layer-staged", "layer-placed")]
    harness.exercise(Scenario(prepare, points))


def test_commit(harness):
    def prepare(n: int) -> list[str]:
        harness.cli("rm", "-f", "cc")
        harness.drop(f"snap:{n - 1}")
        harness.cli.ok("run", "--name", "cc", *NONE, "bb:1", "sh", "-c", f"echo {n} > /n; mkdir -p /d/{n}")
        return ["commit", "cc", f"snap:{n}"]

    harness.exercise(Scenario(prepare, ["commit-spooled", "layer-staged", "layer-placed", "commit-layer"]))


def test_load(harness):
    harness.build(1, "ld:1")
    archive = harness.tmp / "ld.tar"
    harness.cli.ok("save", "-o", str(archive), "ld:1")

    def prepare(n: int) -> list[str]:
        harness.drop("ld:1")
        return ["load", "-q", "-i", str(archive)]

    points = ["load-staged"] + [f"{p}#{i}" for i in (1, 2, 3) for p in ("layer-staged", "layer-placed")]
    harness.exercise(Scenario(prepare, points))


def test_pull_and_push(harness, registry):  # noqa: F811 - the fixture
    harness.build(1, "pl:1")
    harness.cli.ok("push", "pl:1", f"{registry}/crash-pull:1")
    harness.drop("pl:1")

    def pull(n: int) -> list[str]:
        harness.drop(f"{registry}/crash-pull:1")
        return ["pull", "-q", f"{registry}/crash-pull:1"]

    # The layers are unpacked by worker processes: a kill there takes the pull too.
    points = ["pull-layers"] + [f"{p}#1" for p in ("layer-staged", "layer-placed")]
    harness.exercise(Scenario(pull, points))

    def push(n: int) -> list[str]:
        harness.drop(f"ps:{n - 1}")
        harness.build(n + 10, f"ps:{n}")  # new layers: their gzip blobs are made by this push
        return ["push", "-q", f"ps:{n}", f"{registry}/crash-push:{n}"]

    harness.exercise(Scenario(push, [f"blob-adopted#{i}" for i in (1, 2, 3)] + ["push-blobs"]))


def test_rm(harness):
    def prepare(n: int) -> list[str]:
        harness.cli.ok("run", "--name", f"r{n}", *NONE, "bb:1", "sh", "-c", "head -c 100000 /dev/zero > /z")
        return ["rm", f"r{n}"]

    harness.exercise(Scenario(prepare, ["container-forgotten", "discard-moved"], b"not found"))


def test_image_rm(harness):
    def prepare(n: int) -> list[str]:
        harness.build(n, f"gone:{n}")
        return ["rmi", f"gone:{n}"]

    points = [f"{p}#{i}" for i in (1, 2, 3) for p in ("layer-forgotten", "discard-moved")]
    harness.exercise(Scenario(prepare, points, b"not found"))


def test_volume_rm(harness):
    def prepare(n: int) -> list[str]:
        harness.cli.ok("volume", "create", f"v{n}")
        harness.cli.ok("run", "--rm", *NONE, "-v", f"v{n}:/v", "bb:1", "sh", "-c", "echo x > /v/x")
        return ["volume", "rm", f"v{n}"]

    harness.exercise(Scenario(prepare, ["volume-forgotten", "discard-moved"], b"not found"))


def test_gc(harness):
    def prepare(n: int) -> list[str]:
        harness.build(n, "dangle:1")
        harness.build(n + 5000, "dangle:1")  # the first image now dangles, with 3 layers of its own
        return ["system", "gc"]

    points = [f"{p}#{i}" for i in (1, 2) for p in ("layer-forgotten", "discard-moved")]
    harness.exercise(Scenario(prepare, points))


def test_at_least_two_hundred_kills():
    """Runs last: the kills of the tests above, added up."""
    scenarios = [name for name in globals() if name.startswith("test_") and name != "test_at_least_two_hundred_kills"]
    if sorted(KILLS) != sorted(scenarios):
        pytest.skip("only with every crash test of this module")
    print(f"\ncrash harness: {sum(KILLS.values())} kills: " + ", ".join(f"{k[5:]} {v}" for k, v in KILLS.items()))
    assert sum(KILLS.values()) >= 200

"""overlayctl under a real systemd, as PID 1 of a booted guest.

The guest is a minimal Debian made once by scripts/systemd-test-rootfs.sh
(cached under /var/cache/overlayctl) and booted by systemd-nspawn:

- on a throwaway overlay of the cache (--volatile=overlay: a tmpfs upper
  layer that goes with the guest), so the cache is never written;
- in its own network namespace (--private-network, which also leaves the
  guest CAP_NET_ADMIN): the default bridge is made in there and vanishes
  with it;
- with the store on a tmpfs: the container overlays need an upper dir on a
  real file system, and overlayfs is not one;
- with nspawn's default capability set and seccomp filter, which the
  guest's units inherit: no --capability or --system-call-filter is needed.

overlayctl is installed in it by scripts/setup.sh, from a copy of this
checkout and offline (the guest has no network), from wheels built on the
host and cached. The units from systemd/ are installed unchanged. Commands
run in the guest through nsenter into every namespace of its PID 1;
`systemctl` there talks to the guest's systemd.

nspawn runs in a cgroup made for it: whatever happens, the teardown powers
the guest off, kills what is left in that cgroup, removes it and the work
directory, and checks that no process or mount of the guest survives.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from overlayctl.systemd.units import instance_unit
from tests.helpers import wait_for

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("OVERLAYCTL_SYSTEMD_CACHE", "/var/cache/overlayctl"))
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# In the options of every container overlay: absolute with the new mount
# API, relative to the store with mount(2) (kernels before 6.5 fall back to it).
STORE_OVERLAYS = ("upperdir=/var/lib/overlayctl/", "upperdir=containers/")


def _store_overlay(line: str) -> bool:
    return any(option in line for option in STORE_OVERLAYS)


# A container that stops at once on SIGTERM (PID 1 of a namespace gets
# only the signals it has a handler for) and runs until then.
SERVE = ["sh", "-c", 'trap "exit 0" TERM; sleep 1000 & wait']


# --- the host side: cache, wheels, a cgroup for nspawn -----------------------


def _need_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: debootstrap, systemd-nspawn")
    for tool in ("systemd-nspawn", "debootstrap", "nsenter"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: scripts/setup.sh installs it (packages systemd-container, debootstrap)")


def _rootfs() -> Path:
    env = dict(os.environ, OVERLAYCTL_SYSTEMD_ROOTFS_CACHE=str(CACHE / "systemd-rootfs"))
    result = subprocess.run(
        # (debootstrap takes ~30 s here, and ~17 min in a VM under QEMU TCG.)
        ["sh", str(REPO / "scripts" / "systemd-test-rootfs.sh")], env=env, capture_output=True, timeout=3600
    )
    assert result.returncode == 0, result.stderr.decode()
    return Path(result.stdout.decode().split()[-1])


def _guest_python(rootfs: Path) -> str:
    target = os.readlink(rootfs / "usr" / "bin" / "python3")  # "python3.11"
    return target.removeprefix("python")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _wheelhouse(guest_python: str) -> Path:
    """Wheels of overlayctl's dependencies (with the test extras, which
    setup.sh installs) and of the build backend, made by this host's pip
    and cached by pyproject.toml and Python version. overlayctl itself is
    built in the guest, from the checkout."""
    host_python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if host_python != guest_python:
        pytest.fail(
            f"the guest's Python is {guest_python} and this one is {host_python}: wheels built here would not "
            "install there; run the tests with the Python of this host's release (scripts/test.sh does)"
        )
    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + sys.version.encode()).hexdigest()[:16]
    base = CACHE / "systemd-wheels"
    wheels = base / key
    with _locked(base / "lock"):
        # Another key's wheels may be in use by a run of another interpreter:
        # only those unused for a week go.
        for old in base.iterdir():
            if old.is_dir() and old != wheels and time.time() - old.stat().st_mtime > 7 * 86400:
                shutil.rmtree(old, ignore_errors=True)
        if (wheels / ".complete").exists():
            os.utime(wheels)
            return wheels
        staging = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=base))
        try:
            src = staging / "src"
            src.mkdir()
            for name in ("pyproject.toml", "README.md"):
                shutil.copy(REPO / name, src / name)
            shutil.copytree(REPO / "overlayctl", src / "overlayctl", ignore=shutil.ignore_patterns("__pycache__"))
            pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
            out = staging / "wheels"
            for args in (
                ["wheel", "-w", str(out), f"{src}[test]"],
                ["download", "-d", str(out), "setuptools>=64", "wheel"],
            ):
                result = subprocess.run(pip + args, capture_output=True, timeout=600)
                assert result.returncode == 0, result.stderr.decode()
            for built in out.glob("overlayctl-*.whl"):
                built.unlink()
            (out / ".complete").touch()
            out.rename(wheels)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return wheels


def _cgroup_parents() -> list[Path]:
    """Our cgroup in each tree nspawn reads: cgroup2, and the name=systemd
    tree of a v1 or hybrid host."""
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split(" - ") for line in f.read().splitlines()]
    with open("/proc/self/cgroup") as f:
        ours = dict(line.split(":", 2)[1:] for line in f.read().splitlines())
    parents: list[Path] = []
    for left, right in mounts:
        fields, fstype, options = left.split(), right.split()[0], right.split()[-1]
        if fstype == "cgroup2" and "" in ours:
            path = ours[""]
        elif fstype == "cgroup" and "name=systemd" in options.split(",") and "name=systemd" in ours:
            path = ours["name=systemd"]
        else:
            continue
        if Path(fields[4] + path) not in parents:
            parents.append(Path(fields[4] + path))
    return parents


class ScratchCgroup:
    """A cgroup of our own, below ours in each tree nspawn reads: nspawn and
    the guest live there, and all of it goes at the end."""

    def __init__(self, name: str, make: bool = True) -> None:
        self.dirs = [parent / name for parent in _cgroup_parents()]
        for directory in self.dirs:
            if make:
                directory.mkdir()

    def enter(self) -> None:
        """Move the calling process in (run in the child before exec)."""
        for directory in self.dirs:
            (directory / "cgroup.procs").write_text("0")

    def pids(self) -> set[int]:
        found: set[int] = set()
        for directory in self.dirs:
            for procs in directory.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    found.update(int(p) for p in procs.read_text().split())
        return found

    def remove(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            for directory in self.dirs:
                kill = directory / "cgroup.kill"
                if kill.exists():
                    kill.write_text("1")
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        for directory in self.dirs:
            for sub, _, _ in sorted(os.walk(directory), key=lambda entry: -len(entry[0])):
                os.rmdir(sub)


RUN_PREFIX = "octl-test-"  # + the pid of the pytest that booted the guest


def _sweep_dead_runs() -> None:
    """What a run killed too hard to clean up after itself left (its guest
    was powered off by PR_SET_PDEATHSIG): cgroups, work directories and
    nspawn's propagation directory named after a pytest that is gone."""

    def dead_runs(place: Path) -> list[Path]:
        if not place.is_dir():
            return []
        runs = [e for e in place.iterdir() if e.name.startswith(RUN_PREFIX)]
        pids = [e.name.removeprefix(RUN_PREFIX).split(".")[0] for e in runs]
        return [e for e, pid in zip(runs, pids, strict=True) if pid.isdigit() and not Path(f"/proc/{pid}").exists()]

    for parent in _cgroup_parents():
        for entry in dead_runs(parent):
            ScratchCgroup(entry.name, make=False).remove()
    for place in (Path(tempfile.gettempdir()), Path("/run/systemd/nspawn/propagate")):
        for entry in dead_runs(place):
            shutil.rmtree(entry, ignore_errors=True)


# --- the guest --------------------------------------------------------------


class Guest:
    """A booted guest: commands through nsenter, files through /proc/PID/root."""

    def __init__(self, leader: int) -> None:
        self.leader = leader

    def run(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        command = ["nsenter", "-t", str(self.leader), "-a", "env", "-i", f"PATH={GUEST_PATH}", "LANG=C.UTF-8", *argv]
        result = subprocess.run(command, capture_output=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"in the guest: {argv} exited {result.returncode}\n{self._output(result)}")
        return result

    def out(self, *argv: str, timeout: float = 60) -> str:
        return self.run(*argv, timeout=timeout).stdout.decode()

    @staticmethod
    def _output(result: subprocess.CompletedProcess) -> str:
        return (result.stdout + result.stderr).decode(errors="replace")

    def overlayctl(self, *args: str) -> str:
        return self.out("overlayctl", *args)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        args = [f"--property={p}" for p in properties]
        text = self.out("systemctl", "show", *args, unit)
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def inspect(self, container: str) -> dict:
        return json.loads(self.overlayctl("inspect", container))[0]

    def path(self, guest_path: str) -> Path:
        """A file of the guest, seen from the host through its PID 1's root."""
        return Path(f"/proc/{self.leader}/root") / guest_path.lstrip("/")

    def alive(self, pid: int) -> bool:
        return self.path(f"/proc/{pid}").exists()

    def parent(self, pid: int) -> int:
        status = self.path(f"/proc/{pid}/status").read_text()
        return int(status.split("\nPPid:\t", 1)[1].split()[0])

    def store_mounts(self) -> list[str]:
        """Container overlays in any mount namespace of any guest process."""
        text = self.out("sh", "-c", "cat /proc/[0-9]*/mountinfo 2>/dev/null; true")
        return [line for line in text.splitlines() if _store_overlay(line)]

    def journal(self, unit: str) -> str:
        return self.out("journalctl", "--no-pager", "-o", "cat", "-u", unit)

    def drop_in(self, unit: str, text: str) -> None:
        directory = self.path(f"/run/systemd/system/{unit}.d")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "test.conf").write_text(text)
        self.run("systemctl", "daemon-reload")


def _find_leader(nspawn: int) -> int | None:
    """The guest's PID 1: a descendant of nspawn whose pid is 1 in its own
    PID namespace."""
    parents, nspids = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
        except OSError:
            continue
        parents[int(entry)] = int(status["PPid"])
        nspids[int(entry)] = status.get("NSpid", "").split()
    for pid, ns in nspids.items():
        if len(ns) >= 2 and ns[-1] == "1":
            ancestor = parents.get(pid)
            while ancestor and ancestor != nspawn:
                ancestor = parents.get(ancestor)
            if ancestor == nspawn:
                return pid
    return None


def _nspawn_child(cgroup: ScratchCgroup) -> None:
    """In nspawn's process before exec: into our cgroup, and SIGTERM (an
    orderly power-off) should this pytest die without its teardown."""
    from overlayctl.runtime.capabilities import set_parent_death_signal

    cgroup.enter()
    set_parent_death_signal(signal.SIGTERM)


@pytest.fixture(scope="module")
def guest(busybox_tar: Path) -> Iterator[Guest]:
    _need_tools()
    started = time.monotonic()
    rootfs = _rootfs()
    wheels = _wheelhouse(_guest_python(rootfs))
    prepared = time.monotonic()
    _sweep_dead_runs()
    machine = f"{RUN_PREFIX}{os.getpid()}"
    workdir = Path(tempfile.mkdtemp(prefix=f"{machine}."))
    log = workdir / "console.log"
    propagate = Path("/run/systemd/nspawn/propagate") / machine
    cgroup = ScratchCgroup(machine)
    proc = None
    try:
        with open(log, "wb") as console:
            proc = subprocess.Popen(
                [
                    "systemd-nspawn",
                    "--quiet",
                    "--register=no",
                    "--keep-unit",
                    "--console=pipe",
                    "--boot",
                    f"--machine={machine}",
                    f"--directory={rootfs}",
                    "--volatile=overlay",
                    "--private-network",
                    "--tmpfs=/var/lib/overlayctl",
                    f"--bind-ro={REPO}:/src",
                    f"--bind-ro={wheels}:/wheels",
                    f"--bind-ro={busybox_tar.parent}:/bb",
                ],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                preexec_fn=lambda: _nspawn_child(cgroup),
            )
        leader: list[int] = []

        def listening() -> bool:
            # The guest's PID 1, once systemd in it listens on its private
            # socket (what systemctl uses as root when there is no bus yet).
            assert proc.poll() is None, f"systemd-nspawn exited {proc.returncode}:\n{log.read_text()}"
            leader[:] = [_find_leader(proc.pid) or 0]
            return bool(leader[0]) and Path(f"/proc/{leader[0]}/root/run/systemd/private").exists()

        wait_for(listening, 30, "systemd in the guest")
        g = Guest(leader[0])
        state = g.run("systemctl", "is-system-running", "--wait", check=False, timeout=60).stdout.decode().strip()
        assert state in ("running", "degraded"), (state, g.out("systemctl", "--failed", "--no-pager"))
        boot = time.monotonic()
        g.run(
            "sh",
            "-c",
            "mkdir /tmp/src && cp -r /src/pyproject.toml /src/README.md /src/overlayctl /src/scripts /tmp/src/",
        )
        g.run("env", "PIP_NO_INDEX=1", "PIP_FIND_LINKS=/wheels", "sh", "/tmp/src/scripts/setup.sh", timeout=300)
        units = "/src/systemd/*.service /src/systemd/*.socket /src/systemd/*.timer"
        g.run("sh", "-c", f"cp {units} /etc/systemd/system/ && systemctl daemon-reload")
        g.overlayctl("import", f"/bb/{busybox_tar.name}", "bb:1")
        installed = time.monotonic()
        sys.stderr.write(
            f"\nsystemd guest: cache {prepared - started:.1f} s, boot {boot - prepared:.1f} s, "
            f"install {installed - boot:.1f} s\n"
        )
        yield g
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()  # nspawn asks the guest's systemd to power off
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                cgroup.remove()
                proc.wait(10)
        survivors = cgroup.pids()
        cgroup.remove()
        with open("/proc/self/mountinfo") as f:
            mounts = [line for line in f if str(workdir) in line or str(rootfs) in line]
        shutil.rmtree(workdir, ignore_errors=True)
        if propagate.is_dir():
            shutil.rmtree(propagate, ignore_errors=True)
        assert not survivors, f"guest processes outlived the power-off: {survivors}"
        assert not mounts, f"guest mounts left on the host: {mounts}"


@pytest.fixture
def container(guest: Guest) -> Iterator[Callable[..., str]]:
    """Create containers (and their units' drop-ins) that are removed afterwards."""
    made: list[str] = []

    def create(name: str, *args: str) -> str:
        guest.overlayctl("create", "--name", name, *args)
        made.append(name)
        return name

    yield create
    for name in made:
        for unit in (instance_unit(name), f"container-{name}.service"):
            guest.run("systemctl", "stop", unit, check=False)
            guest.run("systemctl", "reset-failed", unit, check=False)
            shutil.rmtree(guest.path(f"/run/systemd/system/{unit}.d"), ignore_errors=True)
            guest.path(f"/etc/systemd/system/{unit}").unlink(missing_ok=True)
        guest.run("overlayctl", "rm", "-f", name, check=False)
    guest.run("systemctl", "daemon-reload")
    assert guest.store_mounts() == []


# --- the tests --------------------------------------------------------------


def _running_pid(guest: Guest, name: str) -> int:
    state = guest.inspect(name)["State"]
    assert state["Running"], state
    assert guest.alive(state["Pid"])
    return state["Pid"]


def test_start_returns_once_the_container_runs(guest: Guest, container) -> None:
    container("web", "bb:1", *SERVE)
    guest.run("systemctl", "start", "overlayctl@web")
    # Type=notify: systemctl returned after READY=1, so the command runs now.
    pid = _running_pid(guest, "web")
    assert guest.path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sh", b"-c"]
    unit = guest.show("overlayctl@web", "ActiveState", "SubState", "MainPID", "StatusText", "ControlGroup")
    assert (unit["ActiveState"], unit["SubState"]) == ("active", "running"), unit
    assert unit["StatusText"], "no STATUS= line"
    # The supervisor is the unit's main process and the container is in the unit's cgroup.
    supervisor = int(unit["MainPID"])
    assert guest.parent(pid) == supervisor
    assert unit["ControlGroup"] in guest.path(f"/proc/{pid}/cgroup").read_text()
    # The boot-time unit was pulled in and ran first.
    assert guest.show("overlayctl-reconcile.service", "ActiveState")["ActiveState"] == "active"


def test_mounts_stay_in_the_container(guest: Guest, container) -> None:
    container("priv", "bb:1", *SERVE)
    guest.run("systemctl", "start", "overlayctl@priv")
    pid = _running_pid(guest, "priv")
    supervisor = int(guest.show("overlayctl@priv", "MainPID")["MainPID"])
    for process in (1, supervisor):
        table = guest.path(f"/proc/{process}/mountinfo").read_text()
        assert not _store_overlay(table) and "/run/overlayctl/rootfs" not in table, process
    # The container's root is the overlay, private: no shared or master peer group.
    root = next(
        line for line in guest.path(f"/proc/{pid}/mountinfo").read_text().splitlines() if line.split()[4] == "/"
    )
    before, _, after = root.partition(" - ")
    assert after.startswith("overlay ") and _store_overlay(after), root
    assert not [tag for tag in before.split()[6:] if tag.startswith(("shared:", "master:"))], root
    assert len(guest.store_mounts()) >= 1


def test_stop_is_graceful_and_leaves_nothing(guest: Guest, container) -> None:
    container("stopme", "bb:1", *SERVE)
    guest.run("systemctl", "start", "overlayctl@stopme")
    pid = _running_pid(guest, "stopme")
    unit = guest.show("overlayctl@stopme", "MainPID", "ControlGroup")
    began = time.monotonic()
    guest.run("systemctl", "stop", "overlayctl@stopme")
    took = time.monotonic() - began
    assert took < 5, f"stop took {took:.1f} s: the container did not get SIGTERM"
    after = guest.show("overlayctl@stopme", "ActiveState", "Result", "ExecMainStatus")
    assert after == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, after
    state = guest.inspect("stopme")["State"]
    assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 0, False), state
    assert not guest.alive(pid) and not guest.alive(int(unit["MainPID"]))
    for tree in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"):
        assert not guest.path(tree + unit["ControlGroup"]).exists(), tree
    assert guest.store_mounts() == []
    assert "veth" not in guest.out("ip", "-o", "link")
    bridge = json.loads(guest.overlayctl("network", "inspect", "bridge"))[0]
    assert not bridge.get("Containers"), bridge


def test_killed_container_is_restarted(guest: Guest, container) -> None:
    container("phoenix", "bb:1", *SERVE)
    guest.run("systemctl", "start", "overlayctl@phoenix")
    first = _running_pid(guest, "phoenix")
    guest.run("sh", "-c", f"kill -KILL {first}")

    def restarted() -> bool:
        unit = guest.show("overlayctl@phoenix", "NRestarts", "ActiveState", "SubState")
        if (unit["NRestarts"], unit["ActiveState"], unit["SubState"]) != ("1", "active", "running"):
            return False
        state = guest.inspect("phoenix")["State"]
        return state["Running"] and state["Pid"] != first and guest.alive(state["Pid"])

    wait_for(restarted, 15, "systemd to restart the killed container")
    assert "status=137" in guest.journal("overlayctl@phoenix.service")


def test_exit_code_is_the_units_result(guest: Guest, container) -> None:
    container("three", "bb:1", "sh", "-c", "sleep 0.3; exit 3")
    guest.drop_in("overlayctl@three.service", "[Service]\nRestart=no\n")
    guest.run("systemctl", "start", "overlayctl@three")
    wait_for(
        lambda: guest.show("overlayctl@three", "ActiveState")["ActiveState"] == "failed", 15, "the container to exit"
    )
    unit = guest.show("overlayctl@three", "Result", "ExecMainStatus", "NRestarts")
    assert unit == {"Result": "exit-code", "ExecMainStatus": "3", "NRestarts": "0"}, unit
    assert guest.inspect("three")["State"]["ExitCode"] == 3


def test_command_that_cannot_run_fails_the_start(guest: Guest, container) -> None:
    container("bad", "bb:1", "/no/such/command")
    result = guest.run("systemctl", "start", "overlayctl@bad", check=False)
    assert result.returncode != 0
    unit = guest.show("overlayctl@bad", "ActiveState", "ExecMainStatus", "NRestarts")
    assert unit == {"ActiveState": "failed", "ExecMainStatus": "127", "NRestarts": "0"}, unit


def test_a_container_ignoring_sigterm_is_killed_after_its_stop_timeout(guest: Guest, container) -> None:
    container("stubborn", "--stop-timeout", "1", "bb:1", "sh", "-c", 'trap "" TERM; sleep 1000 & wait')
    guest.run("systemctl", "start", "overlayctl@stubborn")
    pid = _running_pid(guest, "stubborn")
    began = time.monotonic()
    guest.run("systemctl", "stop", "overlayctl@stubborn")
    took = time.monotonic() - began
    assert 1 <= took < 5, took
    # SIGKILL: a stop that was not graceful is the unit's failure, as systemd's own timeout would be.
    unit = guest.show("overlayctl@stubborn", "ActiveState", "Result", "ExecMainStatus")
    assert unit == {"ActiveState": "failed", "Result": "exit-code", "ExecMainStatus": "137"}, unit
    state = guest.inspect("stubborn")["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 137), state
    assert not guest.alive(pid)
    assert guest.store_mounts() == []


def test_reconcile_unit_marks_containers_whose_supervisor_is_gone(guest: Guest, container) -> None:
    container("lost", "bb:1", *SERVE)
    guest.overlayctl("start", "lost")  # detached: its own supervisor, outside any unit
    pid = _running_pid(guest, "lost")
    supervisor = guest.parent(pid)
    guest.run("sh", "-c", f"kill -KILL {supervisor} {pid}")
    wait_for(lambda: not guest.alive(pid), 15, "the container to die")
    # As after a reboot: the runroot is gone, the catalog still says running
    # and holds the lease. The boot-time unit, hardened as installed, finds
    # the container before any other command does.
    guest.run("rm", "-rf", "/run/overlayctl")
    guest.run("systemctl", "restart", "overlayctl-reconcile.service")
    assert guest.show("overlayctl-reconcile.service", "Result")["Result"] == "success"
    assert "exited: lost (" in guest.journal("overlayctl-reconcile.service")
    state = guest.inspect("lost")["State"]
    assert state["Status"] == "exited" and not state["Running"], state
    bridge = json.loads(guest.overlayctl("network", "inspect", "bridge"))[0]
    assert not bridge.get("Containers"), bridge


def test_gc_unit_and_timer(guest: Guest) -> None:
    # A crash leftover: staging of a process that is gone.
    leftover = "/var/lib/overlayctl/tmp/build-4194304-000000"
    guest.run("mkdir", "-p", leftover + "/half")
    guest.run("systemctl", "start", "overlayctl-gc.service")
    assert guest.show("overlayctl-gc.service", "Result")["Result"] == "success"
    journal = guest.journal("overlayctl-gc.service")
    assert re.search(rf"staging leftover +{leftover} ", journal) and "Total reclaimed space" in journal, journal
    assert not guest.path(leftover).exists()
    guest.run("systemctl", "enable", "--now", "overlayctl-gc.timer")
    try:
        timer = guest.show("overlayctl-gc.timer", "ActiveState", "Triggers")
        assert timer == {"ActiveState": "active", "Triggers": "overlayctl-gc.service"}, timer
    finally:
        guest.run("systemctl", "disable", "--now", "overlayctl-gc.timer")


# A client of the Engine API in the guest: GET PATH on the socket, the status line.
API_GET = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect("/run/overlayctl/docker.sock")
s.sendall(b"GET " + sys.argv[1].encode() + b" HTTP/1.1\\r\\nHost: docker\\r\\nConnection: close\\r\\n\\r\\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
print(data.split(b"\\r\\n", 1)[0].decode(), data.rsplit(b"\\r\\n\\r\\n", 1)[1].decode())
"""


def test_api_socket_starts_the_service_on_demand(guest: Guest) -> None:
    """overlayctl-api.socket as installed: systemd holds the socket, 0660
    root:root; a connection starts the Type=notify service, which answers,
    exits when idle, and is started again by the next connection."""
    service = "overlayctl-api.service"
    guest.drop_in(service, "[Service]\nExecStart=\nExecStart=/usr/local/bin/overlayctl system service --time 2\n")
    guest.run("systemctl", "enable", "--now", "overlayctl-api.socket")
    try:
        st = guest.path("/run/overlayctl/docker.sock").stat()
        assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == ("0o660", 0, 0)
        assert guest.show(service, "ActiveState")["ActiveState"] == "inactive"
        assert guest.out("python3", "-c", API_GET, "/_ping").split() == ["HTTP/1.1", "200", "OK", "OK"]
        first = guest.show(service, "ActiveState", "SubState", "MainPID", "StatusText", "InvocationID")
        # Type=notify: active (running) once READY=1 came, with its STATUS=.
        assert (first["ActiveState"], first["SubState"]) == ("active", "running"), first
        assert first["StatusText"] == "serving the Engine API", first
        version = guest.out("python3", "-c", API_GET, "/v1.41/version")
        assert version.startswith("HTTP/1.1 200 OK ") and '"ApiVersion":"1.41"' in version, version

        def exited() -> bool:
            unit = guest.show(service, "ActiveState", "Result")
            return unit == {"ActiveState": "inactive", "Result": "success"}

        wait_for(exited, 30, "the service to exit when idle")
        assert guest.show("overlayctl-api.socket", "ActiveState")["ActiveState"] == "active"
        assert not guest.alive(int(first["MainPID"]))
        # The next connection starts a new one.
        assert guest.out("python3", "-c", API_GET, "/_ping").split() == ["HTTP/1.1", "200", "OK", "OK"]
        again = guest.show(service, "ActiveState", "InvocationID")
        assert again["ActiveState"] == "active" and again["InvocationID"] != first["InvocationID"], again
    finally:
        guest.run("systemctl", "disable", "--now", "overlayctl-api.socket", service, check=False)
        shutil.rmtree(guest.path(f"/run/systemd/system/{service}.d"), ignore_errors=True)
        guest.run("systemctl", "daemon-reload")


# What a container sees of its privileges, mounts, devices and network.
PROBE = r"""{
grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status
awk '{ for (i = 7; i <= NF; i++) if ($i == "-") print $5, $(i + 1) }' /proc/self/mountinfo | sort
ls /dev
ip -o -4 addr show eth0 | awk '{ print $2 }'
hostname >/dev/null && echo hostname-ok
touch /out/written && echo write-ok
echo 1 > /proc/sys/kernel/ostype || echo proc-sys-read-only
mknod /tmp/disk b 8 0 && { cat /tmp/disk >/dev/null || echo device-unopenable; }
} > /out/report 2>&1; touch /out/done"""


def test_container_sees_the_same_under_every_unit(guest: Guest, container) -> None:
    """One probe, run from a root shell, by overlayctl@.service and by the
    unit `generate systemd` writes: hardening must change nothing it sees."""
    reports = {}
    for how in ("shell", "overlayctl@{}", "container-{}"):
        probe = f"probe-{how.partition('{')[0].strip('@-') or 'shell'}"
        out = guest.path(f"/srv/{probe}")
        out.mkdir(parents=True)
        container(probe, "-v", f"/srv/{probe}:/out", "bb:1", "sh", "-c", PROBE)
        if how == "shell":
            guest.overlayctl("start", "-a", probe)
        else:
            if how.startswith("container-"):
                path = guest.out("sh", "-c", f"cd /etc/systemd/system && overlayctl generate systemd --name -f {probe}")
                assert path.strip() == f"/etc/systemd/system/container-{probe}.service"
                guest.run("systemctl", "daemon-reload")
            # probe-overlayctl has a dash: the template's instance is it escaped.
            unit = instance_unit(probe) if how.startswith("overlayctl@") else how.format(probe)
            guest.run("systemctl", "start", unit)
        wait_for((out / "done").exists, 15, f"the probe run by {how}")
        reports[how] = (out / "report").read_text()
    assert "write-ok" in reports["shell"] and "eth0" in reports["shell"], reports["shell"]
    assert reports["overlayctl@{}"] == reports["shell"]
    assert reports["container-{}"] == reports["shell"]
    generated = guest.path("/etc/systemd/system/container-probe-container.service").read_text()
    for line in ("ProtectSystem=full", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes", "DevicePolicy="):
        assert line in generated


# --- on the host: the commands behind the units ------------------------------


def test_generate_systemd_prints_a_unit_for_one_container(cli, bb, tmp_path: Path) -> None:
    cid = cli.ok("create", "--name", "web", "bb:1", "sleep", "1").strip()
    by_name = cli.ok("generate", "systemd", "--name", "web")
    assert by_name.startswith("# container-web.service\n")
    assert f"ExecStart=/usr/local/bin/overlayctl --root {cli.root} --runroot {cli.runroot} start -a web\n" in by_name
    assert "PrivateTmp=" not in by_name  # this store is under /tmp
    assert f"start -a {cid}\n" in cli.ok("generate", "systemd", "-t", "30", "web")
    written = cli.ok("generate", "systemd", "--name", "--files", "web", cwd=tmp_path).strip()
    assert written == str(tmp_path / "container-web.service")
    assert Path(written).read_text() == by_name
    cli.ok("create", "--rm", "--name", "once", "bb:1", "true")
    refused = cli("generate", "systemd", "once")
    assert refused.returncode == 125 and b"--rm" in refused.stderr
    assert cli("generate", "systemd", "nothere").returncode == 125


def _gone(pid: int) -> Callable[[], bool]:
    return lambda: not os.path.exists(f"/proc/{pid}")


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("PPid:")).split()[1])


def test_reconcile_marks_containers_whose_supervisor_is_gone(cli, bb) -> None:
    for name, extra in (("lost", []), ("gone", ["--rm"])):
        cli.ok("run", "-d", *extra, "--name", name, "bb:1", "sleep", "1000")
        pid = json.loads(cli.ok("inspect", name))[0]["State"]["Pid"]
        supervisor = _parent(pid)
        for victim in (supervisor, pid):
            os.kill(victim, signal.SIGKILL)
        wait_for(_gone(pid), 15, f"{name} to die")
    report = cli.ok("system", "reconcile")
    assert "exited: lost (" in report and "exited: gone (" in report, report
    assert "removed: gone (" in report, report
    assert cli.ok("system", "reconcile") == ""
    state = json.loads(cli.ok("inspect", "lost"))[0]["State"]
    assert state["Status"] == "exited" and not state["Running"]
    assert cli("inspect", "gone").returncode != 0

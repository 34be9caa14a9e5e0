#!/usr/bin/env python3
"""Where the time of `overlayctl run --rm --network none bb:1 /bin/true` goes.

    python3 scripts/bench/run_phases.py [-n 30] [--checkout DIR [--checkout DIR2 ...]]

Run as root, after scripts/setup.sh (it uses the venv's interpreter, started
as the launcher starts it: `python -IS`). It imports the busybox image into
a private store, then runs the command N times (after warm-ups) with timers
put around the functions that begin and end each phase. They are put from
outside, by a meta path finder that wraps a function as its module is
loaded: the code under test is not changed, and its imports happen when and
how they always do. PID 1 reports its own times just before its execve.
Every time is CLOCK_MONOTONIC, which the benchmark, the supervisor and PID 1
share, so the phases add up to the wall time the benchmark sees.

Then it runs the command under `-X importtime` and sums the self time of
the imports by group. (importtime slows each import a little: those sums
are a little above what the imports cost in the timed runs.)

With several checkouts (a before and an after), each has its own store and
they take turns, run by run, so that the load of a shared machine falls on
all of them alike. It prints the median of each phase, in ms, a column per
checkout. It reports; it asserts nothing.
Exit 1 when a run failed, 2 when it cannot run. Everything it made is removed.
"""

from __future__ import annotations

import argparse
import ast
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_run import (  # noqa: E402
    BOOT,
    REPO,
    ROOTFS_SH,
    VENV,
    SetupError,
    parse_importtime,
    tail,
    venv_site_packages,
)

MARK = "RUN-PHASES "

# (module, function or Class.method, label): the timers.
TIMED = (
    ("overlayctl.cli.common", "open_store", "store"),
    ("overlayctl.store.images", "ImageStore.resolve", "resolve"),
    ("overlayctl.store.containers", "ContainerStore.create", "create"),
    ("overlayctl.container.spec", "container_spec", "spec"),
    ("overlayctl.container.resources", "acquire", "acquire"),
    ("overlayctl.supervise.supervisor", "_fork_in_new_pid_namespace", "fork"),
    ("overlayctl.supervise.supervisor", "run", "supervise"),
    ("overlayctl.runtime.init", "leave_host_behind", "leave"),
    ("overlayctl.runtime.mountplan", "RootfsPlan.execute", "plan"),
    ("overlayctl.runtime.init", "_switch_root", "pivot"),
    ("overlayctl.runtime.init", "drop_privileges", "drop"),
    ("overlayctl.store.containers", "ContainerStore.set_running", "running"),
    ("overlayctl.store.containers", "ContainerStore.set_exited", "exited"),
    ("overlayctl.supervise.foreground", "remove", "remove"),
)

# A module in a directory of its own, imported by `python -IS -c LOAD_PROBE
# CHECKOUT SITE ARGS...` (imported, not run as a script: its compiled form is
# cached, and the interpreter's start-up does not include compiling it).
PROBE_MODULE = "overlayctl_run_probe"
LOAD_PROBE = f"import sys; sys.path.insert(0, sys.argv.pop(1)); import {PROBE_MODULE}"
PROBE = r"""
import sys
import time

marks = [("start", time.perf_counter())]
del sys.path[0]  # (this module's directory: no import of overlayctl looks there)
TIMED = TIMED_HERE


def timer(function, label):
    def timed(*args, **kwargs):
        marks.append((">" + label, time.perf_counter()))
        try:
            return function(*args, **kwargs)
        finally:
            marks.append(("<" + label, time.perf_counter()))

    return timed


class Wrapper:
    # Finds nothing itself: it asks the other finders, then wraps the
    # functions TIMED names once the module has run.
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        wanted = [(attr, label) for module, attr, label in TIMED if module == name]
        if not wanted:
            return None
        for finder in sys.meta_path:
            spec = None if finder is cls else finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            for attr, label in wanted:
                owner, _, function = attr.rpartition(".")
                holder = getattr(module, owner) if owner else module
                setattr(holder, function, timer(getattr(holder, function), label))

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, Wrapper)
sys.path[:0] = sys.argv[1:3]
del sys.argv[1:3]
import os


def report(role):
    os.write(2, ("MARK" + role + " " + repr(marks) + "\n").encode())


real_execve = os.execve


def execve(*args):
    marks.append(("execve", time.perf_counter()))
    report("pid1")
    real_execve(*args)


os.execve = execve
import overlayctl.cli as cli

real_exit_now = cli._exit_now


def exit_now(code):
    marks.append(("exit", time.perf_counter()))
    report("supervisor")
    real_exit_now(code)


cli._exit_now = exit_now
cli.main()
""".replace("MARK", MARK).replace("TIMED_HERE", repr(TIMED))

# The phases: (label, from mark, to mark), in order. "spawn" and "gone" are
# the benchmark's own: before posix_spawn, after wait4. A mark's process is
# the supervisor unless it starts with "pid1:".
PHASES = (
    ("interpreter start (spawn, exec, libpython, init without site, encodings)", "spawn", "start"),
    ("imports and parsing (cli, engine, store, runtime, supervise)", "start", ">store"),
    ("open the store (directories, catalog, pragmas)", ">store", "<store"),
    ("resolve the image (4 SELECTs)", ">resolve", "<resolve"),
    ("create: upper/ by rename, one INSERT transaction", ">create", "<create"),
    ("container spec (seccomp program from its cache)", "<create", "<spec"),
    ("hold resources (none for --network none), pipes, import PID 1's code", "<spec", ">fork"),
    ("fork PID 1 into a new PID namespace", ">fork", "pid1:<fork"),
    ("PID 1: non-dumpable, close fds, clear environment", "pid1:<fork", "pid1:<leave"),
    ("PID 1: unshare mount/UTS/IPC/net/cgroup, make / private", "pid1:<leave", "pid1:>plan"),
    ("PID 1: overlay, /proc, /sys, /dev, masked paths", "pid1:>plan", "pid1:<plan"),
    ("PID 1: pivot_root, hostname, lo, workdir", "pid1:<plan", "pid1:>drop"),
    ("PID 1: capabilities, no_new_privs, seccomp", "pid1:>drop", "pid1:<drop"),
    ("PID 1: find the command, reset signals", "pid1:<drop", "pid1:execve"),
    ("execve; the supervisor learns it ran", "pid1:execve", ">running"),
    ("record running (one UPDATE transaction)", ">running", "<running"),
    ("/bin/true runs and exits; namespaces torn down; reaped", "<running", "<supervise"),
    ("release (nothing held), record the exit (one UPDATE transaction)", "<supervise", "<exited"),
    ("--rm: read the row back, DELETE transaction, remove upper/ and work/", "<exited", "<remove"),
    ("exit of the supervisor (no catalog close)", "<remove", "gone"),
)

# -X importtime groups: the first matching prefix names a module's group.
IMPORT_GROUPS = (
    ("overlayctl.cli", "overlayctl.cli"),
    ("overlayctl.engine", "overlayctl.engine"),
    ("overlayctl.store", "overlayctl.store"),
    ("overlayctl.supervise", "overlayctl.supervise, container"),
    ("overlayctl.container", "overlayctl.supervise, container"),
    ("overlayctl.runtime", "overlayctl.runtime"),
    ("overlayctl", "overlayctl.util, errors, paths"),
    ("_sqlite3", "_sqlite3"),
    ("ctypes", "ctypes (with struct, types)"),
    ("_ctypes", "ctypes (with struct, types)"),
    ("struct", "ctypes (with struct, types)"),
    ("_struct", "ctypes (with struct, types)"),
    ("types", "ctypes (with struct, types)"),
    ("os", "os (with stat, posixpath, _collections_abc)"),
    ("stat", "os (with stat, posixpath, _collections_abc)"),
    ("_stat", "os (with stat, posixpath, _collections_abc)"),
    ("posixpath", "os (with stat, posixpath, _collections_abc)"),
    ("genericpath", "os (with stat, posixpath, _collections_abc)"),
    ("_collections_abc", "os (with stat, posixpath, _collections_abc)"),
)
START_UP = {"_io", "marshal", "posix", "_frozen_importlib_external", "time", "zipimport", "_codecs", "codecs"}


def import_group(module: str) -> str:
    if module in START_UP or module.startswith("encodings") or module in ("_signal", "_abc", "abc", "io"):
        return "interpreter start-up (encodings, io, abc)"
    for prefix, group in IMPORT_GROUPS:
        if module == prefix or module.startswith(prefix + "."):
            return group
    return "other standard library (_json, _sha256, errno, gc, __future__, ...)"


class Session:
    """The private store and the command under test."""

    def __init__(self, tmp: Path, source: Path) -> None:
        tmp.mkdir()
        self.probe_dir = tmp / "probe"
        self.probe_dir.mkdir()
        (self.probe_dir / f"{PROBE_MODULE}.py").write_text(PROBE)
        self.prefix = [str(VENV / "bin" / "python"), "-IS"]
        self.paths = [str(source), venv_site_packages()]
        self.store = ["--root", str(tmp / "root"), "--runroot", str(tmp / "run")]
        self.run = [*self.store, "run", "--rm", "--network", "none", "bb:1", "/bin/true"]

    def plain(self, *args: str) -> None:
        argv = [*self.prefix, "-c", BOOT, *self.paths, *self.store, *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {tail(proc.stderr)}")

    def timed(self) -> dict[str, float]:
        """One traced run: {mark: monotonic seconds}, PID 1's prefixed "pid1:"."""
        argv = [*self.prefix, "-c", LOAD_PROBE, str(self.probe_dir), *self.paths, *self.run]
        err_r, err_w = os.pipe()
        spawn = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, err_w, 2)])
        _, status = os.waitpid(pid, 0)
        gone = time.perf_counter()
        os.close(err_w)
        with os.fdopen(err_r, "rb") as f:
            err = f.read().decode(errors="replace")
        if status != 0:
            raise RuntimeError(f"the traced run exited {os.waitstatus_to_exitcode(status)}: {tail(err)}")
        marks = {"spawn": spawn, "gone": gone}
        for line in err.splitlines():
            if line.startswith(MARK):
                role, _, text = line[len(MARK) :].partition(" ")
                for name, t in ast.literal_eval(text):
                    key = f"pid1:{name}" if role == "pid1" else name
                    marks.setdefault(key, t)  # the first (the supervisor's unshare and PID 1's differ)
        return marks

    def importtime(self) -> dict[str, float]:
        argv = [*self.prefix, "-X", "importtime", "-c", BOOT, *self.paths, *self.run]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        groups: dict[str, float] = {}
        for module, self_us, _, _ in parse_importtime(proc.stderr):
            group = import_group(module)
            groups[group] = groups.get(group, 0.0) + self_us / 1000
        return groups


def phase_times(marks: dict[str, float]) -> list[float | None]:
    out: list[float | None] = []
    for _, start, end in PHASES:
        if start in marks and end in marks:
            out.append((marks[end] - marks[start]) * 1000)
        else:
            out.append(None)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="timed runs (after 3 warm-ups; default 30)")
    parser.add_argument(
        "--checkout",
        type=Path,
        action="append",
        help="a checkout to run (default: this one); give it again to compare checkouts, run by run",
    )
    parser.add_argument("--importtime-runs", type=int, default=5, help="runs under -X importtime (default 5)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root", file=sys.stderr)
        return 2
    checkouts = [c.resolve() for c in args.checkout or [REPO]]
    for checkout in checkouts:
        if not (checkout / "overlayctl" / "__init__.py").is_file():
            print(f"bench: {checkout} is not an overlayctl checkout", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="run-phases-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            subprocess.run(["sh", str(ROOTFS_SH), str(tmp / "bb.tar")], check=True, capture_output=True)
            sessions = [Session(tmp / str(i), checkout) for i, checkout in enumerate(checkouts)]
            for session in sessions:
                session.plain("import", str(tmp / "bb.tar"), "bb:1")
            runs: list[list[dict[str, float]]] = [[] for _ in sessions]
            for i in range(3 + args.n):
                # Each run starts with the next checkout: none always follows the same one.
                order = list(range(len(sessions)))
                order = order[i % len(order) :] + order[: i % len(order)]
                for k in order:
                    marks = sessions[k].timed()
                    if i >= 3:
                        runs[k].append(marks)
            imports: list[list[dict[str, float]]] = [[] for _ in sessions]
            for _ in range(args.importtime_runs):
                for k, session in enumerate(sessions):
                    imports[k].append(session.importtime())
        except (RuntimeError, SetupError, subprocess.CalledProcessError) as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
    report(checkouts, runs, imports)
    return 0


def report(checkouts: list[Path], runs: list[list[dict[str, float]]], imports: list[list[dict[str, float]]]) -> None:
    load = os.getloadavg()
    n = len(runs[0])
    print(f"`run --rm --network none bb:1 /bin/true`: median of {n} runs each, ms (load {load[0]:.2f})")
    for k, checkout in enumerate(checkouts):
        print(f"  [{k + 1}] {checkout}")
    print()
    heads = " | ".join(f"[{k + 1}] ms" for k in range(len(checkouts)))
    print(f"| phase | {heads} |")
    print("| --- |" + " --- |" * len(checkouts))
    per_checkout = [list(zip(*(phase_times(m) for m in these), strict=True)) for these in runs]
    for i, (label, _, _) in enumerate(PHASES):
        cells = []
        for columns in per_checkout:
            known = [v for v in columns[i] if v is not None]
            cells.append(f"{statistics.median(known):.2f}" if known else "-")
        print(f"| {label} | " + " | ".join(cells) + " |")
    totals = [statistics.median((m["gone"] - m["spawn"]) * 1000 for m in these) for these in runs]
    print(
        "| **total, wall (the medians of the phases add up to a little less)** | "
        + " | ".join(f"**{t:.2f}**" for t in totals)
        + " |"
    )
    print()
    print(f"imports by group, self time under -X importtime, median of {len(imports[0])} runs:")
    print()
    print(f"| group | {heads} |")
    print("| --- |" + " --- |" * len(checkouts))
    groups = sorted({g for these in imports for run in these for g in run})
    medians = [{g: statistics.median(run.get(g, 0.0) for run in these) for g in groups} for these in imports]
    for group in sorted(groups, key=lambda g: -medians[-1][g]):
        print(f"| {group} | " + " | ".join(f"{m[group]:.2f}" for m in medians) + " |")
    alls = [statistics.median(sum(run.values()) for run in these) for these in imports]
    print("| **all imports** | " + " | ".join(f"**{a:.2f}**" for a in alls) + " |")


if __name__ == "__main__":
    sys.exit(main())

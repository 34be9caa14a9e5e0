"""cgroup limits on this host's real kernel (v1/hybrid here, v2 elsewhere):
processes joined the way PID 1 joins (writing "0" into each procs file) are
OOM-killed over their memory limit, cannot fork past their pids limit, and
leave no process and no directory behind once removed.

Every test works under a parent of its own (overlayctl-test-<random>), so
it never meets a real container's cgroup, and the fixture removes that
parent, whatever happened, before checking that nothing is left.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time

import pytest

from overlayctl.errors import KernelError
from overlayctl.runtime.cgroups.cgroup import Cgroup, create, find
from overlayctl.runtime.cgroups.layout import Layout, host_layout
from overlayctl.runtime.cgroups.limits import Limits, parse_limits
from overlayctl.runtime.cgroups.stale import remove_stale

MiB = 1 << 20


def _sweep(layout: Layout) -> list[str]:
    """Remove every cgroup under the layout's parents, then the parents;
    return what had been left behind."""
    left = []
    for parent in layout.parent_dirs():
        if not os.path.isdir(parent):
            continue
        for name in os.listdir(parent):
            if os.path.isdir(os.path.join(parent, name)):
                left.append(os.path.join(parent, name))
                found = find(name, layout)
                if found is not None:
                    found.remove()
        os.rmdir(parent)
    return left


def _private(layout: Layout) -> Layout:
    return layout.with_parent(f"overlayctl-test-{os.getpid()}-{secrets.token_hex(4)}")


@pytest.fixture
def host() -> Layout:
    assert os.geteuid() == 0, "cgroup tests need root"
    layout = host_layout()
    if layout.version == 0:
        pytest.skip("no cgroup tree mounted")
    return layout


@pytest.fixture
def layout(host: Layout):
    """This host's layout under a private parent, swept afterwards."""
    private = _private(host)
    try:
        yield private
    finally:
        left = _sweep(private)
        assert not any(os.path.exists(p) for p in private.parent_dirs())
        assert not left, f"cgroups left behind: {left}"


def _spawn(cgroup: Cgroup, code: str, **kw) -> subprocess.Popen:
    """A Python child that joins first, as PID 1 does (writing "0" into each procs file)."""
    return subprocess.Popen([sys.executable, "-c", code], preexec_fn=cgroup.join, **kw)


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for its reaper."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # (ESRCH: it ended while read)
        return False


ALLOCATE = "chunks = []\nwhile True:\n    chunks.append(bytearray(1 << 20))\n"


def test_over_the_memory_limit_is_oom_killed(layout):
    cg = create("oom", parse_limits("32m", "32m", None, None, None), layout)
    assert cg is not None
    try:
        proc = _spawn(cg, ALLOCATE)
        assert proc.wait(timeout=60) == -signal.SIGKILL
        assert cg.oom_killed()
        stats = cg.stats()
        assert stats["memory_limit"] == 32 * MiB
        assert stats["cpu_usage_ns"]
    finally:
        cg.remove()
    assert not any(os.path.exists(d) for d in cg.dirs)


def test_within_the_memory_limit_is_not_oom_killed(layout):
    cg = create("fits", parse_limits("64m", None, None, None, None), layout)
    assert cg is not None
    try:
        proc = _spawn(cg, "data = bytearray(8 << 20)")
        assert proc.wait(timeout=60) == 0
        assert not cg.oom_killed()
    finally:
        cg.remove()


def test_v1_swap_limit_written_when_accounted(layout):
    if layout.version != 1:
        pytest.skip("v1 file names")
    cg = create("swap", parse_limits("16m", "48m", None, None, None), layout)
    assert cg is not None
    try:
        memsw = os.path.join(cg.controllers["memory"], "memory.memsw.limit_in_bytes")
        if os.path.exists(memsw):
            assert cg.warnings == []
            with open(memsw) as f:
                assert int(f.read()) == 48 * MiB
        else:
            assert "swap limit" in cg.warnings[0]
    finally:
        cg.remove()


FORK_UNTIL_REFUSED = """
import os, sys, time
kids = 0
try:
    while kids < 100:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        kids += 1
except BlockingIOError:
    pass
print(kids, flush=True)
time.sleep(60)
"""


def test_pids_limit_makes_fork_fail_and_remove_kills_everything(layout):
    cg = create("pids", parse_limits(None, None, "8", None, None), layout)
    assert cg is not None
    proc = _spawn(cg, FORK_UNTIL_REFUSED, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        kids = int(proc.stdout.readline())
        assert kids == 7  # the forking process is the eighth
        inside = cg.pids()
        assert len(inside) == 8 and proc.pid in inside
        assert cg.stats()["pids_current"] == 8
    finally:
        cg.remove()
        proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert not any(_alive(p) for p in inside)
    assert not any(os.path.exists(d) for d in cg.dirs)


FORK_FOREVER = """
import os, time
while True:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
    try:
        if os.fork() == 0:
            time.sleep(0.2)
            os._exit(0)
    except BlockingIOError:
        time.sleep(0.001)
"""


@pytest.mark.parametrize("kill", ["cgroup.kill", "pid by pid"])
def test_remove_wins_against_processes_that_keep_forking(host, kill):
    if kill == "cgroup.kill" and host.unified is None:
        pytest.skip("no cgroup2 tree for cgroup.kill")
    private = _private(host)
    if kill == "pid by pid":
        # As a v1-only host (or a kernel before 5.14) would be.
        private = Layout(host.version, None, dict(host.v1), private.parent) if host.version == 1 else private
        if private.version == 2:
            pytest.skip("v2 always has cgroup.kill on this kernel")
    try:
        cg = create("forks", parse_limits(None, None, "50", None, None), private)
        assert cg is not None
        proc = _spawn(cg, FORK_FOREVER)
        try:
            deadline = time.monotonic() + 10
            while len(cg.pids()) < 10 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(cg.pids()) >= 10
            started = time.monotonic()
            cg.remove()
            assert time.monotonic() - started < 2
            assert proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            proc.kill()
            proc.wait()
        assert not any(os.path.exists(d) for d in cg.dirs)
    finally:
        assert not _sweep(private)


SPIN = "import time\nend = time.monotonic() + 0.2\nwhile time.monotonic() < end:\n    pass\n"


def test_cpu_quota_and_shares(layout):
    cg = create("cpu", parse_limits(None, None, None, "0.5", "512"), layout)
    assert cg is not None
    try:
        cpu = cg.controllers["cpu"]
        if layout.version == 1:
            with open(os.path.join(cpu, "cpu.cfs_quota_us")) as f:
                assert f.read().strip() == "50000"
            with open(os.path.join(cpu, "cpu.shares")) as f:
                assert f.read().strip() == "512"
        else:
            with open(os.path.join(cpu, "cpu.max")) as f:
                assert f.read().split() == ["50000", "100000"]
        # Half a CPU: the child (its interpreter's start-up included, which
        # takes long under emulation) gets about half of its wall time.
        start = time.monotonic()
        proc = _spawn(cg, SPIN.replace("0.2", "1"))
        assert proc.wait(timeout=60) == 0
        wall = time.monotonic() - start
        used = cg.stats()["cpu_usage_ns"]
        assert used is not None and 0 < used < (0.5 * wall + 0.2) * 1e9, (used, wall)
    finally:
        cg.remove()


def test_without_limits_a_cgroup_is_still_made_found_and_removed(layout):
    cg = create("plain", Limits(), layout)
    assert cg is not None
    found = find("plain", layout)
    assert found is not None and found.dirs == cg.dirs
    proc = _spawn(cg, "import time; time.sleep(60)")
    try:
        for _ in range(200):
            if proc.pid in found.pids():
                break
            time.sleep(0.01)
        assert found.pids() == [proc.pid]
        found.remove()
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()
    cg.remove()  # idempotent: already gone
    assert find("plain", layout) is None


def test_a_limit_the_kernel_refuses_leaves_nothing(layout):
    # Past parse_limits' checks on purpose: the kernel caps pids.max at PID_MAX_LIMIT.
    with pytest.raises(KernelError, match=r"cannot set pids.max to 1099511627776: .*pids.max: Invalid argument"):
        create("refused", Limits(pids=1 << 40), layout)
    probe = Cgroup("refused", layout)
    assert not any(os.path.exists(d) for d in probe.dirs)


def test_remove_stale_spares_running_busy_and_fresh_cgroups(layout):
    made: dict[str, Cgroup] = {}
    busy = None
    try:
        for name in ("running", "exited", "fresh", "busy"):
            cg = create(name, Limits(), layout)
            assert cg is not None
            made[name] = cg
        assert _spawn(made["exited"], "pass").wait(timeout=30) == 0
        busy = _spawn(made["busy"], "import time; time.sleep(60)")
        while busy.pid not in made["busy"].pids():
            time.sleep(0.01)
        assert remove_stale({"running"}, layout) == ["exited"]
        assert find("exited", layout) is None
        # Never joined and young: its container may be about to join it.
        assert find("fresh", layout) is not None
        assert remove_stale({"running"}, layout, grace=0) == ["fresh"]
        assert find("busy", layout) is not None and find("running", layout) is not None
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
        for cg in made.values():
            cg.remove()


def test_v2_code_path_on_the_real_cgroup2_tree(host):
    """On a hybrid host the cgroup2 tree has no controllers, but the v2
    code path (directories, joining, cgroup.kill, cpu.stat) is real there."""
    if host.unified is None:
        pytest.skip("no cgroup2 tree")
    v2 = _private(Layout(2, host.unified))
    try:
        with open(os.path.join(host.unified, "cgroup.controllers")) as f:
            available = f.read().split()
        if "memory" not in available:
            with pytest.raises(KernelError, match="--memory needs the memory cgroup controller"):
                create("v2", parse_limits("16m", None, None, None, None), v2)
            assert not os.path.exists(v2.parent_dirs()[0] + "/v2")
        cg = create("v2", Limits(), v2)
        assert cg is not None and cg.dirs == [os.path.join(host.unified, v2.parent, "v2")]
        proc = _spawn(cg, SPIN + "time.sleep(60)")
        try:
            time.sleep(0.4)
            assert cg.pids() == [proc.pid]
            assert (cg.stats()["cpu_usage_ns"] or 0) > 0
            cg.remove()
            assert proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            proc.kill()
            proc.wait()
        assert not os.path.exists(cg.dirs[0])
    finally:
        assert not _sweep(v2)


# --- through the CLI: `run` with limits, as a user sees it ---


def _container_dirs(prefix: str) -> list[str]:
    """Every cgroup directory on the host of the container whose id starts with `prefix`."""
    found = []
    for parent in host_layout().parent_dirs():
        if os.path.isdir(parent):
            found += [os.path.join(parent, n) for n in os.listdir(parent) if n.startswith(prefix)]
    return found


def _procs(cgroup_dir: str) -> list[str]:
    with open(os.path.join(cgroup_dir, "cgroup.procs")) as f:
        return f.read().split()


def test_run_over_its_memory_limit_exits_137_and_inspect_says_oom(cli, bb):
    # busybox tail keeps the one endless line of /dev/zero in memory.
    result = cli("run", "--name", "hog", "-m", "16m", "bb:1", "sh", "-c", "tail /dev/zero")
    assert result.returncode == 137, result.stderr
    info = json.loads(cli.ok("inspect", "hog"))[0]
    assert info["State"]["OOMKilled"] is True
    assert info["State"]["ExitCode"] == 137
    assert info["HostConfig"]["Memory"] == 16 * MiB
    assert info["HostConfig"]["MemorySwap"] == 32 * MiB
    assert not _container_dirs(info["Id"])


def test_run_within_its_memory_limit_is_not_oom_killed(cli, bb):
    cli.ok("run", "--name", "fits", "-m", "32m", "bb:1", "sh", "-c", "head -c 4000000 /dev/zero | tail -c 10")
    assert json.loads(cli.ok("inspect", "fits"))[0]["State"]["OOMKilled"] is False


def test_inspect_reports_every_limit(cli, bb):
    cli.ok(
        "create", "--name", "lim", "-m", "32m", "--memory-swap", "64m", "--pids-limit", "20",
        "--cpus", "0.5", "--cpu-shares", "512", "bb:1", "true",
    )  # fmt: skip
    hc = json.loads(cli.ok("inspect", "lim"))[0]["HostConfig"]
    assert {k: hc[k] for k in ("Memory", "MemorySwap", "PidsLimit", "NanoCpus", "CpuShares")} == {
        "Memory": 32 * MiB,
        "MemorySwap": 64 * MiB,
        "PidsLimit": 20,
        "NanoCpus": 500_000_000,
        "CpuShares": 512,
    }


def test_pids_limit_stops_a_fork_bomb(cli, bb):
    # Bounded on purpose: without the limit it starts 100 sleeps, not a storm.
    started = time.monotonic()
    result = cli(
        "run", "--rm", "--pids-limit", "10", "bb:1", "sh", "-c", "for i in $(seq 1 100); do sleep 20 & done; echo all",
    )  # fmt: skip
    assert result.returncode != 0
    assert b"can't fork" in result.stderr
    assert b"all" not in result.stdout
    assert time.monotonic() - started < 15


@pytest.mark.parametrize(
    "args, message",
    [
        (("-m", "4m"), "Minimum memory limit allowed is 6MB"),
        (("-m", "16m", "--memory-swap", "8m"), "Minimum memoryswap limit should be larger than memory limit"),
        (("--memory-swap", "1g"), "You should always set the Memory limit when using Memoryswap limit"),
        (("-m", "lots"), "invalid size: 'lots'"),
        (("--cpus", "4096"), "Range of CPUs is from 0.01 to"),
    ],
)
def test_bad_limits_are_one_line_errors_and_nothing_is_created(cli, bb, args, message):
    result = cli("run", "--rm", *args, "bb:1", "true")
    assert result.returncode == 125
    err = result.stderr.decode().strip()
    assert message in err and "\n" not in err, err
    assert cli.ok("ps", "-aq") == ""


# PID 1 of a PID namespace ignores signals it has no handler for: trap TERM.
TRAP_AND_WAIT = "trap 'exit 0' TERM; sleep 30 & hostname; wait"


def test_cgroup_exists_while_running_and_is_gone_after_run_rm(cli, bb):
    proc = subprocess.Popen(
        cli.argv("run", "--rm", "-m", "24m", "--pids-limit", "30", "bb:1", "sh", "-c", TRAP_AND_WAIT),
        stdout=subprocess.PIPE,
        env=cli.env,
    )
    assert proc.stdout is not None
    try:
        short_id = proc.stdout.readline().decode().strip()  # the hostname is the short id
        dirs = _container_dirs(short_id)
        assert dirs
        memory = [d for d in dirs if os.path.exists(os.path.join(d, "memory.max"))] or [
            d for d in dirs if os.path.exists(os.path.join(d, "memory.limit_in_bytes"))
        ]
        name = "memory.max" if os.path.exists(os.path.join(memory[0], "memory.max")) else "memory.limit_in_bytes"
        with open(os.path.join(memory[0], name)) as f:
            assert int(f.read()) == 24 * MiB
        deadline = time.monotonic() + 10
        while len(_procs(memory[0])) != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(_procs(memory[0])) == 2  # sh and sleep, nothing else
        os.kill(proc.pid, signal.SIGTERM)  # the supervisor forwards it; the container ends
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert not _container_dirs(short_id)


def test_rm_removes_the_cgroup_a_killed_supervisor_left(cli, bb):
    proc = subprocess.Popen(
        cli.argv("run", "--name", "orphan", "-m", "24m", "bb:1", "sh", "-c", "hostname; sleep 30"),
        stdout=subprocess.PIPE,
        env=cli.env,
    )
    assert proc.stdout is not None
    try:
        short_id = proc.stdout.readline().decode().strip()
        assert _container_dirs(short_id)
        proc.kill()  # no chance to clean up: PID 1 dies with it (parent-death signal)
        proc.wait()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    left = _container_dirs(short_id)
    assert left
    cli.ok("rm", "-f", "orphan")
    assert not _container_dirs(short_id)


def test_join_moves_another_process_and_names_the_file_on_failure(layout):
    cg = create("joined", Limits(), layout)
    assert cg is not None
    proc = subprocess.Popen(["sleep", "30"])
    try:
        cg.join(proc.pid)
        assert cg.pids() == [proc.pid]
        with open(f"/proc/{proc.pid}/cgroup") as f:
            assert f.read().count(f"/{layout.parent}/joined") == len(cg.dirs)
        with pytest.raises(KernelError, match=r"cannot move process 999999999 into cgroup: .*cgroup.procs: "):
            cg.join(999999999)
    finally:
        cg.remove()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

"""cgroup limits without root: Docker's option syntax and checks, the
conversions to kernel values, the writes for v1 and v2, the host layout
from mountinfo, and the v2 code path against a fake cgroup tree (a plain
directory: files appear where the kernel would have made them)."""

from __future__ import annotations

import os

import pytest

from overlayctl.errors import InvalidArgumentError, KernelError
from overlayctl.runtime.cgroups.cgroup import Cgroup, create, find
from overlayctl.runtime.cgroups.layout import Layout, parse_mountinfo
from overlayctl.runtime.cgroups.limits import (
    Limits,
    cpu_quota,
    limit_writes,
    parse_limits,
    parse_nano_cpus,
    shares_to_weight,
)
from overlayctl.util.sizes import parse_size

MiB = 1 << 20


def limits(memory=None, memory_swap=None, pids=None, cpus=None, cpu_shares=None, host_cpus=4) -> Limits:
    return parse_limits(memory, memory_swap, pids, cpus, cpu_shares, host_cpus=host_cpus)


@pytest.mark.parametrize(
    "text, size",
    [
        ("100000", 100000),
        ("512m", 512 * MiB),
        ("512M", 512 * MiB),
        ("1g", 1 << 30),
        ("1.5g", 3 << 29),
        ("1GiB", 1 << 30),
        ("1 GB", 1 << 30),
        ("64kb", 64 << 10),
        ("4096b", 4096),
        ("1t", 1 << 40),
    ],
)
def test_sizes_read_as_docker_reads_them(text, size):
    assert parse_size(text, "-m, --memory") == size


@pytest.mark.parametrize(
    "text, why",
    [
        ("abc", "invalid size: 'abc'"),
        ("-1", "invalid size: '-1'"),
        ("m", "invalid size: 'm'"),
        ("1x", "invalid suffix: 'x'"),
        ("1kk", "invalid suffix: 'kk'"),
        ("1bb", "invalid suffix: 'bb'"),
        ("1..2m", "invalid size: '1..2m'"),
    ],
)
def test_bad_sizes(text, why):
    with pytest.raises(InvalidArgumentError) as err:
        limits(memory=text)
    assert str(err.value) == f'invalid argument "{text}" for "-m, --memory" flag: {why}'


def test_memory_minimum_and_zero():
    with pytest.raises(InvalidArgumentError, match="^Minimum memory limit allowed is 6MB$"):
        limits(memory="4m")
    assert limits(memory="6m").memory == 6 * MiB
    assert limits(memory="0").memory is None  # 0: no limit, as Docker
    assert not limits(memory="0").any()


def test_memory_swap_rules():
    with pytest.raises(InvalidArgumentError, match="^Minimum memoryswap limit should be larger than memory limit"):
        limits(memory="64m", memory_swap="32m")
    with pytest.raises(InvalidArgumentError, match="^You should always set the Memory limit when using Memoryswap"):
        limits(memory_swap="64m")
    assert limits(memory="64m", memory_swap="64m").memory_swap == 64 * MiB  # no swap at all
    assert limits(memory="64m", memory_swap="-1").memory_swap == -1
    assert limits(memory_swap="-1").memory_swap == -1  # allowed, and limits nothing
    assert not limits(memory_swap="-1").any()
    assert limits(memory="64m", memory_swap="0").memory_swap is None  # 0: the default
    with pytest.raises(InvalidArgumentError, match='for "--memory-swap" flag: invalid size'):
        limits(memory="64m", memory_swap="-2")


def test_default_swap_is_twice_memory():
    lim = limits(memory="64m")
    assert lim.memory_swap is None and lim.effective_swap == 128 * MiB


def test_pids_limit():
    assert limits(pids="10").pids == 10
    assert limits(pids="-1").pids is None
    assert limits(pids="0").pids is None
    with pytest.raises(InvalidArgumentError, match='invalid argument "ten" for "--pids-limit" flag'):
        limits(pids="ten")


def test_cpus():
    assert limits(cpus="1.5").nano_cpus == 1_500_000_000
    assert limits(cpus=".5").cpus == 0.5
    assert limits(cpus="0.01").nano_cpus == 10_000_000
    assert limits(cpus="4").cpus == 4.0
    assert limits(cpus="0").cpus is None
    assert parse_nano_cpus("0.1234567890") == 123_456_789


@pytest.mark.parametrize("text", ["5", "4.01", "-1", "0.001"])
def test_cpus_out_of_range(text):
    with pytest.raises(InvalidArgumentError) as err:
        limits(cpus=text, host_cpus=4)
    assert str(err.value) == "Range of CPUs is from 0.01 to 4.00, as there are only 4 CPUs available"


def test_cpus_syntax():
    with pytest.raises(InvalidArgumentError, match="failed to parse two as a rational number"):
        limits(cpus="two")
    with pytest.raises(InvalidArgumentError, match="failed to parse"):
        limits(cpus="+-1")
    with pytest.raises(InvalidArgumentError, match="value is too precise"):
        limits(cpus="0.0100000001")


def test_cpus_default_to_this_hosts_cpus():
    n = len(os.sched_getaffinity(0))
    assert parse_limits(None, None, None, str(n), None).cpus == n
    with pytest.raises(InvalidArgumentError, match=f"only {n} CPUs"):
        parse_limits(None, None, None, str(n + 1), None)


def test_cpu_shares_clamped_as_docker_does():
    assert limits(cpu_shares="512").cpu_shares == 512
    assert limits(cpu_shares="1").cpu_shares == 2
    assert limits(cpu_shares="-5").cpu_shares == 2
    assert limits(cpu_shares="999999").cpu_shares == 262144
    assert limits(cpu_shares="0").cpu_shares is None
    with pytest.raises(InvalidArgumentError, match='for "--cpu-shares" flag'):
        limits(cpu_shares="1.5")


def test_conversions():
    assert cpu_quota(1.5) == 150000
    assert cpu_quota(0.01) == 1000  # the kernel's minimum quota
    assert shares_to_weight(2) == 1
    assert shares_to_weight(1024) == 39  # runc's value for the default
    assert shares_to_weight(262144) == 10000


def test_inspect_fields():
    unset = {"Memory": 0, "MemorySwap": 0, "PidsLimit": None, "NanoCpus": 0, "CpuShares": 0}
    assert Limits().to_resources().to_json() == unset
    lim = limits(memory="16m", pids="10", cpus="1.5", cpu_shares="512")
    assert lim.to_resources().to_json() == {
        "Memory": 16 * MiB,
        "MemorySwap": 32 * MiB,
        "PidsLimit": 10,
        "NanoCpus": 1_500_000_000,
        "CpuShares": 512,
    }
    assert limits(memory="16m", memory_swap="-1").to_resources().memory_swap == -1


def test_any():
    assert not Limits().any()
    assert limits(pids="5").any()
    assert limits(cpu_shares="100").any()
    assert "pids=5" in repr(limits(pids="5"))


def test_v1_writes():
    lim = limits(memory="16m", pids="10", cpus="0.5", cpu_shares="512")
    assert limit_writes(lim, 1) == [
        ("memory", "memory.limit_in_bytes", str(16 * MiB)),
        ("memory", "memory.memsw.limit_in_bytes", str(32 * MiB)),
        ("pids", "pids.max", "10"),
        ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_quota_us", "50000"),
        ("cpu", "cpu.shares", "512"),
    ]
    assert limit_writes(lim, 1, swap_accounting=False)[:2] == [
        ("memory", "memory.limit_in_bytes", str(16 * MiB)),
        ("pids", "pids.max", "10"),
    ]
    unlimited_swap = limits(memory="16m", memory_swap="-1")
    assert limit_writes(unlimited_swap, 1)[1] == ("memory", "memory.memsw.limit_in_bytes", "-1")


def test_v2_writes():
    lim = limits(memory="16m", pids="10", cpus="1.5", cpu_shares="1024")
    assert limit_writes(lim, 2) == [
        ("memory", "memory.max", str(16 * MiB)),
        ("memory", "memory.swap.max", str(16 * MiB)),  # memory+swap 32m: 16m of swap
        ("pids", "pids.max", "10"),
        ("cpu", "cpu.max", "150000 100000"),
        ("cpu", "cpu.weight", "39"),
    ]
    assert limit_writes(limits(memory="16m", memory_swap="16m"), 2)[1] == ("memory", "memory.swap.max", "0")
    assert limit_writes(limits(memory="16m", memory_swap="-1"), 2)[1] == ("memory", "memory.swap.max", "max")
    assert limit_writes(Limits(), 2) == []


HYBRID = """\
22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
25 22 0:23 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:24 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
27 25 0:25 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
28 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
29 25 0:27 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
30 25 0:28 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
31 25 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

DEBIAN_V1 = """\
26 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct
28 25 0:26 / /sys/fs/cgroup/memory rw shared:10 - cgroup cgroup rw,memory
29 25 0:27 / /sys/fs/cgroup/pids rw shared:11 - cgroup cgroup rw,pids
"""

V2 = """\
30 22 0:28 / /sys/fs/cgroup rw,nosuid,nodev shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
40 30 0:28 / /tmp/other\\040place rw - cgroup2 none rw
"""


def test_layouts_from_mountinfo():
    hybrid = parse_mountinfo(HYBRID)
    assert hybrid.version == 1 and hybrid.unified == "/sys/fs/cgroup/unified"
    assert hybrid.v1 == {
        "cpu": "/sys/fs/cgroup/cpu",
        "cpuacct": "/sys/fs/cgroup/cpuacct",
        "memory": "/sys/fs/cgroup/memory",
        "pids": "/sys/fs/cgroup/pids",
    }
    v1 = parse_mountinfo(DEBIAN_V1)
    assert v1.version == 1 and v1.unified is None
    assert v1.v1["cpu"] == v1.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    v2 = parse_mountinfo(V2)
    assert (v2.version, v2.unified, v2.v1) == (2, "/sys/fs/cgroup", {})
    assert parse_mountinfo("").version == 0
    assert parse_mountinfo(V2.splitlines()[1]).unified == "/tmp/other place"


def test_cgroup_directories_per_layout():
    cid = "c" * 64
    hybrid = Cgroup(cid, parse_mountinfo(HYBRID))
    assert hybrid.dirs == [
        f"/sys/fs/cgroup/cpu/overlayctl/{cid}",
        f"/sys/fs/cgroup/cpuacct/overlayctl/{cid}",
        f"/sys/fs/cgroup/memory/overlayctl/{cid}",
        f"/sys/fs/cgroup/pids/overlayctl/{cid}",
        f"/sys/fs/cgroup/unified/overlayctl/{cid}",
    ]
    assert hybrid.procs_files[-1] == f"/sys/fs/cgroup/unified/overlayctl/{cid}/cgroup.procs"
    v1 = Cgroup(cid, parse_mountinfo(DEBIAN_V1))
    assert len(v1.dirs) == 3  # cpu and cpuacct share a tree
    v2 = Cgroup(cid, parse_mountinfo(V2))
    assert v2.dirs == [f"/sys/fs/cgroup/overlayctl/{cid}"]
    assert v2.procs_files == [f"/sys/fs/cgroup/overlayctl/{cid}/cgroup.procs"]
    for bad in ("", "..", "a/b", ".x"):
        with pytest.raises(InvalidArgumentError):
            Cgroup(bad, parse_mountinfo(V2))


# --- the v2 code path on a fake tree ---


def _fake_v2_root(tmp_path, controllers="cpuset cpu io memory hugetlb pids rdma misc") -> Layout:
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("")
    return Layout(2, str(root))


def test_v2_create_enables_controllers_and_writes_limits(tmp_path, monkeypatch):
    layout = _fake_v2_root(tmp_path)
    enabled = []
    real_open = open

    def recording_open(path, mode="r", *a, **kw):
        # The kernel keeps every "+c" written to subtree_control; a file keeps the last.
        if str(path).endswith("cgroup.subtree_control") and "w" in mode:
            enabled.append(os.path.relpath(path, layout.unified))
        return real_open(path, mode, *a, **kw)

    monkeypatch.setattr("builtins.open", recording_open)
    lim = limits(memory="16m", pids="10", cpus="1.5", cpu_shares="512")
    # The kernel makes memory.swap.max when swap accounting is on: the fake tree has not.
    cg = create("abc", lim, layout)
    monkeypatch.undo()
    assert cg is not None
    d = tmp_path / "cgroup" / "overlayctl" / "abc"
    assert cg.dirs == [str(d)] and cg.procs_files == [str(d / "cgroup.procs")]
    # memory, pids, cpu and io (for BLOCK I/O) at each level.
    assert enabled == ["cgroup.subtree_control"] * 4 + ["overlayctl/cgroup.subtree_control"] * 4
    assert (d / "memory.max").read_text() == str(16 * MiB)
    assert not (d / "memory.swap.max").exists()
    assert cg.warnings == [
        "Your kernel does not support swap limit capabilities or the cgroup is not mounted. "
        "Memory limited without swap."
    ]
    assert (d / "pids.max").read_text() == "10"
    assert (d / "cpu.max").read_text() == "150000 100000"
    assert (d / "cpu.weight").read_text() == str(shares_to_weight(512))


def test_v2_swap_written_when_the_kernel_has_the_file(tmp_path, monkeypatch):
    layout = _fake_v2_root(tmp_path)
    real_mkdir = os.mkdir

    def mkdir_like_the_kernel(path, mode=0o777):
        real_mkdir(path, mode)
        if os.path.basename(os.path.dirname(path)) == "overlayctl":
            with open(os.path.join(path, "memory.swap.max"), "w") as f:
                f.write("max\n")

    monkeypatch.setattr(os, "mkdir", mkdir_like_the_kernel)
    cg = create("abc", limits(memory="16m", memory_swap="48m"), layout)
    assert cg is not None and cg.warnings == []
    assert (tmp_path / "cgroup/overlayctl/abc/memory.swap.max").read_text() == str(32 * MiB)


def test_v2_oom_and_stats_from_the_kernels_files(tmp_path):
    layout = _fake_v2_root(tmp_path)
    cg = create("abc", limits(memory="16m"), layout)
    assert cg is not None
    d = tmp_path / "cgroup/overlayctl/abc"
    assert not cg.oom_killed()  # no memory.events yet: nothing known
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\noom_group_kill 0\n")
    assert not cg.oom_killed()
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 40\noom 1\noom_kill 1\noom_group_kill 0\n")
    assert cg.oom_killed()
    (d / "memory.current").write_text("123456\n")
    (d / "pids.current").write_text("3\n")
    (d / "pids.max").write_text("max\n")
    (d / "cpu.stat").write_text("usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n")
    assert cg.stats() == {
        "memory_usage": 123456,
        "memory_limit": 16 * MiB,
        "cpu_usage_ns": 2_500_000,
        "pids_current": 3,
        "pids_limit": None,
    }


def test_v2_missing_controller_is_an_error_and_nothing_is_made(tmp_path):
    layout = _fake_v2_root(tmp_path, controllers="cpu io memory")
    with pytest.raises(KernelError, match="--pids-limit needs the pids cgroup controller"):
        create("abc", limits(memory="16m", pids="10"), layout)
    assert not (tmp_path / "cgroup/overlayctl").exists()


def test_v2_a_failed_write_removes_the_cgroup(tmp_path):
    layout = _fake_v2_root(tmp_path)
    d = tmp_path / "cgroup/overlayctl/abc"
    lim = limits(memory="16m")

    real_mkdir = os.mkdir

    def mkdir_then_block(path, mode=0o777):
        real_mkdir(path, mode)
        if path == str(d):
            real_mkdir(os.path.join(path, "memory.max"))  # a write to it fails: EISDIR

    mp = pytest.MonkeyPatch()
    mp.setattr(os, "mkdir", mkdir_then_block)
    try:
        with pytest.raises(KernelError, match=r"cannot set memory.max to 16777216: .*/memory.max: Is a directory"):
            create("abc", lim, layout)
    finally:
        mp.undo()
    # The fake directory is not empty (the kernel's would be), so it stays;
    # that create() tried to remove it is seen on a real tree in the integration tests.
    assert d.exists()


def test_no_cgroups_at_all():
    assert create("abc", Limits(), Layout(0)) is None
    with pytest.raises(KernelError, match="--memory needs the memory cgroup controller"):
        create("abc", limits(memory="16m"), Layout(0))
    assert find("abc", Layout(0)) is None


def test_v1_missing_controller(tmp_path):
    layout = Layout(1, None, {"memory": str(tmp_path / "memory")})
    with pytest.raises(KernelError, match="--cpus and --cpu-shares need the cpu cgroup controller"):
        create("abc", limits(cpus="1"), layout)


def test_v1_oom_from_oom_control_or_failcnt(tmp_path):
    mem = tmp_path / "memory"
    mem.mkdir()
    layout = Layout(1, None, {"memory": str(mem)})
    cg = create("abc", limits(memory="16m"), layout)
    assert cg is not None
    d = mem / "overlayctl/abc"
    assert (d / "memory.limit_in_bytes").read_text() == str(16 * MiB)
    assert cg.warnings  # no memory.memsw.limit_in_bytes in the fake tree
    (d / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    (d / "memory.failcnt").write_text("7\n")
    assert not cg.oom_killed()  # the limit was hit, reclaim coped: no kill
    (d / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert cg.oom_killed()
    (d / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n")  # Linux < 4.13
    assert cg.oom_killed()


# --- block I/O: Docker's io_service_bytes_recursive from either version ---


def test_block_io_from_v2_io_stat_and_v1_blkio(tmp_path):
    from overlayctl.runtime.cgroups.stats import block_io, parse_blkio_bytes, parse_io_stat, read_write_bytes

    io_stat = "254:0 rbytes=4096 wbytes=8396800 rios=1 wios=9 dbytes=0 dios=0\n8:16 rbytes=512 wbytes=0 rios=1\n"
    entries = parse_io_stat(io_stat)
    assert entries == [(254, 0, "read", 4096), (254, 0, "write", 8396800), (8, 16, "read", 512), (8, 16, "write", 0)]
    assert read_write_bytes(entries) == (4608, 8396800)
    v1 = "254:0 Read 24576\n254:0 Write 8396800\n254:0 Sync 8421376\n254:0 Async 0\n254:0 Discard 0\n"
    v1 += "254:0 Total 8421376\nTotal 8421376\n"
    entries = parse_blkio_bytes(v1)
    assert len(entries) == 6 and entries[0] == (254, 0, "Read", 24576)
    assert read_write_bytes(entries) == (24576, 8396800)  # Sync, Async, Total: neither, as docker's client

    v2dir, v1dir = tmp_path / "v2", tmp_path / "v1"
    v2dir.mkdir()
    v1dir.mkdir()
    assert block_io(2, {"io": str(v2dir)}) is None  # no io.stat: no figure
    (v2dir / "io.stat").write_text(io_stat)
    assert block_io(2, {"io": str(v2dir)})[1] == (254, 0, "write", 8396800)
    assert block_io(1, {"blkio": str(v1dir)}) is None
    (v1dir / "blkio.throttle.io_service_bytes_recursive").write_text("Total 0\n")
    assert block_io(1, {"blkio": str(v1dir)}) == []  # a figure: nothing yet
    (v1dir / "blkio.io_service_bytes_recursive").write_text(v1)
    assert block_io(1, {"blkio": str(v1dir)})[1] == (254, 0, "Write", 8396800)
    assert block_io(1, {"memory": str(v1dir)}) is None

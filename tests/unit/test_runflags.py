"""runtime.runflags: --ulimit, --sysctl, --ipc, --pid, --oom-score-adj and
--init's binary, read as Docker reads them (no root needed)."""

from __future__ import annotations

import pytest

from overlayctl.errors import InvalidArgumentError
from overlayctl.runtime import runflags
from overlayctl.runtime.mountplan import FsMount, rootfs_plan
from overlayctl.runtime.overlay import OverlayLayout


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("nofile=1024:2048", {"Name": "nofile", "Hard": 2048, "Soft": 1024}),
        ("nofile=1024", {"Name": "nofile", "Hard": 1024, "Soft": 1024}),
        ("nproc=-1", {"Name": "nproc", "Hard": -1, "Soft": -1}),
        ("core=5:-1", {"Name": "core", "Hard": -1, "Soft": 5}),
    ],
)
def test_ulimit_syntax(text, limit):
    assert runflags.parse_ulimit(text) == limit


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("nofile", "invalid ulimit argument: nofile"),
        ("as=1", "invalid ulimit type: as"),
        ("nofile=2:1", "ulimit soft limit must be less than or equal to hard limit: 2 > 1"),
        ("nofile=1:2:3", "too many limit value arguments - 1:2:3"),
        ("nofile=x", 'parsing "x": invalid syntax'),
    ],
)
def test_bad_ulimits(text, why):
    with pytest.raises(InvalidArgumentError) as err:
        runflags.parse_ulimit(text)
    assert err.value.message.startswith(f'invalid argument "{text}" for "--ulimit" flag: ')
    assert why in err.value.message


def test_a_later_ulimit_replaces_an_earlier_one_and_unlimited_is_infinity():
    limits = runflags.parse_ulimits(["nofile=1:2", "core=0", "nofile=3:4"])
    assert limits == [{"Name": "nofile", "Hard": 4, "Soft": 3}, {"Name": "core", "Hard": 0, "Soft": 0}]
    assert runflags.rlimits([{"Name": "nproc", "Soft": -1, "Hard": -1}]) == [
        ("nproc", 6, runflags.RLIM_INFINITY, runflags.RLIM_INFINITY)
    ]


def test_sysctls_as_docker_allows_them():
    allowed = ["net.ipv4.ip_forward=1", "kernel.shmmax=1", "kernel.sem=1 2 3 4", "fs.mqueue.msg_max=20"]
    assert runflags.parse_sysctls(allowed, "bridge", "") == {
        "net.ipv4.ip_forward": "1",
        "kernel.shmmax": "1",
        "kernel.sem": "1 2 3 4",
        "fs.mqueue.msg_max": "20",
    }
    for bad in ("kernel.hostname=x", "vm.swappiness=1", "net.ipv4.ip_forward", "kernel.shmmaxx=1"):
        with pytest.raises(InvalidArgumentError, match="is not allowed"):
            runflags.parse_sysctls([bad], "bridge", "")
    with pytest.raises(InvalidArgumentError, match="host network namespace"):
        runflags.parse_sysctls(["net.core.somaxconn=1"], "host", "")
    with pytest.raises(InvalidArgumentError, match="--ipc host"):
        runflags.parse_sysctls(["kernel.msgmax=1"], "none", "host")
    assert runflags.sysctl_path("net.ipv4.conf.eth0.forwarding") == "/proc/sys/net/ipv4/conf/eth0/forwarding"


def test_namespace_modes():
    for mode in ("", "private", "shareable", "host", "none", "container:db"):
        assert runflags.check_ipc_mode(mode) == mode
    assert [runflags.check_pid_mode(m) for m in ("", "host", "container:db", "private")] == [
        "",
        "host",
        "container:db",
        "",
    ]
    for bad in ("container:", "shared", "HOST"):
        with pytest.raises(InvalidArgumentError):
            runflags.check_ipc_mode(bad)
        with pytest.raises(InvalidArgumentError):
            runflags.check_pid_mode(bad)


def test_oom_score_adj_range():
    assert runflags.check_oom_score_adj("-1000") == -1000
    for bad in ("1001", "-1001", "x"):
        with pytest.raises(InvalidArgumentError):
            runflags.check_oom_score_adj(bad)


def test_a_missing_tini_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(runflags, "INIT_CANDIDATES", (str(tmp_path / "tini-static"),))
    with pytest.raises(InvalidArgumentError) as err:
        runflags.find_init(None)
    assert err.value.message == "--init needs tini, which is not installed: apt-get install tini"
    with pytest.raises(InvalidArgumentError, match="absolute"):
        runflags.find_init("tini")


def test_shm_in_the_root_plan():
    layout = OverlayLayout(["/l"], "/u", "/w")

    def shm_ops(**kw):
        return [op for op in rootfs_plan(layout, "/", **kw).ops if isinstance(op, FsMount) and op.target == "/dev/shm"]

    assert [op.data for op in shm_ops()] == ["mode=1777,size=65536k"]
    assert [op.data for op in shm_ops(shm="mode=1777,size=1024")] == ["mode=1777,size=1024"]
    assert shm_ops(shm=None) == []

"""Pure logic behind the lifecycle verbs: option parsing, signals, the
freezer's place and the cgroups exec joins, the top table's columns. No
root, no container."""

from __future__ import annotations

import os

import pytest

from overlayctl.cli import runopts
from overlayctl.container.signals import parse_signal
from overlayctl.errors import InvalidArgumentError
from overlayctl.runtime import procs
from overlayctl.runtime.cgroups.cgroup import Cgroup
from overlayctl.runtime.cgroups.freezer import Freezer
from overlayctl.runtime.cgroups.join import cgroup_dirs, parse_proc_cgroup
from overlayctl.runtime.cgroups.layout import cgroup_mounts, parse_mountinfo

HYBRID = """\
25 1 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
27 25 0:25 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
28 25 0:26 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
29 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
31 25 0:29 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
"""
V2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def test_run_options_for_the_lifecycle():
    opts, rest = runopts.parse(
        [
            "-d",
            "--restart=on-failure:2",
            "--log-driver",
            "json-file",
            "--log-opt",
            "max-size=1m",
            "--log-opt",
            "max-file=2",
            "--stop-signal",
            "USR1",
            "--stop-timeout",
            "3",
            "bb:1",
            "sh",
        ],
        runopts.RUN_OPTIONS,
    )
    assert rest == ["bb:1", "sh"]
    assert opts["detach"] and opts["restart"] == "on-failure:2" and opts["log_driver"] == "json-file"
    assert opts["log_opt"] == ["max-size=1m", "max-file=2"]
    assert (opts["stop_signal"], opts["stop_timeout"]) == ("USR1", "3")


@pytest.mark.parametrize("text, number", [("KILL", 9), ("SIGTERM", 15), ("sighup", 1), ("usr1", 10), ("2", 2)])
def test_parse_signal(text, number):
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["", "NOPE", "SIG_DFL", "0", "999", "-9"])
def test_parse_signal_refuses(text):
    with pytest.raises(InvalidArgumentError):
        parse_signal(text)


def test_freezer_goes_to_the_v1_tree_when_there_is_one():
    hybrid = parse_mountinfo(HYBRID)
    assert hybrid.freezer == "/sys/fs/cgroup/freezer"
    assert "freezer" not in hybrid.v1  # limits never make a freezer cgroup
    cid = "ab" * 32
    freezer = Freezer(cid, hybrid)
    assert (freezer.version, freezer.dir) == (1, f"/sys/fs/cgroup/freezer/overlayctl/{cid}")
    v2 = Freezer(cid, parse_mountinfo(V2))
    assert (v2.version, v2.dir) == (2, f"/sys/fs/cgroup/overlayctl/{cid}")
    # The limits' cgroup and the freezer share a directory on v2.
    assert v2.dir == Cgroup(cid, parse_mountinfo(V2)).unified
    assert Freezer(cid, parse_mountinfo("")).version == 0
    with pytest.raises(InvalidArgumentError):
        Freezer("../x", hybrid)


def test_the_cgroups_exec_joins():
    mounts = cgroup_mounts(HYBRID)
    theirs = parse_proc_cgroup(
        "12:pids:/overlayctl/c1\n"
        "11:cpu,cpuacct:/overlayctl/c1\n"
        "10:memory:/overlayctl/c1\n"
        "9:freezer:/overlayctl/c1\n"
        "1:name=systemd:/\n"
        "0::/overlayctl/c1\n"
    )
    assert cgroup_dirs(theirs, mounts) == {
        "pids": "/sys/fs/cgroup/pids/overlayctl/c1",
        "cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct/overlayctl/c1",
        "memory": "/sys/fs/cgroup/memory/overlayctl/c1",
        "freezer": "/sys/fs/cgroup/freezer/overlayctl/c1",
        "name=systemd": "/sys/fs/cgroup/systemd",
        "": "/sys/fs/cgroup/unified/overlayctl/c1",
    }
    # A mount of a subtree (inside a container): paths are relative to its root.
    nested = cgroup_mounts("40 1 0:30 /outer /mnt/cg rw - cgroup2 cgroup2 rw\n")
    assert cgroup_dirs({"": "/outer/inner"}, nested) == {"": "/mnt/cg/inner"}
    assert cgroup_dirs({"": "/elsewhere"}, nested) == {}


def test_top_reads_this_process():
    headers, rows = procs.top_table([os.getpid()])
    assert headers == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    (row,) = rows
    assert row[1] == str(os.getpid()) and row[2] == str(os.getppid())
    assert "pytest" in row[7] or "python" in row[7]
    assert procs.top_table([2**22 + 7])[1] == []  # a pid that does not exist
    assert os.getpid() in procs.namespace_pids(os.getpid())

"""Per-container size limits (--storage-opt size=) on real filesystems with
project quotas: a loop-mounted ext4 (quota,project) and xfs, each mounted
with -o prjquota by tests/quota_fs.py, or skipped with the kernel's reason.

Covered: writes past the limit fail inside the container (EDQUOT on ext4,
ENOSPC on xfs), from a root process, while writes within it and the rest
of the filesystem are unaffected; a project ID is freed with its
container and given again; a kill -9 of create or rm at each of their
fault points leaves, after the repair, exactly the live containers' IDs in
use, all distinct; fsck finds a doubled ID, a container whose upper dir
lost its ID and a limit that differs. And, on any host: a store on a
filesystem without project quotas refuses a size in one line, and keeps
nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from overlayctl.runtime import quota
from overlayctl.store import projects
from tests.conftest import CLI
from tests.quota_fs import prjquota_fs

pytestmark = pytest.mark.quota

NONE = ("--network", "none")
KILLED = -signal.SIGKILL
MiB = 1 << 20

# Until `create --storage-opt size=` is on the CLI (its own change), the
# tests reach ContainerStore.create(storage_size=) through the CLI's own
# create with the size added on the way, exactly as that option will: the
# size text recorded in HostConfig.StorageOpt, its bytes passed to the store.
_WITH_SIZE = """
import sys
from overlayctl.store.containers import ContainerStore
from overlayctl.util.sizes import parse_size

text = sys.argv.pop(1)
original = ContainerStore.create

def create(self, image_id, image_name, config, name=None, storage_size=None):
    config.host.extra["StorageOpt"] = {"size": text}
    return original(self, image_id, image_name, config, name, storage_size=parse_size(text, "--storage-opt size"))

ContainerStore.create = create
"""
_RUN_CLI = """
import sys
from overlayctl.cli import main
sys.argv[0] = "overlayctl"
main()
"""

# For the parts that need no quota accounting, run where quotas cannot
# (this host): on xfs, whose inodes carry project IDs whatever the mount
# options, with only the accounting calls stood in for. The filesystem
# "can" (why_not), charges nothing (usage: allocation goes by the IDs the
# store's directories carry) and keeps no limit (set_limit), reporting the
# one every container of these tests is given (10m).
_NO_ACCOUNTING = """
from overlayctl.runtime import quota
quota.why_not = lambda path: None
quota.usage = lambda path, project: quota.ProjectUsage(0, 0, 10 << 20)
quota.set_limit = lambda path, project, limit: None
"""


class NoAccountingCLI(CLI):
    """The CLI with the quota accounting stood in for (_NO_ACCOUNTING)."""

    prelude = _NO_ACCOUNTING

    def argv(self, *args: str) -> list[str]:
        base = super().argv(*args)  # python -m overlayctl ARGS
        return [base[0], "-c", self.prelude + _RUN_CLI, *base[3:]]


def _cli_has_storage_opt(cli: CLI) -> bool:
    return b"--storage-opt" in cli("create", "--help").stdout


def sized_argv(cli: CLI, size: str, *args: str) -> list[str]:
    """The argv of `create --storage-opt size=SIZE ARGS...`."""
    if _cli_has_storage_opt(cli):
        return cli.argv("create", "--storage-opt", f"size={size}", *args)
    base = CLI.argv(cli, "create", *args)  # python -m overlayctl ARGS
    return [sys.executable, "-c", getattr(cli, "prelude", "") + _WITH_SIZE + _RUN_CLI, size, *base[3:]]


def create_sized(cli: CLI, size: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(sized_argv(cli, size, *args), capture_output=True, timeout=60, env=cli.env)


def container_id(cli: CLI, name: str) -> str:
    return cli.ok("inspect", "-f", "{{.Id}}", name).strip()


def project_of(cli: CLI, name: str) -> int:
    return quota.project_of(str(cli.root / "containers" / container_id(cli, name) / "upper"))


@pytest.fixture(params=["ext4", "xfs"])
def qcli(request, tmp_path: Path, busybox_tar: Path) -> Iterator[CLI]:
    """A CLI whose store is on a fresh prjquota filesystem, with bb:1."""
    with prjquota_fs(request.param) as mnt:
        c = CLI(Path(mnt) / "root", tmp_path / "run")
        c.kind = request.param  # type: ignore[attr-defined]
        yield from _with_bb(c, busybox_tar)


def _with_bb(c: CLI, busybox_tar: Path) -> Iterator[CLI]:
    """c with bb:1 imported (fsck without its grace for leftovers); its
    containers removed at the end, before the filesystem goes."""
    c.env["OVERLAYCTL_FSCK_GRACE"] = "0"
    try:
        c.ok("import", str(busybox_tar), "bb:1")
        yield c
    finally:
        ids = c("ps", "-aq", "--no-trunc").stdout.decode().split()
        if ids:
            c("rm", "-f", *ids)


def ids_in_use(cli: CLI, up_to: int = 64) -> list[int]:
    """The project IDs from projects.BASE that the kernel charges inodes
    to on the store's filesystem (what is really in use, whoever holds it);
    without accounting, the IDs the store's directories carry."""
    if isinstance(cli, NoAccountingCLI):
        from overlayctl.paths import Paths

        return sorted(projects.ids_on_disk(Paths(str(cli.root), str(cli.runroot))))
    root = str(cli.root)
    return [p for p in range(projects.BASE, projects.BASE + up_to) if quota.usage(root, p).inodes]


def settle(cli: CLI) -> None:
    """Let the filesystem finish freeing what was deleted: xfs inactivates
    unlinked inodes in the background (their quota charge goes then)."""
    fd = os.open(str(cli.root), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
        os.sync()
    finally:
        os.close(fd)


def wait_free(cli: CLI, project: int) -> None:
    deadline = time.monotonic() + 10
    while quota.usage(str(cli.root), project).inodes and time.monotonic() < deadline:
        settle(cli)
        time.sleep(0.1)
    assert quota.usage(str(cli.root), project).inodes == 0, f"project {project} still charged after its rm"


# -- the limit holds -------------------------------------------------------------------


WRITER = (
    "dd if=/dev/zero of=/within bs=1M count=4 2>/dev/null && sync && echo within-ok; "
    # (dd's message straight to the output: a file for it would be in the full upper dir)
    "dd if=/dev/zero of=/past bs=1M count=24 2>&1; echo dd-status=$?; "
    "rm -f /past; dd if=/dev/zero of=/again bs=1M count=2 2>/dev/null && echo again-ok"
)


def test_writes_past_the_limit_fail_and_within_it_succeed(qcli):
    """A root process in the container cannot write past its 10 MiB (on
    ext4 too, where root with CAP_SYS_RESOURCE could: overlayfs lowers it
    in the credentials it writes the upper dir with); within it, and after freeing space, it can; the
    rest of the filesystem takes far more than that at the same time."""
    made = create_sized(qcli, "10m", "--name", "qq", *NONE, "bb:1", "sh", "-c", WRITER)
    assert made.returncode == 0, made.stderr.decode()
    project = project_of(qcli, "qq")
    assert project >= projects.BASE
    cid = container_id(qcli, "qq")
    # work/ too: copy-up renames from it into upper/, which the kernel
    # allows only within one project.
    assert quota.project_of(str(qcli.root / "containers" / cid / "work")) == project
    assert quota.usage(str(qcli.root), project).limit == 10 * MiB

    result = qcli("start", "-a", "qq", timeout=120)
    out = result.stdout.decode() + result.stderr.decode()
    assert "within-ok" in out, out
    assert "dd-status=0" not in out, out
    assert "Disk quota exceeded" in out or "No space left on device" in out, out
    assert "again-ok" in out, out
    used = quota.usage(str(qcli.root), project)
    assert used.bytes <= 10 * MiB, used
    # The host's other files: 40 MiB beside the full container.
    other = Path(qcli.root).parent / "other"
    with open(other, "wb") as f:
        for _ in range(40):
            f.write(b"\1" * MiB)
        f.flush()
        os.fsync(f.fileno())
    assert other.stat().st_size == 40 * MiB


def test_copy_up_of_an_image_file_is_charged(qcli, tmp_path):
    """A file of the image that the container changes is copied up into
    the project (work/ and upper/ share it, or the copy-up's rename fails
    with EXDEV), and its size counts against the limit."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb:1\nRUN dd if=/dev/zero of=/big bs=1M count=6\n")
    qcli.ok("build", "-q", "-t", "big:1", str(ctx))
    script = "echo x >> /big && echo copied-up; echo y >> /big; dd if=/dev/zero of=/more bs=1M count=6; echo dd=$?"
    made = create_sized(qcli, "8m", "--name", "cu", *NONE, "big:1", "sh", "-c", script)
    assert made.returncode == 0, made.stderr.decode()
    out = qcli("start", "-a", "cu", timeout=120)
    text = out.stdout.decode() + out.stderr.decode()
    assert "copied-up" in text, text
    assert "dd=0" not in text, text
    assert quota.usage(str(qcli.root), project_of(qcli, "cu")).bytes >= 6 * MiB


@pytest.fixture
def xfs_cli(tmp_path: Path, busybox_tar: Path) -> Iterator[CLI]:
    """A NoAccountingCLI on an xfs mounted without quotas, with bb:1."""
    with prjquota_fs("xfs", "defaults") as mnt:
        yield from _with_bb(NoAccountingCLI(Path(mnt) / "root", tmp_path / "run"), busybox_tar)


def test_copy_up_within_the_project_on_any_kernel(xfs_cli):
    """A sized container's upper and work dirs share its ID, so a copy-up
    (made in work/, renamed into upper/: EXDEV between two projects) works
    and lands in the project."""
    made = create_sized(xfs_cli, "10m", "--name", "qq", *NONE, "bb:1", "sh", "-c", "echo hi >> /etc/passwd")
    assert made.returncode == 0, made.stderr.decode()
    out = xfs_cli("start", "-a", "qq", timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    upper = xfs_cli.root / "containers" / container_id(xfs_cli, "qq") / "upper"
    project = quota.project_of(str(upper))
    assert project == projects.BASE
    assert quota.project_of(str(upper / "etc" / "passwd")) == project
    assert (upper / "etc" / "passwd").read_text().endswith("hi\n")


# -- IDs taken and freed with the container ----------------------------------------------


def test_project_id_freed_and_reused_after_rm(qcli):
    for name in ("ca", "cb"):
        made = create_sized(qcli, "10m", "--name", name, *NONE, "bb:1", "true")
        assert made.returncode == 0, made.stderr.decode()
    a, b = project_of(qcli, "ca"), project_of(qcli, "cb")
    assert a == projects.BASE and b == projects.BASE + 1
    plain = qcli.ok("create", *NONE, "bb:1", "true").strip()
    assert quota.project_of(str(qcli.root / "containers" / plain / "upper")) == 0
    assert not os.path.exists(qcli.root / "containers" / plain / "work")  # made at start, as before

    qcli.ok("rm", "ca")
    wait_free(qcli, a)
    made = create_sized(qcli, "20m", "--name", "cc", *NONE, "bb:1", "true")
    assert made.returncode == 0, made.stderr.decode()
    assert project_of(qcli, "cc") == a
    # Its own limit, not the one the ID had before.
    assert quota.usage(str(qcli.root), a).limit == 20 * MiB
    assert ids_in_use(qcli) == [a, b]


def test_an_id_charged_by_someone_else_is_skipped(qcli):
    """Another tool (or store) on the same filesystem that uses BASE: the
    kernel's accounting says so, and the next ID is taken."""
    foreign = Path(qcli.root).parent / "foreign"
    foreign.mkdir()
    quota.set_project(str(foreign), projects.BASE)
    (foreign / "f").write_bytes(b"x")
    made = create_sized(qcli, "10m", "--name", "qq", *NONE, "bb:1", "true")
    assert made.returncode == 0, made.stderr.decode()
    assert project_of(qcli, "qq") == projects.BASE + 1


# -- crashes ------------------------------------------------------------------------------


CREATE_POINTS = ["container-project", "container-staged", "container-placed", "container-recorded"]
RM_POINTS = ["container-forgotten", "discard-moved"]


def killed_at(cli: CLI, argv: list[str], point: str) -> None:
    env = dict(cli.env, OVERLAYCTL_FAULTS=f"{point}=kill")
    proc = subprocess.run(argv, capture_output=True, env=env, timeout=60, start_new_session=True)
    assert proc.returncode == KILLED, (point, proc.returncode, proc.stderr.decode())


def live_ids(cli: CLI) -> list[int]:
    ids = cli.ok("ps", "-aq", "--no-trunc").split()
    return sorted(quota.project_of(str(cli.root / "containers" / i / "upper")) for i in ids)


def assert_ids_exact(cli: CLI, what: str) -> None:
    """After the repair: the IDs the kernel charges are the live
    containers', each once; nothing is left in staging."""
    repaired = cli("system", "fsck", "--repair")
    assert repaired.returncode == 0, (what, repaired.stdout.decode(), repaired.stderr.decode())
    assert cli.ok("system", "fsck") == "no problems found\n", what
    assert os.listdir(cli.root / "tmp") == [], (what, os.listdir(cli.root / "tmp"))
    settle(cli)
    live = live_ids(cli)
    assert len(set(live)) == len(live), (what, live)
    deadline = time.monotonic() + 10
    while ids_in_use(cli) != live and time.monotonic() < deadline:
        settle(cli)
        time.sleep(0.1)
    assert ids_in_use(cli) == live, (what, ids_in_use(cli), live)


def test_kill_during_create_and_rm_loses_and_doubles_no_id(qcli):
    exercise_kills(qcli)


def test_kill_during_create_and_rm_on_any_kernel(xfs_cli):
    """The same kills where only the directories' IDs can be counted."""
    exercise_kills(xfs_cli)


def exercise_kills(qcli: CLI) -> None:
    """create and rm killed at each of their fault points, each kill
    followed by the repair and the count of the IDs in use."""
    create_sized(qcli, "10m", "--name", "keep", *NONE, "bb:1", "true").check_returncode()
    for n, point in enumerate(CREATE_POINTS):
        killed_at(qcli, sized_argv(qcli, "10m", "--name", f"k{n}", *NONE, "bb:1", "true"), point)
        # The next create, before any repair, works and gets an ID of its
        # own: not the one the killed create's leftover still holds.
        create_sized(qcli, "10m", "--name", f"after{n}", *NONE, "bb:1", "true").check_returncode()
        report = qcli("system", "fsck").stdout.decode()
        assert "project ID shared" not in report, (point, report)
        assert_ids_exact(qcli, f"create killed at {point}, and one more")
    for n, point in enumerate(RM_POINTS):
        name = f"r{n}"
        create_sized(qcli, "10m", "--name", name, *NONE, "bb:1", "sh", "-c", "echo x > /x").check_returncode()
        qcli.ok("start", "-a", name)
        killed_at(qcli, qcli.argv("rm", name), point)
        assert_ids_exact(qcli, f"rm killed at {point}")
    ids = live_ids(qcli)
    assert ids == list(range(projects.BASE, projects.BASE + len(ids))), ids


# -- fsck ----------------------------------------------------------------------------------


def test_fsck_finds_a_doubled_id_and_repairs_it(qcli):
    b = doubled_and_repaired(qcli)
    assert quota.usage(str(qcli.root), b).limit == 10 * MiB


def test_fsck_finds_a_doubled_id_on_any_kernel(xfs_cli):
    doubled_and_repaired(xfs_cli)


def doubled_and_repaired(qcli: CLI) -> int:
    """Two containers carrying one ID (the younger's tree re-tagged by
    hand): fsck names both; the repair gives the younger a new ID, its
    files included. The younger's new ID."""
    for name in ("ca", "cb"):
        create_sized(qcli, "10m", "--name", name, *NONE, "bb:1", "sh", "-c", "echo x > /x").check_returncode()
        qcli.ok("start", "-a", name)
    a = project_of(qcli, "ca")
    b_dir = qcli.root / "containers" / container_id(qcli, "cb")
    for path in (b_dir / "upper", b_dir / "work", b_dir / "upper" / "x"):
        quota.set_project(str(path), a)
    report = qcli("system", "fsck")
    assert report.returncode != 0
    assert f"project ID shared: project {a} (carried by the directories of ca, cb;" in report.stdout.decode()
    qcli.ok("system", "fsck", "--repair")
    assert qcli.ok("system", "fsck") == "no problems found\n"
    assert project_of(qcli, "ca") == a
    b = project_of(qcli, "cb")
    assert b not in (0, a)
    assert quota.project_of(str(b_dir / "upper" / "x")) == b
    assert quota.project_of(str(b_dir / "work")) == b
    return b


def test_fsck_finds_a_lost_id_and_a_changed_limit(qcli):
    create_sized(qcli, "10m", "--name", "qq", *NONE, "bb:1", "sh", "-c", "echo x > /x").check_returncode()
    qcli.ok("start", "-a", "qq")
    project = project_of(qcli, "qq")
    quota.set_limit(str(qcli.root), project, 50 * MiB)
    report = qcli("system", "fsck").stdout.decode()
    assert "container size limit differs: qq" in report, report
    qcli.ok("system", "fsck", "--repair")
    assert quota.usage(str(qcli.root), project).limit == 10 * MiB

    cdir = qcli.root / "containers" / container_id(qcli, "qq")
    for path in (cdir / "upper", cdir / "work", cdir / "upper" / "x"):
        quota.set_project(str(path), 0)
    report = qcli("system", "fsck").stdout.decode()
    assert "container without its project ID: qq" in report, report
    qcli.ok("system", "fsck", "--repair")
    assert qcli.ok("system", "fsck") == "no problems found\n"
    again = project_of(qcli, "qq")
    assert again >= projects.BASE
    assert quota.project_of(str(cdir / "upper" / "x")) == again
    assert quota.usage(str(qcli.root), again).limit == 10 * MiB


# -- the refusal, on any host ----------------------------------------------------------------


def _refused(cli: CLI) -> str:
    result = create_sized(cli, "10m", "--name", "qq", *NONE, "bb:1", "true")
    assert result.returncode == 125, (result.returncode, result.stderr)
    err = result.stderr.decode()
    assert err.count("\n") == 1, err
    assert "--storage-opt size=10m" in err, err
    # Nothing kept: no container, no directory, nothing in staging.
    assert cli.ok("ps", "-aq") == ""
    assert os.listdir(cli.root / "containers") == []
    assert os.listdir(cli.root / "tmp") == []
    return err


def test_refused_where_the_filesystem_has_no_project_quotas(cli, bb):
    fs = quota.filesystem_of(str(cli.root))
    if quota.why_not(str(cli.root)) is None:
        pytest.skip(f"the test store's filesystem ({fs.fstype} at {fs.mount_point}) has project quotas on")
    err = _refused(cli)
    assert f"{fs.fstype} on {fs.device}, mounted at {fs.mount_point}" in err, err
    if fs.fstype in ("ext4", "xfs"):
        assert "prjquota" in err, err
    if fs.fstype == "ext4":
        assert "tune2fs -O project,quota" in err, err
    if quota._kernel_lacks(("CONFIG_QFMT_V2",)):
        assert "built without CONFIG_QFMT_V2" in err, err
    # Without a size, the same store creates as before.
    cli.ok("create", "--name", "plain", *NONE, "bb:1", "true")


def test_refused_on_a_tmpfs(tmp_path, busybox_tar):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    mnt = tmp_path / "t"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], check=True)
    try:
        c = CLI(mnt / "root", tmp_path / "run")
        c.ok("import", str(busybox_tar), "bb:1")
        err = _refused(c)
        assert f"tmpfs on tmpfs, mounted at {mnt}" in err, err
        assert "ext4 or xfs mounted with -o prjquota" in err, err
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)

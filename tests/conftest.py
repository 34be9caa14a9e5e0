"""Shared fixtures: a private store per test, the busybox base image, and a
check that every test leaves the host clean (no overlay mount, no container
process), even when it fails."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.networld import OutsideWorld

REPO = Path(__file__).resolve().parent.parent
# The default bridge of every test store: its own device and subnet, not the
# host's octl0, and deleted when the session ends.
TEST_BRIDGE = f"octlt{os.getpid() % 100000}"
# Per session, so that two suites running at once (a developer's and CI's)
# do not fight over one subnet.
TEST_BRIDGE_SUBNET = f"10.249.{os.getpid() % 256}.0/24"


def kernel_at_least(major: int, minor: int) -> bool:
    """Whether the running kernel is Linux major.minor or newer."""
    release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
    return release >= (major, minor)


def kernel_has_lowerdir_plus() -> bool:
    """overlayfs takes one fsconfig("lowerdir+") per layer since Linux 6.8;
    before that, all layers go in one mount(2) string of at most a page."""
    return kernel_at_least(6, 8)


def pytest_configure(config: pytest.Config) -> None:
    """Children get Ctrl-C and a hang-up as a terminal gives them, whoever
    started the suite.

    A suite started as a background job of a non-interactive shell (`cmd &`,
    nohup, a CI runner) inherits SIGINT ignored, and so would every process
    a test starts: `du --watch`, `events`, `stats` and docker-compose, which
    the tests end with SIGINT as Ctrl-C, then ran on until the test's
    timeout or their container's end (`du --watch` for 100 s). Under nohup
    SIGHUP is ignored too, and a `run -it` whose terminal a test closes then
    never gets the hang-up a closed window sends: it reads the end of its
    input instead, and hands it to the container's shell, which exits. A
    handler of ours is reset to the default by exec, so every child starts
    with the default; the suite itself still outlives a hang-up (its handler
    does nothing), as nohup meant."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _hung_up)


def _hung_up(signum: int, frame: object) -> None:
    """The suite's SIGHUP under nohup: nothing (see pytest_configure)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every integration and Engine API test needs root; a test marked
    `root` is skipped without it (one marker, declared in pyproject, instead
    of local skipifs)."""
    not_root = os.geteuid() != 0
    for item in items:
        if "integration" in str(item.fspath) or f"{os.sep}api{os.sep}" in str(item.fspath):
            item.add_marker(pytest.mark.root)
        if not_root and item.get_closest_marker("root") is not None:
            item.add_marker(pytest.mark.skip(reason="needs root"))


def delete_bridge(name: str) -> None:
    """Delete a bridge through overlayctl's own deletion, which also takes it
    out of the firewall's table (and the table with the last bridge)."""
    code = f"from overlayctl.network import netlink; netlink.delete_link({name!r}, 'bridge')"
    subprocess.run(
        [sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, check=True
    )


@pytest.fixture(scope="session", autouse=True)
def _test_bridge_removed() -> Iterator[None]:
    yield
    delete_bridge(TEST_BRIDGE)


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox-static root filesystem tar, made once per session."""
    out = tmp_path_factory.mktemp("base") / "busybox-rootfs.tar"
    subprocess.run(["sh", str(REPO / "scripts" / "busybox-rootfs.sh"), str(out)], check=True)
    return out


class CLI:
    """Runs `overlayctl` from this checkout against a private store."""

    def __init__(self, root: Path, runroot: Path) -> None:
        self.root = root
        self.runroot = runroot
        self.env = dict(
            os.environ,
            PYTHONPATH=str(REPO),
            OVERLAYCTL_BRIDGE_NAME=TEST_BRIDGE,
            OVERLAYCTL_BRIDGE_SUBNET=TEST_BRIDGE_SUBNET,
        )
        self.env.pop("OVERLAYCTL_ROOT", None)
        self.env.pop("OVERLAYCTL_RUNROOT", None)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "overlayctl", "--root", str(self.root), "--runroot", str(self.runroot), *args]

    def __call__(
        self, *args: str, input: bytes | None = None, timeout: float = 60, **kw
    ) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), input=input, capture_output=True, timeout=timeout, env=self.env, **kw)

    def ok(self, *args: str, **kw) -> str:
        result = self(*args, **kw)
        assert result.returncode == 0, (args, result.returncode, result.stdout, result.stderr)
        return result.stdout.decode()


def _overlay_mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if str(path) in line]


def _processes_using(path: Path) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if str(path).encode() in f.read():
                    pids.append(int(entry))
        except OSError:
            pass
    return pids


def _container_ids(cli: CLI) -> list[str]:
    """Every container of the store: what `ps -aq --no-trunc` lists, read
    from the catalog without an interpreter's start for each test; asked of
    `ps` when the catalog cannot be read (a test broke or removed it)."""
    if not cli.root.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{cli.root / 'catalog.db'}?mode=ro", uri=True)
        try:
            return [row[0] for row in conn.execute("SELECT id FROM containers")]
        finally:
            conn.close()
    except sqlite3.Error:
        return cli("ps", "-aq", "--no-trunc").stdout.decode().split()


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[CLI]:
    """The CLI on a fresh store; afterwards every container is removed and
    the host is checked for leftovers (and cleaned, so one failure does not
    cascade)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: overlayfs and namespaces")
    c = CLI(tmp_path / "root", tmp_path / "run")
    yield c
    ids = _container_ids(c)
    if ids:
        c("rm", "-f", *ids)
    leftovers = _processes_using(tmp_path)
    for pid in leftovers:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    mounts = _overlay_mounts_under(tmp_path)
    assert not leftovers, f"processes left behind: {leftovers}"
    assert not mounts, f"mounts left on the host: {mounts}"


@pytest.fixture(scope="session")
def _bb_store(busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A store holding only busybox imported as bb:1 (made once per session
    by `import`, as each test made its own before), and the image's ID."""
    if os.geteuid() != 0:
        pytest.skip("needs root: overlayfs and namespaces")
    base = tmp_path_factory.mktemp("bb-store")
    made = CLI(base / "root", base / "run")
    image = made.ok("import", str(busybox_tar), "bb:1").strip()
    assert not _processes_using(base) and not _overlay_mounts_under(base)
    return made.root, image


@pytest.fixture
def bb(cli: CLI, busybox_tar: Path, _bb_store: tuple[Path, str]) -> str:
    """The busybox image imported as bb:1; returns its image ID.

    A copy of the session's store with it (cp -a: owners, modes, times,
    xattrs and busybox's hard links as import left them) when the test's
    store is not made yet: most tests start so, and an import costs a few
    tenths of a second each. A store already in use (a service started on
    it first) gets its own import."""
    template, image = _bb_store
    if cli.root.exists():
        return cli.ok("import", str(busybox_tar), "bb:1").strip()
    subprocess.run(["cp", "-a", "--", str(template), str(cli.root)], check=True, capture_output=True)
    return image


def static_program(source: Path, out_dir: Path) -> Path:
    """A small attack or probe program, built static from C so that it
    runs in the busybox image (which has no C library)."""
    import shutil

    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the escape tests (scripts/setup.sh installs it)")
    out = out_dir / source.stem
    subprocess.run(["gcc", "-static", "-O1", "-o", str(out), str(source)], check=True, capture_output=True)
    return out


def image_with_program(cli: CLI, program: Path, ctx_parent: Path) -> str:
    """bb:1 with `program` at /<its name>, tagged <its name>:1."""
    import shutil

    ctx = ctx_parent / f"{program.name}-ctx"
    ctx.mkdir()
    shutil.copy2(program, ctx / program.name)
    (ctx / "Dockerfile").write_text(f"FROM bb:1\nCOPY {program.name} /{program.name}\n")
    tag = f"{program.name}:1"
    cli.ok("build", "-q", "-t", tag, str(ctx))
    return tag


RunFn = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def outside_world() -> Iterator[OutsideWorld]:
    """A simulated internet for the test (tests/networld.py): a network
    namespace behind a veth, with no route back to any container subnet."""
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces")
    with OutsideWorld() as world:
        yield world

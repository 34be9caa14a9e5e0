"""Reading a live container's writable layer never follows its symlinks out.

A container swaps directories and symlinks to a host directory in a tight
loop (escape/swapper.c, renameat2 RENAME_EXCHANGE) while `commit` and
`diff` read its upper dir from the host. A walker that checks a name and
then uses it by path reads the host directory through the symlink (both
race tests fail against the path walkers overlayctl had, and the commit one
also with openat2's RESOLVE flags dropped); one that opens every name
beneath a directory fd with no symlink followed cannot. `export` refuses a
running container, so its test checks the stopped tree's symlinks are
kept as symlinks. And commit pauses the container unless told not to.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.conftest import image_with_program, static_program

SWAPPER_SOURCE = Path(__file__).parent / "swapper.c"
NONE = ("--network", "none")
ROUNDS = 50


@pytest.fixture(scope="module")
def swapper_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return static_program(SWAPPER_SOURCE, tmp_path_factory.mktemp("swapper"))


@pytest.fixture
def swapper_image(cli, bb, swapper_binary, tmp_path) -> str:
    return image_with_program(cli, swapper_binary, tmp_path)


@pytest.fixture
def token() -> str:
    return os.urandom(8).hex()


def _host_dir(parent: Path, token: str, *names: str) -> Path:
    """A host directory whose sub/ holds files `names` with the token as
    content (as long as the container's own: the swapper's CONTENT)."""
    d = parent / "host-side"
    (d / "sub").mkdir(parents=True)
    for name in names:
        (d / "sub" / name).write_text(f"HOST-{token}\n")
    return d


def _start_swapper(cli, image: str, target: Path) -> str:
    cli.ok("run", "-d", "--name", "swap", *NONE, image, "/swapper", "/data", str(target))
    deadline = time.monotonic() + 30
    while "swapping" not in cli.ok("logs", "swap"):
        assert time.monotonic() < deadline, cli.ok("logs", "swap")
        time.sleep(0.05)
    return "swap"


def _leaks_in_tree(root: Path, token: str) -> list[str]:
    """Paths under root whose name or content carries the host's token."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if token in name:
                found.append(path)
            elif name in filenames and os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    if token.encode() in f.read():
                        found.append(path)
    return found


def _leaks_in_tar(path: Path, token: str) -> list[str]:
    found = []
    with tarfile.open(path) as tar:
        for member in tar:
            if token in member.name:
                found.append(member.name)
            elif member.isfile():
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                if token.encode() in data:
                    found.append(member.name)
    return found


def _race(cli, image: str, target: Path, *command: str) -> list[subprocess.CompletedProcess]:
    """Run `command CONTAINER` ROUNDS times while the container swaps."""
    name = _start_swapper(cli, image, target)
    results = [cli(*command, name) for _ in range(ROUNDS)]
    # Still swapping at the end: every run was raced.
    assert json.loads(cli.ok("inspect", name))[0]["State"]["Status"] == "running"
    assert cli.ok("logs", name) == "swapping\n"
    cli.ok("stop", "-t", "1", name)
    return results


def _check_refusals(results: list[subprocess.CompletedProcess]) -> None:
    """A race may be refused (how many depends on the machine's load), but
    with a message that says so, never another error."""
    failed = [r.stderr.decode().strip() for r in results if r.returncode != 0]
    assert all("while being read" in err for err in failed), failed


def _leaks_in_output(results: list[subprocess.CompletedProcess], token: str) -> list[str]:
    # A host name in an error message is a leak too.
    return [line for r in results for line in (r.stdout + r.stderr).decode().splitlines() if token in line]


@pytest.mark.slow
def test_commit_never_reads_a_host_file_through_a_swapped_symlink(cli, swapper_image, token, tmp_path):
    # The host files have the names of the container's own dN/sub/secret-MM:
    # a path walker that lists dN/sub as a directory finds those names
    # whichever way the swap stands, and then reads the host's file if dN is
    # the symlink when it opens dN/sub/secret-MM.
    target = _host_dir(tmp_path, token, *(f"secret-{i:02d}" for i in range(8)))
    # --pause=false: frozen, the container could not race the walker.
    results = _race(cli, swapper_image, target, "commit", "--pause=false")
    layer_leaks = _leaks_in_tree(cli.root / "layers", token)
    print(f"{sum(r.returncode == 0 for r in results)}/{ROUNDS} committed; leaks: {layer_leaks}")
    assert not layer_leaks, layer_leaks
    assert not _leaks_in_output(results, token)
    _check_refusals(results)


@pytest.mark.slow
def test_diff_never_lists_a_host_directory_through_a_swapped_symlink(cli, swapper_image, token, tmp_path):
    target = _host_dir(tmp_path, token, f"host-only-{token}")
    results = _race(cli, swapper_image, target, "diff")
    leaks = _leaks_in_output(results, token)
    print(f"{sum(r.returncode == 0 for r in results)}/{ROUNDS} listed; leaks: {leaks[:3]}")
    assert not leaks, leaks
    _check_refusals(results)


@pytest.mark.slow
def test_export_keeps_the_container_symlink_as_a_symlink(cli, swapper_image, token, tmp_path):
    target = _host_dir(tmp_path, token, f"host-only-{token}")
    name = _start_swapper(cli, swapper_image, target)
    cli.ok("stop", "-t", "1", name)
    out = tmp_path / "export.tar"
    cli.ok("export", "-o", str(out), name)
    assert _leaks_in_tar(out, token) == []
    with tarfile.open(out) as tar:
        links = {m.name: m.linkname for m in tar if m.issym() and m.name.startswith("data/")}
        dirs = {m.name for m in tar if m.isdir() and m.name.startswith("data/") and m.name.count("/") == 1}
        names = set(tar.getnames())
    # Whichever way round each swap stopped, of dN and lN one is the
    # directory and the other the symlink, kept as it is.
    pairs = {f"data/d{n}" for n in range(8)} | {f"data/l{n}" for n in range(8)}
    assert len(links) == 8 and set(links.values()) == {str(target)}, links
    assert dirs == pairs - set(links), dirs
    assert all(f"{d}/sub/secret-07" in names for d in dirs), names


def _paused_while_committing(cli, name: str, gate: Path, *flags: str) -> bool:
    """Commit `name`, stopped (by a fault point) after its upper dir is read:
    whether the container was paused at that moment."""
    env = dict(cli.env, OVERLAYCTL_FAULTS=f"commit-spooled=pause:{gate}")
    proc = subprocess.Popen(cli.argv("commit", *flags, name), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        reached = Path(f"{gate}.reached")
        deadline = time.monotonic() + 60
        while not reached.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "commit never reached commit-spooled"
            time.sleep(0.02)
        return json.loads(cli.ok("inspect", name))[0]["State"]["Paused"]
    finally:
        gate.touch()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err


@pytest.mark.slow
def test_commit_pauses_a_running_container_unless_told_not_to(cli, bb, tmp_path):
    # (It writes nothing: unpaused, a file it rewrote during the commit
    # would fail it, rightly.)
    cli.ok("run", "-d", "--name", "busy", *NONE, "bb:1", "sh", "-c", "echo up > /up; while :; do sleep 0.05; done")
    assert _paused_while_committing(cli, "busy", tmp_path / "gate1") is True
    assert json.loads(cli.ok("inspect", "busy"))[0]["State"]["Status"] == "running"
    assert _paused_while_committing(cli, "busy", tmp_path / "gate2", "--pause=false") is False
    assert _paused_while_committing(cli, "busy", tmp_path / "gate3", "-p=false") is False
    # A container the user paused is committed as it is, and stays paused.
    cli.ok("pause", "busy")
    assert _paused_while_committing(cli, "busy", tmp_path / "gate4", "--pause=false") is True
    assert json.loads(cli.ok("inspect", "busy"))[0]["State"]["Status"] == "paused"
    assert _paused_while_committing(cli, "busy", tmp_path / "gate5") is True
    assert json.loads(cli.ok("inspect", "busy"))[0]["State"]["Status"] == "paused"
    cli.ok("unpause", "busy")


@pytest.mark.slow
def test_a_failed_commit_thaws_the_container_it_paused(cli, bb):
    # A name the layer tar reserves for whiteouts: the writer refuses it
    # while the container is frozen.
    cli.ok("run", "-d", "--name", "odd", *NONE, "bb:1", "sh", "-c", "touch /.wh.odd; while :; do sleep 0.05; done")
    deadline = time.monotonic() + 30
    while "A /.wh.odd" not in cli.ok("diff", "odd"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    result = cli("commit", "odd", "odd:1")
    assert result.returncode == 125 and b"reserve for whiteouts" in result.stderr, result.stderr
    assert json.loads(cli.ok("inspect", "odd"))[0]["State"]["Status"] == "running"

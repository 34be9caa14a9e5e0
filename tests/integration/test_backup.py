"""The catalog's backups, a damaged catalog told as such, restoring one, and
stores a command cannot use (--root naming a file, a missing parent, a
read-only filesystem)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CLI

NONE = ("--network", "none")


def names(cli: CLI) -> list[str]:
    out = cli.ok("ps", "-a", "--format", "json")
    return sorted(json.loads(line)["Names"] for line in out.splitlines())


def one_line_error(result: subprocess.CompletedProcess) -> str:
    err = result.stderr.decode()
    assert result.returncode == 125, (result.returncode, result.stdout, err)
    assert err.count("\n") == 1 and err.startswith("overlayctl: "), err
    assert "internal error" not in err and "Traceback" not in err, err
    return err


def checkpointed(cli: CLI) -> None:
    """Fold the WAL into catalog.db, so damage done to the file is all there is."""
    conn = sqlite3.connect(cli.root / "catalog.db")
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    for suffix in ("-wal", "-shm"):
        (cli.root / f"catalog.db{suffix}").unlink(missing_ok=True)


def garbage(cli: CLI) -> None:
    checkpointed(cli)
    (cli.root / "catalog.db").write_bytes(os.urandom(16384))


def truncated(cli: CLI) -> None:
    checkpointed(cli)
    path = cli.root / "catalog.db"
    os.truncate(path, path.stat().st_size // 3)


COMMANDS = (
    ("ps", "-a"),
    ("image", "ls"),
    ("run", "--rm", *NONE, "bb:1", "true"),
    ("build", "-q", "-t", "x:1", "."),
    ("system", "fsck"),
    ("system", "fsck", "--repair"),
    ("system", "gc"),
    ("system", "backup"),
)


@pytest.mark.parametrize("damage", [garbage, truncated])
def test_every_command_says_the_catalog_is_damaged_and_the_way_back(cli, bb, tmp_path, damage):
    (tmp_path / "Dockerfile").write_text("FROM bb:1\n")
    good = cli.ok("system", "backup").strip()
    layers = sorted(os.listdir(cli.root / "layers"))
    damage(cli)
    for command in COMMANDS:
        err = one_line_error(cli(*command, cwd=tmp_path))
        assert f"the catalog at {cli.root / 'catalog.db'} is damaged (SQLite: " in err, (command, err)
        assert f'"overlayctl --root {cli.root} system restore" ({good})' in err, (command, err)
    assert sorted(os.listdir(cli.root / "layers")) == layers
    out = cli.ok("system", "restore")
    assert out.startswith(f"restored: {good}\nkept aside: {cli.root / 'catalog.db.damaged-'}"), out
    assert cli.ok("run", "--rm", *NONE, "bb:1", "echo", "ok") == "ok\n"


def test_restore_keeps_what_the_backup_does_not_know_and_puts_it_back(cli, bb, busybox_tar, tmp_path):
    cli.ok("create", "--name", "old", *NONE, "bb:1", "true")
    before = cli.ok("system", "backup").strip()
    # Made after the backup: a layer (of a built image) and a container.
    (tmp_path / "Dockerfile").write_text("FROM bb:1\nRUN echo new > /new\n")
    cli.ok("build", "-q", "-t", "new:1", str(tmp_path))
    cli.ok("create", "--name", "young", *NONE, "new:1", "true")
    after = cli.ok("system", "backup").strip()
    new_layers = set(os.listdir(cli.root / "layers"))
    garbage(cli)

    out = cli.ok("system", "restore", os.path.basename(before))
    moved = [line for line in out.splitlines() if "not in the restored catalog" in line]
    assert len(moved) == 2 and all("(nothing deleted)" in line for line in moved), out
    kept = cli.root / "kept-after-restore"
    assert len(os.listdir(kept / "layers")) == 1 and len(os.listdir(kept / "containers")) == 1
    # A kept layer says what it is: its diff_id is written beside it.
    (layer,) = os.listdir(kept / "layers")
    diff_id = (kept / "layers" / layer / "diff_id").read_text().strip()
    assert diff_id.startswith("sha256:" + layer) and f"(layer {diff_id})" in out
    assert names(cli) == ["old"]
    # Nothing of it is garbage to fsck: it is out of the store's directories.
    assert cli("system", "fsck").returncode == 0
    assert os.listdir(kept / "layers")

    # Restoring the newer backup puts them back where its rows say.
    out = cli.ok("system", "restore", after)
    assert out.count("put back from kept-after-restore") == 2, out
    assert set(os.listdir(cli.root / "layers")) == new_layers
    assert names(cli) == ["old", "young"]
    assert cli.ok("run", "--rm", *NONE, "new:1", "cat", "/new") == "new\n"


def test_restore_forgets_a_container_whose_directory_is_gone(cli, bb):
    cid = cli.ok("create", "--name", "gone", *NONE, "bb:1", "true").strip()
    cli.ok("system", "backup")
    cli.ok("rm", "gone")
    out = cli.ok("system", "restore")
    assert f"forgotten: container gone ({cid[:12]}): its directory is gone" in out
    assert cli.ok("ps", "-aq") == ""


def test_restore_refuses_while_a_container_runs(cli, bb):
    cli.ok("system", "backup")
    cli.ok("run", "-d", "--name", "busy", *NONE, "bb:1", "sleep", "60")
    try:
        err = one_line_error(cli("system", "restore"))
        assert "1 containers are running" in err and "stop them before restoring" in err
        assert not list(cli.root.glob("catalog.db.damaged-*"))
    finally:
        cli("rm", "-f", "busy")


def test_restore_of_a_missing_or_damaged_backup_changes_nothing(cli, bb, tmp_path):
    err = one_line_error(cli("system", "restore"))
    assert "no good backup of the catalog is kept in" in err
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"x" * 4096)
    err = one_line_error(cli("system", "restore", str(bad)))
    assert f"the backup {bad} is damaged too" in err
    assert cli.ok("images", "-q")


def test_backups_are_consistent_copies_and_gc_keeps_the_newest(cli, bb):
    made = [cli.ok("system", "backup").strip() for _ in range(7)]
    assert len(set(made)) == 7 and all(Path(p).parent == cli.root / "backups" for p in made)
    conn = sqlite3.connect(made[-1])
    try:
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("SELECT name FROM tags").fetchall() == [("bb:1",)]
    finally:
        conn.close()
    out = cli.ok("system", "gc")
    assert out.count("old catalog backup") == 2, out
    assert sorted(str(p) for p in (cli.root / "backups").iterdir()) == sorted(made[2:])


def test_fsck_names_the_newest_good_backup_when_it_finds_problems(cli, bb):
    made = cli.ok("system", "backup").strip()
    (cli.root / "backups" / "catalog-99999999T999999.999Z-manual.db").write_bytes(b"not sqlite" * 500)
    (cli.root / "layers" / "0123456789abcdef").mkdir()
    cli.env["OVERLAYCTL_FSCK_GRACE"] = "0"
    result = cli("system", "fsck")
    assert result.returncode == 1
    assert f"catalog backup: {made} (the newest good one" in result.stdout.decode()


# -- stores a command cannot use ---------------------------------------------------


def test_root_and_runroot_that_cannot_be_a_store(cli, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    cases = [
        (("--root", str(a_file)), f"--root {a_file} is not a directory"),
        (("--root", str(tmp_path / "no" / "root")), f"its parent directory {tmp_path / 'no'} does not exist"),
        (("--root", str(a_file / "root")), f"its parent directory {a_file} is not a directory"),
        (("--runroot", str(a_file)), f"--runroot {a_file} is not a directory"),
        (("--runroot", str(tmp_path / "no" / "run")), f"its parent directory {tmp_path / 'no'} does not exist"),
    ]
    for option, expected in cases:
        base = {"--root": str(tmp_path / "root"), "--runroot": str(tmp_path / "run")}
        base[option[0]] = option[1]
        for command in (("ps",), ("run", "--rm", "bb:1", "true")):
            argv = [cli.argv()[0], "-m", "overlayctl", "--root", base["--root"], "--runroot", base["--runroot"]]
            result = subprocess.run([*argv, *command], capture_output=True, env=cli.env, timeout=60)
            assert expected in one_line_error(result), (option, command)
    # A missing root inside an existing directory is made, as Docker does.
    fresh = tmp_path / "fresh"
    argv = [cli.argv()[0], "-m", "overlayctl", "--root", str(fresh), "--runroot", str(tmp_path / "run")]
    assert subprocess.run([*argv, "ps"], capture_output=True, env=cli.env, timeout=60).returncode == 0
    assert (fresh / "catalog.db").is_file()


@pytest.fixture
def tmpfs_store(tmp_path: Path):
    """A CLI whose store is on a tmpfs the test can remount read-only."""
    mount = tmp_path / "fs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        yield CLI(mount / "root", tmp_path / "run"), mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.mark.parametrize("closed", [True, False], ids=["checkpointed", "with-wal"])
def test_a_read_only_store_reads_and_refuses_writes_in_one_line(tmpfs_store, busybox_tar, closed):
    cli, mount = tmpfs_store
    cli.ok("import", str(busybox_tar), "bb:1")
    cli.ok("run", "--name", "done", *NONE, "bb:1", "true")
    if not closed:
        # `run` leaves without closing the catalog: its WAL and -shm stay.
        cli.ok("run", "--rm", *NONE, "bb:1", "true")
        assert (cli.root / "catalog.db-wal").exists()
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    assert "done" in cli.ok("ps", "-a")
    assert "bb" in cli.ok("image", "ls")
    assert cli.ok("inspect", "done")
    assert cli.ok("image", "history", "bb:1")
    assert cli.ok("system", "df")
    assert cli.ok("system", "fsck") == "no problems found\n"
    for command in (
        ("run", "--rm", *NONE, "bb:1", "true"),
        ("create", *NONE, "bb:1", "true"),
        ("rm", "done"),
        ("rmi", "-f", "bb:1"),
        ("import", str(busybox_tar), "bb:2"),
        ("system", "backup"),
    ):
        err = one_line_error(cli(*command))
        assert f"the store at {cli.root} is on a read-only filesystem" in err, (command, err)


def test_a_catalog_that_is_not_a_file(cli):
    (cli.root / "catalog.db").mkdir(parents=True)
    for command in (("ps",), ("run", "--rm", "bb:1", "true")):
        err = one_line_error(cli(*command))
        assert f"the catalog at {cli.root / 'catalog.db'} is not a regular file" in err

"""`system fsck`: each kind of damage a crash or a hand can do to a store,
found, named, and repaired where nothing is lost by it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

import pytest

NONE = ("--network", "none")


def fsck(cli, *args: str, grace: str = "0"):
    cli.env["OVERLAYCTL_FSCK_GRACE"] = grace
    try:
        result = cli("system", "fsck", *args)
    finally:
        cli.env.pop("OVERLAYCTL_FSCK_GRACE")
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def layer_dirs(cli, image: str) -> list[str]:
    conn = sqlite3.connect(cli.root / "catalog.db")
    try:
        image_id = json.loads(cli.ok("image", "inspect", image))[0]["Id"]
        rows = conn.execute(
            "SELECT l.dir FROM image_layers il JOIN layers l ON l.diff_id = il.diff_id "
            "WHERE il.image_id = ? ORDER BY il.position",
            (image_id,),
        ).fetchall()
    finally:
        conn.close()
    return [str(cli.root / "layers" / row[0]) for row in rows]


def test_a_used_store_is_clean(cli, bb):
    cli.ok("volume", "create", "v1")
    cli.ok("create", "--name", "c1", *NONE, "-v", "v1:/data", "bb:1", "true")
    cli.ok("run", "--rm", *NONE, "bb:1", "true")
    assert fsck(cli, "--verify-content") == (0, "no problems found\n", "")


def test_crash_leftovers_are_found_and_removed(cli, bb):
    layers = cli.root / "layers"
    (layers / "0123456789abcdef" / "diff").mkdir(parents=True)
    dead = 4194303 + 1  # above pid_max's ceiling: never a living process
    (cli.root / "tmp" / f"load-{dead}-abcdef").mkdir()
    (cli.root / "containers" / ("f" * 64) / "upper").mkdir(parents=True)
    empty_volume = cli.root / "volumes" / "crashed" / "_data"
    empty_volume.mkdir(parents=True)
    rc, out, _ = fsck(cli)
    assert rc == 1
    assert f"orphan layer directory: {layers / '0123456789abcdef'}" in out
    assert f"staging leftover: {cli.root / 'tmp' / f'load-{dead}-abcdef'} (its process {dead} is gone)" in out
    assert "orphan container directory: " in out and "orphan volume directory: " in out
    assert out.count("repairable with --repair") == 4
    # Within the grace period a directory may be a command's work in progress.
    rc, out, _ = fsck(cli, grace="3600")
    assert "orphan container directory" not in out
    rc, out, _ = fsck(cli, "--repair")
    assert rc == 0 and out.count(": repaired") == 4, out
    assert not (layers / "0123456789abcdef").exists() and not empty_volume.exists()
    assert os.listdir(cli.root / "tmp") == []
    assert fsck(cli)[:2] == (0, "no problems found\n")
    assert cli.ok("run", "--rm", *NONE, "bb:1", "echo", "ok") == "ok\n"


def test_a_volume_directory_with_data_is_never_deleted(cli, bb):
    data = cli.root / "volumes" / "precious" / "_data"
    data.mkdir(parents=True)
    (data / "db").write_text("rows")
    rc, out, _ = fsck(cli, "--repair")
    assert rc == 1 and "orphan volume directory" in out and "it holds data, so it is kept" in out
    assert (data / "db").read_text() == "rows"


def test_verify_content_names_the_damaged_file_and_its_images(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb:1\nRUN echo hello > /greeting\n")
    cli.ok("build", "-q", "-t", "app:1", str(ctx))
    top = layer_dirs(cli, "app:1")[-1]
    with open(os.path.join(top, "diff", "greeting"), "a") as f:
        f.write("tampered\n")
    # Without reading content, a changed file goes unseen.
    assert fsck(cli)[0] == 0
    rc, out, _ = fsck(cli, "--verify-content")
    assert rc == 1
    assert "layer damaged: sha256:" in out and "changed: greeting" in out and "used by: app:1" in out
    # Nothing to repair there: the layer is reported, not deleted.
    rc, out, _ = fsck(cli, "--repair", "--verify-content")
    assert rc == 1 and os.path.isdir(os.path.join(top, "diff"))
    # A removed file and an added one are named too.
    os.unlink(os.path.join(top, "diff", "greeting"))
    open(os.path.join(top, "diff", "extra"), "w").close()
    out = fsck(cli, "--verify-content")[1]
    assert "missing: greeting" in out and "added: extra" in out


def test_a_lost_layer_names_the_broken_images(cli, bb):
    base = layer_dirs(cli, "bb:1")[0]
    os.rename(base, base + ".moved")
    try:
        rc, out, _ = fsck(cli, "--repair")
        assert rc == 1
        assert "layer missing: sha256:" in out and "broken: bb:1" in out
        # Not a name overlayctl gives: someone else's, so it is kept.
        assert f"unknown entry: {base}.moved (not a name overlayctl gives a layer; kept)" in out
    finally:
        os.rename(base + ".moved", base)
    assert fsck(cli)[0] == 0


def test_blobs_missing_or_orphaned(cli, bb, tmp_path):
    archive = tmp_path / "bb.tar"
    cli.ok("save", "-o", str(archive), "bb:1")
    cli.ok("rmi", "bb:1")
    cli.ok("load", "-q", "-i", str(archive))
    blobs = cli.root / "blobs" / "sha256"
    (kept,) = os.listdir(blobs)
    os.unlink(blobs / kept)
    (blobs / ("0" * 64)).write_bytes(b"stray")
    rc, out, _ = fsck(cli)
    assert rc == 1 and f"blob missing: sha256:{kept}" in out and f"orphan blob: {blobs / ('0' * 64)}" in out
    assert fsck(cli, "--repair")[0] == 0
    assert os.listdir(blobs) == []
    # The image still runs; its save, without the tar it came as, either
    # writes the layer anew or says in one line why it cannot.
    assert cli.ok("run", "--rm", *NONE, "bb:1", "echo", "ok") == "ok\n"
    result = cli("save", "-o", str(tmp_path / "again.tar"), "bb:1")
    assert result.returncode == 0 or (
        result.returncode == 125 and b"no copy of the tar it was made from is kept" in result.stderr
    )


@pytest.mark.usefixtures("bb")
def test_a_container_whose_processes_died_is_recorded_as_exited(cli):
    cli.ok("run", "-d", "--name", "gone", *NONE, "bb:1", "sleep", "300")
    conn = sqlite3.connect(cli.root / "catalog.db")
    try:
        pid, supervisor = conn.execute("SELECT pid, supervisor_pid FROM containers WHERE name = 'gone'").fetchone()
        os.kill(supervisor, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.05)
        rc, out, _ = fsck(cli)
        assert rc == 1 and "container not running: gone (recorded as running; no process of it is left)" in out
        assert conn.execute("SELECT status FROM containers WHERE name = 'gone'").fetchone()[0] == "running"
        rc, out, _ = fsck(cli, "--repair")
        assert rc == 0, out
        assert conn.execute("SELECT status FROM containers WHERE name = 'gone'").fetchone()[0] == "exited"
    finally:
        conn.close()
    cli.ok("rm", "-f", "gone")


# -- a catalog that lost what the disk holds: repair deletes nothing --------------


def test_an_emptied_catalog_is_refused_and_nothing_is_deleted(cli, bb):
    cli.ok("create", "--name", "c1", *NONE, "bb:1", "true")
    backup = cli.ok("system", "backup").strip()
    layers = sorted(os.listdir(cli.root / "layers"))
    for suffix in ("-wal", "-shm"):
        (cli.root / f"catalog.db{suffix}").unlink(missing_ok=True)
    (cli.root / "catalog.db").write_bytes(b"")
    rc, out, err = fsck(cli, "--repair")
    assert rc == 125 and out == ""
    assert err.count("\n") == 1, err
    assert "is empty but layers/ holds 1 layers and containers/ 1 containers; refusing" in err
    assert "(nothing deleted)" in err and "system restore" in err and backup in err
    assert sorted(os.listdir(cli.root / "layers")) == layers
    assert len(os.listdir(cli.root / "containers")) == 1
    # The way back the line gives works, and the store is whole again.
    cli.ok("system", "restore")
    assert fsck(cli)[:2] == (0, "no problems found\n")
    assert cli.ok("run", "--rm", *NONE, "bb:1", "echo", "back") == "back\n"


def test_a_catalog_with_its_rows_gone_is_refused(cli, bb):
    conn = sqlite3.connect(cli.root / "catalog.db")
    try:
        for table in ("tags", "image_layers", "layer_blobs", "image_manifests", "build_cache", "images", "layers"):
            conn.execute(f"DELETE FROM {table}")
        conn.commit()
    finally:
        conn.close()
    layers = sorted(os.listdir(cli.root / "layers"))
    for args in (("system", "fsck", "--repair"), ("system", "gc"), ("system", "gc", "--dry-run")):
        result = cli(*args)
        err = result.stderr.decode()
        assert result.returncode == 125 and "is empty but layers/ holds 1 layers" in err, err
        assert "refusing to repair (nothing deleted)" in err and "good backup is kept in" in err
        assert sorted(os.listdir(cli.root / "layers")) == layers


def test_repair_refuses_to_delete_more_orphans_than_crashes_leave(cli, bb):
    layers = cli.root / "layers"
    fakes = [f"{i:016x}" for i in range(12)]
    for name in fakes:
        (layers / name / "diff").mkdir(parents=True)
    rc, out, err = fsck(cli, "--repair")
    assert rc == 125 and "missing 12 of the directories on disk (1 named)" in err and "refusing to repair" in err
    assert all((layers / name).is_dir() for name in fakes)
    # A few are crash leftovers, and go.
    for name in fakes[3:]:
        os.rename(layers / name, cli.root / name)
    rc, out, _ = fsck(cli, "--repair")
    assert rc == 0 and out.count("orphan layer directory") == 3 and out.count(": repaired") == 3, out
    assert not any((layers / name).exists() for name in fakes)

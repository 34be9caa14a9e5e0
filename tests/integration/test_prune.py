"""Prune and gc: what goes, what stays, and that the bytes they report and
what `system df` then shows agree with du."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path

from tests.integration.test_df import df, du, hold_catalog

NONE = ("--network", "none")


def build(cli, tmp_path: Path, tag: str, text: str) -> str:
    ctx = tmp_path / f"ctx-{os.urandom(3).hex()}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM bb:1\nRUN echo '{text}' > /marker && head -c 200000 /dev/urandom > /r\n")
    cli.ok("build", "-q", "-t", tag, str(ctx))
    return json.loads(cli.ok("image", "inspect", tag))[0]["Id"]


def image_ids(cli) -> set[str]:
    return set(cli.ok("images", "-q", "--no-trunc").split())


def assert_df_is_du(cli) -> dict:
    conn = hold_catalog(cli.root)
    try:
        report, total = df(cli), du(cli.root)
    finally:
        conn.close()
    assert report["Total"] == total
    return report


def test_container_prune_removes_the_stopped_ones_only(cli, bb):
    cli.ok("run", "--name", "done", *NONE, "bb:1", "sh", "-c", "head -c 300000 /dev/zero > /z")
    cli.ok("create", "--name", "idle", *NONE, "bb:1", "true")
    up = cli.ok("run", "-d", "--name", "up", *NONE, "bb:1", "sleep", "60").strip()
    ids = {name: json.loads(cli.ok("inspect", name))[0]["Id"] for name in ("done", "idle")}
    sizes = sum(du(cli.root / "containers" / cid) for cid in ids.values())
    out = cli.ok("container", "prune", "-f")
    lines = out.splitlines()
    assert lines[0] == "Deleted Containers:" and set(lines[1:3]) == set(ids.values())
    assert cli.ok("ps", "-aq", "--no-trunc").split() == [up]
    assert sorted(os.listdir(cli.root / "containers")) == [up]
    from overlayctl.util.humanize import human_size

    assert lines[-1] == f"Total reclaimed space: {human_size(sizes)}"
    cli.ok("rm", "-f", "up")


def test_image_prune_takes_dangling_images_and_their_own_layers(cli, bb, tmp_path):
    old = build(cli, tmp_path, "app:1", "one")
    new = build(cli, tmp_path, "app:1", "two")  # the tag moves: the old image dangles
    used = build(cli, tmp_path, "used:1", "three")
    cli.ok("create", "--name", "user", *NONE, "used:1", "true")
    top = json.loads(cli.ok("image", "inspect", old))[0]["RootFS"]["Layers"][-1]
    out = cli.ok("image", "prune", "-f").splitlines()
    assert out[:3] == ["Deleted Images:", f"deleted: {old}", f"deleted: {top}"], out
    assert image_ids(cli) == {bb, new, used}
    assert_df_is_du(cli)
    # -a: every image no container uses; the base layer stays for used:1.
    out = cli.ok("image", "prune", "-a", "-f").splitlines()
    assert "untagged: app:1" in out and f"deleted: {new}" in out and "untagged: bb:1" in out
    assert image_ids(cli) == {used}
    assert cli.ok("run", "--rm", *NONE, "used:1", "cat", "/marker") == "three\n"
    assert_df_is_du(cli)
    cli.ok("rm", "user")


def test_gc_dry_run_lists_every_item_with_reason_and_size_then_gc_removes_them(cli, bb, tmp_path):
    old = build(cli, tmp_path, "app:1", "one")
    build(cli, tmp_path, "app:1", "two")
    old_top = json.loads(cli.ok("image", "inspect", old))[0]["RootFS"]["Layers"][-1]
    # A layer no image uses: its image's rows went, the layer's did not (a crash).
    stray = build(cli, tmp_path, "stray:1", "four")
    stray_top = json.loads(cli.ok("image", "inspect", stray))[0]["RootFS"]["Layers"][-1]
    conn = sqlite3.connect(cli.root / "catalog.db")
    with conn:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("DELETE FROM tags WHERE image_id = ?", (stray,))
        conn.execute("DELETE FROM image_layers WHERE image_id = ?", (stray,))
        conn.execute("DELETE FROM images WHERE id = ?", (stray,))
        stray_dir = conn.execute("SELECT dir FROM layers WHERE diff_id = ?", (stray_top,)).fetchone()[0]
        old_dir = conn.execute("SELECT dir FROM layers WHERE diff_id = ?", (old_top,)).fetchone()[0]
    conn.close()
    # Crash leftovers (after the builds: a build sweeps staging).
    orphan = cli.root / "layers" / ("ab" * 8)
    (orphan / "diff").mkdir(parents=True)
    (orphan / "diff" / "f").write_bytes(os.urandom(50000))
    leftover = cli.root / "tmp" / "build-4194304-000000"
    leftover.mkdir()
    (leftover / "half").write_bytes(os.urandom(30000))
    expected = {
        ("dangling image", old): 0,
        ("unreferenced layer", old_top): du(cli.root / "layers" / old_dir),
        ("unreferenced layer", stray_top): du(cli.root / "layers" / stray_dir),
        ("orphan directory", str(orphan)): du(orphan),
        ("staging leftover", str(leftover)): du(leftover),
    }
    cli.env["OVERLAYCTL_FSCK_GRACE"] = "0"
    before = du(cli.root)
    dry = cli.ok("system", "gc", "--dry-run").splitlines()
    assert du(cli.root) == before  # nothing removed
    from overlayctl.util.humanize import human_size

    assert dry[0].split() == ["REASON", "ITEM", "SIZE"]
    cells = [re.split(r"\s{3,}", line) for line in dry[1:-1]]
    rows = {(reason, item): size for reason, item, size in cells}
    assert rows == {key: human_size(size) for key, size in expected.items()}
    assert dry[-1] == f"Would remove 5 items, freeing {human_size(sum(expected.values()))}"
    out = cli.ok("system", "gc").splitlines()
    assert out[-1] == f"Removed 5 items. Total reclaimed space: {human_size(sum(expected.values()))}"
    assert not orphan.exists() and not leftover.exists()
    assert cli.ok("system", "gc", "--dry-run").splitlines() == ["Would remove 0 items, freeing 0B"]
    assert cli.ok("system", "fsck") == "no problems found\n"
    assert_df_is_du(cli)


def test_system_prune_all_volumes_leaves_only_what_is_in_use(cli, bb, tmp_path):
    build(cli, tmp_path, "app:1", "one")
    build(cli, tmp_path, "gone:1", "two")
    cli.ok("run", "-d", "--name", "up", *NONE, "-v", "/anon", "app:1", "sleep", "60")
    cli.ok("run", "--name", "old", *NONE, "-v", "/anon2", "gone:1", "true")
    cli.ok("volume", "create", "named")
    out = cli.ok("system", "prune", "-a", "--volumes", "-f")
    assert "Deleted Containers:" in out and "Deleted Volumes:" in out and "Deleted Images:" in out
    assert [json.loads(line)["Names"] for line in cli.ok("ps", "-a", "--format", "json").splitlines()] == ["up"]
    assert image_ids(cli) == {json.loads(cli.ok("image", "inspect", "app:1"))[0]["Id"]}
    volumes = cli.ok("volume", "ls", "-q").split()
    assert "named" in volumes and len(volumes) == 2  # named, and the running one's anonymous volume
    report = assert_df_is_du(cli)
    assert [i["Containers"] for i in report["Images"]] == [1]
    cli.ok("rm", "-f", "-v", "up")


def test_builder_prune_forgets_the_cache(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb:1\nRUN echo cached > /c\n")
    cli.ok("build", "-t", "c:1", str(ctx))
    assert "Using cache" in cli.ok("build", "-t", "c:1", str(ctx))
    out = cli.ok("builder", "prune", "-f").splitlines()
    assert out[0].startswith("Deleted: ") and "cached build steps" in out[0]
    assert "Using cache" not in cli.ok("build", "-t", "c:1", str(ctx))
    assert cli.ok("run", "--rm", *NONE, "c:1", "cat", "/c") == "cached\n"

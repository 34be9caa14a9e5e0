"""Each figure of docs/measurement.md is one figure: every command that
shows it (ps -s, inspect -s, image ls, image inspect, system df's table and
JSON, stats) shows the same bytes, and they are what GNU du says of the
real store. BLOCK I/O is the cgroup's device bytes, not the page cache
its processes dirtied."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from overlayctl.util.humanize import human_size
from tests.helpers import block_io_counted, device_bytes_written, store_device, wait_for

NONE = ("--network", "none")
MiB = 1 << 20


def du(*paths: Path) -> int:
    """du -s --block-size=1 of the paths together (--total: hard links once)."""
    out = subprocess.run(
        ["du", "-s", "-c", "--block-size=1", *map(str, paths)], capture_output=True, check=True, text=True
    ).stdout
    return int(out.splitlines()[-1].split()[0])


def layer_diffs(cli, image: str) -> list[Path]:
    """The diff/ directories of an image's layers, base first."""
    diff_ids = json.loads(cli.ok("image", "inspect", image))[0]["RootFS"]["Layers"]
    conn = sqlite3.connect(cli.root / "catalog.db")
    try:
        dirs = [conn.execute("SELECT dir FROM layers WHERE diff_id = ?", (d,)).fetchone()[0] for d in diff_ids]
    finally:
        conn.close()
    return [cli.root / "layers" / d / "diff" for d in dirs]


def table_rows(text: str, title: str) -> list[list[str]]:
    """The rows (split on runs of 3+ spaces) of one table of `system df -v`."""
    lines = text.split(title, 1)[1].strip("\n").split("\n\n", 1)[0].splitlines()
    return [re.split(r"\s{3,}", line.strip()) for line in lines[1:]]


def rows(text: str, title: str) -> dict[str, list[str]]:
    """table_rows by their last cell (a container's name)."""
    return {row[-1]: row for row in table_rows(text, title)}


@pytest.fixture
def store(cli, bb, tmp_path):
    """bb:1, child:1 on it (a 300 KiB layer of its own), a running and an
    exited container, each with a log."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb:1\nRUN dd if=/dev/zero of=/blob bs=1k count=300\n")
    cli.ok("build", "-q", "-t", "child:1", str(ctx))
    cli.ok("run", "--name", "gone", *NONE, "bb:1", "sh", "-c", "head -c 200000 /dev/urandom > /big; echo logged")
    cli.ok("run", "-d", "--name", "up", *NONE, "child:1", "sh", "-c", "echo up; echo hi > /x; touch /done; sleep 100")
    wait_for(lambda: (upper(cli, "up") / "done").exists(), what="up's writes")
    return cli


def upper(cli, name: str) -> Path:
    return cli.root / "containers" / cid(cli, name) / "upper"


def cid(cli, name: str) -> str:
    return json.loads(cli.ok("inspect", name))[0]["Id"]


def df_json(cli) -> dict:
    return json.loads(cli.ok("system", "df", "-v", "--format", "json"))


def test_container_size_is_the_upper_dir_everywhere(store):
    cli = store
    ps = {i["Names"]: i for i in map(json.loads, cli.ok("ps", "-a", "-s", "--format", "json").splitlines())}
    report = df_json(cli)
    in_df = {c["Names"][0]: c for c in report["Containers"]}
    table = rows(cli.ok("system", "df", "-v"), "Containers space usage:")
    for name in ("gone", "up"):
        size = du(upper(cli, name))
        inspected = json.loads(cli.ok("inspect", "-s", name))[0]
        assert ps[name]["SizeRw"] == inspected["SizeRw"] == in_df[name]["SizeRw"] == size, name
        assert table[name][4] == human_size(size)
        assert ps[name]["Size"].startswith(human_size(size) + " ")
    assert in_df["gone"]["SizeRw"] >= 200_000
    kinds = {k["Type"]: k for k in report["Types"]}
    assert kinds["Containers"]["Size"] == du(upper(cli, "gone"), upper(cli, "up"))
    # The rest of each container's directory (its overlay work dir, the
    # directory itself) is metadata, beside its size and logs.
    for name in ("gone", "up"):
        directory = cli.root / "containers" / cid(cli, name)
        assert in_df[name]["MetadataSize"] == du(directory) - du(upper(cli, name)) - in_df[name]["LogSize"]


def test_image_size_shared_and_unique_are_the_layers_diffs(store):
    cli = store
    listed = {i["Repository"]: i for i in map(json.loads, cli.ok("image", "ls", "--format", "json").splitlines())}
    report = df_json(cli)
    in_df = {i["RepoTags"][0]: i for i in report["Images"]}
    table = {row[0]: row for row in table_rows(cli.ok("system", "df", "-v"), "Images space usage:")}
    ls_table = {row[0]: row for row in (re.split(r"\s{3,}", line) for line in cli.ok("image", "ls").splitlines()[1:])}
    base_diffs, child_diffs = layer_diffs(cli, "bb:1"), layer_diffs(cli, "child:1")
    assert child_diffs[:-1] == base_diffs
    for repo, diffs in (("bb", base_diffs), ("child", child_diffs)):
        size = sum(du(d) for d in diffs)
        inspected = json.loads(cli.ok("image", "inspect", f"{repo}:1"))[0]["Size"]
        assert listed[repo]["Size"] == inspected == in_df[f"{repo}:1"]["Size"] == size, repo
        # The same figure, rounded the same way, in both tables.
        assert ls_table[repo][4] == table[repo][4] == human_size(size), (ls_table[repo], table[repo])
    base, child = in_df["bb:1"], in_df["child:1"]
    assert base["SharedSize"] == child["SharedSize"] == du(*base_diffs)
    assert base["UniqueSize"] == 0 and child["UniqueSize"] == du(child_diffs[-1]) >= 300 * 1024
    kinds = {k["Type"]: k for k in report["Types"]}
    assert kinds["Images"]["Size"] == du(*child_diffs)  # each layer once
    # Virtual size: the container's and its image's.
    ps = {i["Names"]: i for i in map(json.loads, cli.ok("ps", "-a", "-s", "--format", "json").splitlines())}
    for name, image in (("gone", "bb:1"), ("up", "child:1")):
        virtual = du(upper(cli, name)) + sum(du(d) for d in layer_diffs(cli, image))
        inspected = json.loads(cli.ok("inspect", "-s", name))[0]
        assert ps[name]["SizeRootFs"] == inspected["SizeRootFs"] == virtual
        assert ps[name]["Size"].endswith(f"(virtual {human_size(virtual)})")


def test_reclaimable_logs_and_the_total(store):
    cli = store
    # catalog.db-shm and -wal come and go with the last connection: held
    # open, du and system df see the same files.
    conn = sqlite3.connect(cli.root / "catalog.db")
    conn.execute("SELECT COUNT(*) FROM layers").fetchone()
    try:
        report = df_json(cli)
        total = du(cli.root)
    finally:
        conn.close()
    kinds = {k["Type"]: k for k in report["Types"]}
    assert sum(k["Size"] for k in kinds.values()) + report["MetadataSize"] == report["Total"] == total
    assert report["MetadataSize"] == sum(report["Metadata"].values())
    # Reclaimable: the stopped container's size; no image is unused.
    assert kinds["Containers"]["Reclaimable"] == du(upper(cli, "gone"))
    assert kinds["Images"]["Reclaimable"] == 0
    # Logs: each json-file log as du counts it; the row adds them up,
    # the stopped container's reclaimable.
    in_df = {c["Names"][0]: c for c in report["Containers"]}
    logs = {}
    for name in ("gone", "up"):
        directory = cli.root / "containers" / cid(cli, name)
        logs[name] = du(*directory.glob("*-json.log*"))
        assert in_df[name]["LogSize"] == logs[name]
    assert logs["gone"] > 0
    assert kinds["Logs"]["Size"] == logs["gone"] + logs["up"]
    assert kinds["Logs"]["Reclaimable"] == logs["gone"]
    # The summary table shows the JSON's figures.
    table = {line.split("  ")[0]: line for line in cli.ok("system", "df").splitlines()[1:7]}
    for kind in ("Images", "Containers", "Logs"):
        assert re.split(r"\s{2,}", table[kind])[3] == human_size(kinds[kind]["Size"])
    lines = cli.ok("system", "df", "--format", "json").splitlines()
    assert json.loads(lines[-1]) == {"Type": "Metadata", "Size": report["MetadataSize"]}


def test_images_reclaimable_is_the_layers_no_container_uses(cli, bb, busybox_tar, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb:1\nRUN head -c 100000 /dev/urandom > /own\n")
    cli.ok("build", "-q", "-t", "unused:1", str(ctx))
    cli.ok("create", "--name", "holder", *NONE, "bb:1", "true")
    kinds = {k["Type"]: k for k in df_json(cli)["Types"]}
    assert kinds["Images"]["Reclaimable"] == du(layer_diffs(cli, "unused:1")[-1]) >= 100_000
    assert (kinds["Images"]["TotalCount"], kinds["Images"]["Active"]) == (2, 1)


def test_block_io_is_device_bytes_not_dirtied_page_cache(cli, bb):
    device = store_device(cli.root)
    if device is None:
        pytest.skip(f"{cli.root} is on no block device: no device I/O to count")
    # Write a 10 MB file 20 times over in the page cache (200 MB dirtied),
    # sync, then write 4 MB with O_DIRECT (which reaches the device from the
    # container's own processes, on v1 as on v2). --memory gives it a cgroup.
    # Each round removes the file rather than truncating it: ext4 starts
    # writeback of a file truncated and rewritten when it is closed
    # (auto_da_alloc), so that pattern really does write 200 MB to the disk.
    script = (
        "for i in $(seq 20); do rm -f /f; dd if=/dev/zero of=/f bs=1M count=10 2>/dev/null; done; sync; "
        "dd if=/dev/zero of=/d bs=1M count=4 oflag=direct 2>/dev/null; touch /done; sleep 100"
    )
    with block_io_counted(device):
        before = device_bytes_written(device)
        cli.ok("run", "-d", "--name", "rw", "--memory", "256m", *NONE, "bb:1", "sh", "-c", script)
        wait_for(lambda: (upper(cli, "rw") / "done").exists(), timeout=120, what="the writes")
        item = json.loads(cli.ok("stats", "--no-stream", "--format", "json", "rw"))
        written = device_bytes_written(device) - before
    assert item["ProcessWritten"] >= 200 * MiB  # what BLOCK I/O used to show
    assert 4 * MiB <= item["BlockOutput"] <= written, (item["BlockOutput"], written)
    assert item["BlockOutput"] < 100 * MiB
    assert item["BlockIO"] == f"{human_size(item['BlockInput'])} / {human_size(item['BlockOutput'])}"
    # A container without limits has no cgroup, so no device figure: said so.
    cli.ok("run", "-d", "--name", "plain", *NONE, "bb:1", "sleep", "100")
    time.sleep(0.2)
    plain = json.loads(cli.ok("stats", "--no-stream", "--format", "json", "plain"))
    assert (plain["BlockOutput"], plain["BlockIO"]) == (None, "--")


def test_container_prune_frees_the_reclaimable_with_its_logs_and_metadata(store):
    cli = store
    report = df_json(cli)
    gone = next(c for c in report["Containers"] if c["Names"] == ["gone"])
    directory = cli.root / "containers" / gone["Id"]
    freed = gone["SizeRw"] + gone["LogSize"] + gone["MetadataSize"]
    assert freed == du(directory)
    kinds = {k["Type"]: k for k in report["Types"]}
    assert (kinds["Containers"]["Reclaimable"], kinds["Logs"]["Reclaimable"]) == (gone["SizeRw"], gone["LogSize"])
    out = cli.ok("container", "prune", "-f")
    assert out.splitlines()[-1] == f"Total reclaimed space: {human_size(freed)}"
    assert not directory.exists()

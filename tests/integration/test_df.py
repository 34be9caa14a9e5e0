"""`system df` and `ps -s` against GNU du: every byte of the store counted
once, shared layers included."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

NONE = ("--network", "none")


def du(path: Path) -> int:
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)], capture_output=True, check=True, text=True)
    return int(out.stdout.split()[0])


def df(cli) -> dict:
    return json.loads(cli.ok("system", "df", "-v", "--format", "json"))


def hold_catalog(root: Path) -> sqlite3.Connection:
    """Keep the catalog's WAL and shared-memory files in place while du and
    `system df` both look (they come and go with the last connection)."""
    conn = sqlite3.connect(root / "catalog.db")
    conn.execute("SELECT COUNT(*) FROM layers").fetchone()
    return conn


def build_child(cli, tmp_path: Path) -> str:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb:1\nRUN dd if=/dev/zero of=/blob bs=1k count=300\n")
    cli.ok("build", "-q", "-t", "child:1", str(ctx))
    return ctx


def test_the_rows_and_the_catalog_add_up_to_du_of_the_store(cli, bb, tmp_path):
    build_child(cli, tmp_path)
    cli.ok("run", "--name", "exited", *NONE, "bb:1", "sh", "-c", "head -c 200000 /dev/zero > /big; echo logged")
    cli.ok(
        "run",
        "-d",
        "--name",
        "up",
        *NONE,
        "-v",
        "used:/data",
        "child:1",
        "sh",
        "-c",
        "head -c 500000 /dev/urandom > /data/v; echo written; sleep 100",
    )
    cli.ok("volume", "create", "spare")
    cli.ok("run", "--rm", *NONE, "-v", "spare:/s", "bb:1", "sh", "-c", "head -c 70000 /dev/zero > /s/f")
    cli.ok("logs", "up")  # (waits for nothing; the write above may still be going)
    conn = hold_catalog(cli.root)
    try:
        for _ in range(50):
            report = df(cli)
            if any(v["Name"] == "used" and v["Size"] > 500000 for v in report["Volumes"]):
                break
        report = df(cli)
        total = du(cli.root)
    finally:
        conn.close()
    kinds = {k["Type"]: k for k in report["Types"]}
    assert list(kinds) == ["Images", "Containers", "Local Volumes", "Logs", "Events", "Build Cache"]
    assert sum(k["Size"] for k in kinds.values()) + report["MetadataSize"] == report["Total"] == total
    assert list(report["Metadata"])[:6] == ["catalog", "layers", "blobs", "containers", "volumes", "build cache"]

    # Images: the layers' diff/ trees (the base one counted once, shared by
    # both images); beside them, the layers' indexes and the blobs kept for
    # save and push are metadata.
    layers = cli.root / "layers"
    diffs = sum(du(d / "diff") for d in layers.iterdir())
    assert kinds["Images"]["Size"] == diffs
    blobs = du(cli.root / "blobs") if (cli.root / "blobs").exists() else 0
    assert report["Metadata"]["layers"] == du(layers) - diffs
    assert report["Metadata"]["blobs"] == blobs
    images = {i["RepoTags"][0]: i for i in report["Images"]}
    base, child = images["bb:1"], images["child:1"]
    assert base["UniqueSize"] == 0 and base["SharedSize"] == base["Size"] > 1_000_000
    assert child["SharedSize"] == base["Size"] and child["UniqueSize"] >= 300 * 1024
    assert (kinds["Images"]["TotalCount"], kinds["Images"]["Active"]) == (2, 2)

    # Containers: each one's upper dir, running and exited; its log apart,
    # and the rest of its directory (work dir) metadata.
    containers = {c["Names"][0]: c for c in report["Containers"]}
    for name, c in containers.items():
        directory = cli.root / "containers" / c["Id"]
        log = directory / f"{c['Id']}-json.log"
        log_bytes = du(log) if log.exists() else 0
        assert c["SizeRw"] == du(directory / "upper"), name
        assert c["LogSize"] == log_bytes
        assert c["MetadataSize"] == du(directory) - c["SizeRw"] - log_bytes
    assert report["Metadata"]["containers"] == du(cli.root / "containers") - sum(
        c["SizeRw"] + c["LogSize"] for c in containers.values()
    )
    assert containers["exited"]["SizeRw"] >= 200_000 and containers["exited"]["LogSize"] > 0
    assert containers["up"]["LocalVolumes"] == 1 and containers["up"]["SizeRw"] < 100_000  # the volume is elsewhere
    assert (kinds["Containers"]["TotalCount"], kinds["Containers"]["Active"]) == (2, 1)
    assert kinds["Containers"]["Reclaimable"] == containers["exited"]["SizeRw"]

    # Volumes: sizes and links.
    volumes = {v["Name"]: v for v in report["Volumes"]}
    assert volumes["used"]["Links"] == 1 and volumes["spare"]["Links"] == 0
    for name, v in volumes.items():
        assert v["Size"] == du(cli.root / "volumes" / name)
    assert volumes["used"]["Size"] > 500_000
    assert kinds["Local Volumes"]["Reclaimable"] == volumes["spare"]["Size"]


def test_the_table_is_dockers(cli, bb):
    cli.ok("run", "--name", "cc", *NONE, "bb:1", "true")
    lines = cli.ok("system", "df").splitlines()
    assert lines[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert [line.split("  ")[0] for line in lines[1:7]] == [
        "Images",
        "Containers",
        "Local Volumes",
        "Logs",
        "Events",
        "Build Cache",
    ]
    assert lines[7].startswith("Store metadata: ")
    verbose = cli.ok("system", "df", "-v")
    for heading in (
        "Images space usage:",
        "Containers space usage:",
        "Local Volumes space usage:",
        "Build cache usage:",
    ):
        assert heading in verbose
    assert "SHARED SIZE" in verbose and "UNIQUE SIZE" in verbose


def test_ps_size_is_the_upper_dir_as_du_counts_it(cli, bb):
    cli.ok(
        "run",
        "--name",
        "ww",
        *NONE,
        "bb:1",
        "sh",
        "-c",
        "mkdir -p /a/b; head -c 123457 /dev/urandom > /a/b/f; ln /a/b/f /hard; rm /bin/ls; truncate -s 50M /sparse",
    )
    cli.ok("create", "--name", "idle", *NONE, "bb:1", "true")
    items = {i["Names"]: i for i in map(json.loads, cli.ok("ps", "-a", "-s", "--format", "json").splitlines())}
    image_size = du(cli.root / "layers") - du_own(cli.root / "layers")
    for name in ("ww", "idle"):
        cid = json.loads(cli.ok("inspect", name))[0]["Id"]
        upper = cli.root / "containers" / cid / "upper"
        assert items[name]["SizeRw"] == du(upper)
        assert items[name]["SizeRootFs"] == items[name]["SizeRw"] + image_size - layer_dir_overhead(cli.root)
    assert items["ww"]["SizeRw"] > 123457


def du_own(path: Path) -> int:
    return path.lstat().st_blocks * 512


def layer_dir_overhead(root: Path) -> int:
    """What the layer directories take beside their diff/ trees: their own
    entries and their content indexes."""
    return sum(du(d) - du(d / "diff") for d in (root / "layers").iterdir())

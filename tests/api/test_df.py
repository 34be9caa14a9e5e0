"""GET /system/df: Debian's docker client's `system df` and `-v` show the
figures `overlayctl system df -v` measures (the same report), byte for
byte in the raw answer and as the client rounds them in its tables."""

from __future__ import annotations

import json

NONE = ("--network", "none")


def _human(size: float, digits: int) -> str:
    """Docker's go-units HumanSizeWithPrecision: decimal units, `digits`
    significant digits."""
    units = ["B", "kB", "MB", "GB", "TB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.{digits}g}{units[i]}"


def _section(text: str, title: str) -> list[list[str]]:
    """The rows (split on runs of 3+ spaces) of one table of `system df -v`."""
    lines = text.split(title, 1)[1].strip("\n").split("\n\n", 1)[0].splitlines()
    import re

    return [re.split(r"\s{3,}", line.strip()) for line in lines[1:]]


def test_system_df_has_the_clis_figures(api, bb, busybox_tar):
    api.cli.ok(
        "run", "--name", "big", *NONE, "-v", "dfvol:/data", "bb:1",
        "sh", "-c", "head -c 100000 /dev/zero > /data/f; head -c 50000 /dev/zero > /x",
    )  # fmt: skip
    api.cli.ok("run", "-d", "--name", "up", *NONE, "bb:1", "sleep", "60")
    api.cli.ok("volume", "create", "spare")
    api.cli.ok("import", str(busybox_tar), "other:2")  # no container uses it; it shares bb:1's layer

    ours = json.loads(api.cli.ok("system", "df", "-v", "--format", "json"))
    kinds = {k["Type"]: k for k in ours["Types"]}
    df = api.json("GET", "/system/df", expect=200)
    assert set(df) == {"LayersSize", "Images", "Containers", "Volumes", "BuildCache"}

    # Raw: the CLI's bytes.
    assert df["LayersSize"] == kinds["Images"]["Size"]
    images = {i["Id"]: i for i in ours["Images"]}
    assert {i["Id"] for i in df["Images"]} == set(images)
    for image in df["Images"]:
        mine = images[image["Id"]]
        assert image["Size"] == image["VirtualSize"] == mine["Size"]
        assert image["SharedSize"] == mine["SharedSize"] and image["Containers"] == mine["Containers"]
        assert image["RepoTags"] == mine["RepoTags"] and isinstance(image["Created"], int)
    containers = {c["Id"]: c for c in ours["Containers"]}
    assert {c["Id"] for c in df["Containers"]} == set(containers)
    for container in df["Containers"]:
        assert container["SizeRw"] == containers[container["Id"]]["SizeRw"]
        assert container["Names"] == ["/" + containers[container["Id"]]["Names"][0]]
        assert container["SizeRootFs"] > container["SizeRw"]
    big = next(c for c in df["Containers"] if c["Names"] == ["/big"])
    assert big["SizeRw"] >= 50000 and big["State"] == "exited"
    assert [(m["Type"], m["Name"], m["Driver"]) for m in big["Mounts"]] == [("volume", "dfvol", "local")]
    volumes = {v["Name"]: v for v in ours["Volumes"]}
    assert {v["Name"]: v["UsageData"] for v in df["Volumes"]} == {
        name: {"Size": v["Size"], "RefCount": v["Links"]} for name, v in volumes.items()
    }
    assert volumes["dfvol"]["Size"] >= 100000 and volumes["dfvol"]["Links"] == 1

    # The client's summary: the counts and sizes are the CLI's (each row
    # adds up its objects' figures; the directories holding them are the
    # CLI's store metadata).
    table = {row[0]: row for row in _section("\n" + api.docker_ok("system", "df"), "\n")}
    assert table["Images"][1:4] == [
        str(kinds["Images"]["TotalCount"]), str(kinds["Images"]["Active"]), _human(df["LayersSize"], 4)
    ]  # fmt: skip
    assert table["Images"][1:3] == ["2", "1"]
    assert all(i["SharedSize"] > 0 for i in df["Images"])
    size_rw = sum(c["SizeRw"] for c in df["Containers"])
    assert size_rw == kinds["Containers"]["Size"]
    assert sum(v["UsageData"]["Size"] for v in df["Volumes"]) == kinds["Local Volumes"]["Size"]
    assert sum(r["Size"] for r in df["BuildCache"]) == kinds["Build Cache"]["Size"]
    assert table["Containers"][1:4] == [
        str(kinds["Containers"]["TotalCount"]), str(kinds["Containers"]["Active"]), _human(size_rw, 4)
    ]  # fmt: skip
    assert table["Containers"][1:3] == ["2", "1"]
    volume_bytes = sum(v["UsageData"]["Size"] for v in df["Volumes"])
    assert table["Local Volumes"][1:4] == [
        str(kinds["Local Volumes"]["TotalCount"]), str(kinds["Local Volumes"]["Active"]), _human(volume_bytes, 4)
    ]  # fmt: skip
    # Reclaimable containers and volumes: the same bytes as the CLI's.
    assert table["Containers"][4].startswith(_human(kinds["Containers"]["Reclaimable"], 4) + " ")
    assert table["Local Volumes"][4].startswith(_human(kinds["Local Volumes"]["Reclaimable"], 4) + " ")

    # -v: row for row.
    verbose = api.docker_ok("system", "df", "-v")
    text = api.cli.ok("system", "df", "-v")
    rows = {(r[0], r[1]): r for r in _section(verbose, "Images space usage:")}
    assert set(rows) == {("bb", "1"), ("other", "2")}
    for (repo, tag), row in rows.items():
        image = next(i for i in ours["Images"] if f"{repo}:{tag}" in i["RepoTags"])
        assert row[2] == image["Id"].split(":")[1][:12]
        assert row[4:] == [
            _human(image["Size"], 4),
            _human(image["SharedSize"], 4),
            _human(image["UniqueSize"], 4),
            str(image["Containers"]),
        ]
    theirs = {r[-1]: r for r in _section(verbose, "Containers space usage:")}
    mine = {r[-1]: r for r in _section(text, "Containers space usage:")}
    assert set(theirs) == set(mine) == {"big", "up"}
    for name, row in theirs.items():
        # ID, IMAGE, COMMAND, LOCAL VOLUMES, SIZE as the CLI's (which adds LOGS).
        assert row[:5] == mine[name][:5], (row, mine[name])
    assert theirs["big"][3] == "1" and theirs["up"][3] == "0"
    volume_rows = _section(verbose, "Local Volumes space usage:")
    assert sorted(volume_rows) == sorted([[v["Name"], str(v["Links"]), _human(v["Size"], 4)] for v in ours["Volumes"]])


def test_system_df_on_an_empty_store(api):
    df = api.json("GET", "/v1.41/system/df", expect=200)
    assert df["Images"] == df["Containers"] == df["Volumes"] == []
    assert df["BuildCache"] == []  # nothing staged, no cache mounts
    out = api.docker_ok("system", "df")
    assert out.splitlines()[1].split()[:3] == ["Images", "0", "0"]

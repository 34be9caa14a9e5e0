"""Volumes through the Engine API: Debian's docker client's `volume`
commands and raw requests, against the same store as the CLI."""

from __future__ import annotations

import json
import os
import re
from urllib.parse import quote

from tests.helpers import du_bytes


def _filters(data: dict) -> str:
    return "filters=" + quote(json.dumps(data))


def _names(api, *args: str) -> list[str]:
    return api.docker_ok("volume", "ls", "-q", *args).split()


def test_volume_create_ls_inspect_rm(api, bb):
    assert api.docker_ok("volume", "create", "--label", "tier=db", "--label", "keep", "data").strip() == "data"
    anonymous = api.docker_ok("volume", "create").strip()
    assert re.fullmatch(r"[0-9a-f]{64}", anonymous), anonymous

    # The same volumes as the CLI's, in the same shape.
    assert sorted(_names(api)) == sorted([anonymous, "data"])
    table = api.docker_ok("volume", "ls").splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert "local     data" in table
    docker = json.loads(api.docker_ok("volume", "inspect", "data"))
    ours = json.loads(api.cli.ok("volume", "inspect", "data"))
    assert docker == ours
    assert docker[0]["Labels"] == {"tier": "db", "keep": ""}
    assert docker[0]["Mountpoint"] == str(api.cli.root / "volumes" / "data" / "_data")
    assert os.path.isdir(docker[0]["Mountpoint"])
    assert (
        api.docker_ok("volume", "inspect", "-f", "{{.Driver}} {{.Scope}} {{.Labels.tier}}", "data")
        == "local local db\n"
    )

    # Filters, as dockerd's.
    assert _names(api, "--filter", "label=tier=db") == ["data"]
    assert _names(api, "--filter", "label=keep") == ["data"]
    assert _names(api, "--filter", "label=tier=web") == []
    assert _names(api, "--filter", "name=dat") == ["data"]
    assert sorted(_names(api, "--filter", "dangling=true")) == sorted([anonymous, "data"])
    api.cli.ok("create", "--name", "user", "-v", "data:/d", "bb:1", "true")
    assert _names(api, "--filter", "dangling=true") == [anonymous]
    assert _names(api, "--filter", "dangling=false") == ["data"]
    bad = api.docker("volume", "ls", "--filter", "colour=blue")
    assert bad.returncode != 0 and b"invalid filter 'colour'" in bad.stderr

    # In use: refused, with dockerd's 409 and message; then removed.
    refused = api.docker("volume", "rm", "data")
    assert refused.returncode != 0 and b"volume is in use" in refused.stderr
    status, _, body = api.request("DELETE", "/volumes/data")
    assert status == 409 and b"volume is in use" in body
    api.cli.ok("rm", "user")
    assert api.docker_ok("volume", "rm", "data", anonymous).split() == ["data", anonymous]
    assert api.cli.ok("volume", "ls", "-q") == ""
    assert not (api.cli.root / "volumes" / "data").exists()


def test_volume_prune_takes_every_unused_volume_as_api_1_41(api, bb):
    # dockerd 20.10 (API 1.41) prunes named and anonymous volumes alike.
    api.docker_ok("volume", "create", "--label", "keep=yes", "kept")
    api.docker_ok("volume", "create", "named")
    anonymous = api.docker_ok("volume", "create").strip()
    api.cli.ok(
        "run", "--rm", "--network", "none", "-v", "named:/d", "bb:1", "sh", "-c", "head -c 300000 /dev/zero > /d/f"
    )
    api.cli.ok("create", "--name", "holder", "-v", "held:/d", "bb:1", "true")
    size = du_bytes(api.cli.root / "volumes" / "named")

    # label! spares the labelled one; held is in use.
    status, _, body = api.request("POST", "/volumes/prune?" + _filters({"label!": ["keep"]}))
    report = json.loads(body)
    assert status == 200, body
    assert sorted(report["VolumesDeleted"]) == sorted(["named", anonymous])
    assert report["SpaceReclaimed"] >= size >= 300000
    assert sorted(_names(api)) == ["held", "kept"]

    # The client's prune: what is left unused goes, and it says so.
    out = api.docker_ok("volume", "prune", "-f")
    assert out.splitlines()[:2] == ["Deleted Volumes:", "kept"], out
    assert "Total reclaimed space:" in out
    assert _names(api) == ["held"]
    assert json.loads(api.request("POST", "/volumes/prune")[2]) == {"VolumesDeleted": [], "SpaceReclaimed": 0}


def test_volume_requests_get_dockers_status_codes(api):
    assert api.request("GET", "/volumes/nosuch")[0] == 404
    assert api.request("DELETE", "/volumes/nosuch")[0] == 404
    assert api.request("DELETE", "/volumes/nosuch?force=1")[0] == 204
    status, _, body = api.request("POST", "/volumes/create", {"Name": "x", "Driver": "nfs"})
    assert status == 400 and b"not supported" in body
    status, _, body = api.request("POST", "/volumes/create", {"Name": "x", "DriverOpts": {"type": "tmpfs"}})
    assert status == 400 and json.loads(body)["message"]
    assert api.request("POST", "/volumes/create", {"Name": "a/b"})[0] == 400
    assert api.request("POST", "/volumes/create", b"{not json", {"Content-Type": "application/json"})[0] == 400
    assert api.request("POST", "/volumes/create", {"Labels": ["a"]})[0] == 400
    assert api.request("GET", "/volumes?" + _filters({"size": ["1"]}))[0] == 400
    assert api.cli.ok("volume", "ls", "-q") == ""  # nothing was made by any of them

    created = api.json("POST", "/volumes/create", {"Name": "vol", "Labels": {"a": "b"}}, expect=201)
    assert created["Name"] == "vol" and created["Labels"] == {"a": "b"} and created["Driver"] == "local"
    # Creating it again answers the one there is, as dockerd.
    assert api.json("POST", "/volumes/create", {"Name": "vol"}, expect=201) == created
    assert api.json("GET", "/volumes/vol", expect=200) == created
    listed = api.json("GET", "/v1.41/volumes", expect=200)
    assert listed == {"Volumes": [created], "Warnings": None}
    assert api.request("DELETE", "/volumes/vol")[0] == 204

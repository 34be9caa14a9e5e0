"""`du --top N` on real containers: the files of the upper dir that
allocate the most, largest first, each a copy-up (with the size of the
image file it copies), a new file or a whiteout (with what it hides),
exact against stat(1) and the image's own files; on a stopped container
too, and bad input refused in one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.helpers import wait_for

NONE = ("--network", "none")


def _dirs(cli, name: str) -> tuple[Path, list[Path]]:
    data = json.loads(cli.ok("inspect", name))[0]["GraphDriver"]["Data"]
    return Path(data["UpperDir"]), [Path(p) for p in data["LowerDir"].split(":")]


def _lower_size(lowers: list[Path], path: str) -> int:
    for lower in lowers:
        if os.path.lexists(lower / path.lstrip("/")):
            return os.lstat(lower / path.lstrip("/")).st_size
    raise AssertionError(f"no layer shows {path}")


def _allocated(upper: Path, path: str) -> int:
    return os.lstat(upper / path.lstrip("/")).st_blocks * 512


def test_top_lists_the_biggest_files_with_what_they_copied(cli, bb):
    # /bin/ar is a hard link to busybox (about 2 MB): one byte written copies
    # all of it up. /new is 300 kB of new data; /etc/passwd a small copy-up;
    # /etc/group and /usr are deleted (a file and a directory).
    script = (
        "printf x | dd of=/bin/ar conv=notrunc 2>/dev/null; dd if=/dev/zero of=/new bs=1000 count=300 2>/dev/null; "
        "echo more >> /etc/passwd; rm /etc/group; rm -r /usr; echo s > /small"
    )
    cli.ok("run", "--name", "top", *NONE, "bb:1", "sh", "-c", script)
    upper, lowers = _dirs(cli, "top")
    assert "exited" in cli.ok("ps", "-a", "--filter", "name=top", "--format", "{{.Status}}").lower()

    doc = json.loads(cli.ok("du", "--top", "3", "--format", "json", "top"))
    assert [(e["Path"], e["Kind"]) for e in doc] == [
        ("/bin/ar", "copy-up"),
        ("/new", "new"),
        ("/etc/passwd", "copy-up"),
    ]
    for entry in doc:
        assert entry["Bytes"] == _allocated(upper, entry["Path"])
        assert entry["Apparent"] == os.lstat(upper / entry["Path"].lstrip("/")).st_size
    assert doc[0]["Lower"] == {"Type": "file", "Size": _lower_size(lowers, "/bin/ar")}
    assert doc[0]["Lower"]["Size"] > 1_000_000
    assert doc[1]["Lower"] is None and doc[1]["Apparent"] == 300_000
    assert doc[2]["Lower"] == {"Type": "file", "Size": _lower_size(lowers, "/etc/passwd")}

    everything = json.loads(cli.ok("du", "--top", "100", "--format", "json", "top"))
    by_path = {e["Path"]: e for e in everything}
    assert by_path["/etc/group"]["Kind"] == "whiteout" and by_path["/etc/group"]["Bytes"] == 0
    assert by_path["/etc/group"]["Lower"] == {"Type": "file", "Size": _lower_size(lowers, "/etc/group")}
    assert by_path["/usr"]["Kind"] == "whiteout" and by_path["/usr"]["Lower"]["Type"] == "directory"
    assert len(everything) == 6  # the five changes and /small: nothing else, no directories
    sizes = [e["Bytes"] for e in everything]
    assert sizes == sorted(sizes, reverse=True)

    lines = cli.ok("du", "--top", "2", "top").splitlines()
    assert lines[0].split() == ["SIZE", "BYTES", "KIND", "IMAGE", "FILE", "PATH"]
    first = lines[1].split()
    assert first[1:3] == [str(doc[0]["Bytes"]), "copy-up"] and first[-1] == "/bin/ar" and first[-2] == "file"
    assert lines[2].split()[1:] == [str(doc[1]["Bytes"]), "new", "/new"]
    whiteout_rows = [r for r in cli.ok("du", "--top", "10", "top").splitlines() if "whiteout" in r]
    assert any(r.split()[-1] == "/usr" and "hides directory" in r for r in whiteout_rows)


def test_top_follows_a_running_container(cli, bb):
    cli.ok("run", "-d", "--name", "live", *NONE, "bb:1", "sh", "-c", "echo hi > /hello; exec sleep 100")
    upper, _ = _dirs(cli, "live")
    wait_for((upper / "hello").exists, 30, "the container's write")
    [entry] = json.loads(cli.ok("du", "--top", "1", "--format", "json", "live"))
    assert entry["Path"] == "/hello" and entry["Kind"] == "new"


def test_top_refuses_bad_input_in_one_line(cli, bb):
    cli.ok("run", "--name", "cc", *NONE, "bb:1", "true")
    for args, words in [
        (("--top", "0"), b"--top must be 1 or more, not 0"),
        (("--top", "-3"), b"--top must be 1 or more, not -3"),
        (("--top", "2", "--watch"), b"does not go with --watch"),
        (("--top", "2", "--output", "x.csv"), b"does not go with --watch, --output or --plot"),
    ]:
        result = cli("du", *args, "cc")
        assert result.returncode == 125, (args, result.stderr)
        assert words in result.stderr and result.stderr.count(b"\n") == 1 and not result.stdout
    result = cli("du", "--top", "many", "cc")
    assert result.returncode != 0 and b"many" in result.stderr
    result = cli("du", "--top", "1", "nosuch")
    assert result.returncode == 125
    assert result.stderr.decode() == 'overlayctl: container "nosuch" not found; see "overlayctl ps -a"\n'

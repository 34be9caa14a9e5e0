"""HEAD/GET/PUT /containers/{id}/archive: `docker cp` both ways with Debian's
docker client (files, directories, a symlink, ownership with -a; running
and stopped containers), dockerd's status codes and path-stat header, and
tars that try to write outside the container."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.api.conftest import Api


def sleeper(api: Api, name: str = "box") -> str:
    return api.cli.ok("run", "-d", "--name", name, "bb:1", "sleep", "600").strip()


def in_box(api: Api, *argv: str, name: str = "box") -> str:
    return api.cli.ok("exec", name, *argv)


def path_stat(headers: dict[str, str]) -> dict:
    return json.loads(base64.b64decode(headers["x-docker-container-path-stat"]))


def tar_of(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


def test_docker_cp_a_file_in_and_out(api: Api, bb: str, tmp_path: Path) -> None:
    sleeper(api)
    src = tmp_path / "note.txt"
    src.write_bytes(b"hello from the host\n\x00\xff")
    os.chown(src, 1234, 5678)
    api.docker_ok("cp", str(src), "box:/tmp/")
    assert api.cli("exec", "box", "cat", "/tmp/note.txt").stdout == src.read_bytes()
    # Without -a the copy is root's; with -a it keeps the host's owner.
    assert in_box(api, "stat", "-c", "%u:%g %a", "/tmp/note.txt").strip() == "0:0 644"
    api.docker_ok("cp", "-a", str(src), "box:/tmp/kept.txt")
    assert in_box(api, "stat", "-c", "%u:%g", "/tmp/kept.txt").strip() == "1234:5678"
    out = tmp_path / "hostname"
    api.docker_ok("cp", "box:/etc/hostname", str(out))
    assert out.read_text() == in_box(api, "cat", "/etc/hostname")
    api.docker_ok("cp", "box:/tmp/note.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_bytes() == src.read_bytes()


def test_docker_cp_directories_and_a_symlink(api: Api, bb: str, tmp_path: Path) -> None:
    sleeper(api)
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "a.txt").write_text("a\n")
    (tree / "sub" / "deeper" / "b.txt").write_text("b\n")
    os.symlink("a.txt", tree / "link")
    api.docker_ok("cp", str(tree), "box:/srv")
    listing = in_box(api, "find", "/srv").split()
    assert sorted(listing) == [
        "/srv",
        "/srv/a.txt",
        "/srv/link",
        "/srv/sub",
        "/srv/sub/deeper",
        "/srv/sub/deeper/b.txt",
    ]
    assert in_box(api, "readlink", "/srv/link").strip() == "a.txt"
    # Out again, into a directory that exists: it lands under its own name.
    back = tmp_path / "back"
    back.mkdir()
    api.docker_ok("cp", "box:/srv", str(back))
    assert (back / "srv" / "sub" / "deeper" / "b.txt").read_text() == "b\n"
    assert os.readlink(back / "srv" / "link") == "a.txt"
    # A directory's contents alone (SRC/.), into a directory made for them.
    api.docker_ok("cp", "box:/srv/.", str(tmp_path / "contents"))
    assert sorted(os.listdir(tmp_path / "contents")) == ["a.txt", "link", "sub"]
    # A symlink is copied as one; -L copies what it points to.
    in_box(api, "ln", "-s", "/etc/hostname", "/tmp/hn")
    api.docker_ok("cp", "box:/tmp/hn", str(tmp_path / "hn-link"))
    assert os.readlink(tmp_path / "hn-link") == "/etc/hostname"
    api.docker_ok("cp", "-L", "box:/tmp/hn", str(tmp_path / "hn-file"))
    assert (tmp_path / "hn-file").read_text() == in_box(api, "cat", "/etc/hostname")


def test_docker_cp_with_a_stopped_container(api: Api, bb: str, tmp_path: Path) -> None:
    api.cli.ok("run", "-d", "--name", "gone", "bb:1", "sh", "-c", "echo made > /made.txt; ln -s made.txt /ln")
    api.cli.ok("wait", "gone")
    api.docker_ok("cp", "gone:/made.txt", str(tmp_path / "made.txt"))
    assert (tmp_path / "made.txt").read_text() == "made\n"
    stat = path_stat(api.request("HEAD", "/containers/gone/archive?path=/ln")[1])
    assert stat["linkTarget"] == "/made.txt"
    api.docker_ok("cp", "-L", "gone:/ln", str(tmp_path / "followed"))
    assert (tmp_path / "followed").read_text() == "made\n"
    (tmp_path / "in.txt").write_text("put while stopped\n")
    api.docker_ok("cp", str(tmp_path / "in.txt"), "gone:/root/")
    # The container's own tree has it, as `overlayctl cp` sees it.
    assert api.cli.ok("cp", "gone:/root/in.txt", "-").count("put while stopped") == 1
    status, _, body = api.request("HEAD", "/containers/gone/archive?path=/nothere")
    assert status == 404
    status, _, body = api.request("PUT", "/containers/gone/archive?path=/made.txt", tar_of((entry("x"), b"x")))
    assert status == 400 and b"not a directory" in body


def test_path_stat_header_and_status_codes(api: Api, bb: str) -> None:
    sleeper(api)
    in_box(api, "sh", "-c", "printf 12345 > /tmp/five && chmod 4755 /tmp/five && ln -s ../etc /tmp/up")
    status, headers, body = api.request("HEAD", "/v1.41/containers/box/archive?path=/tmp/five")
    assert (status, body) == (200, b"")
    stat = path_stat(headers)
    assert (stat["name"], stat["size"], stat["linkTarget"]) == ("five", 5, "")
    assert stat["mode"] == 0o755 | (1 << 23)  # Go's ModeSetuid
    assert stat["mtime"].endswith("Z")
    stat = path_stat(api.request("HEAD", "/containers/box/archive?path=/tmp")[1])
    assert stat["name"] == "tmp" and stat["mode"] & (1 << 31)  # Go's ModeDir
    stat = path_stat(api.request("HEAD", "/containers/box/archive?path=/tmp/up")[1])
    assert stat["mode"] & (1 << 27) and stat["linkTarget"] == "/etc"  # ModeSymlink, resolved in the container
    status, headers, body = api.request("GET", "/containers/box/archive?path=/tmp/five")
    assert status == 200 and headers["content-type"] == "application/x-tar"
    assert path_stat(headers)["name"] == "five"
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        (member,) = tar.getmembers()
        assert (member.name, tar.extractfile(member).read()) == ("five", b"12345")  # type: ignore[union-attr]
    for method in ("HEAD", "GET"):
        assert api.request(method, "/containers/box/archive?path=/no/such")[0] == 404
        assert api.request(method, "/containers/nobox/archive?path=/tmp")[0] == 404
        assert api.request(method, "/containers/box/archive")[0] == 400
    status, _, body = api.request("PUT", "/containers/box/archive?path=/no/such", tar_of((entry("x"), b"x")))
    assert status == 404 and body.startswith(b'{"message":')
    status, _, body = api.request("PUT", "/containers/box/archive?path=/tmp/five", tar_of((entry("x"), b"x")))
    assert status == 400 and b"not a directory" in body
    status, _, body = api.request("PUT", "/containers/box/archive?path=/tmp", b"this is not a tar" * 100)
    assert status == 400, body
    # noOverwriteDirNonDir (which docker cp always sends): no directory over a file.
    dir_over_file = tar_of((entry("five", tarfile.DIRTYPE, mode=0o755), None))
    status, _, body = api.request("PUT", "/containers/box/archive?path=/tmp&noOverwriteDirNonDir=true", dir_over_file)
    assert status == 400 and b"non-directory" in body
    assert in_box(api, "cat", "/tmp/five") == "12345"


def test_hostile_tars_stay_inside_the_container(api: Api, bb: str, tmp_path: Path) -> None:
    sleeper(api)
    token = uuid.uuid4().hex
    host_target = Path("/tmp") / f"escaped-{token}"
    # "..": refused outright.
    climb = tar_of((entry(f"../../../../../../tmp/escaped-{token}"), b"out"))
    status, _, body = api.request("PUT", "/containers/box/archive?path=/tmp", climb)
    assert status == 400 and b".." in body
    # A symlink to / in the tar, then a file through it: never followed.
    through = tar_of((entry("evil", tarfile.SYMTYPE, link="/"), None), (entry(f"evil/tmp/escaped-{token}"), b"out"))
    status, _, body = api.request("PUT", "/containers/box/archive?path=/tmp", through)
    assert status in (400, 500), body
    # An absolute symlink in the container as the destination: resolved
    # inside the container's root, so the file lands in ITS /tmp.
    in_box(api, "ln", "-s", "/", "/tmp/rootlink")
    ok = tar_of((entry(f"tmp/escaped-{token}"), b"inside"))
    status, _, body = api.request("PUT", "/containers/box/archive?path=/tmp/rootlink", ok)
    assert status == 200, body
    assert in_box(api, "cat", f"/tmp/escaped-{token}") == "inside"
    assert not host_target.exists() and not Path(f"/escaped-{token}").exists()
    # And a symlink reading out of the container: a tar of the link itself.
    status, _, body = api.request("GET", "/containers/box/archive?path=/tmp/rootlink")
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        (member,) = tar.getmembers()
        assert member.issym() and member.linkname == "/"


def test_a_truncated_upload_leaves_no_cut_file(api: Api, bb: str) -> None:
    sleeper(api)
    whole = tar_of((entry("big.bin"), os.urandom(1 << 20)))
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(api.sock))
    head = (
        "PUT /v1.41/containers/box/archive?path=/tmp HTTP/1.1\r\nHost: docker\r\n"
        f"Content-Type: application/x-tar\r\nContent-Length: {len(whole)}\r\n\r\n"
    )
    sock.sendall(head.encode() + whole[: len(whole) // 2])
    sock.close()
    # The service lets the copy go, the half file with it, and still answers.
    from tests.helpers import wait_for

    wait_for(lambda: "big.bin" not in in_box(api, "ls", "/tmp"), 15, "the cut file to go")
    assert api.request("GET", "/_ping")[0] == 200
    status, _, _ = api.request("PUT", "/containers/box/archive?path=/tmp", whole)
    assert status == 200
    assert in_box(api, "stat", "-c", "%s", "/tmp/big.bin").strip() == str(1 << 20)


@pytest.mark.parametrize("stopped", [False, True])
def test_raw_put_and_get_round_trip(api: Api, bb: str, stopped: bool) -> None:
    if stopped:
        api.cli.ok("run", "-d", "--name", "box", "bb:1", "true")
        api.cli.ok("wait", "box")
    else:
        sleeper(api)
    upload = tar_of(
        (entry("d", tarfile.DIRTYPE, mode=0o750), None),
        (entry("d/f", mode=0o600), b"payload"),
        (entry("d/l", tarfile.SYMTYPE, link="f"), None),
    )
    status, _, body = api.request("PUT", "/containers/box/archive?path=/&copyUIDGID=1", upload)
    assert status == 200, body
    status, headers, body = api.request("GET", "/containers/box/archive?path=/d")
    assert status == 200 and path_stat(headers)["name"] == "d"
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        got = {m.name: (m.type, m.mode, m.linkname) for m in tar.getmembers()}
    assert got == {
        "d": (tarfile.DIRTYPE, 0o750, ""),
        "d/f": (tarfile.REGTYPE, 0o600, ""),
        "d/l": (tarfile.SYMTYPE, 0o777, "f"),
    }


def _copy_fds(api: Api) -> list[str]:
    """The service's pipes and files named big: what a copy of /tmp/big holds.
    (Its worker threads keep a store each, which is not the copy's.)"""
    found = []
    for fd in os.listdir(f"/proc/{api.proc.pid}/fd"):
        try:
            link = os.readlink(f"/proc/{api.proc.pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("pipe:") or link.endswith("/big"):
            found.append(link)
    return found


def _peak_rss_kib(api: Api) -> int:
    with open(f"/proc/{api.proc.pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


@pytest.mark.slow
def test_a_reader_that_goes_away_and_a_huge_upload_cost_nothing(api: Api, bb: str) -> None:
    from tests.helpers import wait_for

    sleeper(api)
    in_box(api, "dd", "if=/dev/zero", "of=/tmp/big", "bs=1M", "count=64")
    assert api.request("GET", "/_ping")[0] == 200
    fds = len(_copy_fds(api))
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(api.sock))
    sock.sendall(b"GET /containers/box/archive?path=/tmp/big HTTP/1.1\r\nHost: docker\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    assert len(_copy_fds(api)) > fds, "the copy is under way"
    sock.close()
    # The pipe and the copy's file are let go once the reader is gone.
    wait_for(lambda: len(_copy_fds(api)) <= fds, 15, "the service to close the copy's descriptors")
    # 64 MiB in: streamed through the pipe, never held in the service.
    before = _peak_rss_kib(api)
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w") as tar:
        info = tarfile.TarInfo("huge.bin")
        info.size = 64 << 20
        tar.addfile(info, io.BytesIO(bytes(64 << 20)))
    status, _, answer = api.request("PUT", "/containers/box/archive?path=/tmp", body.getvalue(), timeout=120)
    assert status == 200, answer
    assert in_box(api, "stat", "-c", "%s", "/tmp/huge.bin").strip() == str(64 << 20)
    assert _peak_rss_kib(api) - before < 24 << 10, "the upload was buffered in the service"

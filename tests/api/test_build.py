"""POST /build and /build/prune: Debian's docker client (its classic
builder: DOCKER_BUILDKIT unset) and raw requests against the service, the
image checked through the overlayctl CLI on the same store."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.api.conftest import Api
from tests.helpers import write_file


def _context_tar(files: dict[str, str], compress: str = "") -> bytes:
    """A build context as the docker client sends it: a tar of the files."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:" + compress) as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _lines(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def _stream(lines: list[dict]) -> str:
    return "".join(line.get("stream", "") for line in lines)


def _tmp_files(api: Api) -> list[str]:
    """What is left under the store's tmp/ (staging of builds)."""
    tmp = Path(api.cli.root) / "tmp"
    return sorted(os.listdir(tmp)) if tmp.exists() else []


def test_the_docker_cli_builds_and_the_image_runs(api: Api, bb: str, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    write_file(ctx / "hello.txt", "hello from the context\n")
    write_file(
        ctx / "Dockerfile",
        "FROM bb:1\nCOPY hello.txt /hello.txt\nRUN echo ran-at-build > /built && echo to-stdout\nCMD [\"cat\", \"/hello.txt\"]\n",
    )
    out = api.docker_ok("build", "-t", "x:1", str(ctx))
    assert "Step 1/4 : FROM bb:1" in out
    assert "Step 3/4 : RUN echo ran-at-build > /built && echo to-stdout" in out
    assert "to-stdout" in out  # the RUN command's own output, streamed
    assert "Successfully tagged x:1" in out
    image_id = api.cli.ok("image", "inspect", "--format", "{{.Id}}", "x:1").strip()
    assert f"Successfully built {image_id[7:19]}" in out
    assert api.cli.ok("run", "--rm", "x:1") == "hello from the context\n"
    assert api.cli.ok("run", "--rm", "x:1", "cat", "/built") == "ran-at-build\n"
    assert _tmp_files(api) == []

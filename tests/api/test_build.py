"""POST /build and /build/prune: Debian's docker client (its classic
builder: DOCKER_BUILDKIT unset) and raw requests against the service, the
image checked through the overlayctl CLI on the same store."""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
from pathlib import Path

import pytest

from tests.api.conftest import Api
from tests.helpers import wait_for, write_file


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


def _build_until_started(api: Api, body: bytes, tag: str) -> socket.socket:
    """A raw POST /build of the context `body`, read until its RUN step
    says "started"; the connection is left open for the test."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(str(api.sock))
    head = f"POST /v1.41/build?t={tag} HTTP/1.1\r\nHost: d\r\nContent-Type: application/x-tar\r\n"
    sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    seen = b""
    while b"started" not in seen:
        chunk = sock.recv(65536)
        assert chunk, seen
        seen += chunk
    return sock


def test_the_docker_cli_builds_and_the_image_runs(api: Api, bb: str, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    write_file(ctx / "hello.txt", "hello from the context\n")
    write_file(
        ctx / "Dockerfile",
        "FROM bb:1\nCOPY hello.txt /hello.txt\n"
        'RUN echo ran-at-build > /built && echo to-stdout\nCMD ["cat", "/hello.txt"]\n',
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


def test_the_stream_is_dockers_json_lines(api: Api, bb: str) -> None:
    dockerfile = "FROM bb:1\nRUN echo out-line && echo err-line >&2\nLABEL a=b\n"
    status, headers, body = api.request(
        "POST",
        "/v1.41/build?t=raw:1&t=raw:2",
        _context_tar({"Dockerfile": dockerfile}, "gz"),
        {"Content-Type": "application/x-tar"},
    )
    assert status == 200
    assert headers["content-type"] == "application/json"
    lines = _lines(body)
    image_id = api.cli.ok("image", "inspect", "--format", "{{.Id}}", "raw:1").strip()
    assert lines[0] == {"stream": "Step 1/3 : FROM bb:1\n"}
    assert {"stream": f" ---> {api.cli.ok('image', 'inspect', '--format', '{{.Id}}', 'bb:1')[7:19]}\n"} in lines
    assert {"stream": "out-line\n"} in lines
    # What the command wrote on its standard error, in red, as dockerd's classic builder.
    assert {"stream": "\x1b[91merr-line\n\x1b[0m"} in lines
    aux = lines.index({"aux": {"ID": image_id}})
    assert lines[aux + 1 :] == [
        {"stream": f"Successfully built {image_id[7:19]}\n"},
        {"stream": "Successfully tagged raw:1\n"},
        {"stream": "Successfully tagged raw:2\n"},
    ]
    assert api.cli.ok("image", "inspect", "--format", "{{.Config.Labels.a}}", "raw:2").strip() == "b"


def test_a_failing_run_ends_the_stream_with_its_error_and_code(api: Api, bb: str, tmp_path: Path) -> None:
    body = _context_tar({"Dockerfile": "FROM bb:1\nRUN echo before-failing; exit 3\nRUN echo never\n"})
    status, _, data = api.request("POST", "/build?t=bad:1", body, {"Content-Type": "application/x-tar"})
    assert status == 200  # the stream had started
    lines = _lines(data)
    assert {"stream": "before-failing\n"} in lines
    last = lines[-1]
    assert last["errorDetail"]["code"] == 3
    assert "returned a non-zero code: 3" in last["error"]
    assert last["errorDetail"]["message"] == last["error"]
    assert "never" not in _stream(lines)
    assert api.cli("image", "inspect", "bad:1").returncode != 0
    # The docker client shows the error and exits with the command's code.
    ctx = tmp_path / "ctx"
    write_file(ctx / "Dockerfile", "FROM bb:1\nRUN echo oops >&2; exit 3\n")
    result = api.docker("build", "-t", "bad:2", str(ctx))
    assert result.returncode == 3
    assert "oops" in result.stdout.decode()
    assert "returned a non-zero code: 3" in result.stderr.decode()
    assert _tmp_files(api) == []


def test_a_bad_request_is_an_error_before_any_stream(api: Api, bb: str) -> None:
    tar = _context_tar({"Dockerfile": "FROM bb:1\n"})
    for path, words in (
        ("/build?remote=https://example.com/ctx.git", "remote"),
        ("/build?buildargs=not-json", "buildargs"),
        ("/build?labels=[1]", "labels"),
        ("/build?t=Bad%20Tag", "Bad Tag"),
        ("/build?networkmode=nosuchnet", "nosuchnet"),
        ("/build?extrahosts=a:1.2.3.4", "extrahosts"),
        ("/build?version=2", "BuildKit"),
    ):
        status, headers, data = api.request("POST", path, tar, {"Content-Type": "application/x-tar"})
        assert status == 400, (path, data)
        assert headers["content-type"].startswith("application/json")
        assert words in json.loads(data)["message"], (path, data)
    status, _, data = api.request("POST", "/build", b"garbage" * 200, {"Content-Type": "application/x-tar"})
    assert status == 400 and json.loads(data)["message"]
    status, _, data = api.request("POST", "/build", _context_tar({"x": "y"}), {"Content-Type": "application/x-tar"})
    assert status == 400 and "Dockerfile" in json.loads(data)["message"]
    status, _, data = api.request("POST", "/build", _context_tar({"Dockerfile": "FROB bb:1\n"}))
    assert status == 400 and "FROB" in json.loads(data)["message"]
    assert _tmp_files(api) == []


def test_a_context_tar_cannot_write_outside_its_directory(api: Api, bb: str, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = b"FROM bb:1\nCOPY . /ctx/\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("up")
        link.type, link.linkname = tarfile.SYMTYPE, str(tmp_path)
        tar.addfile(link)
        for name in ("../victim", "up/victim", str(victim)):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    status, _, data = api.request("POST", "/build?t=esc:1", raw.getvalue(), {"Content-Type": "application/x-tar"})
    assert not victim.exists()
    assert status == 400
    assert "leads outside the context" in json.loads(data)["message"]
    assert _tmp_files(api) == []


def _inspect(api: Api, fmt: str, image: str) -> str:
    return api.cli.ok("image", "inspect", "--format", fmt, image).strip()


@pytest.mark.slow
def test_the_docker_clis_build_options(api: Api, bb: str, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    write_file(
        ctx / "Dockerfile",
        "FROM bb:1 AS base\n"
        "ARG GREETING=hello\n"
        'RUN echo "$GREETING" > /greeting\n'
        "FROM base AS extra\n"
        "RUN echo extra > /extra\n"
        "FROM bb:1\n"
        "COPY --from=base /greeting /greeting\n"
        "COPY . /ctx/\n",
    )
    write_file(ctx / "other.Dockerfile", "FROM bb:1\nRUN echo other > /other\n")
    write_file(ctx / "kept.txt", "kept\n")
    write_file(ctx / "secret.key", "never sent\n")
    write_file(ctx / ".dockerignore", "*.key\n")

    out = api.docker_ok("build", "-t", "opts:1", "--build-arg", "GREETING=bonjour", "--label", "team=core", str(ctx))
    assert "Successfully tagged opts:1" in out
    assert "extra" not in out.replace("AS extra", "")  # the stage the target does not need is not built
    assert api.cli.ok("run", "--rm", "opts:1", "cat", "/greeting") == "bonjour\n"
    listed = api.cli.ok("run", "--rm", "opts:1", "ls", "-a", "/ctx").split()
    assert "kept.txt" in listed and "secret.key" not in listed  # the client applied .dockerignore
    assert _inspect(api, "{{.Config.Labels.team}}", "opts:1") == "core"

    again = api.docker_ok("build", "-t", "opts:2", "--build-arg", "GREETING=bonjour", "--label", "team=core", str(ctx))
    assert "Using cache" in again
    assert _inspect(api, "{{.Id}}", "opts:2") == _inspect(api, "{{.Id}}", "opts:1")
    fresh = api.docker_ok("build", "--no-cache", "-t", "opts:3", "--build-arg", "GREETING=bonjour", str(ctx))
    assert "Using cache" not in fresh
    assert "Running in" in fresh

    out = api.docker_ok("build", "--target", "extra", "-t", "opts:extra", str(ctx))
    assert "Step 5/8 : RUN echo extra > /extra" in out
    assert api.cli.ok("run", "--rm", "opts:extra", "cat", "/extra", "/greeting") == "extra\nhello\n"

    iidfile = tmp_path / "iid"
    out = api.docker_ok(
        "build", "-f", str(ctx / "other.Dockerfile"), "--iidfile", str(iidfile), "-t", "other:1", str(ctx)
    )
    assert "Step 2/2 : RUN echo other > /other" in out
    # The client takes it from the stream's aux line (docker-compose's CLI builds read this file).
    assert iidfile.read_text() == _inspect(api, "{{.Id}}", "other:1")
    assert api.cli.ok("run", "--rm", "other:1", "cat", "/other") == "other\n"

    # `build -`: the client wraps the Dockerfile from its standard input in a tar.
    out = api.docker_ok("build", "-t", "piped:1", "-", input=b"FROM bb:1\nRUN echo piped > /piped\n")
    assert "Successfully tagged piped:1" in out
    assert api.cli.ok("run", "--rm", "piped:1", "cat", "/piped") == "piped\n"

    quiet = api.docker_ok("build", "-q", "-t", "quiet:1", "-f", str(ctx / "other.Dockerfile"), str(ctx))
    assert quiet.strip() == _inspect(api, "{{.Id}}", "quiet:1")
    assert _tmp_files(api) == []


@pytest.mark.slow
def test_the_image_matches_what_overlayctl_build_makes(api: Api, bb: str, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    write_file(ctx / "app.sh", "#!/bin/sh\necho app\n", 0o755)
    write_file(
        ctx / "Dockerfile",
        "FROM bb:1\nENV MODE=prod\nCOPY app.sh /app.sh\nRUN mkdir /data && echo x > /data/x\n"
        'WORKDIR /data\nCMD ["/app.sh"]\n',
    )
    api.cli.ok("build", "-t", "from-cli:1", str(ctx))
    out = api.docker_ok("build", "-t", "from-api:1", str(ctx))
    # The same builder and cache: every step is the CLI's cached one, and
    # so is the image.
    assert out.count("Using cache") == 5
    assert _inspect(api, "{{.Id}}", "from-api:1") == _inspect(api, "{{.Id}}", "from-cli:1")
    api.docker_ok("build", "--no-cache", "-t", "fresh:1", str(ctx))
    steps = ("history", "--no-trunc", "--format", "{{.CreatedBy}} {{.Size}}")
    assert api.cli.ok(*steps, "fresh:1") == api.cli.ok(*steps, "from-cli:1")
    layers = "{{len .RootFS.Layers}}"
    assert _inspect(api, layers, "fresh:1") == _inspect(api, layers, "from-cli:1")
    assert api.cli.ok("run", "--rm", "fresh:1") == "app\n"


def test_build_prune_forgets_the_cache(api: Api, bb: str) -> None:
    tar = _context_tar({"Dockerfile": "FROM bb:1\nRUN echo cached > /c\n"})
    assert api.request("POST", "/build?t=p:1", tar)[0] == 200
    status, _, data = api.request("POST", "/build?t=p:2", tar)
    assert " ---> Using cache\n" in _stream(_lines(data))
    pruned = api.json("POST", "/v1.41/build/prune?all=1", expect=200)
    assert pruned["CachesDeleted"] and isinstance(pruned["SpaceReclaimed"], int)
    status, _, data = api.request("POST", "/build?t=p:3", tar)
    assert "Using cache" not in _stream(_lines(data))
    assert api.json("POST", "/build/prune", expect=200)["CachesDeleted"] == ["1 cached build steps"]
    status, _, data = api.request("POST", '/build/prune?filters={"until":["24h"]}')
    assert status == 400 and "until" in json.loads(data)["message"]
    out = api.docker_ok("builder", "prune", "-f")
    assert "Total reclaimed space" in out


def test_stages_built_at_once_stream_through_the_service(api: Api, bb: str) -> None:
    dockerfile = (
        "FROM bb:1 AS left\nRUN echo left-ran && echo L > /l\n"
        "FROM bb:1 AS right\nRUN echo right-ran && echo R > /r\n"
        "FROM bb:1\nCOPY --from=left /l /l\nCOPY --from=right /r /r\n"
    )
    status, _, data = api.request("POST", "/build?t=stages:1", _context_tar({"Dockerfile": dockerfile}))
    assert status == 200
    text = _stream(_lines(data))
    # Each stage's worker process: its lines (its RUN's output too) prefixed by its name.
    assert "[left] left-ran\n" in text and "[right] right-ran\n" in text
    assert "Successfully tagged stages:1\n" in text
    assert api.cli.ok("run", "--rm", "stages:1", "cat", "/l", "/r") == "L\nR\n"
    assert _tmp_files(api) == []


@pytest.mark.slow
def test_a_client_that_leaves_mid_build_costs_nothing(api: Api, bb: str) -> None:

    dockerfile = "FROM bb:1\nRUN echo started && sleep 3 && echo done > /done\n"
    body = _context_tar({"Dockerfile": dockerfile})
    sock = _build_until_started(api, body, "left:1")
    sock.close()  # gone while the RUN step runs
    # The build goes on to its end, in the service, and leaves nothing behind.
    wait_for(lambda: api.cli("image", "inspect", "left:1").returncode == 0, 60, "the build to finish")
    wait_for(lambda: _tmp_files(api) == [], 30, "the build's staging to go")
    assert api.cli.ok("ps", "-aq") == ""
    status, _, _ = api.request("GET", "/_ping")
    assert status == 200


def test_a_truncated_context_costs_nothing(api: Api, bb: str) -> None:
    import socket

    body = _context_tar({"Dockerfile": "FROM bb:1\n", "big": "x" * 200_000})
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(str(api.sock))
    head = "POST /v1.41/build?t=cut:1 HTTP/1.1\r\nHost: d\r\nContent-Type: application/x-tar\r\n"
    sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
    sock.shutdown(socket.SHUT_WR)  # the rest never comes
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    assert answer == b"" or b" 400 " in answer.split(b"\r\n")[0] or b" 500 " in answer.split(b"\r\n")[0]
    wait_for(lambda: _tmp_files(api) == [], 30, "the build's staging to go")
    assert api.cli("image", "inspect", "cut:1").returncode != 0
    assert api.request("GET", "/_ping")[0] == 200


def test_two_builds_at_once_keep_their_own_output(api: Api, bb: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def one(name: str) -> list[dict]:
        # Slow enough for the two RUN steps to overlap.
        dockerfile = f"FROM bb:1\nRUN for i in 1 2 3; do echo {name}-$i; sleep 0.2; done > /dev/stdout\n"
        status, _, data = api.request("POST", f"/build?t={name}:1", _context_tar({"Dockerfile": dockerfile}))
        assert status == 200, data
        return _lines(data)

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(one, ("alpha", "beta"))
    for name, lines, other in (("alpha", first, "beta"), ("beta", second, "alpha")):
        text = _stream(lines)
        assert all(f"{name}-{i}\n" in text for i in (1, 2, 3))
        assert other not in text  # nothing of the other build's output
        assert f"Successfully tagged {name}:1\n" in text
    assert _tmp_files(api) == []


@pytest.mark.slow
def test_a_service_told_to_stop_mid_build_leaves_nothing(api: Api, bb: str) -> None:
    import signal

    body = _context_tar({"Dockerfile": "FROM bb:1\nRUN echo started && sleep 2 && echo done\n"})
    sock = _build_until_started(api, body, "stopped:1")
    api.proc.send_signal(signal.SIGTERM)
    try:
        # It waits for the build under way, then exits.
        assert api.proc.wait(timeout=60) == 0
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
    finally:
        sock.close()
    assert b"Successfully tagged stopped:1" in rest
    assert _tmp_files(api) == []
    assert api.cli.ok("ps", "-aq") == ""


def test_docker_py_builds_through_the_low_level_api(api: Api, bb: str, tmp_path: Path) -> None:
    docker = pytest.importorskip("docker")  # PyPI's docker-py (scripts/setup.sh test installs it)
    ctx = tmp_path / "ctx"
    write_file(ctx / "Dockerfile", "FROM bb:1\nARG WHO\nRUN echo built-by-$WHO | tee /who\nCOPY . /ctx/\n")
    write_file(ctx / "junk.log", "ignored\n")
    write_file(ctx / ".dockerignore", "*.log\n")
    client = docker.APIClient(base_url=api.host, version="1.41")
    try:
        # docker-py sends X-Registry-Config, rm, forcerm, pull, labels and
        # buildargs as JSON, and reads the same stream as docker-compose.
        events = list(
            client.build(
                path=str(ctx),
                tag="py:1",
                buildargs={"WHO": "python"},
                labels={"via": "docker-py"},
                decode=True,
                rm=True,
                forcerm=True,
                pull=False,
            )
        )
    finally:
        client.close()
    assert not [e for e in events if "error" in e], events
    text = "".join(e.get("stream", "") for e in events)
    assert "built-by-python" in text
    image_id = _inspect(api, "{{.Id}}", "py:1")
    assert f"Successfully built {image_id[7:19]}\n" in text
    assert {"aux": {"ID": image_id}} in events
    assert _inspect(api, "{{.Config.Labels.via}}", "py:1") == "docker-py"
    assert "junk.log" not in api.cli.ok("run", "--rm", "py:1", "ls", "-a", "/ctx").split()


def test_rmi_of_an_image_built_through_the_service_frees_its_layers(api: Api, bb: str, tmp_path: Path) -> None:
    # The service outlives its builds: a layer it kept leased after the build
    # would stay on disk after the image is removed, until the service exits.
    layers = api.cli.root / "layers"
    before = sorted(os.listdir(layers))
    ctx = tmp_path / "ctx"
    write_file(ctx / "Dockerfile", "FROM bb:1\nRUN echo new-layer > /f\nRUN echo second > /g\n")
    api.docker_ok("build", "-t", "gone:1", str(ctx))
    assert len(os.listdir(layers)) == len(before) + 2
    out = api.docker_ok("rmi", "gone:1")
    assert "Untagged: gone:1" in out and "Deleted: sha256:" in out
    assert sorted(os.listdir(layers)) == before

"""pull, push, login and logout against real peers on 127.0.0.1.

A real registry (Debian's docker-registry, the CNCF distribution registry,
started by scripts/registry.sh) three times over: open, with htpasswd Basic
auth, and with token auth (a tiny token server below signs the JWTs with
openssl). skopeo checks independently what we pushed and pushes an image we
then pull. A fake registry in this process (tests/unit) plays the broken
ones: down, 401/404/500, missing or corrupt blobs, unsupported media types;
after each, the store must be exactly as before.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tarfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import CLI, REPO
from tests.unit.test_registry_client import FakeRegistry

REGISTRY_SH = REPO / "scripts" / "registry.sh"
FAST_RETRIES = {"OVERLAYCTL_REGISTRY_BACKOFF": "0.01"}


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- the peers ----------------------------------------------------------------------


class Registry:
    """A docker-registry process from scripts/registry.sh."""

    def __init__(
        self, auth_yaml: str | None = None, tmp: Path | None = None, tls: tuple[Path, Path] | None = None
    ) -> None:
        if shutil.which("docker-registry") is None and os.geteuid() != 0:
            pytest.skip("docker-registry is not installed (scripts/setup.sh test installs it)")
        argv = ["sh", str(REGISTRY_SH), "start"]
        if auth_yaml is not None:
            assert tmp is not None
            path = tmp / "auth.yml"
            path.write_text(auth_yaml)
            argv += ["--auth", str(path)]
        if tls is not None:
            argv += ["--tls", str(tls[0]), str(tls[1])]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        env = dict(item.split("=", 1) for item in out.stdout.split()[1:])
        self.host, self.dir = env["REGISTRY"], env["REGISTRY_DIR"]

    def stop(self) -> None:
        subprocess.run(["sh", str(REGISTRY_SH), "stop", self.dir], check=True, timeout=60)


@pytest.fixture(scope="session")
def registry() -> Iterator[str]:
    """An open registry; its address 127.0.0.1:PORT."""
    r = Registry()
    yield r.host
    r.stop()


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A registry serving HTTPS with a self-signed certificate for 127.0.0.1;
    its address and a --cert-dir holding that certificate as ca.crt."""
    tmp = tmp_path_factory.mktemp("tls")
    certs = tmp / "certs"
    certs.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp / "key.pem"),
         "-out", str(certs / "ca.crt"), "-subj", "/CN=127.0.0.1", "-days", "1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    r = Registry(tls=(certs / "ca.crt", tmp / "key.pem"))
    yield r.host, certs
    r.stop()


def _htpasswd(user: str, password: str) -> str:
    # The registry accepts bcrypt only; the crypt module's blowfish is bcrypt.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

    return f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n"


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry with htpasswd Basic auth: user "alice", password "s3cret"."""
    tmp = tmp_path_factory.mktemp("basic")
    (tmp / "htpasswd").write_text(_htpasswd("alice", "s3cret"))
    r = Registry(f"auth:\n  htpasswd:\n    realm: test\n    path: {tmp / 'htpasswd'}\n", tmp)
    yield r.host
    r.stop()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """The token half of the registry's token auth: Basic credentials in,
    an RS256 JWT granting the asked scopes out (signed by openssl)."""

    def __init__(self, tmp: Path, user: str, password: str) -> None:
        self.key, self.cert = tmp / "token.key", tmp / "token.crt"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
             "-out", str(self.cert), "-subj", "/CN=overlayctl-test-token", "-days", "1"],
            check=True, capture_output=True,
        )  # fmt: skip
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True, capture_output=True
        ).stdout
        self.x5c = base64.b64encode(der).decode()
        self.user, self.password = user, password
        self.requests: list[dict[str, list[str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                query = parse_qs(urlsplit(self.path).query)
                server.requests.append(query)
                want = "Basic " + base64.b64encode(f"{server.user}:{server.password}".encode()).decode()
                if self.headers.get("Authorization") != want:
                    body, status = b'{"details": "bad credentials"}', 401
                else:
                    body, status = json.dumps({"token": server.sign(query)}).encode(), 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def sign(self, query: dict[str, list[str]]) -> str:
        access = []
        for scope in query.get("scope", []):
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": "overlayctl-test", "sub": self.user, "aud": query["service"][0], "exp": now + 300,
            "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access,
        }  # fmt: skip
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(), check=True, capture_output=True,
        ).stdout  # fmt: skip
        return f"{signing_input}.{_b64url(signature)}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TokenServer]]:
    """A registry with token auth (user "bob", password "hunter2") and its token server."""
    tmp = tmp_path_factory.mktemp("token")
    tokens = TokenServer(tmp, "bob", "hunter2")
    auth = (
        "auth:\n  token:\n"
        f"    realm: {tokens.realm}\n    service: overlayctl-test-registry\n"
        f"    issuer: overlayctl-test\n    rootcertbundle: {tokens.cert}\n"
    )
    r = Registry(auth, tmp)
    yield r.host, tokens
    r.stop()
    tokens.close()


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    registry = FakeRegistry()
    yield registry
    registry.close()


# -- helpers ----------------------------------------------------------------------------


def _image_id(cli: CLI, ref: str) -> str:
    return json.loads(cli.ok("image", "inspect", ref))[0]["Id"]


def _pushed_digest(out: str) -> str:
    line = next(line for line in out.splitlines() if ": digest: " in line)
    return line.split(": digest: ")[1].split()[0]


def _store_state(cli: CLI) -> dict:
    """What a failed pull must not change: directories and catalog rows."""
    root = cli.root
    state: dict = {}
    for sub in ("layers", "blobs", "tmp", "leases"):
        path = root / sub
        # Files only: an empty blobs/sha256 made on the way is layout, not content.
        state[sub] = sorted(str(p.relative_to(root)) for p in path.rglob("*") if not p.is_dir() or sub != "blobs")
    conn = sqlite3.connect(root / "catalog.db")
    try:
        for table in ("images", "image_layers", "layers", "tags", "layer_blobs", "image_manifests"):
            state[table] = sorted(map(repr, conn.execute(f"SELECT * FROM {table}")))
    finally:
        conn.close()
    return state


def _layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _image(layers: list[bytes], arch: str = "amd64") -> tuple[list[bytes], bytes]:
    """(gzip blobs, config bytes) of an image made of these layer tars."""
    blobs = [gzip.compress(tar, mtime=0) for tar in layers]
    config = {
        "architecture": arch, "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(t) for t in layers]},
    }  # fmt: skip
    return blobs, json.dumps(config).encode()


def _manifest(blobs: list[bytes], config: bytes, layer_type: str = "application/vnd.oci.image.layer.v1.tar+gzip",
              media_type: str = "application/vnd.oci.image.manifest.v1+json") -> bytes:  # fmt: skip
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": sha(b), "size": len(b)} for b in blobs],
    }
    return json.dumps(doc).encode()


def _publish(fake: FakeRegistry, repo: str, tag: str, layers: list[bytes], **kw: str) -> tuple[list[bytes], bytes]:
    blobs, config = _image(layers)
    for blob in blobs + [config]:
        fake.add_blob(repo, blob)
    fake.add_manifest(
        repo, tag, _manifest(blobs, config, **kw), kw.get("media_type", "application/vnd.oci.image.manifest.v1+json")
    )
    return blobs, config


# -- real registry: round trips -------------------------------------------------------------


def test_push_rm_pull_gives_the_same_image(cli, bb, registry):
    out = cli.ok("push", "bb:1", f"{registry}/rt:1")
    assert "Pushed" in out and f"The push refers to repository [{registry}/rt]" in out
    digest = _pushed_digest(out)
    cli.ok("rmi", "bb:1")
    out = cli.ok("pull", f"{registry}/rt:1")
    assert "Pulling fs layer" in out and "Pull complete" in out
    assert f"Digest: {digest}" in out
    assert f"Status: Downloaded newer image for {registry}/rt:1" in out
    assert _image_id(cli, f"{registry}/rt:1") == bb
    again = cli.ok("pull", f"{registry}/rt:1")
    assert "Already exists" in again and "Status: Image is up to date" in again
    assert cli.ok("pull", "-q", f"{registry}/rt:1").strip() == bb
    assert cli.ok("run", "--rm", f"{registry}/rt:1", "echo", "pulled") == "pulled\n"
    assert os.listdir(cli.root / "tmp") == []


def test_run_pull_always_pulls_through_the_registry(cli, bb, registry):
    cli.ok("push", "-q", "bb:1", f"{registry}/runpull:1")
    never = cli("run", "--rm", "--network", "none", "--pull", "never", f"{registry}/runpull:1", "true")
    assert never.returncode == 125 and b"not found" in never.stderr
    ran = cli("run", "--rm", "--network", "none", "--pull", "always", f"{registry}/runpull:1", "echo", "pulled")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == b"pulled\n" and b"Pulling from runpull" in ran.stderr
    assert _image_id(cli, f"{registry}/runpull:1") == bb
    cli.ok("rmi", f"{registry}/runpull:1")
    missing = cli("run", "--rm", "--network", "none", "--pull", "missing", f"{registry}/runpull:1", "echo", "again")
    assert missing.returncode == 0 and missing.stdout == b"again\n", missing.stderr
    stored = cli("run", "--rm", "--network", "none", "--pull", "missing", f"{registry}/runpull:1", "true")
    assert stored.returncode == 0 and b"Pulling" not in stored.stderr


def test_push_and_pull_are_recorded_as_events(cli, bb, registry):
    cli.ok("push", "bb:1", f"{registry}/ev:1")
    cli.ok("pull", f"{registry}/ev:1")
    out = cli.ok("events", "--since", "0", "--until", str(time.time() + 0.001), "-f", "type=image", "--format", "json")
    shown = [
        (e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"]["name"]) for e in map(json.loads, out.splitlines())
    ]
    # As Docker's: a push or pull names the reference, not the image ID.
    assert shown[1:] == [("push", f"{registry}/ev:1", f"{registry}/ev"), ("pull", f"{registry}/ev:1", f"{registry}/ev")]
    filtered = cli.ok(
        "events", "--since", "0", "--until", str(time.time()), "-f", f"image={registry}/ev", "--format", "json"
    )
    assert [json.loads(line)["Action"] for line in filtered.splitlines()] == ["push", "pull"]


def test_rmi_of_the_local_copy_during_a_pull_that_found_its_layers(cli, bb, registry, tmp_path):
    cli.ok("push", "bb:1", f"{registry}/race:1")
    layers = json.loads(cli.ok("image", "inspect", "bb:1"))[0]["RootFS"]["Layers"]
    gate = tmp_path / "gate"
    env = dict(cli.env, OVERLAYCTL_FAULTS=f"pull-layers=pause:{gate}")
    pull = subprocess.Popen(
        cli.argv("pull", f"{registry}/race:1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "gate.reached").exists():
        assert pull.poll() is None and time.monotonic() < deadline, pull.communicate()
        time.sleep(0.02)
    # The pull found every layer stored ("Already exists") and relies on
    # them: the image goes, its layers stay for the pull.
    assert cli.ok("rmi", "bb:1") == f"Untagged: bb:1\nDeleted: {bb}\n"
    gate.touch()
    out, err = pull.communicate(timeout=120)
    assert pull.returncode == 0, err
    assert out.decode().count("Already exists") == len(layers)
    assert cli.ok("run", "--rm", "--network", "none", f"{registry}/race:1", "echo", "ok") == "ok\n"
    assert cli.ok("system", "fsck") == "no problems found\n"


def test_pull_by_digest(cli, bb, registry):
    digest = _pushed_digest(cli.ok("push", "bb:1", f"{registry}/bydigest:1"))
    cli.ok("rmi", "bb:1")
    out = cli.ok("pull", f"{registry}/bydigest@{digest}")
    assert f"Digest: {digest}" in out and out.splitlines()[-1] == f"{registry}/bydigest@{digest}"
    info = json.loads(cli.ok("image", "inspect", bb))[0]
    assert info["Id"] == bb and info["RepoTags"] == []
    wrong = "sha256:" + "0" * 64
    result = cli("pull", f"{registry}/bydigest@{wrong}")
    assert result.returncode == 125 and b"manifest unknown" in result.stderr


def test_second_store_and_push_of_a_pulled_image_keeps_the_digest(cli, bb, registry, tmp_path):
    digest = _pushed_digest(cli.ok("push", "bb:1", f"{registry}/keep:1"))
    other = CLI(tmp_path / "root2", tmp_path / "run2")
    other.ok("pull", f"{registry}/keep:1")
    assert _image_id(other, f"{registry}/keep:1") == bb
    # Pushed elsewhere in the same registry: the layer is mounted, not sent,
    # and the manifest is byte for byte the one pulled.
    out = other.ok("push", f"{registry}/keep:1", f"{registry}/keep-copy:1")
    assert "Mounted from keep" in out and "Pushed" not in out
    assert _pushed_digest(out) == digest
    # Pushed by its first store with --compression-format, a layer made here
    # is still deterministic: the same digest every time.
    assert _pushed_digest(cli.ok("push", "bb:1", f"{registry}/keep:2")) == digest


def test_shared_base_layer_is_not_uploaded_twice(cli, bb, registry, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb:1\nRUN echo derived > /derived.txt\n")
    cli.ok("build", "-q", "-t", "derived:1", str(ctx))
    cli.ok("push", "bb:1", f"{registry}/shared:base")
    out = cli.ok("push", "derived:1", f"{registry}/shared:derived")
    lines = [line for line in out.splitlines() if line[:12].isalnum() and ": " in line]
    assert sum("Layer already exists" in line for line in lines) == 1
    assert sum(line.endswith(": Pushed") for line in lines) == 1
    other = CLI(tmp_path / "root2", tmp_path / "run2")
    other.ok("pull", f"{registry}/shared:base")
    out = other.ok("pull", f"{registry}/shared:derived")
    assert "Already exists" in out and "Pull complete" in out
    assert other.ok("run", "--rm", f"{registry}/shared:derived", "cat", "/derived.txt") == "derived\n"


def test_chunked_push(cli, bb, registry, tmp_path):
    digest = _pushed_digest(cli.ok("push", "--chunk-size", "256k", "bb:1", f"{registry}/chunked:1"))
    other = CLI(tmp_path / "root2", tmp_path / "run2")
    other.ok("pull", f"{registry}/chunked:1")
    assert _image_id(other, f"{registry}/chunked:1") == bb
    assert digest.startswith("sha256:")


def test_multi_platform_index(cli, bb, registry):
    """An index with amd64 and arm64: the host's by default, --platform picks."""
    from overlayctl.oci.registry import OCI_INDEX, RegistryClient

    cli.ok("push", "bb:1", f"{registry}/multi:amd64")
    client = RegistryClient(registry)
    body, _, amd_digest = client.get_manifest("multi", "amd64")
    manifest = json.loads(body)
    config = json.loads(client.open_blob("multi", manifest["config"]["digest"]).content)
    config["architecture"] = "arm64"
    arm_config = json.dumps(config).encode()
    client.upload_blob("multi", sha(arm_config), len(arm_config), lambda: io.BytesIO(arm_config))
    manifest["config"] = {**manifest["config"], "digest": sha(arm_config), "size": len(arm_config)}
    arm_body = json.dumps(manifest).encode()
    arm_digest = client.put_manifest("multi", sha(arm_body), arm_body, manifest["mediaType"])
    index = {
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": manifest["mediaType"], "digest": amd_digest, "size": len(body),
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": manifest["mediaType"], "digest": arm_digest, "size": len(arm_body),
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ],
    }  # fmt: skip
    index_digest = client.put_manifest("multi", "1", json.dumps(index).encode(), OCI_INDEX)
    client.close()
    cli.ok("rmi", "bb:1")
    # As Docker: the digest printed and kept in RepoDigests is the index's,
    # the one a later pull or run by digest names.
    out = cli.ok("pull", "--platform", "linux/arm64", f"{registry}/multi:1")
    assert f"Digest: {index_digest}" in out
    assert _image_id(cli, f"{registry}/multi:1") == sha(arm_config)
    info = json.loads(cli.ok("image", "inspect", f"{registry}/multi@{index_digest}"))[0]
    assert info["Id"] == sha(arm_config) and info["RepoDigests"] == [f"{registry}/multi@{index_digest}"]
    if os.uname().machine == "x86_64":
        out = cli.ok("pull", f"{registry}/multi:1")
        assert f"Digest: {index_digest}" in out and _image_id(cli, f"{registry}/multi:1") == bb
        assert _image_id(cli, f"{registry}/multi@{index_digest}") == bb
    result = cli("pull", "--platform", "linux/s390x", f"{registry}/multi:1")
    assert result.returncode == 125 and b"no image for linux/s390x" in result.stderr


def test_tls_verify_and_cert_dir(cli, bb, tls_registry):
    host, certs = tls_registry
    # Loopback, no --tls-verify: TLS is used but, as Docker does for
    # 127.0.0.1, its certificate is not required to be trusted.
    cli.ok("push", "bb:1", f"{host}/tls:1")
    result = cli("pull", "--tls-verify=true", f"{host}/tls:1")
    assert result.returncode == 125 and b"TLS certificate not trusted" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    cli.ok("rmi", "bb:1")
    out = cli.ok("pull", "--cert-dir", str(certs), f"{host}/tls:1")
    assert "Pull complete" in out and _image_id(cli, f"{host}/tls:1") == bb
    cli.ok("push", "--tls-verify", "--cert-dir", str(certs), f"{host}/tls:1", f"{host}/tls:2")


# -- independent checks with skopeo --------------------------------------------------------


def _skopeo() -> str:
    path = shutil.which("skopeo")
    if path is None:
        pytest.skip("skopeo is not installed (scripts/setup.sh test installs it)")
    return path


def test_skopeo_reads_what_we_pushed(cli, bb, registry, tmp_path):
    skopeo = _skopeo()
    digest = _pushed_digest(cli.ok("push", "bb:1", f"{registry}/sk-out:1"))
    oci = tmp_path / "oci"
    subprocess.run(
        [skopeo, "copy", "--preserve-digests", "--src-tls-verify=false",
         f"docker://{registry}/sk-out:1", f"oci:{oci}:t"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    index = json.loads((oci / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest  # skopeo kept our manifest byte for byte
    manifest = json.loads((oci / "blobs" / "sha256" / digest[7:]).read_bytes())
    assert manifest["config"]["digest"] == bb
    for layer in manifest["layers"]:
        assert sha((oci / "blobs" / "sha256" / layer["digest"][7:]).read_bytes()) == layer["digest"]


def test_we_pull_what_skopeo_pushed_docker_schema2(cli, registry, tmp_path):
    """An image we did not make, in Docker v2 schema 2 form: skopeo copies an
    OCI layout (made here by hand) into the registry, converting it."""
    skopeo = _skopeo()
    oci = tmp_path / "src"
    layers = [_layer_tar({"etc/one": b"1\n"}), _layer_tar({"etc/two": b"2\n"})]
    blobs, config = _image(layers)
    (oci / "blobs" / "sha256").mkdir(parents=True)
    manifest = _manifest(blobs, config)
    for blob in blobs + [config, manifest]:
        (oci / "blobs" / "sha256" / sha(blob)[7:]).write_bytes(blob)
    (oci / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (oci / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "1"}}]}))  # fmt: skip
    subprocess.run(
        [skopeo, "copy", "--format", "v2s2", "--dest-tls-verify=false", f"oci:{oci}:1", f"docker://{registry}/sk-in:1"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    out = cli.ok("pull", f"{registry}/sk-in:1")
    assert out.count("Pull complete") == 2
    info = json.loads(cli.ok("image", "inspect", f"{registry}/sk-in:1"))[0]
    assert info["RootFS"]["Layers"] == [sha(t) for t in layers]
    # Pushed back: the Docker-typed manifest goes out as it came.
    digest = _pushed_digest(cli.ok("push", f"{registry}/sk-in:1", f"{registry}/sk-in:2"))
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{registry}/sk-in:1"],
        check=True, capture_output=True, timeout=60,
    ).stdout  # fmt: skip
    assert json.loads(raw)["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert sha(raw) == digest


# -- auth ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_basic_auth_login_push_pull_logout(cli, bb, basic_registry, tmp_path):
    authfile = tmp_path / "auth.json"
    cli.env["REGISTRY_AUTH_FILE"] = str(authfile)
    result = cli("push", "bb:1", f"{basic_registry}/private:1")
    assert result.returncode == 125
    assert b"unauthorized" in result.stderr and b"overlayctl login" in result.stderr
    assert len(result.stderr.decode().strip().splitlines()) == 1
    bad = cli("login", "-u", "alice", "--password-stdin", basic_registry, input=b"wrong\n")
    assert bad.returncode == 125 and not authfile.exists()
    assert cli.ok("login", "-u", "alice", "--password-stdin", basic_registry, input=b"s3cret\n") == "Login Succeeded!\n"
    entry = json.loads(authfile.read_text())["auths"][basic_registry]
    assert base64.b64decode(entry["auth"]) == b"alice:s3cret"
    assert oct(authfile.stat().st_mode & 0o777) == "0o600"
    cli.ok("push", "bb:1", f"{basic_registry}/private:1")
    cli.ok("rmi", "bb:1")
    cli.ok("pull", f"{basic_registry}/private:1")
    assert cli.ok("logout", basic_registry) == f"Removed login credentials for {basic_registry}\n"
    assert basic_registry not in json.loads(authfile.read_text())["auths"]
    assert cli("pull", f"{basic_registry}/private:1").returncode == 125
    result = cli("logout", basic_registry)
    assert result.returncode == 125 and b"not logged into" in result.stderr
    # --authfile and --creds, without touching the default file.
    other = tmp_path / "other.json"
    cli.ok("login", "--authfile", str(other), "-u", "alice", "-p", "s3cret", basic_registry)
    cli.ok("pull", "--authfile", str(other), f"{basic_registry}/private:1")
    cli.ok("pull", "--creds", "alice:s3cret", f"{basic_registry}/private:1")


def test_token_auth(cli, bb, token_registry, tmp_path):
    host, tokens = token_registry
    cli.env["REGISTRY_AUTH_FILE"] = str(tmp_path / "auth.json")
    result = cli("push", "bb:1", f"{host}/tok/img:1")
    assert result.returncode == 125 and b"overlayctl login" in result.stderr
    assert cli("login", "-u", "bob", "-p", "nope", host).returncode == 125
    cli.ok("login", "-u", "bob", "-p", "hunter2", host)
    before = len(tokens.requests)
    out = cli.ok("push", "bb:1", f"{host}/tok/img:1")
    assert "Pushed" in out
    scopes = [s for q in tokens.requests[before:] for s in q.get("scope", [])]
    assert "repository:tok/img:pull,push" in scopes
    assert all(q.get("service") == ["overlayctl-test-registry"] for q in tokens.requests[before:])
    cli.ok("rmi", "bb:1")
    cli.ok("pull", f"{host}/tok/img:1")
    assert _image_id(cli, f"{host}/tok/img:1") == bb
    # A mount across repositories needs pull on the source in the same token.
    out = cli.ok("push", f"{host}/tok/img:1", f"{host}/tok/copy:1")
    assert "Mounted from tok/img" in out
    cli.ok("logout", host)


# -- bad registries: clear errors, nothing stored ------------------------------------------------


def _fails_cleanly(cli: CLI, *args: str, needle: str, unchanged: bool = True) -> str:
    cli.ok("images")  # the store exists, so its state can be compared
    before = _store_state(cli)
    cli.env.update(FAST_RETRIES)
    result = cli(*args)
    err = result.stderr.decode()
    assert result.returncode == 125, (result.stdout, err)
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err, err
    if unchanged:
        assert _store_state(cli) == before
    return err


def test_registry_down(cli):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    err = _fails_cleanly(cli, "pull", f"127.0.0.1:{port}/x:1", needle="connection refused")
    assert err == f"overlayctl: cannot reach registry 127.0.0.1:{port}: connection refused\n"


def test_manifest_unknown(cli, fake):
    _fails_cleanly(cli, "pull", f"{fake.host}/nothing:1", needle="manifest unknown")


def test_unauthorized(cli, fake):
    fake.auth = "basic"
    _fails_cleanly(cli, "pull", f"{fake.host}/x:1", needle="log in first: overlayctl login")


def test_server_errors_are_retried_then_reported(cli, fake):
    _publish(fake, "x", "1", [_layer_tar({"a": b"a"})])
    fake.fail_next = [500] * 20
    _fails_cleanly(cli, "pull", f"{fake.host}/x:1", needle="500")
    assert len(fake.log) >= 4  # /v2/ retried before giving up
    fake.fail_next = [500, 502]  # transient: the pull succeeds
    cli.ok("pull", f"{fake.host}/x:1")


def test_a_download_cut_half_way_is_fetched_again(cli, fake):
    blobs, config = _publish(fake, "x", "1", [_layer_tar({"a": os.urandom(300_000)}), _layer_tar({"b": b"b"})])
    fake.truncate_once.add(sha(blobs[0]))
    cli.env.update(FAST_RETRIES)
    out = cli.ok("pull", f"{fake.host}/x:1")
    assert out.count("Pull complete") == 2
    assert _image_id(cli, f"{fake.host}/x:1") == sha(config)
    assert fake.log.count(("GET", f"/v2/x/blobs/{sha(blobs[0])}")) == 2
    assert len(os.listdir(cli.root / "layers")) == 2 and os.listdir(cli.root / "tmp") == []


def test_missing_blob(cli, fake):
    blobs, _ = _publish(fake, "x", "1", [_layer_tar({"a": b"a" * 5000}), _layer_tar({"b": b"b"})])
    fake.missing.add(sha(blobs[1]))
    _fails_cleanly(cli, "pull", f"{fake.host}/x:1", needle="is missing")


def test_corrupt_blob(cli, fake):
    blobs, _ = _publish(fake, "x", "1", [_layer_tar({"a": b"a" * 5000}), _layer_tar({"b": b"b"})])
    fake.corrupt.add(sha(blobs[1]))
    _fails_cleanly(cli, "pull", f"{fake.host}/x:1", needle="does not match its digest")


def test_layer_that_is_not_its_diff_id(cli, fake):
    """The blob is intact but unpacks to another tar than the config lists."""
    blobs, config = _image([_layer_tar({"a": b"a"})])
    lie = json.loads(config)
    lie["rootfs"]["diff_ids"] = [sha(b"something else")]
    config = json.dumps(lie).encode()
    for blob in blobs + [config]:
        fake.add_blob("x", blob)
    fake.add_manifest("x", "1", _manifest(blobs, config), "application/vnd.oci.image.manifest.v1+json")
    _fails_cleanly(cli, "pull", f"{fake.host}/x:1", needle="does not match its image config")


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"layer_type": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"}, "unsupported layer media type"),
        ({"media_type": "application/vnd.docker.distribution.manifest.v1+prettyjws"}, "schema 1"),
        ({"media_type": "application/x-something"}, "unsupported manifest media type"),
    ],
)
def test_unsupported_media_types(cli, fake, kw, needle):
    _publish(fake, "x", "1", [_layer_tar({"a": b"a"})], **kw)
    _fails_cleanly(cli, "pull", f"{fake.host}/x:1", needle=needle)


def test_push_to_a_broken_registry(cli, bb, fake):
    fake.fail_method["PUT"] = [500] * 50
    _fails_cleanly(cli, "push", "bb:1", f"{fake.host}/x:1", needle="500", unchanged=False)
    assert _image_id(cli, "bb:1") == bb

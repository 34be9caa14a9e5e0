"""The registry client against an in-process fake registry: references,
challenges, token and Basic auth, retries, uploads (monolithic, chunked,
mounted), redirects. No root, no store.

FakeRegistry is also what tests/integration/test_registry.py uses for the
misbehaving registries a real one cannot be made to imitate.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from overlayctl.errors import InvalidArgumentError, RegistryAuthError, RegistryError
from overlayctl.oci import registry as reg
from overlayctl.oci.registry import RegistryClient, parse_challenge, parse_remote, with_query


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    """A small in-memory distribution registry on 127.0.0.1.

    Knobs: auth ("basic" or "bearer", with user/password), fail_next (a list
    of statuses to answer the next requests with), drop_next (close the
    connection without an answer), redirect_blobs (answer blob GETs with a
    307 to a second server), corrupt (digests whose bytes are served wrong).
    Every request is logged as (method, path).
    """

    def __init__(self, auth: str | None = None, user: str = "u", password: str = "p") -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.repos_with_blob: dict[str, set[str]] = {}
        self.uploads: dict[str, bytearray] = {}
        self.log: list[tuple[str, str]] = []
        self.headers_seen: list[dict[str, str]] = []
        self.auth, self.user, self.password = auth, user, password
        self.fail_next: list[int] = []
        self.fail_method: dict[str, list[int]] = {}
        self.drop_method: dict[str, int] = {}
        self.drop_next = 0
        self.corrupt: set[str] = set()
        self.missing: set[str] = set()
        self.truncate_once: set[str] = set()  # blobs whose next GET stops half way
        self.redirect_to: str | None = None
        self.token_requests: list[dict[str, list[str]]] = []
        self.allow_mount = True
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_blob(self, repo: str, data: bytes) -> str:
        digest = sha(data)
        self.blobs[digest] = data
        self.repos_with_blob.setdefault(digest, set()).add(repo)
        return digest

    def add_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        self.manifests[(repo, ref)] = (body, media_type)
        self.manifests[(repo, sha(body))] = (body, media_type)
        return sha(body)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
                body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
                self._send(status, body, {"Content-Type": "application/json", **(headers or {})})

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _authorized(self) -> bool:
                if fake.auth is None:
                    return True
                header = self.headers.get("Authorization", "")
                if fake.auth == "basic":
                    want = base64.b64encode(f"{fake.user}:{fake.password}".encode()).decode()
                    if header == f"Basic {want}":
                        return True
                    self._error(
                        401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": 'Basic realm="fake"'}
                    )
                    return False
                if header.startswith("Bearer good-"):
                    return True
                realm = f"http://{fake.host}/token"
                self._error(
                    401,
                    "UNAUTHORIZED",
                    "authentication required",
                    {"WWW-Authenticate": f'Bearer realm="{realm}",service="fake",scope="x"'},
                )
                return False

            def _token(self, query: dict[str, list[str]]) -> None:
                fake.token_requests.append(query)
                header = self.headers.get("Authorization", "")
                want = base64.b64encode(f"{fake.user}:{fake.password}".encode()).decode()
                if header != f"Basic {want}":
                    self._error(401, "UNAUTHORIZED", "bad credentials")
                    return
                self._send(
                    200,
                    json.dumps({"token": "good-" + uuid.uuid4().hex}).encode(),
                    {"Content-Type": "application/json"},
                )

            def handle_one(self) -> None:
                self.headers_seen = dict(self.headers)
                fake.headers_seen.append(dict(self.headers))
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                fake.log.append((self.command, url.path))
                if url.path == "/token":
                    return self._token(query)
                if fake.drop_next or fake.drop_method.get(self.command):
                    if fake.drop_method.get(self.command):
                        fake.drop_method[self.command] -= 1
                    else:
                        fake.drop_next -= 1
                    self._body()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fake.fail_next or fake.fail_method.get(self.command):
                    status = (fake.fail_method.get(self.command) or fake.fail_next).pop(0)
                    self._body()
                    return self._error(status, "UNKNOWN", "injected failure")
                if url.path == "/v2/" and fake.auth is None:
                    return self._send(200, b"{}")
                if not self._authorized():
                    self._body()
                    return None
                if url.path == "/v2/":
                    return self._send(200, b"{}")
                path = url.path[len("/v2/") :]
                if "/manifests/" in path:
                    repo, ref = path.split("/manifests/")
                    if self.command == "PUT":
                        body = self._body()
                        media_type = self.headers.get("Content-Type", "")
                        fake.add_manifest(repo, ref, body, media_type)
                        return self._send(201, b"", {"Docker-Content-Digest": sha(body)})
                    if (repo, ref) not in fake.manifests:
                        return self._error(404, "MANIFEST_UNKNOWN", "manifest unknown")
                    body, media_type = fake.manifests[(repo, ref)]
                    return self._send(200, body, {"Content-Type": media_type, "Docker-Content-Digest": sha(body)})
                if "/blobs/uploads/" in path:
                    return self._upload(path, query)
                if "/blobs/" in path:
                    repo, digest = path.split("/blobs/")
                    if digest not in fake.blobs or digest in fake.missing:
                        return self._error(404, "BLOB_UNKNOWN", "blob unknown")
                    if self.command == "GET" and fake.redirect_to:
                        return self._send(307, b"", {"Location": f"{fake.redirect_to}/{digest}"})
                    data = fake.blobs[digest]
                    if digest in fake.corrupt:
                        data = bytes([data[0] ^ 1]) + data[1:]
                    if self.command == "GET" and digest in fake.truncate_once:
                        fake.truncate_once.discard(digest)
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data[: len(data) // 2])
                        self.close_connection = True
                        return None
                    return self._send(200, data, {"Docker-Content-Digest": digest})
                return self._error(404, "NAME_UNKNOWN", "no such path")

            def _upload(self, path: str, query: dict[str, list[str]]) -> None:
                repo, _, session = path.partition("/blobs/uploads/")
                if self.command == "POST":
                    self._body()
                    if "mount" in query:
                        digest, source = query["mount"][0], query["from"][0]
                        if fake.allow_mount and source in fake.repos_with_blob.get(digest, set()):
                            fake.repos_with_blob[digest].add(repo)
                            return self._send(201, b"", {"Location": f"/v2/{repo}/blobs/{digest}"})
                    sid = uuid.uuid4().hex
                    fake.uploads[sid] = bytearray()
                    return self._send(
                        202, b"", {"Location": f"/v2/{repo}/blobs/uploads/{sid}?_state=x", "Range": "0-0"}
                    )
                if session not in fake.uploads:
                    self._body()
                    return self._error(404, "BLOB_UPLOAD_UNKNOWN", "no such upload")
                buf = fake.uploads[session]
                if self.command == "PATCH":
                    start, end = (int(x) for x in self.headers["Content-Range"].split("-"))
                    if start != len(buf):
                        self._body()
                        return self._error(416, "BLOB_UPLOAD_INVALID", "range out of order")
                    buf += self._body()
                    assert len(buf) == end + 1
                    return self._send(
                        202,
                        b"",
                        {"Location": f"/v2/{repo}/blobs/uploads/{session}?_state=y", "Range": f"0-{len(buf) - 1}"},
                    )
                if self.command == "PUT":
                    buf += self._body()
                    digest = query["digest"][0]
                    if sha(bytes(buf)) != digest:
                        return self._error(400, "DIGEST_INVALID", "digest mismatch")
                    del fake.uploads[session]
                    fake.add_blob(repo, bytes(buf))
                    return self._send(201, b"", {"Location": f"/v2/{repo}/blobs/{digest}"})
                return self._error(405, "UNSUPPORTED", "method")

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = handle_one

        return Handler


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    registry = FakeRegistry()
    yield registry
    registry.close()


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reg, "BACKOFF", 0.01)


# -- pure parsing ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, registry, repository, name, tag, digest",
    [
        ("busybox", "docker.io", "library/busybox", "busybox", "latest", None),
        ("acme/base:1.0", "docker.io", "acme/base", "acme/base", "1.0", None),
        ("127.0.0.1:5000/bb:1", "127.0.0.1:5000", "bb", "127.0.0.1:5000/bb", "1", None),
        ("docker://localhost/a/b", "localhost", "a/b", "localhost/a/b", "latest", None),
        ("quay.io/x/y@sha256:" + "a" * 64, "quay.io", "x/y", "quay.io/x/y", None, "sha256:" + "a" * 64),
        ("quay.io/x/y:2@sha256:" + "b" * 64, "quay.io", "x/y", "quay.io/x/y", "2", "sha256:" + "b" * 64),
    ],
)
def test_parse_remote(
    text: str, registry: str, repository: str, name: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_remote(text)
    assert (ref.registry, ref.repository, ref.name, ref.tag, ref.digest) == (registry, repository, name, tag, digest)
    assert ref.reference == (digest or tag)


@pytest.mark.parametrize("text", ["Bad/Upper", "x@sha256:abc", "x@md5:" + "a" * 64, ""])
def test_parse_remote_rejects(text: str) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_remote(text)


def test_parse_challenge() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push",
    }
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})


def test_with_query_keeps_upload_state() -> None:
    assert with_query("http://h/v2/a/blobs/uploads/1?_state=abc", digest="sha256:00") == (
        "http://h/v2/a/blobs/uploads/1?_state=abc&digest=sha256%3A00"
    )


def test_loopback_defaults_to_plain_http_allowed() -> None:
    assert RegistryClient("127.0.0.1:5000").tls_verify is False
    assert RegistryClient("localhost:5000").tls_verify is False
    assert RegistryClient("registry.example").tls_verify is True
    assert RegistryClient("127.0.0.1:5000", tls_verify=True).tls_verify is True


# -- against the fake --------------------------------------------------------------


def test_manifest_and_blob(fake: FakeRegistry) -> None:
    digest = fake.add_blob("a", b"hello")
    fake.add_manifest("a", "1", b'{"schemaVersion":2}', reg.OCI_MANIFEST)
    client = RegistryClient(fake.host)
    body, media_type, mdigest = client.get_manifest("a", "1")
    assert (body, media_type, mdigest) == (b'{"schemaVersion":2}', reg.OCI_MANIFEST, sha(body))
    assert client.blob_size("a", digest) == 5
    assert client.blob_size("a", sha(b"nope")) is None
    assert client.open_blob("a", digest).content == b"hello"
    assert fake.log[0] == ("GET", "/v2/")  # plain http first: a loopback registry
    assert "application/vnd.docker.distribution.manifest.v2+json" in fake.headers_seen[1]["Accept"]


def test_manifest_by_digest_is_verified(fake: FakeRegistry) -> None:
    fake.manifests[("a", "sha256:" + "0" * 64)] = (b"{}", reg.OCI_MANIFEST)
    with pytest.raises(RegistryError, match="has digest"):
        RegistryClient(fake.host).get_manifest("a", "sha256:" + "0" * 64)


def test_missing_manifest_and_blob_are_clear(fake: FakeRegistry) -> None:
    client = RegistryClient(fake.host)
    with pytest.raises(RegistryError, match="manifest unknown"):
        client.get_manifest("a", "1")
    with pytest.raises(RegistryError, match="is missing"):
        client.open_blob("a", sha(b"x"))


def test_retries_5xx_then_succeeds(fake: FakeRegistry) -> None:
    fake.add_manifest("a", "1", b"{}", reg.OCI_MANIFEST)
    client = RegistryClient(fake.host)
    client.base_url()
    fake.fail_next = [500, 503]
    assert client.get_manifest("a", "1")[0] == b"{}"
    assert fake.log.count(("GET", "/v2/a/manifests/1")) == 3


def test_gives_up_after_retries(fake: FakeRegistry) -> None:
    client = RegistryClient(fake.host)
    client.base_url()
    fake.fail_next = [500] * (reg.RETRIES + 1)
    with pytest.raises(RegistryError, match="500 UNKNOWN: injected failure"):
        client.get_manifest("a", "1")


def test_retries_a_dropped_connection(fake: FakeRegistry) -> None:
    fake.add_manifest("a", "1", b"{}", reg.OCI_MANIFEST)
    client = RegistryClient(fake.host)
    client.base_url()
    fake.drop_next = 1
    assert client.get_manifest("a", "1")[0] == b"{}"


def test_connection_refused_is_one_clear_line() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(RegistryError) as info:
        RegistryClient(f"127.0.0.1:{port}").get_manifest("a", "1")
    assert str(info.value) == f"cannot reach registry 127.0.0.1:{port}: connection refused"


def test_basic_auth(fake: FakeRegistry) -> None:
    fake.auth = "basic"
    fake.add_manifest("a", "1", b"{}", reg.OCI_MANIFEST)
    assert RegistryClient(fake.host, credentials=("u", "p")).get_manifest("a", "1")[0] == b"{}"
    with pytest.raises(RegistryAuthError, match="log in first"):
        RegistryClient(fake.host).get_manifest("a", "1")
    with pytest.raises(RegistryAuthError, match="unauthorized"):
        RegistryClient(fake.host, credentials=("u", "wrong")).get_manifest("a", "1")


def test_bearer_token_flow(fake: FakeRegistry) -> None:
    fake.auth = "bearer"
    fake.add_manifest("a/b", "1", b"{}", reg.OCI_MANIFEST)
    client = RegistryClient(fake.host, credentials=("u", "p"))
    assert client.get_manifest("a/b", "1")[0] == b"{}"
    assert client.get_manifest("a/b", "1")[0] == b"{}"
    assert len(fake.token_requests) == 1  # cached per scope
    assert fake.token_requests[0]["scope"] == ["repository:a/b:pull"]
    assert fake.token_requests[0]["service"] == ["fake"]
    with pytest.raises(RegistryAuthError, match="authentication failed"):
        RegistryClient(fake.host, credentials=("u", "bad")).get_manifest("a/b", "1")


def _opener(data: bytes):  # type: ignore[no-untyped-def]
    return lambda: io.BytesIO(data)


def test_monolithic_upload(fake: FakeRegistry) -> None:
    data = b"x" * 100_000
    seen: list[int] = []
    RegistryClient(fake.host).upload_blob("a", sha(data), len(data), _opener(data), None, seen.append)
    assert fake.blobs[sha(data)] == data
    assert sum(seen) == len(data)
    assert [m for m, _ in fake.log].count("PATCH") == 0


def test_chunked_upload(fake: FakeRegistry) -> None:
    data = bytes(range(256)) * 1000
    RegistryClient(fake.host).upload_blob("a", sha(data), len(data), _opener(data), 50_000)
    assert fake.blobs[sha(data)] == data
    assert [m for m, _ in fake.log].count("PATCH") == 6
    patches = [h for h in fake.headers_seen if "Content-Range" in h]
    assert patches[0]["Content-Range"] == "0-49999" and patches[-1]["Content-Range"] == "250000-255999"


def test_upload_restarts_after_a_failure(fake: FakeRegistry) -> None:
    data = b"y" * 10_000
    fake.fail_method["PUT"] = [500]  # the first PUT of the blob fails: a new session is started
    RegistryClient(fake.host).upload_blob("a", sha(data), len(data), _opener(data))
    assert fake.blobs[sha(data)] == data
    assert [m for m, _ in fake.log].count("POST") == 2


def test_chunked_upload_restarts_after_a_dropped_patch(fake: FakeRegistry) -> None:
    data = b"z" * 30_000
    fake.drop_method["PATCH"] = 1
    RegistryClient(fake.host).upload_blob("a", sha(data), len(data), _opener(data), 10_000)
    assert fake.blobs[sha(data)] == data
    assert [m for m, _ in fake.log].count("POST") == 2


def test_upload_digest_mismatch_is_an_error(fake: FakeRegistry) -> None:
    with pytest.raises(RegistryError, match="DIGEST_INVALID"):
        RegistryClient(fake.host).upload_blob("a", sha(b"other"), 3, _opener(b"abc"))


def test_cross_repository_mount(fake: FakeRegistry) -> None:
    digest = fake.add_blob("src", b"shared")
    client = RegistryClient(fake.host)
    assert client.mount_blob("dst", digest, "src") is True
    assert "dst" in fake.repos_with_blob[digest]
    other = client.mount_blob("dst", sha(b"unknown"), "src")
    assert isinstance(other, str) and "/blobs/uploads/" in other  # an upload session to use instead
    client.upload_blob("dst", sha(b"unknown"), 7, _opener(b"unknown"), location=other)
    assert fake.blobs[sha(b"unknown")] == b"unknown"


def test_blob_redirect_drops_authorization(fake: FakeRegistry) -> None:
    storage = FakeRegistry()
    try:
        digest = fake.add_blob("a", b"payload")
        storage.blobs[digest] = b"payload"
        fake.auth = "basic"
        fake.redirect_to = f"http://localhost:{storage.port}/v2/storage/blobs"
        client = RegistryClient(fake.host, credentials=("u", "p"))
        assert client.open_blob("a", digest).content == b"payload"
        assert storage.log == [("GET", f"/v2/storage/blobs/{digest}")]
        assert "Authorization" not in storage.headers_seen[0]
    finally:
        storage.close()


def test_put_manifest(fake: FakeRegistry) -> None:
    body = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
    assert RegistryClient(fake.host).put_manifest("a", "1", body, reg.OCI_MANIFEST) == sha(body)
    assert fake.manifests[("a", "1")] == (body, reg.OCI_MANIFEST)

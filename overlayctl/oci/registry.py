"""A client of the OCI distribution API (`/v2/...`), on requests.

What it speaks: manifests (OCI and Docker v2 schema 2, images and indexes),
blobs (HEAD, GET following redirects to blob storage, uploads monolithic or
in chunks, cross-repository mounts) and the two auth schemes registries
use: Bearer tokens from the realm a 401's WWW-Authenticate names, and Basic.
Requests that fail with a 5xx or a dropped connection are retried with
back-off; everything else that fails is one RegistryError for the user.

No store here: pull.py and push.py move blobs between this client and the
store.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests

from overlayctl.errors import InvalidArgumentError, ManifestUnknownError, RegistryAuthError, RegistryError
from overlayctl.util.reference import DOCKER_HUB, Reference, parse_reference, split_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join(MANIFEST_TYPES + INDEX_TYPES)

DOCKER_HUB_API = "registry-1.docker.io"
MAX_MANIFEST = 4 * 1024 * 1024  # what distribution itself accepts
RETRIES = int(os.environ.get("OVERLAYCTL_REGISTRY_RETRIES", "3"))
BACKOFF = float(os.environ.get("OVERLAYCTL_REGISTRY_BACKOFF", "0.25"))  # seconds, doubled each retry
RETRY_STATUS = frozenset((500, 502, 503, 504))
TIMEOUT = (10, 120)  # connect, read (seconds without a byte)
USER_AGENT = "overlayctl"
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")


class RemoteReference:
    """registry host + repository + tag or digest, e.g. 127.0.0.1:5000/bb:1.

    `name` is the repository as the user wrote it (the local tag's name, as
    Docker keeps `busybox` for docker.io/library/busybox); `repository` is
    the path in the registry's API.
    """

    __slots__ = ("registry", "repository", "name", "tag", "digest")

    def __init__(self, registry: str, repository: str, name: str, tag: str | None, digest: str | None) -> None:
        self.registry = registry
        self.repository = repository
        self.name = name
        self.tag = tag
        self.digest = digest

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest if given, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def local(self) -> Reference | None:
        """The local tag a pull gives (none for a pull by digest alone)."""
        return Reference(self.name, self.tag) if self.tag else None

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def parse_remote(text: str) -> RemoteReference:
    """Parse [docker://][HOST[:PORT]/]NAME[:TAG][@sha256:HEX], defaulting to Docker Hub."""
    body, digest = split_digest(text.removeprefix("docker://"))
    ref = parse_reference(body)  # Docker's grammar; raises with the usual message
    tag = ref.tag if (":" in body.rsplit("/", 1)[-1] or digest is None) else None
    return RemoteReference(ref.domain, ref.path, ref.repository, tag, digest)


def is_loopback(registry: str) -> bool:
    """localhost and 127.0.0.1 (any port): plain http allowed, as Docker does."""
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    return host in _LOOPBACK or host.startswith("127.")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _error_detail(response: requests.Response) -> str:
    # Registries answer {"errors": [{"code": ..., "message": ...}]}; show those.
    try:
        errors = response.json().get("errors") or []
        text = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors)
    except (ValueError, AttributeError):
        text = ""
    return text or (response.reason or f"HTTP {response.status_code}")


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """('bearer', {'realm': ..., 'service': ..., 'scope': ...}) from a WWW-Authenticate value."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip(" ,").lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            end = rest.find('"', i + 1)
            end = len(rest) if end < 0 else end
            params[key] = rest[i + 1 : end]
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
        while i < len(rest) and rest[i] in ", ":
            i += 1
    return scheme.lower(), params


def with_query(url: str, **params: str) -> str:
    """url with params added to its query (upload Locations carry state there)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


class _LimitedReader:
    """`size` bytes of a file from its current offset, reporting progress;
    with a length, so requests sends a Content-Length, not chunked encoding."""

    def __init__(self, f: BinaryIO, size: int, progress: Callable[[int], None] | None) -> None:
        self.f, self.left, self.size, self.progress = f, size, size, progress

    def __len__(self) -> int:
        return self.left

    def read(self, n: int = -1) -> bytes:
        # http.client asks for 8-16 KiB at a time and sends whatever it gets:
        # larger reads cut the Python overhead per byte sent.
        n = self.left if n is None or n < 0 else min(max(n, 1 << 20), self.left)
        data = self.f.read(n)
        self.left -= len(data)
        if self.progress and data:
            self.progress(len(data))
        return data


class RegistryClient:
    """One registry, one requests session, its tokens cached per scope."""

    def __init__(
        self,
        registry: str,
        tls_verify: bool | None = None,
        cert_dir: str | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.registry = registry
        self.host = DOCKER_HUB_API if registry == DOCKER_HUB else registry
        # Unset means: verify, except on loopback where Docker allows http.
        self.tls_verify = (not is_loopback(registry)) if tls_verify is None else tls_verify
        self._plain_first = tls_verify is None and not cert_dir
        if cert_dir and tls_verify is None:
            self.tls_verify = True  # certificates given: they are to be checked
        self.credentials = credentials
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self._base: str | None = None
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._tokens: dict[str, str] = {}
        self._configure_tls(cert_dir)

    def close(self) -> None:
        self.session.close()

    def _configure_tls(self, cert_dir: str | None) -> None:
        # containers-certs.d(5): *.crt are CAs, *.cert + *.key a client pair.
        self.session.verify = self.tls_verify
        if not self.tls_verify:
            # Asked for (--tls-verify=false, or loopback): no warning per request.
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        dirs = (
            [cert_dir]
            if cert_dir
            else [f"/etc/containers/certs.d/{self.registry}", f"/etc/docker/certs.d/{self.registry}"]
        )
        for directory in dirs:
            if not os.path.isdir(directory):
                if cert_dir:
                    raise InvalidArgumentError(f"--cert-dir {cert_dir}: no such directory")
                continue
            names = sorted(os.listdir(directory))
            cas = [os.path.join(directory, n) for n in names if n.endswith(".crt")]
            if cas and self.tls_verify:
                self.session.verify = cas[0] if len(cas) == 1 else self._bundle(cas)
            for name in names:
                if name.endswith(".cert") and name[:-5] + ".key" in names:
                    self.session.cert = (os.path.join(directory, name), os.path.join(directory, name[:-5] + ".key"))
            break

    def _bundle(self, cas: list[str]) -> str:
        # requests takes one CA file: several .crt become one bundle, which
        # lives as long as this process (the directory is private to root).
        import tempfile

        fd, path = tempfile.mkstemp(prefix="overlayctl-ca-", suffix=".pem")
        with os.fdopen(fd, "wb") as out:
            for ca in cas:
                with open(ca, "rb") as f:
                    out.write(f.read() + b"\n")
        import atexit

        atexit.register(os.unlink, path)
        return path

    # -- connection and auth -------------------------------------------------

    def base_url(self) -> str:
        """https://HOST, or http://HOST when TLS is off and the registry speaks
        plain HTTP (found by pinging /v2/). With --tls-verify=false https is
        tried first, as podman does; a loopback registry with no
        --tls-verify is tried over http first: local registries almost
        always are plain, and a failed TLS handshake costs ~80 ms."""
        if self._base is not None:
            return self._base
        if self.tls_verify:
            schemes = ["https"]
        else:
            schemes = ["http", "https"] if self._plain_first else ["https", "http"]
        last: Exception | None = None
        for i, scheme in enumerate(schemes):
            final = i == len(schemes) - 1
            url = f"{scheme}://{self.host}/v2/"
            try:
                response = self._send("GET", url, retries=RETRIES if final else 0)
            except requests.exceptions.ConnectionError as exc:  # SSLError included
                last = exc
                continue
            if scheme == "http" and response.status_code == 400 and not final:
                # What a TLS-only server answers to plain HTTP.
                last = Exception("the registry wants TLS")
                continue
            if response.status_code in RETRY_STATUS and not final:
                response = self._send("GET", url)  # it speaks this scheme: retry here
            self._base = f"{scheme}://{self.host}"
            if response.status_code == 401:
                self._challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
            elif response.status_code >= 400 and response.status_code != 404:
                raise RegistryError(f"registry {self.registry}: /v2/ answered {_status(response)}")
            return self._base
        raise RegistryError(f"cannot reach registry {self.registry}: {_connection_reason(last)}")

    def _send(self, method: str, url: str, retries: int = RETRIES, **kw: Any) -> requests.Response:
        """One request, retried with back-off on 5xx and dropped connections.

        A body that is a file must be re-sendable: kw["body"] is then a
        callable returning a fresh one for each attempt.
        """
        body = kw.pop("body", None)
        kw.setdefault("timeout", TIMEOUT)
        # Per request: requests lets $REQUESTS_CA_BUNDLE override a
        # session-level verify=False, but not this.
        kw.setdefault("verify", self.session.verify)
        for attempt in range(retries + 1):
            if body is not None:
                kw["data"] = body()
            try:
                response = self.session.request(method, url, **kw)
            except requests.exceptions.SSLError:
                raise
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                if attempt == retries:
                    raise
                _ = exc
            else:
                if response.status_code not in RETRY_STATUS or attempt == retries:
                    return response
                response.close()
            time.sleep(BACKOFF * (2**attempt))
        raise AssertionError("unreachable")

    def _token(self, scopes: tuple[str, ...], params: dict[str, str]) -> str:
        key = " ".join(scopes)
        if key in self._tokens:
            return self._tokens[key]
        realm = params.get("realm")
        if not realm:
            raise RegistryError(f"registry {self.registry} asks for a token but names no realm")
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        query += [("scope", s) for s in scopes]
        if self.credentials:
            query.append(("account", self.credentials[0]))
        try:
            response = self._send("GET", realm, params=query, auth=self.credentials)
        except requests.exceptions.RequestException as exc:
            raise RegistryError(f"cannot get a token from {realm}: {_connection_reason(exc)}") from None
        if response.status_code in (401, 403):
            raise RegistryAuthError(
                f"{self.registry}: authentication failed ({_error_detail(response)})"
                + ("" if self.credentials else f"; log in first: overlayctl login {self.registry}")
            )
        if response.status_code != 200:
            raise RegistryError(f"token server {realm} answered {response.status_code} {_error_detail(response)}")
        try:
            data = response.json()
            token = data.get("token") or data.get("access_token")
        except ValueError:
            token = None
        if not token:
            raise RegistryError(f"token server {realm} returned no token")
        self._tokens[key] = token
        return token

    def _auth_header(self, scopes: tuple[str, ...]) -> dict[str, str]:
        if self._challenge is None:
            return {}
        scheme, params = self._challenge
        if scheme == "bearer":
            return {"Authorization": f"Bearer {self._token(scopes, params)}"}
        if scheme == "basic" and self.credentials:
            import base64

            raw = base64.b64encode(":".join(self.credentials).encode()).decode("ascii")
            return {"Authorization": f"Basic {raw}"}
        return {}

    def request(
        self, method: str, path_or_url: str, scopes: tuple[str, ...], retries: int = RETRIES, **kw: Any
    ) -> requests.Response:
        """An authenticated request to the API (path under /v2/ or an absolute
        Location); a 401 renews the credentials once (new challenge or token)."""
        url = urljoin(self.base_url() + "/v2/", path_or_url)
        extra = kw.pop("headers", {})
        for attempt in (0, 1):
            headers = {**extra, **self._auth_header(scopes)}
            try:
                response = self._send(method, url, retries=retries, headers=headers, **kw)
            except requests.exceptions.RequestException as exc:
                raise RegistryError(f"{method} {_short(url)} on {self.registry}: {_connection_reason(exc)}") from None
            if response.status_code != 401:
                return response
            had_auth = "Authorization" in headers
            if response.headers.get("WWW-Authenticate"):
                self._challenge = parse_challenge(response.headers["WWW-Authenticate"])
            if self._challenge is None:
                break
            self._tokens.pop(" ".join(scopes), None)
            if attempt == 1 or (had_auth and self._challenge[0] == "basic"):
                break
            if self._challenge[0] == "basic" and not self.credentials:
                break
        raise RegistryAuthError(
            f"{self.registry}: unauthorized ({_error_detail(response)})"
            + ("" if self.credentials else f"; log in first: overlayctl login {self.registry}")
        )

    # -- the API ----------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index, its digest checked
        when asked for by digest."""
        scopes = (f"repository:{repository}:pull",)
        response = self.request("GET", f"{repository}/manifests/{reference}", scopes, headers={"Accept": ACCEPT})
        if response.status_code == 404:
            raise ManifestUnknownError(
                f"{self.registry}/{repository}:{reference}: manifest unknown ({_error_detail(response)})"
            )
        if response.status_code != 200:
            raise RegistryError(f"{self.registry}/{repository}: GET manifest {reference}: {_status(response)}")
        body = response.content
        if len(body) > MAX_MANIFEST:
            raise RegistryError(f"{self.registry}/{repository}: manifest {reference} is larger than 4 MiB")
        digest = sha256_digest(body)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"{self.registry}/{repository}: manifest {reference} has digest {digest}")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return body, media_type, digest

    def blob_size(self, repository: str, digest: str, scopes: tuple[str, ...] | None = None) -> int | None:
        """The size of a blob the repository has (HEAD), or None."""
        scopes = scopes or (f"repository:{repository}:pull",)
        response = self.request("HEAD", f"{repository}/blobs/{digest}", scopes, allow_redirects=True)
        if response.status_code == 200:
            return int(response.headers.get("Content-Length", "0"))
        if response.status_code == 404:
            return None
        raise RegistryError(f"{self.registry}/{repository}: HEAD blob {digest}: {response.status_code}")

    def open_blob(self, repository: str, digest: str) -> requests.Response:
        """A streaming GET of a blob (redirects to blob storage followed; requests
        drops the Authorization header when the redirect leaves the host)."""
        scopes = (f"repository:{repository}:pull",)
        response = self.request("GET", f"{repository}/blobs/{digest}", scopes, stream=True)
        if response.status_code == 404:
            response.close()
            raise RegistryError(
                f"{self.registry}/{repository}: blob {digest} is missing (404): "
                "the manifest names a blob the registry does not have"
            )
        if response.status_code != 200:
            detail = _error_detail(response)
            response.close()
            raise RegistryError(f"{self.registry}/{repository}: GET blob {digest}: {response.status_code} {detail}")
        return response

    def mount_blob(self, repository: str, digest: str, source: str) -> bool | str:
        """Ask for a cross-repository mount of a blob from `source`: True when
        mounted (201), else the upload Location the registry opened instead."""
        scopes = (f"repository:{repository}:pull,push", f"repository:{source}:pull")
        response = self.request(
            "POST", f"{repository}/blobs/uploads/?{urlencode({'mount': digest, 'from': source})}", scopes
        )
        if response.status_code == 201:
            return True
        if response.status_code == 202 and response.headers.get("Location"):
            return urljoin(response.url, response.headers["Location"])
        raise RegistryError(
            f"{self.registry}/{repository}: mount of {digest}: {response.status_code} {_error_detail(response)}"
        )

    def start_upload(self, repository: str) -> str:
        """POST /blobs/uploads/: the absolute Location of a new upload session."""
        scopes = (f"repository:{repository}:pull,push",)
        response = self.request("POST", f"{repository}/blobs/uploads/", scopes, headers={"Content-Length": "0"})
        if response.status_code != 202 or not response.headers.get("Location"):
            raise RegistryError(f"{self.registry}/{repository}: cannot start an upload: {_status(response)}")
        return urljoin(response.url, response.headers["Location"])

    def upload_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        opener: Callable[[], BinaryIO],
        chunk_size: int | None = None,
        progress: Callable[[int], None] | None = None,
        location: str | None = None,
    ) -> None:
        """Upload a blob: one PUT with the whole body (monolithic) or PATCHes of
        chunk_size bytes then a closing PUT (chunked). A dropped connection or
        a 5xx restarts the whole upload in a new session: a session whose
        last request failed half way is in no known state."""
        for attempt in range(RETRIES + 1):
            try:
                loc = location or self.start_upload(repository)
                location = None
                if chunk_size and size > chunk_size:
                    self._upload_chunks(repository, loc, digest, size, opener, chunk_size, progress)
                else:
                    self._upload_whole(repository, loc, digest, size, opener, progress)
                return
            except _Retry as exc:
                if attempt == RETRIES:
                    raise RegistryError(f"{self.registry}/{repository}: upload of {digest} failed: {exc}") from None
                if progress:
                    progress(-1)  # the bar restarts
                time.sleep(BACKOFF * (2**attempt))

    def _upload_whole(
        self,
        repository: str,
        loc: str,
        digest: str,
        size: int,
        opener: Callable[[], BinaryIO],
        progress: Callable[[int], None] | None,
    ) -> None:
        scopes = (f"repository:{repository}:pull,push",)
        with opener() as f:
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            response = self._once(
                "PUT", with_query(loc, digest=digest), scopes, headers=headers, data=_LimitedReader(f, size, progress)
            )
        self._expect(response, 201, repository, f"PUT blob {digest}")

    def _upload_chunks(
        self,
        repository: str,
        loc: str,
        digest: str,
        size: int,
        opener: Callable[[], BinaryIO],
        chunk_size: int,
        progress: Callable[[int], None] | None,
    ) -> None:
        scopes = (f"repository:{repository}:pull,push",)
        with opener() as f:
            offset = 0
            while offset < size:
                n = min(chunk_size, size - offset)
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(n),
                    # Inclusive byte range, no unit: the distribution spec's form.
                    "Content-Range": f"{offset}-{offset + n - 1}",
                }
                response = self._once("PATCH", loc, scopes, headers=headers, data=_LimitedReader(f, n, progress))
                self._expect(response, 202, repository, f"PATCH blob {digest} at {offset}")
                loc = urljoin(response.url, response.headers.get("Location") or loc)
                offset += n
        response = self._once("PUT", with_query(loc, digest=digest), scopes, headers={"Content-Length": "0"})
        self._expect(response, 201, repository, f"PUT blob {digest}")

    def _once(self, method: str, url: str, scopes: tuple[str, ...], **kw: Any) -> requests.Response:
        # No retry inside an upload session: the caller restarts the session.
        try:
            return self.request(method, url, scopes, retries=0, **kw)
        except RegistryError as exc:
            if isinstance(exc, RegistryAuthError):
                raise
            raise _Retry(str(exc)) from None

    def _expect(self, response: requests.Response, status: int, repository: str, what: str) -> None:
        if response.status_code == status:
            return
        if response.status_code in RETRY_STATUS:
            raise _Retry(f"{what}: {response.status_code} {_error_detail(response)}")
        raise RegistryError(f"{self.registry}/{repository}: {what}: {response.status_code} {_error_detail(response)}")

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        """PUT a manifest under a tag (or digest); returns its digest."""
        scopes = (f"repository:{repository}:pull,push",)
        response = self.request(
            "PUT", f"{repository}/manifests/{reference}", scopes, data=body, headers={"Content-Type": media_type}
        )
        if response.status_code not in (200, 201):
            raise RegistryError(f"{self.registry}/{repository}: PUT manifest {reference}: {_status(response)}")
        return sha256_digest(body)

    def check_login(self, repository: str | None = None) -> None:
        """Prove the credentials: a token for the registry (or a Basic-authed /v2/)."""
        base = self.base_url()
        if self._challenge is None:
            return  # the registry asks for nothing
        scopes = (f"repository:{repository}:pull",) if repository else ()
        response = self.request("GET", base + "/v2/", scopes)
        if response.status_code >= 400:
            raise RegistryError(f"{self.registry}: /v2/ answered {response.status_code} {_error_detail(response)}")


class _Retry(Exception):
    """An upload step that failed in a way worth a new session."""


def _status(response: requests.Response) -> str:
    return f"{response.status_code} {_error_detail(response)}"


def _short(url: str) -> str:
    return urlsplit(url).path


def _connection_reason(exc: BaseException | None) -> str:
    """The useful end of a requests/urllib3 error chain, in a few words."""
    text = str(exc) if exc else "unknown error"
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host"),
        ("Temporary failure in name resolution", "unknown host"),
        ("timed out", "timed out"),
        ("CERTIFICATE_VERIFY_FAILED", "TLS certificate not trusted (use --cert-dir, or --tls-verify=false)"),
        ("WRONG_VERSION_NUMBER", "the registry does not speak TLS (use --tls-verify=false)"),
        ("RemoteDisconnected", "connection closed by the registry"),
        ("Connection aborted", "connection dropped"),
        ("Connection reset", "connection reset"),
        ("IncompleteRead", "connection dropped mid-transfer"),
    ):
        if needle in text:
            return reason
    return text.splitlines()[0][:200] if text else type(exc).__name__

"""Image references (`acme/my-base-image:1.0`) and container names.

Parsed to Docker's grammar with plain string checks, and plain classes
rather than dataclasses: this module is on the start-up path of `run`.
"""

from __future__ import annotations

from overlayctl.errors import InvalidArgumentError

_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:")
_HEX = frozenset("0123456789abcdef")


DOCKER_HUB = "docker.io"
# Docker's own aliases of Docker Hub, normalised to DOCKER_HUB.
_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")


class Reference:
    """A repository and tag, e.g. repository="acme/base", tag="1.0".

    The repository is in Docker's familiar form: Docker Hub's host and its
    "library/" namespace are dropped (`docker.io/library/busybox` is
    `busybox`, `docker.io/acme/x` is `acme/x`), any other host is kept
    (`localhost/x`, as podman keeps it). Tags are stored and looked up in
    this form, so every spelling of a name finds the same tag.
    """

    __slots__ = ("repository", "tag")

    def __init__(self, repository: str, tag: str) -> None:
        self.repository = repository
        self.tag = tag

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reference) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def domain(self) -> str:
        """The registry host: the first component when it names one, else Docker Hub."""
        first, _, rest = self.repository.partition("/")
        return first if rest and _is_host(first) else DOCKER_HUB

    @property
    def path(self) -> str:
        """The repository's path in its registry (`library/busybox` for `busybox`)."""
        first, _, rest = self.repository.partition("/")
        if rest and _is_host(first):
            return rest
        return self.repository if "/" in self.repository else "library/" + self.repository

    @property
    def full(self) -> str:
        """docker.io/library/busybox:latest: the fully qualified name, as
        Docker writes it into OCI archives."""
        return f"{self.domain}/{self.path}:{self.tag}"


def _is_host(first: str) -> bool:
    # Docker's rule: a first component with a "." or ":", or "localhost", is a host.
    return "." in first or ":" in first or first == "localhost"


def familiar_name(name: str) -> str:
    """A repository name without Docker Hub's host and "library/" namespace."""
    first, _, rest = name.partition("/")
    if rest and first in _HUB_ALIASES:
        name = rest
        if name.startswith("library/") and name.count("/") == 1:
            name = name[len("library/") :]
    return name


def split_digest(text: str) -> tuple[str, str | None]:
    """NAME[:TAG]@sha256:HEX as (NAME[:TAG], digest); (text, None) without "@"."""
    if "@" not in text:
        return text, None
    name, digest = text.split("@", 1)
    if not digest.startswith("sha256:") or len(digest) != 71 or not set(digest[7:]) <= _HEX:
        raise InvalidArgumentError(f'invalid reference "{text}": the digest must be sha256:<64 hex digits>')
    return name, digest


def _valid_path_component(part: str) -> bool:
    # Docker: [a-z0-9]+ joined by one of ".", "_", "__" or runs of "-".
    if not part or part[0] not in _LOWER_ALNUM or part[-1] not in _LOWER_ALNUM:
        return False
    i = 0
    while i < len(part):
        ch = part[i]
        if ch in _LOWER_ALNUM:
            i += 1
            continue
        j = i
        while j < len(part) and part[j] not in _LOWER_ALNUM:
            j += 1
        sep = part[i:j]
        if sep not in (".", "_", "__") and set(sep) != {"-"}:
            return False
        i = j
    return True


def _valid_tag(tag: str) -> bool:
    return 0 < len(tag) <= 128 and tag[0] not in ".-" and set(tag) <= _TAG_CHARS


def parse_reference(text: str) -> Reference:
    """Parse NAME[:TAG] (tag defaults to "latest"), rejecting what Docker
    rejects, into Docker's familiar form (see Reference)."""
    bad = InvalidArgumentError(f'invalid reference format: "{text}" (use lowercase NAME[:TAG], e.g. acme/base:1.0)')
    if not text or "@" in text or len(text) > 255:
        raise bad
    name, tag = text, "latest"
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        name, tag = text[:colon], text[colon + 1 :]
        if not _valid_tag(tag):
            raise bad
    parts = name.split("/")
    # A first component with a "." or ":" or equal to "localhost" is a registry host.
    if len(parts) > 1 and _is_host(parts[0]):
        if not parts[0] or not set(parts[0]) <= _HOST_CHARS:
            raise bad
        parts = parts[1:]
    if not all(_valid_path_component(p) for p in parts):
        raise bad
    return Reference(familiar_name(name), tag)


def looks_like_id_prefix(text: str) -> bool:
    """True if text could be a (short) hex image or container ID."""
    body = text[7:] if text.startswith("sha256:") else text
    return 0 < len(body) <= 64 and set(body) <= _HEX


_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_REST = _NAME_FIRST | frozenset("_.-")


def validate_container_name(name: str) -> str:
    """Docker's rule: [a-zA-Z0-9][a-zA-Z0-9_.-]+ (a leading "/" is dropped)."""
    bare = name[1:] if name.startswith("/") else name
    if len(bare) < 2 or bare[0] not in _NAME_FIRST or not set(bare[1:]) <= _NAME_REST:
        raise InvalidArgumentError(f'invalid container name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
    return bare

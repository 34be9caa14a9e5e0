"""The seccomp program cache, apart from the compiler (runtime.seccomp).

`run` needs only this: a cache hit reads one file, and the compiler's
module (about 0.3 ms of import, and json and the libseccomp binding on a
miss) loads only when a program has to be compiled. The key covers
everything a program depends on (`cache_key`).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing on every `run`
if TYPE_CHECKING:
    from collections.abc import Iterable

DEFAULT_PROFILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seccomp_default.json")
# sha256 of seccomp_default.json as bytes: the default profile's cache key
# without reading the file (tests/unit/test_seccomp.py keeps it in step).
DEFAULT_PROFILE_SHA256 = "a8f8954d46534f789be35d75be07d723067e386e451e9609fbdb8d335592976d"
# Part of every cache key: change it when the way rules are compiled changes.
_COMPILER = "overlayctl-seccomp-3"


def cached_program(profile: str | None, capabilities: Iterable[str], cache_dir: str) -> tuple[bool, bytes | None]:
    """(True, the program) when no compile is needed: "unconfined" (no
    program) or a cache hit for the default profile; (False, None) when
    seccomp.compile_profile must look (a profile file, or a miss)."""
    if profile == "unconfined":
        return True, None
    if profile is not None and profile != "builtin":
        return False, None
    program = _read_cached(os.path.join(cache_dir, cache_key(DEFAULT_PROFILE_SHA256, cap_names(capabilities)) + ".bpf"))
    return (True, program) if program is not None else (False, None)


def cap_names(capabilities: Iterable[str]) -> frozenset[str]:
    """Capability names as profiles write them: "sys_admin" -> "CAP_SYS_ADMIN"."""
    names = set()
    for cap in capabilities:
        cap = cap.strip().upper()
        names.add(cap if cap.startswith("CAP_") else "CAP_" + cap)
    return frozenset(names)


# --- cache ------------------------------------------------------------------


def _sha256(data: bytes):  # type: ignore[no-untyped-def]
    # hashlib loads OpenSSL (~8 ms); the builtin module costs nothing.
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # Python 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # type: ignore[import-not-found]  # Python 3.12+
        except ImportError:
            from hashlib import sha256
    return sha256(data)


def cache_key(profile_digest: str, caps: frozenset[str]) -> str:
    """Everything the program depends on: the profile, the capabilities,
    the machine and kernel (architectures, minKernel), libseccomp and this
    compiler."""
    uname = os.uname()
    parts = (_COMPILER, profile_digest, ",".join(sorted(caps)), uname.machine, uname.release, _libseccomp_identity())
    return _sha256("\0".join(parts).encode()).hexdigest()


def _libseccomp_identity() -> str:
    """Which libseccomp would compile, without loading it: the library's
    inode, size and mtime change with every package update."""
    path = _libseccomp_path()
    if path is None:
        return "unknown"
    st = os.stat(path)
    return f"{os.path.dirname(path)}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _libseccomp_path() -> str | None:
    multiarch = getattr(sys.implementation, "_multiarch", "")
    for directory in (f"/usr/lib/{multiarch}", f"/lib/{multiarch}", "/usr/lib64", "/usr/lib", "/usr/local/lib"):
        path = os.path.join(directory, "libseccomp.so.2")
        if os.path.exists(path):
            return path
    return None


def libseccomp_version() -> str:
    """libseccomp's version as its file names it ("2.5.4"), or "" when
    the name does not say: libseccomp.so.2 links to libseccomp.so.2.5.4."""
    path = _libseccomp_path()
    name = os.path.basename(os.path.realpath(path)) if path else ""
    prefix = "libseccomp.so."
    version = name[len(prefix) :] if name.startswith(prefix) else ""
    return version if version.count(".") == 2 else ""


def _read_cached(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            program = f.read()
    except OSError:
        return None
    # struct sock_filter is 8 bytes; anything else is not one of ours.
    return program if program and len(program) % 8 == 0 else None


def _read_warning(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [f.read().strip()]
    except OSError:
        return []  # none: the profile compiled whole


def _write_cached(path: str, program: bytes) -> bool:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(program)
        os.replace(tmp, path)
        return True
    except OSError:
        # The cache only saves time: a start that cannot write it still
        # has its program, and the next one compiles again.
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False

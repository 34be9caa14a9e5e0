"""The build context: COPY and ADD sources, their digest, and the copy itself.

Sources are matched and checked on the host (they must exist, stay inside the
context and not be excluded by .dockerignore); the copy runs later inside the
image's merged root (see runtime.rootfs), reading the context only through a
directory fd opened beforehand, so that destination paths and symlinks in
the image resolve the way they will in a container.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import stat

from overlayctl.builder.ignore import IgnoreRules
from overlayctl.errors import InvalidArgumentError

_CHUNK = 1 << 20


class CopyEntry:
    """One thing to create: `src` (relative to the context) at `dest` (absolute, in the image)."""

    __slots__ = ("src", "dest", "kind", "mode", "size", "mtime_ns", "link", "into_dir", "stamp")

    def __init__(self, src: str, dest: str, st: os.stat_result, link: str = "", into_dir: bool = False) -> None:
        self.src = src
        self.dest = dest
        self.kind = "dir" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else "file"
        self.mode = stat.S_IMODE(st.st_mode)
        self.size = st.st_size if self.kind == "file" else 0
        self.mtime_ns = st.st_mtime_ns
        self.link = link
        # A lone file copied to a destination without a trailing "/": it goes
        # into that destination if the image has a directory there.
        self.into_dir = into_dir
        # What changes whenever the content can have changed: ctime cannot be
        # set back by anyone, unlike mtime.
        self.stamp = f"{st.st_dev}:{st.st_ino}:{st.st_ctime_ns}:{st.st_mtime_ns}"


class CopyPlan:
    """Everything a COPY or ADD step writes, in creation order."""

    def __init__(self, entries: list[CopyEntry], archives: list[tuple[str, str]], kind: str) -> None:
        self.entries = entries
        self.archives = archives  # (source in the context, destination directory): ADD's extracted tars
        self.kind = kind  # "file", "dir" or "multi", as Docker names the source in history


class Context:
    """A build context directory and its .dockerignore rules.

    The same copy reads other trees too: a named build context, or another
    stage's or image's root (mounted read-only), which has no .dockerignore
    (`ignore` false)."""

    def __init__(self, root: str, ignore: bool = True, where: str = "the build context") -> None:
        if not os.path.isdir(root):
            raise InvalidArgumentError(f"build context {root} is not a directory")
        self.root = os.path.realpath(root)
        self.rules = IgnoreRules.load(self.root) if ignore else IgnoreRules([])
        self.ignore = ignore
        self.where = where  # how messages name the tree

    def _check_inside(self, rel: str, original: str, what: str) -> None:
        real = os.path.realpath(os.path.join(self.root, rel))
        if real != self.root and not real.startswith(self.root.rstrip(os.sep) + os.sep):
            raise InvalidArgumentError(f"{what} source {original} leads outside the build context (to {real})")

    def match(self, pattern: str, what: str) -> list[str]:
        """Context-relative paths matching one COPY/ADD source pattern."""
        if pattern.startswith("/"):
            raise InvalidArgumentError(
                f"{what} source {pattern} is an absolute path; sources are relative to the build context"
            )
        clean = posixpath.normpath(pattern)
        if clean == ".." or clean.startswith("../"):
            raise InvalidArgumentError(f"{what} source {pattern} is outside the build context")
        if clean == ".":
            return [""]
        parts = clean.split("/")
        found = [""]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            following: list[str] = []
            for base in found:
                directory = os.path.join(self.root, base)
                if not any(ch in part for ch in "*?["):
                    candidates = [part] if os.path.lexists(os.path.join(directory, part)) else []
                else:
                    try:
                        names = sorted(os.listdir(directory))
                    except (NotADirectoryError, FileNotFoundError):
                        names = []
                    candidates = [n for n in names if fnmatch.fnmatchcase(n, part)]
                for name in candidates:
                    rel = f"{base}/{name}" if base else name
                    self._check_inside(rel, pattern, what)
                    if not last and not os.path.isdir(os.path.join(self.root, rel)):
                        continue
                    if self.rules.ignored(rel) and not (
                        os.path.isdir(os.path.join(self.root, rel)) and self.rules.may_contain_exceptions(rel)
                    ):
                        continue
                    following.append(rel)
            found = following
        if not found:
            excluded = " or excluded by .dockerignore" if self.ignore else ""
            raise InvalidArgumentError(f"{what} failed: {pattern} not found in {self.where}{excluded}")
        return found

    def plan(self, sources: list[str], dest: str, what: str, extract_archives: bool = False) -> CopyPlan:
        """Resolve sources and destination (absolute) into a CopyPlan."""
        matches: list[str] = []
        for pattern in sources:
            matches.extend(m for m in self.match(pattern, what) if m not in matches)
        if len(matches) > 1 and not dest.endswith("/"):
            raise InvalidArgumentError(
                f"{what} with more than one source file needs a directory destination ending in /: {dest}"
            )
        dest_is_dir = dest.endswith("/")
        dest = posixpath.normpath(dest)
        entries: list[CopyEntry] = []
        archives: list[tuple[str, str]] = []
        for rel in matches:
            full = os.path.join(self.root, rel)
            st = os.stat(full)  # the source itself is followed (inside the context: checked)
            if stat.S_ISDIR(st.st_mode):
                entries.append(CopyEntry(rel, dest, st))
                self._walk(rel, dest, entries)
            elif extract_archives and _is_archive(full):
                # apply_plan will extract it after the chroot, where the
                # host's Python library is out of reach: load the tools now.
                import overlayctl.layer.extract  # noqa: F401

                archives.append((rel, dest))
            elif dest_is_dir:
                entries.append(CopyEntry(rel, posixpath.join(dest, posixpath.basename(rel)), st))
            else:
                entries.append(CopyEntry(rel, dest, st, into_dir=True))
        kind = "multi" if len(matches) > 1 else "dir" if entries and entries[0].kind == "dir" else "file"
        return CopyPlan(entries, archives, kind)

    def _walk(self, rel_dir: str, dest_dir: str, entries: list[CopyEntry]) -> None:
        full_dir = os.path.join(self.root, rel_dir)
        with os.scandir(full_dir) as it:
            children = sorted(it, key=lambda de: de.name)
        for de in children:
            rel = f"{rel_dir}/{de.name}" if rel_dir else de.name
            is_dir = de.is_dir(follow_symlinks=False)
            if self.rules.ignored(rel) and not (is_dir and self.rules.may_contain_exceptions(rel)):
                continue
            st = de.stat(follow_symlinks=False)
            dest = posixpath.join(dest_dir, de.name)
            if stat.S_ISLNK(st.st_mode):
                entries.append(CopyEntry(rel, dest, st, link=os.readlink(de.path)))
            elif is_dir:
                entries.append(CopyEntry(rel, dest, st))
                self._walk(rel, dest, entries)
            elif stat.S_ISREG(st.st_mode):
                entries.append(CopyEntry(rel, dest, st))
            # Sockets, fifos and devices in a context are not copied, as Docker.

    def stat_digest(self, plan: CopyPlan) -> str:
        """sha256 over names, types, modes and stat stamps (inode, ctime,
        mtime) of the plan's sources: equal only if nothing was touched
        since, so a cache hit on it needs no reading of file contents."""
        h = hashlib.sha256(self.root.encode())
        for e in plan.entries:
            h.update(f"{e.kind}\0{e.dest}\0{e.mode:o}\0{e.size}\0{e.link}\0{int(e.into_dir)}\0{e.stamp}\0".encode())
        for src, dest in plan.archives:
            st = os.stat(os.path.join(self.root, src))
            h.update(f"archive\0{dest}\0{src}\0{st.st_ino}:{st.st_ctime_ns}:{st.st_size}\0".encode())
        return h.hexdigest()

    def digest(self, plan: CopyPlan) -> str:
        """sha256 over the content and metadata of everything the plan copies
        (names, types, modes, sizes, link targets, file contents; not mtimes,
        as Docker: touching a file keeps the cache)."""
        h = hashlib.sha256()
        for e in plan.entries:
            h.update(f"{e.kind}\0{e.dest}\0{e.mode:o}\0{e.size}\0{e.link}\0{int(e.into_dir)}\0".encode())
            if e.kind == "file":
                h.update(_file_digest(os.path.join(self.root, e.src)).encode())
        for src, dest in plan.archives:
            h.update(f"archive\0{dest}\0".encode())
            h.update(_file_digest(os.path.join(self.root, src)).encode())
        return h.hexdigest()


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _is_archive(path: str) -> bool:
    """ADD extracts local tar archives (plain or compressed); other files are copied."""
    from overlayctl.layer.compression import open_decompressed

    try:
        with open(path, "rb") as raw:
            head = open_decompressed(raw).read(512)
    except (OSError, EOFError, ValueError):
        return False
    except Exception:  # noqa: BLE001 - a corrupt compressed file is just a file to ADD
        return False
    return len(head) == 512 and head[257:262] == b"ustar"


def apply_plan(plan: CopyPlan, context_fd: int, uid: int, gid: int, chmod: int | None) -> None:
    """Create the plan's entries inside the current root (call after chroot).

    Sources are opened relative to `context_fd` without following symlinks.
    Parents that do not exist are created 0755 root:root. Existing
    non-directories at a destination are replaced; an existing directory
    stays and receives the content.
    """
    # Through overlayfs every path lookup costs: modes are given at creation
    # (umask 0), owners and times are set on the open fd, and what lies under
    # a directory this copy created is known to be new.
    os.umask(0)
    created: set[str] = set()
    dirs: list[tuple[str, int]] = []
    for e in plan.entries:
        dest = e.dest
        if e.into_dir and os.path.isdir(dest):
            dest = posixpath.join(dest, posixpath.basename(e.src))
        parent = posixpath.dirname(dest)
        fresh = parent in created
        if not fresh:
            _make_parents(parent)
        mode = chmod if chmod is not None else e.mode
        if e.kind == "dir":
            if fresh or not os.path.isdir(dest):
                if not fresh and os.path.lexists(dest):
                    os.unlink(dest)
                os.mkdir(dest, mode)
                created.add(dest)
            else:
                os.chmod(dest, mode)
            os.lchown(dest, uid, gid)
            dirs.append((dest, e.mtime_ns))
            continue
        if not fresh and os.path.lexists(dest):
            if os.path.isdir(dest) and not os.path.islink(dest):
                raise InvalidArgumentError(f"cannot copy {e.src} over the directory {dest} in the image")
            os.unlink(dest)
        if e.kind == "symlink":
            os.symlink(e.link, dest)
            os.lchown(dest, uid, gid)
            os.utime(dest, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)
        else:
            _copy_file(e, context_fd, dest, mode, uid, gid)
    for dest, mtime_ns in reversed(dirs):
        os.utime(dest, ns=(mtime_ns, mtime_ns))
    if plan.archives:
        from overlayctl.layer.compression import open_decompressed
        from overlayctl.layer.extract import extract_layer
    for src, dest in plan.archives:
        _make_parents(dest)
        if not os.path.isdir(dest):
            os.mkdir(dest, 0o755)
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=context_fd)
        with os.fdopen(fd, "rb") as raw:
            extract_layer(open_decompressed(raw), dest)


def _make_parents(path: str) -> None:
    if not path or os.path.isdir(path):
        return
    _make_parents(posixpath.dirname(path))
    if os.path.lexists(path) and not os.path.isdir(path):
        raise InvalidArgumentError(f"cannot create directory {path} in the image: a file is in the way")
    if not os.path.isdir(path):
        os.mkdir(path, 0o755)


def _copy_file(e: CopyEntry, context_fd: int, dest: str, mode: int, uid: int, gid: int) -> None:
    src_fd = os.open(e.src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=context_fd)
    try:
        dest_fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        try:
            remaining = e.size
            while remaining > 0:
                n = os.sendfile(dest_fd, src_fd, None, min(remaining, 1 << 30))
                if n == 0:
                    break
                remaining -= n
            if uid or gid:
                os.fchown(dest_fd, uid, gid)
            if mode & 0o7000:
                os.fchmod(dest_fd, mode)  # chown clears setuid/setgid: set them last
            os.utime(dest_fd, ns=(e.mtime_ns, e.mtime_ns))
        finally:
            os.close(dest_fd)
    finally:
        os.close(src_fd)

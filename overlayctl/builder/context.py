"""The build context: COPY and ADD sources, their digest, and the copy itself.

Sources are matched and checked on the host (they must exist, stay inside the
context and not be excluded by .dockerignore); the copy runs later inside the
image's merged root (see runtime.rootfs), reading the context only through a
directory fd opened beforehand, so that destination paths and symlinks in
the image resolve the way they will in a container.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import posixpath
import re
import stat
from typing import Any, BinaryIO

from overlayctl.builder.ignore import IgnoreRules
from overlayctl.errors import InvalidArgumentError, LayerRejectedError
from overlayctl.runtime.users import account_files, resolve_owner
from overlayctl.store.staging import remove_tree

_CHUNK = 1 << 20


_KINDS = {
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFREG: "file",
    stat.S_IFIFO: "fifo",
    stat.S_IFCHR: "chardev",
    stat.S_IFBLK: "blockdev",
}
# Made with mknod, as podman's and Docker's copies do; sockets are live
# endpoints, not content, and are left out.
_NODES = {"fifo": stat.S_IFIFO, "chardev": stat.S_IFCHR, "blockdev": stat.S_IFBLK}


def _xattrs_of(path: str) -> tuple[tuple[str, bytes], ...]:
    """The xattrs a copy carries: all but overlayfs' own bookkeeping (it
    describes the context's filesystem, not the file) and the host's
    SELinux label. security.capability and user.* come along, as podman."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return ()
        raise
    found = []
    for name in sorted(names):
        if name.startswith("trusted.overlay.") or name == "security.selinux":
            continue
        try:
            found.append((name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError as exc:
            if exc.errno != errno.ENODATA:  # removed meanwhile
                raise
    return tuple(found)


class CopyEntry:
    """One thing to create: `src` (relative to the context) at `dest` (absolute, in the image).

    `kind` is dir, symlink, file, fifo, chardev, blockdev, or hardlink: a
    later name of a file already in this plan, `link` then being that
    file's destination.
    """

    __slots__ = ("src", "dest", "kind", "mode", "size", "mtime_ns", "link", "into_dir", "stamp", "rdev", "xattrs")

    def __init__(self, src: str, dest: str, st: os.stat_result, link: str = "", into_dir: str = "") -> None:
        self.src = src
        self.dest = dest
        self.kind = _KINDS.get(stat.S_IFMT(st.st_mode), "file")
        self.mode = stat.S_IMODE(st.st_mode)
        self.size = st.st_size if self.kind == "file" else 0
        self.mtime_ns = st.st_mtime_ns
        self.link = link
        self.rdev = st.st_rdev if self.kind in ("chardev", "blockdev") else 0
        # A lone file copied to a destination without a trailing "/": it goes
        # into that destination, under this name, if the image has a
        # directory there.
        self.into_dir = into_dir
        # What changes whenever the content can have changed: ctime cannot be
        # set back by anyone, unlike mtime (and moves with xattrs and links).
        self.stamp = f"{st.st_dev}:{st.st_ino}:{st.st_ctime_ns}:{st.st_mtime_ns}"
        self.xattrs: tuple[tuple[str, bytes], ...] = ()

    def describe(self) -> str:
        """The entry's metadata as the cache keys see it."""
        xattrs = ",".join(f"{k}={v.hex()}" for k, v in self.xattrs)
        fields = (self.kind, self.dest, f"{self.mode:o}", self.size, self.link, self.into_dir, self.rdev, xattrs)
        return "".join(f"{field}\0" for field in fields)


class CopyPlan:
    """Everything a COPY or ADD step writes, in creation order."""

    def __init__(self, entries: list[CopyEntry], archives: list[tuple[str, str]], kind: str) -> None:
        self.entries = entries
        self.archives = archives  # (source in the context, destination directory): ADD's extracted tars
        self.kind = kind  # "file", "dir" or "multi", as Docker names the source in history


class Context:
    """A build context directory and its .dockerignore rules.

    `ignore_file`, when it exists, replaces the context's .dockerignore: it
    is the Dockerfile's own (`NAME.dockerignore` beside `NAME`), as BuildKit.
    The same copy reads other trees too: a named build context, or another
    stage's or image's root (mounted read-only), which has no .dockerignore
    (`ignore` false)."""

    def __init__(
        self, root: str, ignore_file: str | None = None, ignore: bool = True, where: str = "the build context"
    ) -> None:
        if not os.path.isdir(root):
            raise InvalidArgumentError(f"build context {root} is not a directory")
        self.root = os.path.realpath(root)
        self.rules = IgnoreRules.load(self.root, ignore_file) if ignore else IgnoreRules([])
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

    def plan(
        self,
        sources: list[str],
        dest: str,
        what: str,
        extract_archives: bool = False,
        exclude: IgnoreRules | None = None,
    ) -> CopyPlan:
        """Resolve sources and destination (absolute) into a CopyPlan.

        A symlink named as a source (or matched by a pattern) is followed, as
        Docker does, and must lead to something inside the context; the
        symlinks below a copied directory are copied as symlinks. Files that
        are hardlinked to each other stay so within one source. `exclude`
        (COPY --exclude) is matched against paths below each source
        directory, or against a source file's own name.
        """
        matches: list[str] = []
        for pattern in sources:
            matches.extend(m for m in self.match(pattern, what) if m not in matches)
        if len(matches) > 1 and not dest.endswith("/"):
            raise InvalidArgumentError(
                f"{what} with more than one source file needs a directory destination ending in /: {dest}"
            )
        dest_is_dir = dest.endswith("/")
        dest = posixpath.normpath(dest)
        walk = _Walk(self, exclude)
        archives: list[tuple[str, str]] = []
        for rel in matches:
            # Hardlinks are kept within one source, as BuildKit and buildah
            # copy each source on its own: two sources are two files.
            walk.inodes = {}
            name = posixpath.basename(rel)
            if exclude is not None and rel and exclude.ignored(name):
                continue
            src, st = self._followed(rel, what)
            if stat.S_ISDIR(st.st_mode):
                walk.add(src, dest, st)
                walk.tree(src, dest, "")
            elif extract_archives and is_archive(os.path.join(self.root, src)):
                # apply_plan will extract it after the chroot, where the
                # host's Python library is out of reach: load the tools now.
                import overlayctl.layer.extract  # noqa: F401

                archives.append((src, dest))
            elif dest_is_dir:
                walk.add(src, posixpath.join(dest, name), st)
            else:
                walk.add(src, dest, st, into_dir=name)
        entries = walk.entries
        if not entries and not archives:
            raise InvalidArgumentError(f"{what} failed: every source is excluded by --exclude")
        kind = "multi" if len(matches) > 1 else "dir" if entries and entries[0].kind == "dir" else "file"
        return CopyPlan(entries, archives, kind)

    def _followed(self, rel: str, what: str) -> tuple[str, os.stat_result]:
        """A matched source with its symlinks followed: its real path,
        relative to the context (match() checked it stays inside), and its stat."""
        full = os.path.join(self.root, rel)
        real = os.path.realpath(full)
        try:
            st = os.lstat(real)
        except FileNotFoundError:
            raise InvalidArgumentError(
                f"{what} failed: {rel} is a symlink to {os.readlink(full)}, which does not exist"
            ) from None
        if stat.S_ISSOCK(st.st_mode):
            raise InvalidArgumentError(f"{what} failed: {rel} is a socket, which cannot be copied")
        return os.path.relpath(real, self.root) if real != self.root else "", st

    def stat_digest(self, plan: CopyPlan) -> str:
        """sha256 over names, types, modes, xattrs and stat stamps (inode,
        ctime, mtime) of the plan's sources: equal only if nothing was
        touched since, so a cache hit on it needs no reading of file contents."""
        h = hashlib.sha256(self.root.encode())
        for e in plan.entries:
            h.update(f"{e.describe()}{e.stamp}\0".encode())
        for src, dest in plan.archives:
            st = os.stat(os.path.join(self.root, src))
            h.update(f"archive\0{dest}\0{src}\0{st.st_ino}:{st.st_ctime_ns}:{st.st_size}\0".encode())
        return h.hexdigest()

    def digest(self, plan: CopyPlan) -> str:
        """sha256 over the content and metadata of everything the plan copies
        (names, types, modes, sizes, link targets, hardlinks, device numbers,
        xattrs, file contents; not mtimes, as Docker: touching a file keeps
        the cache)."""
        h = hashlib.sha256()
        for e in plan.entries:
            h.update(e.describe().encode())
            if e.kind == "file":
                h.update(_file_digest(os.path.join(self.root, e.src)).encode())
        for src, dest in plan.archives:
            h.update(f"archive\0{dest}\0".encode())
            h.update(_file_digest(os.path.join(self.root, src)).encode())
        return h.hexdigest()

    def file_sha256(self, plan: CopyPlan) -> str:
        """The sha256 of the one file a plan copies (ADD --checksum)."""
        if plan.archives and not plan.entries and len(plan.archives) == 1:
            src = plan.archives[0][0]
        elif not plan.archives and len(plan.entries) == 1 and plan.entries[0].kind == "file":
            src = plan.entries[0].src
        else:
            raise InvalidArgumentError("--checksum needs exactly one source, a file")
        return _file_digest(os.path.join(self.root, src))


class _Walk:
    """Collects a plan's entries: .dockerignore and --exclude applied,
    xattrs read, later names of a hardlinked file made links to the first."""

    def __init__(self, context: Context, exclude: IgnoreRules | None) -> None:
        self.context = context
        self.exclude = exclude
        self.entries: list[CopyEntry] = []
        self.inodes: dict[tuple[int, int], str] = {}

    def add(self, src: str, dest: str, st: os.stat_result, link: str = "", into_dir: str = "") -> None:
        entry = CopyEntry(src, dest, st, link=link, into_dir=into_dir)
        if entry.kind not in ("dir", "symlink") and st.st_nlink > 1:
            first = self.inodes.setdefault((st.st_dev, st.st_ino), dest)
            if first != dest:
                entry.kind, entry.link, entry.size, entry.rdev = "hardlink", first, 0, 0
                self.entries.append(entry)
                return
        entry.xattrs = _xattrs_of(os.path.join(self.context.root, src))
        self.entries.append(entry)

    def tree(self, rel_dir: str, dest_dir: str, below: str) -> None:
        """Everything under the context directory rel_dir, at dest_dir;
        `below` is the path under the copied source that --exclude sees."""
        rules = self.context.rules
        full_dir = os.path.join(self.context.root, rel_dir)
        with os.scandir(full_dir) as it:
            children = sorted(it, key=lambda de: de.name)
        for de in children:
            rel = f"{rel_dir}/{de.name}" if rel_dir else de.name
            inner = f"{below}/{de.name}" if below else de.name
            is_dir = de.is_dir(follow_symlinks=False)
            if rules.ignored(rel) and not (is_dir and rules.may_contain_exceptions(rel)):
                continue
            if (
                self.exclude is not None
                and self.exclude.ignored(inner)
                and not (is_dir and self.exclude.may_contain_exceptions(inner))
            ):
                continue
            st = de.stat(follow_symlinks=False)
            dest = posixpath.join(dest_dir, de.name)
            if stat.S_ISLNK(st.st_mode):
                self.add(rel, dest, st, link=os.readlink(de.path))
            elif is_dir:
                self.add(rel, dest, st)
                self.tree(rel, dest, inner)
            elif not stat.S_ISSOCK(st.st_mode):
                self.add(rel, dest, st)


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def is_archive(path: str) -> bool:
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


class Chmod:
    """COPY/ADD --chmod: octal ("755") or symbolic ("u=rwx,go=rx", "+x",
    "a-w,g+s"), as BuildKit's frontend (1.14) takes them. A symbolic mode
    changes each entry's own mode; with no u/g/o/a it applies to all, and
    `X` gives execute only to directories and to what some already execute."""

    _SYMBOLIC = re.compile(r"([ugoa]*)([-+=])([rwxXst]*)")

    def __init__(self, text: str) -> None:
        self.text = text
        self.octal: int | None = None
        self.clauses: list[tuple[int, str, str]] = []
        if text and all(c in "01234567" for c in text):
            if len(text) > 4:
                raise InvalidArgumentError(f'invalid --chmod "{text}": an octal mode has at most 4 digits')
            self.octal = int(text, 8)
            return
        for clause in text.split(","):
            found = self._SYMBOLIC.fullmatch(clause)
            if not found:
                raise InvalidArgumentError(
                    f'invalid --chmod "{text}": use an octal mode (755) or a symbolic one (u=rwx,go=rx, +x)'
                )
            who = 0
            for c in found.group(1) or "a":
                who |= {"u": 0o4700, "g": 0o2070, "o": 0o1007, "a": 0o7777}[c]
            self.clauses.append((who, found.group(2), found.group(3)))

    def apply(self, mode: int, is_dir: bool) -> int:
        """The mode an entry gets, from its source mode."""
        if self.octal is not None:
            return self.octal
        for who, op, perms in self.clauses:
            bits = 0
            for c in perms:
                if c == "X":
                    if is_dir or mode & 0o111:
                        bits |= 0o111
                else:
                    bits |= {"r": 0o444, "w": 0o222, "x": 0o111, "s": 0o6000, "t": 0o1000}[c]
            bits &= who
            if op == "+":
                mode |= bits
            elif op == "-":
                mode &= ~bits
            else:
                mode = (mode & ~(who & 0o777)) | bits
        return mode & 0o7777


def apply_plan(plan: CopyPlan, context_fd: int, owner: str, chmod: Chmod | None) -> None:
    """Create the plan's entries inside the current root (call after chroot).

    `owner` is --chown's text ("" for root), resolved here against this
    root's /etc/passwd and /etc/group: the image's own. Sources are opened
    relative to `context_fd` without following symlinks. Parents that do
    not exist are created 0755, owned as `owner` (as BuildKit). Existing
    non-directories at a destination are replaced; an existing directory
    stays and receives the content.
    """
    uid, gid = resolve_owner(owner, *account_files()) if owner else (0, 0)
    # Through overlayfs every path lookup costs: modes are given at creation
    # (umask 0), owners and times are set on the open fd, and what lies under
    # a directory this copy created is known to be new.
    os.umask(0)
    created: set[str] = set()
    dirs: list[tuple[str, int]] = []
    for e in plan.entries:
        dest = e.dest
        if e.into_dir and os.path.isdir(dest):
            dest = posixpath.join(dest, e.into_dir)
        parent = posixpath.dirname(dest)
        fresh = parent in created
        if not fresh:
            _make_parents(parent, uid, gid)
        mode = chmod.apply(e.mode, e.kind == "dir") if chmod is not None else e.mode
        if e.kind == "dir":
            if fresh or not os.path.isdir(dest):
                if not fresh and os.path.lexists(dest):
                    os.unlink(dest)
                os.mkdir(dest, mode)
                created.add(dest)
            else:
                os.chmod(dest, mode)
            os.lchown(dest, uid, gid)
            if mode & 0o7000:
                os.chmod(dest, mode)  # chown clears setgid: set it last
            _set_xattrs(dest, e.xattrs)
            dirs.append((dest, e.mtime_ns))
            continue
        if not fresh and os.path.lexists(dest):
            if os.path.isdir(dest) and not os.path.islink(dest):
                raise InvalidArgumentError(f"cannot copy {e.src} over the directory {dest} in the image")
            os.unlink(dest)
        if e.kind == "hardlink":
            os.link(e.link, dest, follow_symlinks=False)
        elif e.kind == "symlink":
            os.symlink(e.link, dest)
            os.lchown(dest, uid, gid)
            _set_xattrs(dest, e.xattrs)
            os.utime(dest, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)
        elif e.kind in _NODES:
            os.mknod(dest, mode | _NODES[e.kind], e.rdev)
            os.lchown(dest, uid, gid)
            if mode & 0o7000:
                os.chmod(dest, mode)
            _set_xattrs(dest, e.xattrs)
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


def _set_xattrs(target: str | int, xattrs: tuple[tuple[str, bytes], ...], where: str = "") -> None:
    # After chown, which drops security.capability (and setuid) by design.
    for name, value in xattrs:
        try:
            # A descriptor is the file itself: there is no symlink to follow.
            os.setxattr(target, name, value, follow_symlinks=isinstance(target, int))
        except OSError as exc:
            raise InvalidArgumentError(
                f"cannot set the xattr {name} on {where or target} in the image: {exc.strerror or exc}"
            ) from None


def _make_parents(path: str, uid: int = 0, gid: int = 0) -> None:
    """Create the missing directories of `path`, 0755 and owned as --chown
    asks (as BuildKit and buildah do; an existing directory keeps its owner)."""
    if not path or os.path.isdir(path):
        return
    _make_parents(posixpath.dirname(path), uid, gid)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise InvalidArgumentError(f"cannot create directory {path} in the image: a file is in the way")
    if not os.path.isdir(path):
        os.mkdir(path, 0o755)
        if uid or gid:
            os.lchown(path, uid, gid)


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
            _set_xattrs(dest_fd, e.xattrs, dest)
            os.utime(dest_fd, ns=(e.mtime_ns, e.mtime_ns))
        finally:
            os.close(dest_fd)
    finally:
        os.close(src_fd)


def extract_context_tar(stream: BinaryIO, dest: str) -> None:
    """Unpack a build context sent as a tar (plain or compressed) into the
    empty directory `dest`, keeping every entry inside it.

    Names are cleaned and may not climb out; parents are resolved before
    anything is written, so a symlink from the tar cannot lead a later
    entry out of `dest`. Symlinks keep their targets (inside the image they
    point where they say), hardlinks must point inside the tar, and device
    nodes, fifos and sockets are skipped: a context has no use for them.
    """
    import tarfile

    from overlayctl.layer.compression import open_decompressed

    root = os.path.realpath(dest)
    try:
        with tarfile.open(fileobj=open_decompressed(stream), mode="r|") as tar:
            for member in tar:
                _extract_member(tar, member, root)
    except (tarfile.TarError, EOFError, ValueError, LayerRejectedError) as exc:
        raise InvalidArgumentError(f"the build context is not a valid tar archive: {exc}") from None


def _inside(root: str, name: str) -> str | None:
    """root/name for a tar name that stays inside root, or None."""
    clean = posixpath.normpath("/" + name).lstrip("/")
    if not clean or clean == ".":
        return None
    return os.path.join(root, clean)


def _checked_parent(root: str, path: str, name: str) -> None:
    parent = os.path.dirname(path)
    os.makedirs(parent, 0o755, exist_ok=True)
    real = os.path.realpath(parent)
    if real != root and not real.startswith(root + os.sep):
        raise InvalidArgumentError(f"the build context tar entry {name} leads outside the context")


def _extract_member(tar: Any, member: Any, root: str) -> None:
    path = _inside(root, member.name)
    if path is None:
        return
    _checked_parent(root, path, member.name)
    if os.path.lexists(path) and not (member.isdir() and os.path.isdir(path) and not os.path.islink(path)):
        if os.path.isdir(path) and not os.path.islink(path):
            remove_tree(path)
        else:
            os.unlink(path)
    mode = member.mode & 0o7777
    if member.isdir():
        if not os.path.isdir(path):
            os.mkdir(path, 0o755)
        os.chmod(path, mode | 0o700)
    elif member.isreg():
        source = tar.extractfile(member)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(_CHUNK):
                out.write(chunk)
            os.fchmod(out.fileno(), mode)
    elif member.issym():
        os.symlink(member.linkname, path)
        return
    elif member.islnk():
        target = _inside(root, member.linkname)
        if target is None or not os.path.lexists(target):
            raise InvalidArgumentError(
                f"the build context tar entry {member.name} links to a missing {member.linkname}"
            )
        os.link(target, path, follow_symlinks=False)
        return
    else:
        return  # devices, fifos: not part of a context
    os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)

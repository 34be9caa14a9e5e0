"""`RUN --mount`: what each mount of a step becomes for the runtime (the
same `Mount`s that `run -v` and `--tmpfs` hand it), its part of the step's
cache key, and the clean-up after the step.

- cache: a directory of the store (store/cachemounts.py) bound read-write,
  held with the lock its `sharing` asks for while the step runs;
- bind: a path of the build context (without what .dockerignore leaves
  out) or of a `from=` source (see `Builder._mount_source`), read-only; with `rw` the step may write, into a
  throwaway upper directory (an overlay over the source), never the source;
- tmpfs: a fresh tmpfs;
- secret: the value written to a file under the runroot (mode 0400 unless
  told), bound read-only at /run/secrets/<id>, and/or put in the command's
  environment (`env=`); removed when the step ends.

What a mount puts in the step's upper directory only to have somewhere to
mount on is taken out again (`drop_stubs`): the layer holds the command's
changes, not the step's mounts.
"""

from __future__ import annotations

import hashlib
import os
import stat

from overlayctl.builder.mounts import RunMount
from overlayctl.errors import InvalidArgumentError
from overlayctl.runtime.overlay import OverlayLayout
from overlayctl.runtime.spec import Mount
from overlayctl.store.cachemounts import CacheMountLease, CacheMounts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from overlayctl.builder.context import Context
    from overlayctl.paths import Paths

# BuildKit's tmpfs mounts: world-writable with the sticky bit, as /tmp.
_TMPFS_MODE = "mode=1777"


class MountSource:
    """What `from=` names, resolved: its directories, top first (an image's
    layer directories, or one directory), and what identifies its content
    for the cache key (an image ID, a stage's result...)."""

    __slots__ = ("dirs", "identity")

    def __init__(self, dirs: tuple[str, ...], identity: str) -> None:
        self.dirs = dirs
        self.identity = identity


class PreparedMounts:
    """The runtime mounts of one step, the environment its secrets add,
    and what to release when it ends."""

    def __init__(self) -> None:
        self.mounts: list[Mount] = []
        self.env: list[str] = []
        self.targets: list[str] = []
        self.leases: list[CacheMountLease] = []
        self.secret_dir = ""

    def release(self) -> None:
        """Unlock the caches and remove the secrets' files."""
        for lease in self.leases:
            lease.release()
        self.leases = []
        if self.secret_dir:
            from overlayctl.store.staging import remove_tree

            try:
                remove_tree(self.secret_dir)
            except FileNotFoundError:
                pass
            try:
                os.rmdir(os.path.dirname(self.secret_dir))  # the last build's step leaves no trace
            except OSError:
                pass  # another build's secrets are there
            self.secret_dir = ""


def key_parts(mounts: list[RunMount], context: Context, mount_source: Callable[[str], MountSource]) -> list[str]:
    """Each mount's part of the step's cache key: its specification, plus
    the content of what a bind shows (the context's files as COPY digests
    them, or the source's identity). Never a secret's value, nor what a
    cache directory holds."""
    parts = []
    for mount in mounts:
        text = mount.cache_key()
        if mount.type == "bind":
            if mount.from_:
                text += f",content={mount_source(mount.from_).identity}"
            else:
                plan = context.plan([mount.source or "."], "/mnt", "RUN --mount")
                text += f",content={context.digest(plan)}"
        parts.append(text)
    return parts


def prepare(
    mounts: list[RunMount],
    paths: Paths,
    stage: str,
    context: Context,
    mount_source: Callable[[str], MountSource],
    secrets: dict[str, bytes],
) -> PreparedMounts:
    """Make every mount of a step ready: caches locked, secrets written,
    throwaway upper directories in `stage`. On failure nothing stays held."""
    prepared = PreparedMounts()
    try:
        for number, mount in enumerate(mounts):
            _prepare_one(prepared, number, mount, paths, stage, context, mount_source, secrets)
    except BaseException:
        prepared.release()
        raise
    return prepared


def _prepare_one(
    prepared: PreparedMounts,
    number: int,
    mount: RunMount,
    paths: Paths,
    stage: str,
    context: Context,
    mount_source: Callable[[str], MountSource],
    secrets: dict[str, bytes],
) -> None:
    if mount.type == "cache":
        seed: tuple[str, ...] = ()
        if mount.source and not mount.from_:
            raise InvalidArgumentError("--mount: source= of a type=cache mount needs from= (what to start it with)")
        if mount.from_:
            seed = _bind_dirs(mount, context, mount_source, "")
            if not os.path.isdir(seed[0]):
                raise InvalidArgumentError(f'--mount: source "{mount.source}" of {mount.from_} is not a directory')
        lease = CacheMounts(paths).acquire(
            mount.id,
            mount.sharing,
            0o755 if mount.mode is None else mount.mode,
            mount.uid or 0,
            mount.gid or 0,
        )
        prepared.leases.append(lease)
        if lease.created and seed:
            # A new cache starts with what `from` shows, as BuildKit's; an
            # existing one keeps what earlier steps left.
            for layer in reversed(seed):
                _merge_layer(layer, lease.data)
        _add(prepared, Mount("bind", lease.data, mount.target, mount.readonly))
    elif mount.type == "tmpfs":
        options = _TMPFS_MODE + (f",size={mount.size}" if mount.size else "")
        _add(prepared, Mount("tmpfs", "tmpfs", mount.target, mount.readonly, options))
    elif mount.type == "secret":
        _prepare_secret(prepared, mount, paths, secrets)
    elif mount.type == "bind":
        scratch = os.path.join(stage, f"mount{number}")
        os.mkdir(scratch, 0o700)
        dirs = _bind_dirs(mount, context, mount_source, scratch)
        _add(prepared, _bind(dirs, mount, scratch))
    else:
        raise InvalidArgumentError(f"--mount: type={mount.type} mounts are not supported by overlayctl build")


def _add(prepared: PreparedMounts, mount: Mount) -> None:
    prepared.mounts.append(mount)
    prepared.targets.append(mount.target)


def _prepare_secret(prepared: PreparedMounts, mount: RunMount, paths: Paths, secrets: dict[str, bytes]) -> None:
    value = secrets.get(mount.id)
    if value is None:
        if mount.required:
            raise InvalidArgumentError(
                f'secret "{mount.id}" is required but was not given: use build --secret id={mount.id},src=PATH'
            )
        return  # BuildKit leaves an optional secret that is missing out
    if mount.env:
        try:
            text = value.decode()
        except UnicodeDecodeError:
            raise InvalidArgumentError(
                f'secret "{mount.id}" is not text, so it cannot be the variable {mount.env}'
            ) from None
        prepared.env.append(f"{mount.env}={text}")
    if not mount.target:
        return
    if not prepared.secret_dir:
        # The runroot (a tmpfs in /run normally): a secret is never written
        # to the store's disk.
        from overlayctl.store.staging import new_staging_dir, sweep

        top = os.path.join(paths.runroot, "build-secrets")
        os.makedirs(top, 0o700, exist_ok=True)
        sweep(top)  # the secrets of builds that were killed
        prepared.secret_dir = new_staging_dir(top, "secrets")
    path = os.path.join(prepared.secret_dir, hashlib.sha256(mount.target.encode()).hexdigest()[:16])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, value)
        os.fchown(fd, mount.uid or 0, mount.gid or 0)
        os.fchmod(fd, 0o400 if mount.mode is None else mount.mode)
    finally:
        os.close(fd)
    _add(prepared, Mount("bind", path, mount.target, True))


def _bind_dirs(
    mount: RunMount, context: Context, mount_source: Callable[[str], MountSource], scratch: str
) -> tuple[str, ...]:
    """The directories (top first) whose merge, at `source`, the bind shows;
    one path (a file or a directory) for the context or a one-layer source."""
    if not mount.from_:
        if context.rules.patterns:
            return (_filtered_context(context, mount.source or ".", scratch),)
        rel = context.match(mount.source or ".", "RUN --mount")[0]
        return (os.path.join(context.root, rel) if rel else context.root,)
    source = mount_source(mount.from_)
    sub = mount.source if mount.source not in ("", ".") else ""
    found: list[str] = []
    for top in source.dirs:
        path = os.path.join(top, sub) if sub else top
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            break  # a whiteout: nothing below shows
        if stat.S_ISLNK(st.st_mode):
            raise InvalidArgumentError(f'--mount: source "{mount.source}" of {mount.from_} is a symlink')
        if not stat.S_ISDIR(st.st_mode):
            if not found:
                found.append(path)  # a file: the top one is what shows
            break
        found.append(path)
        if _opaque(path):
            break
    if not found:
        raise InvalidArgumentError(f'--mount: source "{mount.source}" not found in {mount.from_}')
    return tuple(found)


def _filtered_context(context: Context, source: str, scratch: str) -> str:
    """The context at `source` as BuildKit's bind sees it, without what
    .dockerignore leaves out: a tree in `scratch` of hard links to the
    context's files (copies across filesystems). A link shares the file,
    but the bind is read-only, or an overlay whose upper takes the writes."""
    import shutil

    plan = context.plan([source], "/", "RUN --mount")
    top = os.path.join(scratch, "context")
    for entry in plan.entries:
        if plan.kind == "file":
            path = top
        else:
            path = os.path.normpath(os.path.join(top, os.path.relpath(entry.dest, "/")))
        src = os.path.join(context.root, entry.src)
        if entry.kind == "dir":
            os.mkdir(path, 0o700)
        elif entry.kind == "symlink":
            os.symlink(entry.link, path)
        else:
            try:
                os.link(src, path)
            except OSError:
                shutil.copy2(src, path)
    # Directories get their modes and owners once their contents are in.
    for entry in reversed(plan.entries):
        if entry.kind == "dir":
            path = os.path.normpath(os.path.join(top, os.path.relpath(entry.dest, "/")))
            st = os.stat(os.path.join(context.root, entry.src))
            os.chown(path, st.st_uid, st.st_gid)
            os.chmod(path, entry.mode)
    return top


def _merge_layer(layer: str, dest: str) -> None:
    """Copy one layer's files over dest, as overlayfs would show them on
    top of what is there: a whiteout removes, an opaque directory replaces.
    Sockets, fifos and device nodes are left out."""
    import shutil

    with os.scandir(layer) as entries:
        for entry in entries:
            target = os.path.join(dest, entry.name)
            st = entry.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(st.st_mode)
            replace = not is_dir or _opaque(entry.path) or not os.path.isdir(target) or os.path.islink(target)
            if os.path.lexists(target) and replace:
                if os.path.isdir(target) and not os.path.islink(target):
                    shutil.rmtree(target)
                else:
                    os.unlink(target)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                continue  # a whiteout: the name is gone
            if is_dir:
                if not os.path.isdir(target):
                    os.mkdir(target, 0o700)
                _merge_layer(entry.path, target)
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(entry.path), target)
            elif stat.S_ISREG(st.st_mode):
                shutil.copyfile(entry.path, target, follow_symlinks=False)
            else:
                continue
            os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(target, stat.S_IMODE(st.st_mode))
                os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _bind(dirs: tuple[str, ...], mount: RunMount, scratch: str) -> Mount:
    """A bind of one path, or an overlay of several; writable ones write
    into `scratch` (in the step's staging, gone with it)."""
    single = len(dirs) == 1
    if mount.readonly and single:
        return Mount("bind", dirs[0], mount.target, True)
    if not os.path.isdir(dirs[0]):
        # A file, writable: a copy of it is what the step may change.
        import shutil

        copy = os.path.join(scratch, "file")
        shutil.copy2(dirs[0], copy)
        return Mount("bind", copy, mount.target, False)
    if mount.readonly:
        return Mount("overlay", "", mount.target, True, layout=OverlayLayout(dirs, "", ""))
    upper, work = os.path.join(scratch, "upper"), os.path.join(scratch, "work")
    os.mkdir(upper, 0o755)
    os.mkdir(work, 0o700)
    # The upper dir's root is the mount's root: it shows the source's own
    # owner and mode, not those of the directory made here.
    st = os.stat(dirs[0])
    os.chown(upper, st.st_uid, st.st_gid)
    os.chmod(upper, stat.S_IMODE(st.st_mode))
    return Mount("overlay", "", mount.target, False, layout=OverlayLayout(dirs, upper, work))


def drop_stubs(upper: str, lowers: tuple[str, ...], targets: list[str], workdir: str = "/") -> None:
    """Take out of a RUN step's upper directory what was made only to mount
    on: an empty directory or file at a mount's target that the image does
    not have, and the parents made for it (or copied up, unchanged in owner
    and mode, to hold it) once they are empty. Deepest first. The working
    directory and its parents stay: the step makes them whether or not it
    mounts anything."""
    kept = {"/", ""}
    path = os.path.normpath(workdir or "/")
    while path not in kept:
        kept.add(path)
        path = os.path.dirname(path)
    for target in sorted(set(targets), key=lambda t: t.count("/"), reverse=True):
        path = target
        while path not in kept:
            if not _drop_one(upper, lowers, path, path == target):
                break
            path = os.path.dirname(path)


def _drop_one(upper: str, lowers: tuple[str, ...], path: str, is_target: bool) -> bool:
    """Remove one stub; whether the walk up may go on."""
    here = os.path.join(upper, path.lstrip("/"))
    try:
        st = os.lstat(here)
    except FileNotFoundError:
        return False  # not made in this layer (the image has it; nothing copied up)
    below = _lower_stat(lowers, path)
    if stat.S_ISDIR(st.st_mode):
        if os.listdir(here) or _opaque(here):
            return False
        if below is not None:
            same = stat.S_ISDIR(below.st_mode) and (below.st_mode, below.st_uid, below.st_gid) == (
                st.st_mode,
                st.st_uid,
                st.st_gid,
            )
            if not same:
                return False  # the command changed it: that is its result
        os.rmdir(here)
        return True
    if is_target and stat.S_ISREG(st.st_mode) and st.st_size == 0 and below is None:
        os.unlink(here)
        return True
    return False


def _lower_stat(lowers: tuple[str, ...], path: str) -> os.stat_result | None:
    """What the image below shows at path (top layer first; a whiteout or
    an opaque parent hides the rest)."""
    rel = path.lstrip("/")
    for lower in lowers:
        try:
            st = os.lstat(os.path.join(lower, rel))
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return None
        return st
    return None

"""Work on an image's merged filesystem without running a container in it.

Build steps that copy files in (COPY, ADD) and commands that read a
container's whole tree (export) need the overlay mounted, but no new PID
namespace, no devices and no exec. A forked child mounts it in a private
mount namespace, chroots into it so that every path (and every symlink in
the image) resolves inside the image, runs one function and exits; the
mount vanishes with the child and never appears in the host's table.
"""

from __future__ import annotations

import os
import stat

from overlayctl.errors import OverlayctlError
from overlayctl.runtime import syscalls as sc
from overlayctl.runtime.mountplan import OverlayMount
from overlayctl.runtime.overlay import OverlayLayout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from overlayctl.runtime.spec import Mount


def in_rootfs(
    layout: OverlayLayout,
    store_root: str,
    mountpoint: str,
    work: Callable[[], None],
    overlay_api: str = "new",
    keep_fds: Iterable[int] = (),
    *,
    chroot: bool = True,
    views: Iterable[tuple[tuple[str, ...], str]] = (),
) -> None:
    """Mount `layout` at `mountpoint` in a child, chroot there and call `work`.

    `work` runs as root inside the image's root; it must have imported what
    it needs and opened any host file it uses before it is called (the
    host's tree is out of reach after the chroot), and those descriptors
    must be in `keep_fds`: the child holds no other but stdio, as a
    container's PID 1 (init.leave_host_behind). An OverlayctlError or
    OSError it raises is re-raised here with its message; the child is
    always reaped first. With `chroot` false, `work` stays in the host's
    root and finds the tree at `mountpoint` (in the child's own mount
    namespace): for work that keeps itself beneath the tree, and needs
    the host's /proc. `views` are (layer directories, top first; a
    directory) pairs: each stack is mounted there read-only first, in the
    same private namespace, for work that reads another image's tree.
    """
    views = list(views)
    os.makedirs(mountpoint, exist_ok=True)
    error_r, error_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(error_r)
            from overlayctl.runtime.init import leave_host_behind

            leave_host_behind((error_w, *keep_fds))
            sc.unshare(sc.CLONE_NEWNS)
            sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
            for lowers, where in views:
                OverlayMount(OverlayLayout(lowers, "", ""), store_root, overlay_api).execute(where)
            OverlayMount(layout, store_root, overlay_api).execute(mountpoint)
            if chroot:
                os.chroot(mountpoint)
                os.chdir("/")
            work()
        except OverlayctlError as exc:
            code = exc.exit_code or 1
            # Its kind too (NotFoundError, ...): a front end answers by it.
            report = f"{code} {type(exc).__name__}\0{exc.message}"
            os.write(error_w, report.encode(errors="backslashreplace"))
        except OSError as exc:
            code = 125
            where = f": {exc.filename}" if exc.filename else ""
            os.write(error_w, f"125 {exc.strerror or exc}{where}".encode(errors="backslashreplace"))
        except BaseException as exc:  # noqa: BLE001 - the child must never unwind into the caller
            code = 125
            os.write(error_w, f"125 {exc!r}".encode(errors="backslashreplace"))
        finally:
            os._exit(code)
    os.close(error_w)
    try:
        chunks = []
        while chunk := os.read(error_r, 65536):
            chunks.append(chunk)
    finally:
        os.close(error_r)
        _, status = os.waitpid(pid, 0)
    if chunks:
        code, _, message = b"".join(chunks).decode(errors="replace").partition(" ")
        kind, nul, rest = message.partition("\0")
        error_class = _error_class(kind) if nul else OverlayctlError
        raise error_class(rest if nul else message, exit_code=int(code) if code.isdigit() else 125)
    if os.waitstatus_to_exitcode(status) != 0:
        raise OverlayctlError(f"working in the image's filesystem failed (status {os.waitstatus_to_exitcode(status)})")


def _error_class(name: str) -> type[OverlayctlError]:
    """The overlayctl error class called name, else OverlayctlError."""
    from overlayctl import errors

    found = getattr(errors, name, None)
    if isinstance(found, type) and issubclass(found, OverlayctlError):
        return found
    return OverlayctlError


def _make_beneath(root_fd: int, path: str, is_dir: bool) -> int:
    """Make path (a directory, or an empty file) and its missing parents
    inside the tree at root_fd; an O_PATH fd of it."""
    parts = [p for p in path.split("/") if p]
    for i in range(len(parts)):
        here = "/".join(parts[: i + 1])
        try:
            os.close(sc.open_in_root(root_fd, here, os.O_PATH))
            continue
        except FileNotFoundError:
            pass
        parent = sc.open_in_root(root_fd, "/".join(parts[:i]), os.O_RDONLY | os.O_DIRECTORY)
        try:
            if is_dir or i < len(parts) - 1:
                os.mkdir(parts[i], 0o755, dir_fd=parent)
            else:
                os.close(
                    os.open(parts[i], os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=parent)
                )
        finally:
            os.close(parent)
    return sc.open_in_root(root_fd, path, os.O_PATH)


def bind_beneath(root_fd: int, mounts: list[Mount]) -> None:
    """Attach the bind mounts (volumes, binds) at their targets beneath
    root_fd, in the caller's own mount namespace (for `cp` into a stopped
    container, in the child of in_rootfs). Each target resolves inside the
    tree as the container would resolve it (RESOLVE_IN_ROOT), so no symlink
    in it aims a mount at the host; a target that is not there yet (a
    container never started) is made, as its start would make it."""
    from overlayctl.runtime.init import _open_mount_sources

    binds = [m for m in mounts if m.kind == "bind"]
    trees = _open_mount_sources(binds)
    for mount, opened in zip(binds, trees, strict=True):
        assert opened is not None
        tree, later = opened
        try:
            target = sc.open_in_root(root_fd, mount.target, os.O_PATH)
        except FileNotFoundError:
            target = _make_beneath(root_fd, mount.target, stat.S_ISDIR(os.fstat(tree).st_mode))
        try:
            sc.move_mount_to_fd(tree, target, mount.target)
            if later:
                # Kernels without mount_setattr: a remount of the mount
                # just attached (found again: target holds what it covers).
                attached = sc.open_in_root(root_fd, mount.target, os.O_PATH)
                try:
                    path = f"/proc/self/fd/{attached}"
                    kept = os.statvfs(path).f_flag & (sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
                    sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | kept | later)
                finally:
                    os.close(attached)
        finally:
            os.close(target)
            os.close(tree)

"""PID 1 of a new container: everything between fork and exec.

Runs in the child the supervisor forked into a new PID namespace. It joins
new mount, UTS, IPC, network and cgroup namespaces, builds the root
filesystem from the plan, switches root, drops privileges and executes the
command. Any failure is written to the error pipe as "<exit code> <message>"
so the supervisor can report it in one line; a successful exec closes the
pipe (it is close-on-exec), which tells the supervisor the command runs.
"""

from __future__ import annotations

import errno
import os
import stat

# python-prctl's C layer (the capability calls of drop_privileges), loaded
# with this module: the supervisor imports it before the fork, so PID 1
# does not pay for a dlopen on pages it shares with the supervisor.
import _prctl

from overlayctl.errors import CommandNotExecutableError, CommandNotFoundError, KernelError, OverlayctlError
from overlayctl.runtime import syscalls as sc
from overlayctl.runtime.mountplan import MASKED_PATHS, overlay_tree, rootfs_plan, thermal_throttle_paths
from overlayctl.runtime.spec import DEFAULT_PATH, ContainerSpec, Mount

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

NAMESPACES = sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWNET | sc.CLONE_NEWCGROUP


def container_main(
    spec: ContainerSpec, error_fd: int, console_fd: int | None, sync_fds: tuple[int, int] | None = None
) -> None:
    """Set up the container and exec its command; never returns.

    With `sync_fds` (ready_w, go_r), PID 1 says when its namespaces exist
    and waits for the supervisor to finish its part (the network) first.
    """
    try:
        leave_host_behind((error_fd, console_fd, *(sync_fds or ())))
        _setup(spec, console_fd, sync_fds)
        path = resolve_command(spec.argv[0], spec.env_value("PATH") or DEFAULT_PATH)
        _reset_signals()
        try:
            os.execve(path, spec.argv, _env_dict(spec.env))
        except OSError as exc:
            raise _exec_error(spec.argv[0], exc) from exc
    except OverlayctlError as exc:
        _report(error_fd, exc.exit_code, exc.message)
    except BaseException as exc:  # noqa: BLE001 - PID 1 must report, never unwind
        # No imports here: after pivot_root the host's Python library is gone.
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f" (in {tb.tb_frame.f_code.co_name}, line {tb.tb_lineno})" if tb is not None else ""
        _report(error_fd, 125, f"container set-up failed: {exc}{where}")


_masked: tuple[str, ...] | None = None


def masked_paths() -> tuple[str, ...]:
    """Docker's masked paths and this host's thermal_throttle directories,
    read once per process. The supervisor asks before it forks PID 1: in
    PID 1, a fork, the same reads took 0.3 ms (each page they touch is
    copied first), against 0.05 ms."""
    global _masked
    if _masked is None:
        _masked = MASKED_PATHS + thermal_throttle_paths()
    return _masked


def leave_host_behind(keep_fds: Iterable[int | None]) -> None:
    """For a process about to make or join a container's namespaces (PID 1
    of a run, start, restart or build step; an exec; a COPY): from now until
    its execve it must be out of reach of the processes in there, and hold
    nothing of the host's that they could take from it. runc's init does
    the same (nsexec, then init_linux.go), after CVE-2019-5736 and
    CVE-2024-21626.

    Non-dumpable first: otherwise, once its capabilities are no more than
    theirs (an exec after drop_privileges), a container process of the same
    uid may open its /proc/<pid>/fd/* (the CLI's catalog.db, read-write),
    exe (the host's python: CVE-2019-5736 overwrote runc through it),
    environ, cwd and root. Only CAP_SYS_PTRACE passes that check, which a
    container has only when made privileged. The flag is inherited by a
    fork, and execve makes the container's own program dumpable again.

    Then no descriptor but stdio and `keep_fds` (the set-up's own): one the
    caller left inheritable (a shell's `exec 9</dir`) would reach the
    container's command, and a directory among them is a way out of its
    root (CVE-2024-21626: a working directory of /proc/self/fd/N). Ours are
    close-on-exec, but open until execve.

    Last the environment: the command gets the container's alone, through
    execve; nothing before that may hand on the caller's. (/proc/<pid>/environ
    shows the block the process started with whatever is cleared here: the
    flag above is what hides it.)
    """
    from overlayctl.runtime.capabilities import make_non_dumpable

    make_non_dumpable()
    sc.close_fds_except(fd for fd in keep_fds if fd is not None)
    # One unsetenv per name, as clear() makes them; but clear() pops one
    # item at a time and lists the names left for each (about 0.4 ms of
    # every start, here in a fork).
    for name in list(os.environ):
        del os.environ[name]


def _report(error_fd: int, code: int, message: str) -> None:
    try:
        os.write(error_fd, f"{code} {message}".encode(errors="backslashreplace"))
    finally:
        os._exit(code)


def _setup(spec: ContainerSpec, console_fd: int | None, sync_fds: tuple[int, int] | None = None) -> None:
    # After pivot_root the host's files, Python's library included, are out
    # of reach: import everything the rest of the set-up needs now.
    import _signal  # noqa: F401  (used by _reset_signals)

    from overlayctl.runtime.capabilities import set_parent_death_signal

    if spec.user or spec.group_add:
        import overlayctl.runtime.users  # noqa: F401  (resolved after pivot_root)
    if spec.sysctls:
        import overlayctl.runtime.runflags  # noqa: F401  (sysctls are written after pivot_root)

    if spec.tty:
        import fcntl  # noqa: F401
        import socket  # noqa: F401
        import termios  # noqa: F401

    # A killed supervisor takes its container with it: nothing would record
    # the exit, and the mount namespace dies with the last process.
    set_parent_death_signal(9)
    # Into the container's cgroups first, so that everything it ever starts
    # is counted, and before the cgroup namespace makes them its root.
    for procs in spec.cgroup_procs:
        with open(procs, "w") as f:
            f.write("0")
    flags = NAMESPACES if spec.network != "host" else NAMESPACES & ~sc.CLONE_NEWNET
    shm_tree = None
    if spec.ipc_join is not None:
        shm_tree = _join_ipc(*spec.ipc_join)
        flags &= ~sc.CLONE_NEWIPC
    elif spec.ipc == "host":
        flags &= ~sc.CLONE_NEWIPC
    sc.unshare(flags)
    if spec.network not in ("host", "none"):
        # Before the supervisor makes eth0 in this namespace: devices made
        # from now on have no IPv6 and refuse router advertisements. Only
        # `default`: lo keeps ::1 (programs binding "localhost" expect it)
        # and never sees an advertisement. Sysctls under /proc/sys/net are
        # those of the writer's namespace.
        from overlayctl.runtime.netdev import ipv6_off

        ipv6_off("default")
    # The kernel answers for the writer's own namespaces under /proc/sys:
    # held open here, written once the supervisor has made the network
    # (a net.ipv4.conf.eth0.* key needs eth0), after /proc/sys is read-only.
    sysctl_dir = os.open("/proc/sys", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if spec.sysctls else None
    if sync_fds is not None:
        # The supervisor configures the namespaces (the network) while this
        # process builds the root: nothing below needs its part until the
        # command is about to run.
        ready_w, go_r = sync_fds
        os.write(ready_w, b"r")
        os.close(ready_w)
    # Nothing mounted from here on may propagate back to the host.
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    masked = () if spec.privileged else masked_paths()
    shm: str | None = f"mode=1777,size={spec.shm_size}" if spec.shm_size else "mode=1777,size=65536k"
    if spec.ipc != "private" or shm_tree is not None:
        shm = None  # none, or the host's or another container's, bound after pivot_root
    plan = rootfs_plan(
        spec.layout, spec.store_root, spec.overlay_api, spec.privileged, masked, spec.devices, shm=shm
    )
    plan.execute(spec.mountpoint)
    trees = _open_mount_sources(spec.mounts, nodev=not spec.privileged)
    _switch_root(spec.mountpoint)
    _attach_mounts(spec.mounts, trees)
    if shm_tree is not None:
        _make_target("/dev/shm", True)
        sc.move_mount(shm_tree, "/dev/shm")
        os.close(shm_tree)
    if spec.readonly_rootfs:
        # A bind remount sets exactly the flags it is given: without nodev
        # here, a device node shipped in the image would open again.
        nodev = 0 if spec.privileged else sc.MS_NODEV
        sc.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | nodev)
    if spec.hostname:
        sc.sethostname(spec.hostname)
    if spec.network != "host":
        sc.loopback_up()
    if spec.tty:
        attach_console(console_fd)
    elif not spec.stdin:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    uid, gid, groups = spec.uid, spec.gid, []
    if spec.user:
        who = resolve_user_here(spec.user)
        uid, gid, groups = who.uid, who.gid, who.groups
        if spec.env_value("HOME") is None:
            spec.env.append(f"HOME={who.home}")
    if spec.group_add:
        from overlayctl.runtime.users import account_files, resolve_groups

        groups = groups + [g for g in resolve_groups(spec.group_add, account_files()[1]) if g not in groups]
    if sync_fds is not None:
        if os.read(go_r, 1) != b"g":
            raise KernelError("the supervisor did not finish setting up the container's namespaces")
        os.close(go_r)
    if sysctl_dir is not None:
        _write_sysctls(sysctl_dir, spec.sysctls)
    if spec.oom_score_adj is not None:
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(spec.oom_score_adj))
        except PermissionError:
            raise KernelError(
                f"--oom-score-adj {spec.oom_score_adj}: lowering it needs CAP_SYS_RESOURCE, which this host "
                "does not give overlayctl"
            ) from None
    for name, resource, soft, hard in spec.rlimits:
        try:
            sc.setrlimit(resource, soft, hard)
        except KernelError as exc:
            if sc.errno_of(exc) != errno.EPERM:
                raise
            raise KernelError(
                f"--ulimit {name}: cannot raise its hard limit above this process's without CAP_SYS_RESOURCE"
            ) from None
    _enter_workdir(spec.cwd)
    drop_privileges(spec.privileged, spec.capabilities, spec.seccomp, uid, gid, groups)


def _join_ipc(pid: int, start: int) -> int:
    """Join a running container's IPC namespace (--ipc container:NAME) and
    clone its /dev/shm, as a tree to attach later: POSIX shared memory
    lives there, System V's in the namespace. Returns the tree's fd."""
    from overlayctl.util.proc import process_start_time

    flags = os.O_RDONLY | os.O_CLOEXEC
    fds = [os.open(f"/proc/{pid}/ns/ipc", flags), os.open(f"/proc/{pid}/ns/mnt", flags)]
    try:
        fds.append(os.open("/proc/self/ns/mnt", flags))
        # Opened, then checked: the descriptors hold the right namespaces
        # even if the pid is recycled from now on.
        if process_start_time(pid) != start:
            raise KernelError("cannot join IPC of a non running container: it has stopped")
        ipc, donor_mnt, own_mnt = fds
        sc.setns(ipc, sc.CLONE_NEWIPC)
        # open_tree clones only mounts of the caller's own mount namespace:
        # into the donor's for that one call, then back to ours (the host's,
        # until the unshare that follows).
        sc.setns(donor_mnt, sc.CLONE_NEWNS)
        try:
            return sc.open_tree_clone("/dev/shm")
        finally:
            sc.setns(own_mnt, sc.CLONE_NEWNS)
    finally:
        for fd in fds:
            os.close(fd)


def _write_sysctls(dir_fd: int, sysctls: list[tuple[str, str]]) -> None:
    """--sysctl values, each in the container's own namespace (the keys
    were checked at create to be namespaced ones)."""
    from overlayctl.runtime.runflags import sysctl_path

    try:
        for key, value in sysctls:
            relative = sysctl_path(key)[len("/proc/sys/") :]
            try:
                fd = os.open(relative, os.O_WRONLY | os.O_CLOEXEC, dir_fd=dir_fd)
            except FileNotFoundError:
                raise KernelError(f'sysctl "{key}": this kernel has no {sysctl_path(key)}') from None
            try:
                os.write(fd, value.encode())
            except OSError as exc:
                raise KernelError(f'cannot set sysctl "{key}" to "{value}": {exc.strerror}') from None
            finally:
                os.close(fd)
    finally:
        os.close(dir_fd)


def drop_privileges(
    privileged: bool,
    capabilities: tuple[str, ...] | None,
    seccomp: bytes | None,
    uid: int,
    gid: int,
    groups: list[int],
) -> None:
    """Become the container's user with its capabilities, for PID 1 and for
    `exec` alike: the bounding set is cut while still root, then the groups
    and ids change, then the other sets are limited; unless privileged,
    no_new_privs and the seccomp filter come last. ``capabilities`` None
    is Docker's default set. _prctl came with this module, and the caller
    has imported overlayctl.runtime.capabilities, while the host's files
    were in reach."""
    from overlayctl.runtime.capabilities import DEFAULT_CAPABILITIES, drop_bounding, limit_sets, make_non_dumpable

    keep = None if privileged else capabilities if capabilities is not None else DEFAULT_CAPABILITIES
    drop_bounding(keep)
    os.setgroups(groups)
    if uid or gid:
        os.setgid(gid)
        os.setuid(uid)
    limit_sets(keep)
    # A change of uid makes the kernel reset dumpability to fs.suid_dumpable:
    # 0 by default (so it stays so), but 1 on a host set up for debugging,
    # which would open this process to the container's until its execve.
    make_non_dumpable()
    if not privileged:
        # No setuid binary or file capability can give back what was dropped.
        _prctl.prctl(_prctl.PR_SET_NO_NEW_PRIVS, 1)
        if seccomp:
            sc.seccomp_set_filter(seccomp)


def resolve_user_here(user: str):  # type: ignore[no-untyped-def]
    """``user`` (name or id, with an optional group) looked up in this
    root's /etc/passwd and /etc/group: the container's, once inside it."""
    from overlayctl.runtime.users import account_files, resolve_user

    return resolve_user(user, *account_files())


def _open_mount_sources(mounts: list[Mount], nodev: bool = True) -> list[tuple[int, int] | None]:
    """Clone each bind source's mount tree while the host's paths are
    reachable, as (tree fd, MS_* flags still to set once it is attached).

    The whole tree is made nodev before it is attached: binds, volumes and
    generated /etc files live on the host's own filesystems, where a node
    made with mknod (CAP_MKNOD is in the default set) would open the
    host's device. A :ro bind is made read-only with every submount, as a
    user expects. Kernels before 5.12 lack mount_setattr: then the flags
    are set by a remount after attaching, which reaches the top mount only.
    """
    wanted = sc.MOUNT_ATTR_NODEV if nodev else 0
    trees: list[tuple[int, int] | None] = []
    for mount in mounts:
        if mount.kind == "overlay" and mount.layout is not None:
            # Made with its flags: nothing is left to set once attached.
            trees.append((overlay_tree(mount.layout, mount.readonly, nodev), 0))
            continue
        if mount.kind != "bind":
            trees.append(None)
            continue
        tree = sc.open_tree_clone(mount.source)
        attrs = wanted | (sc.MOUNT_ATTR_RDONLY if mount.readonly else 0)
        later = 0
        if attrs:
            try:
                sc.mount_setattr_tree(tree, attrs)
            except KernelError as exc:
                if sc.errno_of(exc) != errno.ENOSYS:
                    raise
                later = (sc.MS_NODEV if nodev else 0) | (sc.MS_RDONLY if mount.readonly else 0)
        trees.append((tree, later))
    return trees


def _attach_mounts(mounts: list[Mount], trees: list[tuple[int, int] | None]) -> None:
    """Attach volumes, binds and tmpfs mounts, after pivot_root: every target
    resolves inside the container's own root, symlinks included, so no
    symlink in the image can aim a mount at the host."""
    for mount, opened in zip(mounts, trees, strict=True):
        target = mount.target
        if opened is not None:
            tree, later = opened
            is_dir = stat.S_ISDIR(os.fstat(tree).st_mode)
            _make_target(target, is_dir)
            sc.move_mount(tree, target)
            os.close(tree)
            if later:
                _remount_adding(target, later)
        else:
            _make_target(target, True)
            flags = sc.MS_NOSUID | sc.MS_NODEV | (sc.MS_RDONLY if mount.readonly else 0)
            # exec/noexec are mount flags, not tmpfs options.
            words = [w for w in mount.options.split(",") if w]
            if "noexec" in words:
                flags |= sc.MS_NOEXEC
            data = ",".join(w for w in words if w not in ("exec", "noexec"))
            sc.mount("tmpfs", target, "tmpfs", flags, data or None)


def _remount_adding(target: str, flags: int) -> None:
    # A bind remount sets exactly the flags given: keep the ones the mount
    # has (statvfs's ST_* bits are the MS_* ones for these four).
    kept = os.statvfs(target).f_flag & (sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | kept | flags)


def _make_target(path: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(path, 0o755, exist_ok=True)
        return
    os.makedirs(os.path.dirname(path) or "/", 0o755, exist_ok=True)
    if not os.path.exists(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def _switch_root(new_root: str) -> None:
    os.chdir(new_root)
    # pivot_root(".", ".") puts the old root on top of the new one at "/";
    # no put_old directory is needed inside the image.
    sc.pivot_root(".", ".")
    # Make the old root a slave so unmounting it cannot reach the host's
    # mounts, then detach it: the container sees only its own tree.
    sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
    sc.umount(".", sc.MNT_DETACH)
    os.chdir("/")


def attach_console(console_fd: int | None) -> None:
    """Open a pty in the container's own devpts, hand the master to the
    supervisor over the console socket and make the slave our terminal."""
    import fcntl
    import socket
    import termios

    master, slave = os.openpty()
    assert console_fd is not None
    with socket.socket(fileno=console_fd) as sock:
        socket.send_fds(sock, [b"pty"], [master])
    os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def _enter_workdir(cwd: str) -> None:
    # Docker creates a missing working directory; so do we, inside the root.
    try:
        os.chdir(cwd)
    except FileNotFoundError:
        os.makedirs(cwd, 0o755, exist_ok=True)
        os.chdir(cwd)
    except NotADirectoryError:
        raise KernelError(f"working directory {cwd} is not a directory in the image") from None
    if not cwd_inside_root():
        raise KernelError(f"working directory {cwd} is outside the container's root")


def cwd_inside_root() -> bool:
    """Whether the working directory can be reached from our root. One
    reached through a descriptor (/proc/self/fd/N) may lie outside it
    (CVE-2024-21626); getcwd then fails with ENOENT (the kernel's answer
    starts "(unreachable)", which glibc refuses)."""
    try:
        os.getcwd()
    except FileNotFoundError:
        return False
    return True


def resolve_command(name: str, search_path: str) -> str:
    """Find the command as execvp would, inside the container's root."""
    if "/" in name:
        return name
    denied = None
    for directory in search_path.split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            if os.access(candidate, os.X_OK):
                return candidate
            denied = candidate
    if denied is not None:
        raise CommandNotExecutableError(f'exec: "{name}": permission denied ({denied} is not executable)')
    raise CommandNotFoundError(f'exec: "{name}": executable file not found in $PATH')


def _exec_error(name: str, exc: OSError) -> OverlayctlError:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return CommandNotFoundError(f'exec: "{name}": no such file or directory')
    return CommandNotExecutableError(f'exec: "{name}": {os.strerror(exc.errno or errno.EACCES).lower()}')


def _reset_signals() -> None:
    # An ignored signal stays ignored across exec, and a blocked one stays
    # blocked: the container's programs must start with the defaults, as
    # Docker's do, whatever overlayctl was started from. Python itself
    # ignores SIGPIPE and SIGXFSZ; nohup ignores SIGHUP; a shell's
    # background job ignores SIGINT and SIGQUIT (and a shell, as PID 1,
    # cannot trap a signal that was ignored when it started).
    import _signal as signal  # signal.py's enums would cost an import of enum

    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # the C library's own real-time signals
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _env_dict(env: list[str]) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in env)


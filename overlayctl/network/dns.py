"""Starting and retiring the DNS responder of a user-defined network.

One responder process per user-defined network (network.dnsserver), as
podman's aardvark-dns: the first container that starts on the network
starts it, from its supervisor once the bridge exists, and it goes with the
last. The default bridge has none, as in Docker: its containers get the
host's resolvers and no names.

Under <runroot>/dns/<network-id[:12]>/:

- `pid`: the responder flocks it for its whole life and writes its pid in
  it. A lock nobody holds means no responder, however it died (SIGKILL
  included): the kernel drops the lock with the process.
- `start.lock`: orders a start against an exit. A starter holds it while it
  looks for a responder and, if there is none, starts one and waits until
  it answers; a responder that finds its network unused decides to leave
  under it. So a container starting at that moment either finds the
  responder gone and starts a new one, or is seen by it (its lease is in
  the catalog before it looks), which then stays.

The responder leaves by itself when no lease of its network is held. The
places where leases change call `leases_changed`, which asks every
responder whose network has no lease left to look now (SIGHUP) and waits
for it to go, so that `stop`, `rm` and `system reconcile` return with it
gone rather than up to two seconds later.

This module imports no dnslib: only the responder's own process does.
"""

from __future__ import annotations

import os

from overlayctl.errors import KernelError
from overlayctl.network import lockfile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.paths import Paths
    from overlayctl.store import Store
    from overlayctl.store.networks import Network

START_TIMEOUT = 10.0  # seconds for a new responder to answer (a loaded host)
EXIT_TIMEOUT = 2.0  # seconds `leases_changed` waits for a responder to go

# The responder's entry point: the package's parent on sys.path, as the
# detached supervisor's monitor does, so it runs from a source tree too.
_BOOT = (
    "import sys;sys.path.insert(0,sys.argv[1]);"
    "from overlayctl.network.dnsserver import main;sys.exit(main(sys.argv[2:]))"
)


def responder_pid(paths: Paths, network_id: str) -> int | None:
    """The pid of the network's responder, None when none runs."""
    path = os.path.join(paths.dns_dir(network_id), "pid")
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else None
        return None  # nobody holds it: a file left by a process that died
    finally:
        os.close(fd)


def ensure_responder(paths: Paths, network: Network) -> None:
    """Start the network's responder unless one runs; return once it answers.

    Raises KernelError (one line) if it cannot start, e.g. when another DNS
    server already holds port 53 on the gateway's address."""
    directory = paths.dns_dir(network.id)
    lock = os.path.join(directory, "start.lock")
    fd = lockfile.take_lock(lock, block=True)
    assert fd is not None
    try:
        if responder_pid(paths, network.id) is not None:
            return
        _spawn(paths, network)
    finally:
        # The file stays: unlinking it here could let a second starter lock
        # a new file while a third still waits on this one.
        os.close(fd)


def _spawn(paths: Paths, network: Network) -> None:
    """Start the responder as a grandchild in its own session (so no
    supervisor has to reap it), and wait for its "ok" or its reason."""
    import select
    import sys

    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ready_r, ready_w = os.pipe()
    argv = [
        sys.executable,
        "-I",
        "-c",
        _BOOT,
        package_parent,
        paths.root,
        paths.runroot,
        network.id,
        network.name,
        network.gateway,
        network.subnet,
        str(ready_w),
    ]
    child = os.fork()
    if child == 0:  # pragma: no cover - the intermediate process
        try:
            os.setsid()
            if os.fork() == 0:
                _exec_responder(argv, ready_w)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.waitpid(child, 0)
    import time

    try:
        message = b""
        end = time.monotonic() + START_TIMEOUT
        while True:
            left = end - time.monotonic()
            if left <= 0 or not select.select([ready_r], [], [], left)[0]:
                raise KernelError(f'the DNS responder of network "{network.name}" did not start in time')
            chunk = os.read(ready_r, 512)
            if not chunk:
                break
            message += chunk
            if message == b"ok":
                return
    finally:
        os.close(ready_r)
    reason = message.decode(errors="replace").strip() or "it exited"
    raise KernelError(f'cannot start the DNS responder of network "{network.name}": {reason}')


def _exec_responder(argv: list[str], ready_w: int) -> None:  # pragma: no cover - runs in the grandchild
    """In the grandchild: only the ready pipe and /dev/null as stdio, no
    blocked signals, then the responder."""
    import signal

    devnull = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(devnull, target)
    os.set_inheritable(ready_w, True)
    os.closerange(3, ready_w)
    os.closerange(ready_w + 1, 65536)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    os.execv(argv[0], argv)


def leases_changed(store: Store) -> None:
    """The hook every lease change calls (a release, a sweep of stale
    leases): responders whose network has no lease left are asked to look
    now, and waited for. Cheap when no responder runs: one listdir."""
    root = os.path.join(store.paths.runroot, "dns")
    try:
        entries = os.listdir(root)
    except FileNotFoundError:
        return
    import signal

    waiting: list[str] = []
    nets = store.networks
    for short_id in entries:
        pid = responder_pid(store.paths, short_id)
        if pid is None:
            _remove_dir(os.path.join(root, short_id))
            continue
        network = next((n for n in nets.list() if n.id.startswith(short_id)), None)
        if network is not None and nets.leases(network=network.name):
            continue
        try:
            os.kill(pid, signal.SIGHUP)
            waiting.append(short_id)
        except ProcessLookupError:
            pass
    if waiting:
        _wait_gone(store.paths, waiting)
    try:
        os.rmdir(root)  # once the last responder has gone
    except OSError:
        pass


def _wait_gone(paths: Paths, short_ids: list[str]) -> None:
    """Until the responders asked to look are gone (or have decided to stay:
    a container started meanwhile), at most EXIT_TIMEOUT."""
    import time

    end = time.monotonic() + EXIT_TIMEOUT
    while time.monotonic() < end:
        if all(responder_pid(paths, s) is None for s in short_ids):
            return
        time.sleep(0.005)


def _remove_dir(directory: str) -> None:
    """A directory left by a responder that was killed: its files, if no
    start holds them."""
    lock = os.path.join(directory, "start.lock")
    fd = lockfile.take_lock(lock, block=False) if os.path.exists(lock) else None
    if os.path.exists(lock) and fd is None:
        return  # a start is under way
    try:
        try:
            os.unlink(os.path.join(directory, "pid"))
        except FileNotFoundError:
            pass
    finally:
        if fd is not None:
            lockfile.unlock_and_remove(lock, fd)
    try:
        os.rmdir(directory)
    except OSError:
        pass

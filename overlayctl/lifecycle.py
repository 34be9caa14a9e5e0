"""Container life: create, start, run and remove, joining store and runtime.

The CLI calls these; they hold the sequencing (record, start, record the
exit, clean up) so that every front end behaves the same.
"""

from __future__ import annotations

import os

from overlayctl.errors import InvalidArgumentError, OverlayctlError
from overlayctl.runtime.spec import ContainerSpec, merge_env
from overlayctl.store import Store
from overlayctl.store.containers import Container
from overlayctl.store.images import Image

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class CreateOptions:
    """What `create` and `run` accept, as Docker names it."""

    def __init__(
        self,
        image: str,
        command: list[str] | None = None,
        name: str | None = None,
        env: list[str] | None = None,
        workdir: str | None = None,
        hostname: str | None = None,
        user: str | None = None,
        entrypoint: str | None = None,
        tty: bool = False,
        interactive: bool = False,
        auto_remove: bool = False,
    ) -> None:
        self.image = image
        self.command = command or []
        self.name = name
        self.env = env or []
        self.workdir = workdir
        self.hostname = hostname
        self.user = user
        self.entrypoint = entrypoint
        self.tty = tty
        self.interactive = interactive
        self.auto_remove = auto_remove


def create(store: Store, opts: CreateOptions) -> Container:
    """Record a container with its (empty) upper directory; start nothing."""
    return _create(store, opts, store.images.resolve(opts.image))


def _create(store: Store, opts: CreateOptions, image: Image) -> Container:
    image_cfg = image.container_config
    entrypoint = _entrypoint(opts.entrypoint, image_cfg.get("Entrypoint"))
    cmd = list(opts.command) if opts.command else list(image_cfg.get("Cmd") or [])
    if opts.entrypoint is not None and not opts.command:
        cmd = []  # Docker: --entrypoint resets the image's CMD
    if not entrypoint and not cmd:
        raise InvalidArgumentError(
            f'no command specified: image "{opts.image}" has no CMD or ENTRYPOINT; give one after the image name'
        )
    for item in opts.env:
        if not item or item.startswith("="):
            raise InvalidArgumentError(f'invalid environment variable "{item}": use -e KEY=value')
    env = [e if "=" in e else f"{e}={os.environ.get(e, '')}" for e in opts.env]
    if opts.workdir is not None and not opts.workdir.startswith("/"):
        raise InvalidArgumentError(f'working directory "{opts.workdir}" is not an absolute path')
    user = opts.user if opts.user is not None else image_cfg.get("User", "") or ""
    parse_user(user)
    config: dict[str, Any] = {
        "Config": {
            "Hostname": opts.hostname or "",
            "User": user,
            "Env": merge_env(list(image_cfg.get("Env") or []), env),
            "Cmd": cmd,
            "Entrypoint": entrypoint or None,
            "WorkingDir": opts.workdir or image_cfg.get("WorkingDir") or "",
            "Tty": opts.tty,
            "OpenStdin": opts.interactive,
            "Image": opts.image,
        },
        "HostConfig": {"AutoRemove": opts.auto_remove},
    }
    return store.containers.create(image.id, opts.image, config, opts.name)


def _entrypoint(override: str | None, image_entrypoint: list[str] | None) -> list[str]:
    if override is not None:
        return [override] if override else []
    return list(image_entrypoint or [])


def parse_user(user: str) -> tuple[int, int]:
    """UID[:GID] as numbers (names arrive with /etc/passwd support)."""
    if not user:
        return 0, 0
    uid_text, _, gid_text = user.partition(":")
    if not uid_text.isdigit() or (gid_text and not gid_text.isdigit()):
        raise InvalidArgumentError(f'user "{user}" must be numeric UID[:GID] for now, e.g. --user 1000:1000')
    uid = int(uid_text)
    return uid, int(gid_text) if gid_text else 0


def container_spec(store: Store, container: Container, image: Image) -> ContainerSpec:
    """Resolve everything the runtime needs to start this container."""
    cfg = container.config["Config"]
    uid, gid = parse_user(cfg.get("User") or "")
    return ContainerSpec(
        layout=store.overlay_layout(image, container),
        store_root=store.paths.root,
        mountpoint=store.paths.mountpoint,
        argv=list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or []),
        env=list(cfg["Env"]),
        cwd=cfg.get("WorkingDir") or "/",
        hostname=cfg.get("Hostname") or container.id[:12],
        uid=uid,
        gid=gid,
        tty=bool(cfg.get("Tty")),
        stdin=bool(cfg.get("OpenStdin")),
        overlay_api=os.environ.get("OVERLAYCTL_OVERLAY_API", "new"),
    )


def start_attached(
    store: Store, container: Container, on_started: Callable[[int], None] | None = None, attach_stdin: bool = True
) -> int:
    """Run a created or exited container in the foreground; return its exit code.

    The calling process is the supervisor. The exit is recorded however the
    start ends; an AutoRemove container is removed afterwards.
    """
    container = store.containers.claim_start(container.id)
    return _start_attached(store, container, store.images.get(container.image_id), on_started, attach_stdin)


def _start_attached(
    store: Store,
    container: Container,
    image: Image,
    on_started: Callable[[int], None] | None = None,
    attach_stdin: bool = True,
) -> int:
    from overlayctl.runtime import supervisor

    spec = container_spec(store, container, image)
    if not os.path.isdir(spec.layout.workdir):
        os.mkdir(spec.layout.workdir, 0o700)
    code: int | None = None
    error = ""
    try:

        def started(pid: int) -> None:
            store.containers.set_running(container.id, pid)
            if on_started is not None:
                on_started(pid)

        code = supervisor.run(spec, on_started=started, attach_stdin=attach_stdin)
        return code
    except OverlayctlError as exc:
        code, error = exc.exit_code, exc.message
        raise
    finally:
        # Recorded however the start ends (an unknown code if it was cut short).
        store.containers.set_exited(container.id, code, error=error)
        if container.config.get("HostConfig", {}).get("AutoRemove"):
            # Read back: if the start was cut short while the process lived,
            # the row says "running" and remove() kills and waits first.
            store.containers.remove(store.containers.get(container.id), force=True)


def run(store: Store, opts: CreateOptions) -> int:
    """`docker run` in the foreground: create, then start attached.

    The image is resolved once and the new container is not read back:
    this is the start-up path every `run` pays for.
    """
    image = store.images.resolve(opts.image)
    return _start_attached(store, _create(store, opts, image), image)


def start_detached(store: Store, container: Container) -> None:
    """Start a container in the background and return once its command runs.

    A double-forked supervisor in its own session owns the container (as
    conmon does for podman); this process only waits for the word that the
    command was executed, or for the error that stopped it.
    """
    store.containers.claim_start(container.id)
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        _detached_supervisor(store, container.id, ready_w)
    os.close(ready_w)
    os.waitpid(pid, 0)
    with os.fdopen(ready_r, "rb") as ready:
        answer = ready.read().decode(errors="replace")
    if answer != "ok":
        code, _, message = answer.partition(" ")
        raise OverlayctlError(
            message or "the container's supervisor died before the container started",
            exit_code=int(code) if code.isdigit() else 125,
        )


def _detached_supervisor(store: Store, container_id: str, ready_w: int) -> None:
    """The background supervisor; never returns."""
    code = 0
    try:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        # `-d -i`: stdin stays open (a pipe nobody writes to yet), as Docker
        # keeps it, so a shell waiting on it does not see EOF and exit.
        stdin_r, _stdin_w_kept_open = os.pipe()
        os.dup2(stdin_r, 0)
        # SQLite connections must not cross a fork: open the store anew.
        own = Store(store.paths)

        def ready(_pid: int) -> None:
            os.write(ready_w, b"ok")
            os.close(ready_w)

        start_attached(own, own.containers.get(container_id), on_started=ready, attach_stdin=False)
    except OverlayctlError as exc:
        code = exc.exit_code
        try:
            os.write(ready_w, f"{exc.exit_code} {exc.message}".encode())
        except OSError:
            pass  # already reported ready; the exit is in the catalog
    except BaseException:  # noqa: BLE001
        code = 125
    os._exit(code)

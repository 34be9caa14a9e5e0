"""What several commands share: opening the store, building create options."""

from __future__ import annotations

from overlayctl.engine.containers import CreateOptions, mount_requests

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from overlayctl.store import Store


def open_store(global_opts: Mapping[str, Any]) -> Store:
    """Check for root, then open the store named by --root/--runroot."""
    from overlayctl import engine

    return engine.open_store(global_opts.get("root"), global_opts.get("runroot"))


def create_options(opts: Mapping[str, Any], image: str, command: list[str]) -> CreateOptions:
    """CreateOptions from parsed create/run options (click or the fast path).
    Env and label files are read here, as the docker CLI reads them: the
    engine gets their entries."""
    env = list(opts.get("env") or [])
    labels: dict[str, str] = {}
    if opts.get("env_file") or opts.get("label_file") or opts.get("label"):
        # (Off the plain `run` path, which imports nothing it does not use.)
        from overlayctl.util.kvfile import env_from_files, labels_from

        # As Docker: the files first, then -e and -l over them (later wins).
        env = env_from_files(opts.get("env_file") or []) + env
        labels = labels_from(opts.get("label_file") or [], opts.get("label") or [])
    return CreateOptions(
        image=image,
        command=list(command),
        name=opts.get("name"),
        env=env,
        workdir=opts.get("workdir"),
        hostname=opts.get("hostname"),
        user=opts.get("user"),
        entrypoint=opts.get("entrypoint"),
        tty=bool(opts.get("tty")),
        interactive=bool(opts.get("interactive")),
        auto_remove=bool(opts.get("rm")),
        host=_host_options(opts),
        labels=labels,
    )


_HOST_KEYS = (
    "network", "ip", "cap_add", "cap_drop", "privileged", "read_only", "security_opt",
    "memory", "memory_swap", "pids_limit", "cpus", "cpu_shares",
    "restart", "log_driver", "log_opt", "stop_signal", "stop_timeout", "device",
    "publish", "publish_all", "expose",
    "network_alias", "mac_address",
    "dns", "dns_search", "dns_option", "add_host",
    "health_cmd", "health_interval", "health_timeout", "health_retries", "health_start_period",
    "health_start_interval", "no_healthcheck",
    "init", "init_path", "ulimit", "shm_size", "group_add", "sysctl", "ipc", "pid", "oom_score_adj",
    "cidfile", "pull", "platform", "storage_opt",
)


def _host_options(opts: Mapping[str, Any]) -> dict[str, Any]:
    host = {key: opts.get(key) for key in _HOST_KEYS if opts.get(key)}
    volume, mount, tmpfs = opts.get("volume") or [], opts.get("mount") or [], opts.get("tmpfs") or []
    if volume or mount or tmpfs:
        host["mount_requests"] = mount_requests(volume, mount, tmpfs)
    return host


def detach_keys(option: str | None, attaching: bool) -> bytes | None:
    """The detach keys of a command that may relay a terminal (`attaching`),
    else None; a bad --detach-keys is refused either way, before anything
    is done."""
    if not attaching and not option:
        return None  # (the common run: nothing more to import)
    from overlayctl.util import detachkeys

    if attaching:
        return detachkeys.resolve(option)
    if option:
        detachkeys.parse(option)
    return None


def attached_exit(code: int | None, on_detach: int = 0) -> int:
    """The exit status of a command that relayed a container's output: its
    exit code, or after a detach Docker's message and `on_detach` (0 for
    `run` and `start`, 1 for `attach` and `exec`, as the docker CLI)."""
    if code is not None:
        return code
    import sys

    from overlayctl.util.detachkeys import MESSAGE

    sys.stderr.write(MESSAGE + "\n")
    sys.stderr.flush()
    return on_detach


def run_container(global_opts: Mapping[str, Any], opts: Mapping[str, Any], image: str, command: list[str]) -> int:
    """`run`: in the foreground, or with -d in the background."""
    import sys

    from overlayctl.engine import containers as engine

    try:
        attaching = bool(opts.get("tty") and opts.get("interactive") and not opts.get("detach"))
        keys = detach_keys(opts.get("detach_keys"), attaching)
        create = create_options(opts, image, command)
        if create.host.get("network") not in ("none", "host"):
            from overlayctl.engine.plugahead import plug_ahead

            plug_ahead(create.host.get("network"))
        store = open_store(global_opts)
        if opts.get("detach"):
            container = engine.create(store, create)
            engine.start_detached(store, container)
            print(container.id)
            return 0
        if keys is not None:
            from overlayctl.engine import control

            container = engine.create(store, create)
            if control.on_terminal(container):
                return attached_exit(control.start_on_terminal(store, container, keys))
            return engine.start_attached(store, container)
        return engine.run(store, create)
    finally:
        # Only a bridged run has loaded it (and maybe forked a plugger).
        if "overlayctl.engine.plugahead" in sys.modules:
            from overlayctl.engine.plugahead import plug_done

            plug_done()


def build_image(global_opts: Mapping[str, Any], opts: Mapping[str, Any], context: str) -> int:
    """`build`: options as parsed by click or the fast path. A build that
    fails once started exits 1, as `docker build`; bad options stay 125."""
    import os
    import sys

    from overlayctl.engine.builds import BuildOptions, build, read_secrets
    from overlayctl.errors import InvalidArgumentError, OverlayctlError

    args: dict[str, str] = {}
    for item in opts.get("build_args") or []:
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidArgumentError(f'invalid --build-arg "{item}": use KEY=VALUE')
        args[key] = value if sep else os.environ.get(key, "")
    from overlayctl.util.kvfile import labels_from

    labels = labels_from([], opts.get("labels") or [])
    contexts: dict[str, str] = {}
    for item in opts.get("build_contexts") or []:
        key, sep, value = item.partition("=")
        if not key or not sep or not value:
            raise InvalidArgumentError(f'invalid --build-context "{item}": use NAME=DIR or NAME=docker-image://IMAGE')
        contexts[key] = value
    timestamp = opts.get("timestamp")
    if timestamp is not None and not str(timestamp).isdigit():
        raise InvalidArgumentError(f'--timestamp takes whole seconds since 1970, not "{timestamp}"')
    stdin = sys.stdin.buffer if sys.stdin is not None else None
    if "-" in (context, opts.get("dockerfile")) and (stdin is None or stdin.isatty()):
        raise InvalidArgumentError("build reads the context or Dockerfile named - from standard input: redirect it")
    store = open_store(global_opts)
    build_opts = BuildOptions(
        context,
        opts.get("dockerfile"),
        list(opts.get("tags") or []),
        args,
        bool(opts.get("no_cache")),
        bool(opts.get("quiet")),
        opts.get("network") or "bridge",
        int(timestamp) if timestamp is not None else None,
        target=opts.get("target") or None,
        build_contexts=contexts,
        secrets=read_secrets(list(opts.get("secrets") or [])),
        labels=labels,
        platform=opts.get("platform"),
    )
    iidfile = opts.get("iidfile")
    if iidfile:
        # As Docker: a failed build must not leave an older build's ID there.
        try:
            os.unlink(iidfile)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise InvalidArgumentError(f"cannot replace --iidfile {iidfile}: {exc.strerror or exc}") from None
    try:
        image_id = build(store, build_opts, stdin)
    except OverlayctlError as exc:
        exc.exit_code = 1
        raise
    if iidfile:
        try:
            with open(iidfile, "w") as f:
                f.write(image_id)
        except OSError as exc:
            raise InvalidArgumentError(f"cannot write --iidfile {iidfile}: {exc.strerror or exc}", 1) from None
    if build_opts.quiet:
        print(image_id)
    return 0

"""`overlayctl build`: a Dockerfile, one step at a time, into cached layers.

Each step starts from an image config (the base image's, or an empty one
for scratch) and produces the next: metadata instructions change the config
and add a history entry marked empty_layer; COPY, ADD and RUN write into a
fresh upper dir over the current layers, and that directory becomes a
layer. Every intermediate config has an ID (the sha256 of its bytes), which
is what the build cache keys on and what `history` shows.

Nothing is tagged, and no cache row is written, unless the whole build
succeeds; layers that a failed build created are removed again.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import sys

from overlayctl.builder.context import Context, CopyPlan
from overlayctl.builder.dockerfile import (
    Heredoc,
    Instruction,
    expand,
    expand_heredoc,
    parse_dockerfile_file,
    parse_heredoc_word,
)
from overlayctl.builder.ignore import IgnoreRules
from overlayctl.builder.mounts import RunMount, parse_mount
from overlayctl.builder.runmounts import MountSource, PreparedMounts, drop_stubs, key_parts, prepare
from overlayctl.errors import InvalidArgumentError, NotFoundError, OverlayctlError
from overlayctl.runtime.overlay import OverlayLayout
from overlayctl.runtime.spec import DEFAULT_PATH, ContainerSpec
from overlayctl.store import Store
from overlayctl.store.buildcache import CacheEntry
from overlayctl.store.staging import staging
from overlayctl.util import faults, jsonio
from overlayctl.util.humanize import now_rfc3339
from overlayctl.util.reference import Reference, parse_reference

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

DEFAULT_SHELL = ["/bin/sh", "-c"]
_NOP = "/bin/sh -c #(nop) "
# As BuildKit's: "default" is the default bridge, as for `run`.
_SUPPORTED_NETWORKS = ("bridge", "default", "host", "none")
# Flags the parser knows (BuildKit's frontend) that no step carries out yet:
# refused with the instruction's line rather than ignored.
# COPY --link needs nothing: every layer here is already the diff of its own
# step, made over the layers below it, which is what --link asks for.
_NOT_BUILT_FLAGS = frozenset({"parents", "keep-git-dir"})
# What a RUN step on a bridge has bound over /etc (see _drop_placeholders).
_ETC_FILES = ("hosts", "hostname", "resolv.conf")


class BuildError(OverlayctlError):
    """A build step failed; `docker build` exits 1 for these."""

    exit_code = 1


class BuildOptions:
    """What `build` accepts, as Docker names it."""

    def __init__(
        self,
        context: str,
        dockerfile: str | None = None,
        tags: list[str] | None = None,
        build_args: dict[str, str] | None = None,
        no_cache: bool = False,
        quiet: bool = False,
        network: str = "bridge",
        timestamp: int | None = None,
        secrets: dict[str, bytes] | None = None,
        labels: dict[str, str] | None = None,
        platform: str | None = None,
        dockerfile_name: str | None = None,
    ) -> None:
        self.context = context
        self.dockerfile = dockerfile
        self.tags = tags or []
        self.build_args = build_args or {}
        self.no_cache = no_cache
        self.quiet = quiet
        self.network = network
        self.timestamp = timestamp
        # `--secret` values by id, for RUN --mount=type=secret; never
        # written to the store, the history or a cache key.
        self.secrets = secrets or {}
        # `--label`: added to the final image's Labels, over the Dockerfile's.
        self.labels = labels or {}
        # `--platform`: only this host's is built (checked by the Builder).
        self.platform = platform
        # What error messages call the Dockerfile when it is not where the
        # user sees it (read from standard input, or from a context tar).
        self.dockerfile_name = dockerfile_name


def rfc3339(seconds: int) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class _State:
    """The image being built: its config and the ID of that config."""

    def __init__(self, config: dict[str, Any], image_id: str) -> None:
        self.config = config
        self.id = image_id  # "" for scratch before any step

    @property
    def cfg(self) -> dict[str, Any]:
        return self.config.setdefault("config", {})


class Builder:
    """One build: options, store, output."""

    def __init__(self, store: Store, opts: BuildOptions, out: TextIO | None = None) -> None:
        self.store = store
        self.opts = opts
        self.out = out or sys.stdout
        path = opts.dockerfile or os.path.join(opts.context, "Dockerfile")
        if opts.dockerfile and not os.path.isabs(path) and not os.path.exists(path):
            path = os.path.join(opts.context, opts.dockerfile)
        self.dockerfile = opts.dockerfile_name or path
        try:
            self.instructions, self.escape = parse_dockerfile_file(path, self.dockerfile)
        except InvalidArgumentError as exc:
            # A Dockerfile that does not parse fails the build: exit 1, as docker build.
            raise BuildError(exc.message) from None
        self.directives = _directives(path)
        self.context = Context(opts.context, path + ".dockerignore")
        from overlayctl.oci.platform import check_platform, host_platform

        self.platform = host_platform()
        if opts.platform:
            check_platform(opts.platform, "--platform")
        self.tags: list[Reference] = [parse_reference(t) for t in opts.tags]
        if opts.network not in _SUPPORTED_NETWORKS:
            raise InvalidArgumentError(
                f'network "{opts.network}" is not supported by build; use one of: {", ".join(_SUPPORTED_NETWORKS)}'
            )
        epoch = opts.timestamp
        if epoch is None and os.environ.get("SOURCE_DATE_EPOCH"):
            text = os.environ["SOURCE_DATE_EPOCH"]
            if not text.isdigit():
                raise InvalidArgumentError(f'SOURCE_DATE_EPOCH must be whole seconds since 1970, not "{text}"')
            epoch = int(text)
        self.epoch = epoch
        # Staging left by builds that crashed (their process is gone) goes
        # before this build adds its own.
        from overlayctl.store.staging import sweep

        sweep(store.paths.tmp)
        self.cache_entries: list[CacheEntry] = []
        self.new_layers: list[str] = []
        self.args: dict[str, str | None] = {}  # ARGs declared in the stage: name -> value
        self.global_args: dict[str, str | None] = {}
        self.used_build_args: set[str] = set()
        self.shell = list(DEFAULT_SHELL)
        self._mount_sources: dict[str, MountSource] = {}

    # -- output ----------------------------------------------------------

    def say(self, text: str) -> None:
        if not self.opts.quiet:
            self.out.write(text + "\n")
            self.out.flush()

    def _fail(self, ins: Instruction, message: str) -> BuildError:
        return BuildError(f"{self.dockerfile}:{ins.line}: {ins.keyword}: {message}")

    # -- the build -------------------------------------------------------

    def build(self) -> str:
        """Run every step; return the new image ID."""
        try:
            image_id = self._build()
        except BaseException:
            self._drop_new_layers()
            raise
        for name in sorted(set(self.opts.build_args) - self.used_build_args):
            self.say(f"[Warning] One or more build-args [{name}] were not consumed")
        return image_id

    def _build(self) -> str:
        state: _State | None = None
        total = len(self.instructions)
        if "syntax" in self.directives:
            # BuildKit would fetch that frontend image and let it parse the file.
            self.say(f"# syntax={self.directives['syntax']} is not used: overlayctl parses Dockerfiles itself")
        for number, ins in enumerate(self.instructions, 1):
            self.say(f"Step {number}/{total} : {ins.original}")
            if ins.keyword == "FROM":
                if state is not None:
                    raise self._fail(ins, "multi-stage builds (a second FROM) are not supported")
                state = self._from(ins)
            elif state is None:
                if ins.keyword != "ARG":
                    raise self._fail(ins, "the first instruction must be FROM")
                self._arg(ins, self.global_args, None)
                continue
            else:
                try:
                    state = self._step(state, ins)
                except BuildError:
                    raise
                except OverlayctlError as exc:
                    # Whatever failed in a step is the step's failure: its
                    # line, and build's exit code 1 (not the 125 of the
                    # error's own kind).
                    raise self._fail(ins, exc.message) from None
                except OSError as exc:
                    where = f": {exc.filename}" if exc.filename else ""
                    raise self._fail(ins, f"{exc.strerror or exc}{where}") from None
            self.say(f" ---> {_short(state.id) if state.id else 'scratch'}")
        if state is None:
            raise BuildError(f"{self.dockerfile}: no FROM instruction")
        if self.opts.labels:
            labels = dict(state.cfg.get("Labels") or {})
            labels.update(self.opts.labels)
            state.cfg["Labels"] = labels
        image = self.store.images.create(state.config)
        self.store.build_cache.record(image.id, self.cache_entries)
        for tag in self.tags:
            self.store.images.tag(image, tag)
        self.say(f"Successfully built {_short(image.id)}")
        for tag in self.tags:
            self.say(f"Successfully tagged {tag}")
        return image.id

    def _drop_new_layers(self) -> None:
        if self.new_layers:
            self.store.layers.release(self.new_layers)
            try:
                self.store.layers.remove_unreferenced(self.new_layers)
            except OverlayctlError:
                pass

    # -- instructions ----------------------------------------------------

    def _env(self, state: _State | None) -> dict[str, str]:
        """Variables for ${...} in instructions: ARGs in scope, then ENV."""
        env: dict[str, str] = {}
        if state is None:
            # BuildKit's automatic platform ARGs need no declaration before the first FROM.
            env.update(self.platform.args())
        scope = self.args if state is not None else self.global_args
        for name, value in scope.items():
            if value is not None:
                env[name] = value
        if state is not None:
            for item in state.cfg.get("Env") or []:
                key, _, value = item.partition("=")
                env[key] = value
        return env

    def _word(self, raw: str, state: _State | None) -> str:
        return expand(raw, self._env(state), self.escape)

    def _arg(self, ins: Instruction, scope: dict[str, str | None], state: _State | None) -> None:
        name = ins.args[0]
        default = self._word(ins.args[1], state) if len(ins.args) > 1 else None
        if name in self.opts.build_args:
            self.used_build_args.add(name)
            scope[name] = self.opts.build_args[name]
        elif default is None and name in self.platform.args():
            scope[name] = self.platform.args()[name]
        else:
            scope[name] = default

    def _from(self, ins: Instruction) -> _State:
        words = [self._word(w, None) for w in ins.args]
        if "platform" in ins.flags:
            from overlayctl.oci.platform import check_platform

            try:
                check_platform(self._word(ins.flags["platform"], None), "FROM --platform")
            except InvalidArgumentError as exc:
                raise self._fail(ins, exc.message) from None
        name = words[0]
        self.shell = list(DEFAULT_SHELL)
        if name == "scratch":
            from overlayctl.oci.platform import host_architecture

            config: dict[str, Any] = {
                "architecture": host_architecture(),
                "os": "linux",
                "config": {"Env": [f"PATH={DEFAULT_PATH}"]},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            }
            return _State(config, "")
        try:
            base = self.store.images.resolve(name)
        except NotFoundError:
            raise self._fail(
                ins, f'base image "{name}" not found locally (pulling is not supported: import or build it first)'
            ) from None
        # The base's layers stay for the build even if the base is removed
        # meanwhile (rmi, prune): the new image will use them.
        self.store.layers.lease(layer.diff_id for layer in base.layers)
        for layer in base.layers:
            if self.store.layers.find(layer.diff_id) is None:
                raise self._fail(ins, f'base image "{name}" was removed while the build started; try again')
        faults.point("build-from")
        config = jsonio.loads(jsonio.canonical(base.config))
        config.setdefault("config", {})
        config.setdefault("history", [])
        # As BuildKit: a stage always has a PATH (Docker's default when the
        # base has none), which RUN steps get and ENV PATH=...:$PATH extends.
        env = config["config"].get("Env") or []
        if not any(item.partition("=")[0] == "PATH" for item in env):
            config["config"]["Env"] = [*env, f"PATH={DEFAULT_PATH}"]
        shell = config["config"].get("Shell")
        if shell:
            self.shell = list(shell)
        self._base_id = base.id
        return _State(config, base.id)

    def _step(self, state: _State, ins: Instruction) -> _State:
        kw = ins.keyword
        unbuilt = sorted(_NOT_BUILT_FLAGS & (set(ins.flags) | set(ins.repeated)))
        if unbuilt:
            raise self._fail(ins, f"--{unbuilt[0]} is not supported by overlayctl build yet")
        if kw == "ARG":
            # A global ARG named again inside the stage takes the global value as its default.
            if len(ins.args) == 1 and ins.args[0] in self.global_args:
                self.args[ins.args[0]] = self.global_args[ins.args[0]]
            self._arg(ins, self.args, state)
            if len(ins.args) == 1 and self.args[ins.args[0]] is None and ins.args[0] in self.global_args:
                self.args[ins.args[0]] = self.global_args[ins.args[0]]
            # Docker records ARG as a metadata step too; the value reaches
            # the cache through the RUN steps that see it.
            return self._metadata(state, ins, f"ARG {ins.args[0]}", lambda cfg: None)
        if kw in ("RUN", "COPY", "ADD"):
            return self._layer_step(state, ins)
        if kw == "ONBUILD":
            raise self._fail(ins, "is not supported by overlayctl build yet")
        return self._metadata_instruction(state, ins)

    def _metadata_instruction(self, state: _State, ins: Instruction) -> _State:
        text, apply, author = self._change(state, ins)
        return self._metadata(state, ins, text, apply, author=author)

    def _change(self, state: _State, ins: Instruction) -> tuple[str, Any, str | None]:
        """What a metadata instruction records in history and does to the config."""
        kw = ins.keyword
        if kw == "ENV":
            pairs = [
                (self._word(ins.args[i], state), self._word(ins.args[i + 1], state)) for i in range(0, len(ins.args), 2)
            ]

            def apply_env(cfg: dict[str, Any]) -> None:
                env = list(cfg.get("Env") or [])
                for key, value in pairs:
                    env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
                cfg["Env"] = env

            return "ENV " + " ".join(f"{k}={v}" for k, v in pairs), apply_env, None
        if kw == "LABEL":
            labels = [
                (self._word(ins.args[i], state), self._word(ins.args[i + 1], state)) for i in range(0, len(ins.args), 2)
            ]

            def apply_label(cfg: dict[str, Any]) -> None:
                merged = dict(cfg.get("Labels") or {})
                merged.update(labels)
                cfg["Labels"] = merged

            text = "LABEL " + " ".join(f"{k}={v}" for k, v in labels)
            return text, apply_label, None
        if kw in ("CMD", "ENTRYPOINT"):
            argv = list(ins.args) if ins.json_form else self.shell + [ins.args[0]]
            key = "Cmd" if kw == "CMD" else "Entrypoint"

            def apply_cmd(cfg: dict[str, Any]) -> None:
                cfg[key] = argv
                if kw == "ENTRYPOINT" and not self._cmd_set:
                    cfg["Cmd"] = None  # Docker: ENTRYPOINT resets an inherited CMD

            if kw == "CMD":
                self._cmd_set = True
            return f"{kw} {_go_list(argv)}", apply_cmd, None
        if kw == "WORKDIR":
            path = self._word(ins.args[0], state)
            workdir = posixpath.normpath(posixpath.join(state.cfg.get("WorkingDir") or "/", path))

            def apply_workdir(cfg: dict[str, Any]) -> None:
                cfg["WorkingDir"] = workdir

            return f"WORKDIR {workdir}", apply_workdir, None
        if kw == "USER":
            user = self._word(ins.args[0], state)

            def apply_user(cfg: dict[str, Any]) -> None:
                cfg["User"] = user

            return f"USER {user}", apply_user, None
        if kw == "EXPOSE":
            ports = []
            for raw in ins.args:
                port = self._word(raw, state)
                number, _, proto = port.partition("/")
                if not number.replace("-", "").isdigit() or proto not in ("", "tcp", "udp", "sctp"):
                    raise self._fail(ins, f'invalid port "{port}": use PORT[/tcp|udp|sctp]')
                ports.append(f"{number}/{proto or 'tcp'}")

            def apply_expose(cfg: dict[str, Any]) -> None:
                exposed = dict(cfg.get("ExposedPorts") or {})
                exposed.update({p: {} for p in ports})
                cfg["ExposedPorts"] = exposed

            return "EXPOSE " + " ".join(sorted(ports)), apply_expose, None
        if kw == "VOLUME":
            paths = [self._word(raw, state) if not ins.json_form else raw for raw in ins.args]

            def apply_volume(cfg: dict[str, Any]) -> None:
                volumes = dict(cfg.get("Volumes") or {})
                volumes.update({p: {} for p in paths})
                cfg["Volumes"] = volumes

            return f"VOLUME {_go_list(paths)}", apply_volume, None
        if kw == "SHELL":
            self.shell = list(ins.args)
            shell = list(ins.args)

            def apply_shell(cfg: dict[str, Any]) -> None:
                cfg["Shell"] = shell

            return f"SHELL {_go_list(shell)}", apply_shell, None
        if kw == "STOPSIGNAL":
            signal = self._word(ins.args[0], state)

            def apply_stop(cfg: dict[str, Any]) -> None:
                cfg["StopSignal"] = signal

            return f"STOPSIGNAL {signal}", apply_stop, None
        if kw == "HEALTHCHECK":
            health = self._healthcheck(ins)

            def apply_health(cfg: dict[str, Any]) -> None:
                cfg["Healthcheck"] = health

            return f"HEALTHCHECK {_go_health(health)}", apply_health, None
        if kw == "MAINTAINER":
            author = ins.args[0]

            return f"MAINTAINER {author}", lambda cfg: None, author
        raise self._fail(ins, "unknown instruction")

    _cmd_set = False

    def _healthcheck(self, ins: Instruction) -> dict[str, Any]:
        """Config.Healthcheck of `HEALTHCHECK [--flags] CMD ...` or
        `HEALTHCHECK NONE`, checked as BuildKit checks it (no expansion:
        Docker expands no variable in HEALTHCHECK)."""
        from overlayctl.builder.dockerfile import json_or_shell
        from overlayctl.util.humanize import parse_go_duration

        words = ins.args[0].strip().split(None, 1)
        kind, rest = words[0], (words[1] if len(words) > 1 else "")
        kind = kind.upper()
        if kind == "NONE":
            if rest.strip():
                raise self._fail(ins, "HEALTHCHECK NONE takes no arguments")
            if ins.flags:
                raise self._fail(ins, f"HEALTHCHECK NONE takes no flags (--{sorted(ins.flags)[0]})")
            return {"Test": ["NONE"]}
        if kind != "CMD":
            raise self._fail(ins, f'unknown type "{kind}" in HEALTHCHECK (try CMD)')
        try:
            argv, json_form = json_or_shell(rest)
        except ValueError as exc:
            raise self._fail(ins, str(exc)) from None
        if not argv or argv == [""]:
            raise self._fail(ins, "missing command after HEALTHCHECK CMD")
        health: dict[str, Any] = {"Test": ["CMD" if json_form else "CMD-SHELL", *argv]}
        for flag, key in (
            ("interval", "Interval"),
            ("timeout", "Timeout"),
            ("start-period", "StartPeriod"),
            ("start-interval", "StartInterval"),
        ):
            text = ins.flags.get(flag, "")
            if not text:
                continue
            try:
                value = parse_go_duration(text)
            except ValueError as exc:
                raise self._fail(ins, f"--{flag}: {exc}") from None
            if value == 0:
                continue
            if value < 1_000_000:
                raise self._fail(ins, f'Interval "{flag}" cannot be less than 1ms')
            health[key] = value
        text = ins.flags.get("retries", "")
        if text:
            if not text.lstrip("+-").isdigit():
                raise self._fail(ins, f'--retries: invalid number "{text}"')
            if int(text) < 0:
                raise self._fail(ins, f"--retries cannot be negative ({int(text)})")
            if int(text):
                health["Retries"] = int(text)
        return health

    # -- steps -----------------------------------------------------------

    def _created(self) -> str:
        return rfc3339(self.epoch) if self.epoch is not None else now_rfc3339()

    def _cached(self, state: _State, key: str) -> _State | None:
        if self.opts.no_cache:
            return None
        raw = self.store.build_cache.lookup(state.id, key)
        if raw is None:
            return None
        config = jsonio.loads(raw)
        # The layers a cached config names must still be stored (and stay so).
        self.store.layers.lease(config["rootfs"]["diff_ids"])
        for diff_id in config["rootfs"]["diff_ids"]:
            if self.store.layers.find(diff_id) is None:
                return None
        self.say(" ---> Using cache")
        return _State(config, "sha256:" + hashlib.sha256(raw).hexdigest())

    def _commit_state(self, state: _State, key: str, config: dict[str, Any]) -> _State:
        raw = jsonio.canonical(config)
        new_id = "sha256:" + hashlib.sha256(raw).hexdigest()
        self.cache_entries.append(CacheEntry(state.id, key, new_id, raw))
        return _State(config, new_id)

    def _next_config(self, state: _State, created_by: str, diff_id: str | None, author: str | None = None) -> dict:
        config = jsonio.loads(jsonio.canonical(state.config))
        created = self._created()
        config["created"] = created
        entry: dict[str, Any] = {"created": created, "created_by": created_by}
        if author:
            config["author"] = author
            entry["author"] = author
        if diff_id is None:
            entry["empty_layer"] = True
        else:
            config["rootfs"]["diff_ids"].append(diff_id)
        config["history"].append(entry)
        return config

    def _metadata(self, state: _State, ins: Instruction, text: str, apply: Any, author: str | None = None) -> _State:
        # Docker's spelling: two spaces after "#(nop)" except for WORKDIR.
        created_by = _NOP + (text if ins.keyword == "WORKDIR" else " " + text)
        key = _step_key(created_by)
        cached = self._cached(state, key)
        if cached is not None:
            self.cache_entries.append(CacheEntry(state.id, key, cached.id, jsonio.canonical(cached.config)))
            return cached
        config = self._next_config(state, created_by, None, author)
        apply(config.setdefault("config", {}))
        return self._commit_state(state, key, config)

    def _layer_step(self, state: _State, ins: Instruction) -> _State:
        if ins.keyword == "RUN":
            return self._run(state, ins)
        return self._copy(state, ins)

    def _stack(self, state: _State) -> tuple[str, ...]:
        """Layer directories of the current config, top first."""
        dirs = []
        for diff_id in reversed(state.config["rootfs"]["diff_ids"]):
            layer = self.store.layers.find(diff_id)
            if layer is None:
                raise BuildError(f"layer {diff_id} of the image being built is missing from the store")
            dirs.append(self.store.layers.diff_path(layer))
        return tuple(dirs)

    def _new_layer(self, state: _State, key: str, created_by: str, stage: str) -> _State:
        layer, new = self.store.layers.commit_tree(stage, clamp_mtime=self.epoch)
        if new:
            self.new_layers.append(layer.diff_id)
        config = self._next_config(state, created_by, layer.diff_id)
        return self._commit_state(state, key, config)

    def _copy(self, state: _State, ins: Instruction) -> _State:
        if ins.heredocs:
            return self._copy_heredocs(state, ins)
        what = ins.keyword
        if "from" in ins.flags:
            raise self._fail(ins, "--from (copying from another stage or image) is not supported")
        words = list(ins.args) if ins.json_form else [self._word(w, state) for w in ins.args]
        sources, dest = words[:-1], words[-1]
        workdir = state.cfg.get("WorkingDir") or "/"
        if not dest.startswith("/"):
            trailing = dest.endswith("/") or dest in (".", "./")
            dest = posixpath.join(workdir, dest)
            dest = posixpath.normpath(dest) + ("/" if trailing and not dest.endswith("/") else "")
        if what == "ADD" and any("://" in s or s.startswith("git@") for s in sources):
            raise self._fail(ins, "sources from URLs and git repositories are not supported; use a file in the context")
        owner = self._chown(ins, state)
        from overlayctl.builder.context import Chmod
        from overlayctl.builder.ignore import IgnoreRules

        try:
            chmod = Chmod(ins.flags["chmod"]) if "chmod" in ins.flags else None
            patterns = ins.repeated.get("exclude")
            exclude = IgnoreRules.from_lines(patterns, "--exclude") if patterns else None
            plan = self.context.plan(sources, dest, what, extract_archives=(what == "ADD"), exclude=exclude)
            if "checksum" in ins.flags:
                self._verify_checksum(ins, plan)
        except InvalidArgumentError as exc:
            raise self._fail(ins, exc.message) from None
        # Names are keyed as written: the layers below (part of the cache's
        # parent) hold the /etc/passwd and /etc/group they resolve against.
        options: tuple[str, ...] = (f"chown={owner}", f"chmod={chmod.text if chmod else None}")
        if exclude is not None:
            options += (f"exclude={exclude.patterns}",)
        # First the stat stamps: an untouched context is a hit without
        # reading a byte. Then the content, as Docker keys it.
        stat_key = _step_key("stat", what, dest, self.context.stat_digest(plan), *options)
        cached = self._cached(state, stat_key)
        if cached is not None:
            self.cache_entries.append(CacheEntry(state.id, stat_key, cached.id, jsonio.canonical(cached.config)))
            return cached
        digest = self.context.digest(plan)
        created_by = f"{_NOP}{what} {plan.kind}:{digest} in {dest} "
        key = _step_key(created_by, *options)
        cached = self._cached(state, key)
        if cached is not None:
            raw = jsonio.canonical(cached.config)
            self.cache_entries += [CacheEntry(state.id, k, cached.id, raw) for k in (key, stat_key)]
            return cached
        from overlayctl.builder.context import apply_plan

        with staging(self.store.paths.tmp, "build") as stage:
            upper = os.path.join(stage, "diff")
            os.mkdir(upper, 0o755)
            lowers = self._stack(state)
            if lowers:
                os.mkdir(os.path.join(stage, "work"), 0o700)
                context_fd = os.open(self.context.root, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    from overlayctl.runtime.rootfs import in_rootfs

                    layout = OverlayLayout(lowers, upper, os.path.join(stage, "work"))
                    in_rootfs(
                        layout,
                        self.store.paths.root,
                        self.store.paths.mountpoint,
                        lambda: apply_plan(plan, context_fd, owner, chmod),
                        os.environ.get("OVERLAYCTL_OVERLAY_API", "new"),
                        keep_fds=(context_fd,),
                    )
                except OverlayctlError as exc:
                    raise self._fail(ins, exc.message) from None
                finally:
                    os.close(context_fd)
            else:
                # FROM scratch: nothing below, the upper dir is the whole root.
                self._apply_in_chroot(ins, plan, upper, owner, chmod)
            try:
                new = self._new_layer(state, key, created_by, stage)
            except OverlayctlError as exc:
                raise self._fail(ins, exc.message) from None
            self.cache_entries.append(CacheEntry(state.id, stat_key, new.id, self.cache_entries[-1].config))
            return new

    def _apply_in_chroot(self, ins: Instruction, plan: Any, root: str, owner: str, chmod: Any) -> None:
        from overlayctl.builder.context import apply_plan

        context_fd = os.open(self.context.root, os.O_RDONLY | os.O_DIRECTORY)
        error_r, error_w = os.pipe()
        try:
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    from overlayctl.runtime.init import leave_host_behind

                    leave_host_behind((context_fd, error_w))  # as in_rootfs's child
                    os.chroot(root)
                    os.chdir("/")
                    apply_plan(plan, context_fd, owner, chmod)
                except BaseException as exc:  # noqa: BLE001 - the child must not unwind
                    message = exc.message if isinstance(exc, OverlayctlError) else str(exc)
                    os.write(error_w, message.encode(errors="backslashreplace"))
                    code = 1
                finally:
                    os._exit(code)
            os.close(error_w)
            error_w = -1
            chunks = []
            while chunk := os.read(error_r, 65536):
                chunks.append(chunk)
            _, status = os.waitpid(pid, 0)
        finally:
            os.close(context_fd)
            os.close(error_r)
            if error_w >= 0:
                os.close(error_w)
        if os.waitstatus_to_exitcode(status) != 0:
            detail = b"".join(chunks).decode(errors="replace") or "the copy failed"
            raise self._fail(ins, detail)

    def _chown(self, ins: Instruction, state: _State) -> str:
        """--chown's text, checked; names are resolved in the image by apply_plan."""
        if "chown" not in ins.flags:
            return ""
        from overlayctl.runtime.users import check_owner_syntax

        text = self._word(ins.flags["chown"], state)
        try:
            check_owner_syntax(text)
        except InvalidArgumentError as exc:
            raise self._fail(ins, exc.message) from None
        return text

    def _verify_checksum(self, ins: Instruction, plan: Any) -> None:
        """ADD --checksum=sha256:HEX: the source file must have that digest."""
        want = ins.flags["checksum"]
        algorithm, _, hexdigest = want.partition(":")
        if algorithm != "sha256" or len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
            raise self._fail(ins, f'invalid --checksum "{want}": use sha256:<64 hex digits>')
        got = self.context.file_sha256(plan)
        if got != hexdigest:
            raise self._fail(ins, f"checksum mismatch: the source has sha256:{got}, --checksum wants {want}")

    def _run(self, state: _State, ins: Instruction) -> _State:
        argv = list(ins.args) if ins.json_form else self.shell + [ins.args[0]]
        script: Heredoc | None = None
        if ins.heredocs:
            argv, script = self._heredoc_argv(ins)
        network = ins.flags.get("network") or self.opts.network
        if network == "default":
            network = self.opts.network
        if network == "default":
            network = "bridge"
        if network not in _SUPPORTED_NETWORKS:
            raise self._fail(ins, f'network "{network}" is not supported; use one of: {", ".join(_SUPPORTED_NETWORKS)}')
        # Build args in scope are the command's environment, not the image's;
        # Docker writes them into history as "|N K=V ..." so the cache sees them.
        arg_env = {k: v for k, v in self.args.items() if v is not None}
        prefix = f"|{len(arg_env)} " + " ".join(f"{k}={v}" for k, v in sorted(arg_env.items())) + " " if arg_env else ""
        created_by = prefix + " ".join(argv) if not ins.json_form else prefix + _go_list(argv)
        if script is not None:
            # The script runs from a file: history (and so the cache key) gets its text.
            created_by = prefix + " ".join(self.shell + [_with_bodies(ins)])
        self._check_security(ins)
        run_mounts = self._run_mounts(ins, state)
        try:
            mount_keys = key_parts(run_mounts, self.context, self._mount_source)
        except InvalidArgumentError as exc:
            raise self._fail(ins, exc.message) from None
        # The mounts change what the command sees, so they are part of the
        # key (their specification and a bind's content: no secret, no
        # cache directory's content). A step without any keeps its old key.
        key = _step_key(created_by, f"network={network}", *mount_keys)
        cached = self._cached(state, key)
        if cached is not None:
            self.cache_entries.append(CacheEntry(state.id, key, cached.id, jsonio.canonical(cached.config)))
            return cached
        lowers = self._stack(state)
        if not lowers:
            raise self._fail(ins, "cannot RUN on an empty image (FROM scratch has no shell); COPY files in first")
        env = list(state.cfg.get("Env") or [])
        names = {e.partition("=")[0] for e in env}
        env += [f"{k}={v}" for k, v in arg_env.items() if k not in names]
        if "PATH" not in names:
            env.append(f"PATH={DEFAULT_PATH}")
        run_id = os.urandom(32).hex()
        self.say(f" ---> Running in {run_id[:12]}")
        with staging(self.store.paths.tmp, "build") as stage:
            upper = os.path.join(stage, "diff")
            os.mkdir(upper, 0o755)
            os.mkdir(os.path.join(stage, "work"), 0o700)
            try:
                prepared = prepare(
                    run_mounts, self.store.paths, stage, self.context, self._mount_source, self.opts.secrets
                )
            except InvalidArgumentError as exc:
                raise self._fail(ins, exc.message) from None
            if script is not None:
                prepared.mounts.append(_script_mount(stage, script))
            try:
                # A secret's variable wins over one of the image's or an ARG's.
                secret_names = {e.partition("=")[0] for e in prepared.env}
                env = [e for e in env if e.partition("=")[0] not in secret_names] + prepared.env
                code = self._run_container(state, argv, env, network, run_id, stage, lowers, prepared)
            finally:
                prepared.release()
                drop_stubs(upper, lowers, prepared.targets, state.cfg.get("WorkingDir") or "/")
            if code != 0:
                shown = " ".join(argv) if not ins.json_form else _go_list(argv)
                raise BuildError(
                    f"{self.dockerfile}:{ins.line}: RUN: the command '{shown}' returned a non-zero code: {code}"
                )
            self.say(f"Removing intermediate container {run_id[:12]}")
            try:
                return self._new_layer(state, key, created_by, stage)
            except OverlayctlError as exc:
                raise self._fail(ins, exc.message) from None

    def _run_container(
        self,
        state: _State,
        argv: list[str],
        env: list[str],
        network: str,
        run_id: str,
        stage: str,
        lowers: tuple[str, ...],
        prepared: PreparedMounts,
    ) -> int:
        """Run the step's command over the image with the step's mounts,
        writing into stage/diff; its exit code."""
        from overlayctl.runtime.capabilities import DEFAULT_CAPABILITIES
        from overlayctl.runtime.seccomp import compile_profile
        from overlayctl.supervise import supervisor

        cfg = state.cfg
        upper = os.path.join(stage, "diff")
        plan = self._network_plan(network, run_id)
        spec = ContainerSpec(
            layout=OverlayLayout(lowers, upper, os.path.join(stage, "work")),
            store_root=self.store.paths.root,
            mountpoint=self.store.paths.mountpoint,
            argv=argv,
            env=env,
            cwd=cfg.get("WorkingDir") or "/",
            hostname=run_id[:12],
            user=cfg.get("User") or "",
            overlay_api=os.environ.get("OVERLAYCTL_OVERLAY_API", "new"),
            network=network,
            # A RUN step is a container like any other: Docker's default
            # seccomp profile confines it too.
            seccomp=compile_profile(None, DEFAULT_CAPABILITIES, self.store.paths.seccomp_cache),
            # The network's /etc files first: a mount of the step's own
            # may go over them, as in Docker.
            mounts=(list(plan.mounts) if plan is not None else []) + prepared.mounts,
        )
        try:
            return self._supervise(supervisor, spec, plan.on_namespaces if plan is not None else None)
        finally:
            if plan is not None:
                plan.release()
                _drop_placeholders(upper, lowers)

    def _check_security(self, ins: Instruction) -> None:
        mode = ins.flags.get("security")
        if mode is None or mode == "sandbox":
            return
        if mode == "insecure":
            raise self._fail(
                ins, "--security=insecure needs the security.insecure entitlement, which overlayctl build never grants"
            )
        raise self._fail(ins, f'--security must be sandbox or insecure, not "{mode}"')

    def _run_mounts(self, ins: Instruction, state: _State) -> list[RunMount]:
        """The step's --mount flags, read (variables expanded in each value,
        as BuildKit), relative targets under WORKDIR."""
        workdir = state.cfg.get("WorkingDir") or "/"
        mounts = []
        for text in ins.repeated.get("mount", []):
            try:
                mount = parse_mount(text, workdir, lambda word: self._word(word, state))
            except InvalidArgumentError as exc:
                raise self._fail(ins, exc.message) from None
            if mount.type == "ssh":
                raise self._fail(ins, "--mount=type=ssh is not supported (overlayctl build forwards no SSH agent)")
            mounts.append(mount)
        targets = [m.target for m in mounts if m.target]
        for target in targets:
            if targets.count(target) > 1:
                raise self._fail(ins, f"--mount: two mounts have the target {target}")
        return mounts

    def _mount_source(self, name: str) -> MountSource:
        """What `--mount ... from=NAME` shows: for now an image of the local
        store (its layers, read-only, top first). This is the one place
        `from=` is resolved: build stages (and named build contexts) plug in
        here, returning their result's directories the same way."""
        known = self._mount_sources.get(name)
        if known is not None:
            return known
        try:
            image = self.store.images.resolve(name)
        except NotFoundError:
            raise InvalidArgumentError(
                f'--mount from="{name}": no such image here (pulling is not supported: import or build it first)'
            ) from None
        self.store.layers.lease(layer.diff_id for layer in image.layers)
        dirs = []
        for layer in reversed(image.layers):
            found = self.store.layers.find(layer.diff_id)
            if found is None:
                raise InvalidArgumentError(f'--mount from="{name}": the image was removed meanwhile; try again')
            dirs.append(self.store.layers.diff_path(found))
        source = MountSource(tuple(dirs), image.id)
        self._mount_sources[name] = source
        return source

    def _heredoc_argv(self, ins: Instruction) -> tuple[list[str], Heredoc | None]:
        """What a RUN with here-documents runs, as BuildKit: `RUN <<EOF` alone
        runs the body with the shell, or as a program when it starts with
        "#!" (then the here-document is returned, to be mounted where argv
        names it); otherwise the shell gets the command followed by the
        bodies, and is the one to expand them."""
        if ins.json_form:
            raise self._fail(ins, "here-documents need the shell form of RUN")
        alone = parse_heredoc_word(ins.args[0].strip())
        if alone is None or len(ins.heredocs) != 1:
            return self.shell + [_with_bodies(ins)], None
        heredoc = ins.heredocs[0]
        if heredoc.content.startswith("#!"):
            if "/" in heredoc.name or heredoc.name in (".", ".."):
                raise self._fail(ins, f'a here-document run as a program needs a plain name, not "{heredoc.name}"')
            return [_SCRIPT_DIR + heredoc.name], heredoc
        return self.shell + [heredoc.content], None

    def _copy_heredocs(self, state: _State, ins: Instruction) -> _State:
        """COPY/ADD <<EOF: each here-document becomes a file of that name
        (0644 unless --chmod), its body expanded with the build's ARGs and
        ENV unless its delimiter was quoted; then copied as from a context."""
        opened = [parse_heredoc_word(word) for word in ins.args[:-1]]
        if ins.json_form or not all(opened):
            raise self._fail(ins, "here-documents and files from the context cannot be mixed in one instruction")
        env = self._env(state)
        with staging(self.store.paths.tmp, "heredoc") as docs:
            names: list[str] = []
            for heredoc in ins.heredocs:
                name = heredoc.name
                if "/" in name or name in (".", "..") or any(ch in name for ch in "*?[\\"):
                    raise self._fail(ins, f'a here-document copied as a file needs a plain file name, not "{name}"')
                body = expand_heredoc(heredoc.content, env, self.escape) if heredoc.expand else heredoc.content
                path = os.path.join(docs, name)
                with open(path, "w", encoding="utf-8") as f:
                    f.write(body)
                os.chmod(path, 0o644)
                # A body's file has no time of its own: a fixed one keeps its layer reproducible.
                os.utime(path, (self.epoch or 0, self.epoch or 0))
                names.append(name)
            copy = Instruction(
                ins.keyword,
                ins.original,
                names + [self._word(ins.args[-1], state)],
                json_form=True,
                flags=ins.flags,
                line=ins.line,
                repeated=ins.repeated,
            )
            saved = self.context
            self.context = _HeredocContext(docs)
            try:
                return self._copy(state, copy)
            finally:
                self.context = saved

    def _network_plan(self, network: str, run_id: str) -> Any:
        """A RUN step on a bridge is a container of its own on it: a lease,
        a veth and the generated /etc files, for as long as the step runs
        (a build killed meanwhile leaves a lease nobody holds, which the next
        command frees, as a container's). None for host and none."""
        if network in ("host", "none"):
            return None
        from overlayctl.network import attach

        step: Any = _Step(run_id, network)  # all that prepare reads of a Container
        return attach.prepare(self.store, step, run_id[:12])

    def _supervise(self, supervisor: Any, spec: ContainerSpec, on_namespaces: Any = None) -> int:
        if not self.opts.quiet:
            sys.stdout.flush()
            return int(supervisor.run(spec, attach_stdin=False, on_namespaces=on_namespaces))
        # -q: the command's output is not the user's to see, as with Docker.
        saved = os.dup(1), os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 1)
            os.dup2(null, 2)
            return int(supervisor.run(spec, attach_stdin=False, on_namespaces=on_namespaces))
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in (*saved, null):
                os.close(fd)


# Where a "#!" here-document is mounted to be run (BuildKit's place for it).
_SCRIPT_DIR = "/dev/pipes/"


def _with_bodies(ins: Instruction) -> str:
    """A RUN's command followed by its here-documents, as a shell reads them."""
    return ins.args[0] + "".join(f"\n{h.content}{h.name}" for h in ins.heredocs)


def _script_mount(stage: str, heredoc: Heredoc) -> Any:
    """The "#!" here-document as an executable file, bound read-only at
    /dev/pipes/NAME (a tmpfs: nothing of it reaches the layer)."""
    from overlayctl.runtime.spec import Mount

    path = os.path.join(stage, "script")
    with open(path, "w", encoding="utf-8") as f:
        f.write(heredoc.content)
    os.chmod(path, 0o755)
    return Mount("bind", path, _SCRIPT_DIR + heredoc.name, readonly=True)


class _HeredocContext(Context):
    """The here-documents of one COPY, as a build context of their own. Their
    directory is new for every build, so the stat stamps would never match:
    the content (a few bytes) is the key for both lookups."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        # A here-document named .dockerignore is a file to copy, not rules.
        self.rules = IgnoreRules([])

    def stat_digest(self, plan: CopyPlan) -> str:
        return self.digest(plan)


class _Step:
    """A RUN step as the network's attach code sees a container: an ID
    (its lease's holder), no name, and a configuration that names only its
    network (no ports, aliases or fixed address)."""

    def __init__(self, run_id: str, network: str) -> None:
        from overlayctl.container.model import ContainerConfig, HostConfig

        self.id = run_id
        self.name = ""
        self.config = ContainerConfig(host=HostConfig(network_mode=network))


def _drop_placeholders(upper: str, lowers: tuple[str, ...]) -> None:
    """Take out of a RUN step's upper directory the empty files made only to
    bind /etc/hosts, hostname and resolv.conf onto (the image had none), and
    /etc itself if it is left empty and as the image has it (or made for
    them): they are the step's network, not its result. A file the image
    has is bound over, never copied up, so whatever of these is in the upper
    directory is such a placeholder."""
    etc = os.path.join(upper, "etc")
    for name in _ETC_FILES:
        path = os.path.join(etc, name)
        try:
            found = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(found.st_mode) and found.st_size == 0:
            os.unlink(path)
    try:
        if os.listdir(etc):
            return  # the step's own files (or whiteouts) are there
        made = os.lstat(etc)
    except OSError:
        return
    for lower in lowers:  # top first: the /etc the image shows
        try:
            shown = os.lstat(os.path.join(lower, "etc"))
        except FileNotFoundError:
            continue
        same = (shown.st_mode, shown.st_uid, shown.st_gid) == (made.st_mode, made.st_uid, made.st_gid)
        if not same:
            return  # the step changed /etc itself (chmod, chown): that is its result
        break
    os.rmdir(etc)


def _directives(path: str) -> dict[str, str]:
    """The parser directives of the Dockerfile at path (already parsed: readable)."""
    from overlayctl.builder.dockerfile import read_directives

    with open(path, encoding="utf-8", errors="replace") as f:
        return read_directives(f.read(), path)


def _short(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


def _go_list(items: list[str]) -> str:
    """A list the way Docker prints it in history: ["a" "b"]."""
    return "[" + " ".join(jsonio.dumps(i) for i in items) + "]"


def _go_health(health: dict[str, Any]) -> str:
    """Config.Healthcheck as Docker writes it in history (Go's %q of the
    HealthConfig): &{["CMD-SHELL" "true"] "30s" "0s" "0s" "0s" '\\x03'}."""
    from overlayctl.util.humanize import go_duration

    durations = " ".join(
        jsonio.dumps(go_duration(int(health.get(key) or 0)))
        for key in ("Interval", "Timeout", "StartPeriod", "StartInterval")
    )
    return f"&{{{_go_list(health['Test'])} {durations} {_go_rune(int(health.get('Retries') or 0))}}}"


def _go_rune(value: int) -> str:
    """An int as Go's %q writes it: a quoted character ('\\x03', 'A')."""
    named = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 39: "\\'", 92: "\\\\"}
    if value in named:
        return f"'{named[value]}'"
    if 32 <= value < 127:
        return f"'{chr(value)}'"
    if value < 128:
        return f"'\\x{value:02x}'"
    if value < 0x10000:
        return f"'\\u{value:04x}'"
    return f"'\\U{value:08x}'"


def _step_key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


_CHANGE_KEYWORDS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "USER", "VOLUME", "WORKDIR")


def apply_change(config: dict[str, Any], text: str) -> None:
    """Apply one `commit --change` instruction (CMD, ENV, ...) to an image config."""
    from overlayctl.builder.dockerfile import parse

    instructions = parse("FROM scratch\n" + text, "--change")
    if len(instructions) != 2 or instructions[1].keyword not in _CHANGE_KEYWORDS:
        raise InvalidArgumentError(f'--change "{text}" must be one instruction of: {", ".join(_CHANGE_KEYWORDS)}')
    applier = Builder.__new__(Builder)
    applier.dockerfile = "--change"
    applier.escape = "\\"
    applier.shell = list(config.get("config", {}).get("Shell") or DEFAULT_SHELL)
    applier.args = {}
    applier.global_args = {}
    state = _State(config, "")
    _text, apply, _author = applier._change(state, instructions[1])
    apply(state.cfg)


def build(store: Store, opts: BuildOptions, out: TextIO | None = None) -> str:
    """Build the Dockerfile in opts.context; returns the image ID."""
    return Builder(store, opts, out).build()

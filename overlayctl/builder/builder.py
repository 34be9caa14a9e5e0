"""`overlayctl build`: a Dockerfile, one step at a time, into cached layers.

Each step starts from an image config (the base image's, or an empty one
for scratch) and produces the next: metadata instructions change the config
and add a history entry marked empty_layer; COPY, ADD and RUN write into a
fresh upper dir over the current layers, and that directory becomes a
layer. Every intermediate config has an ID (the sha256 of its bytes), which
is what the build cache keys on and what `history` shows.

A Dockerfile with several FROMs is several stages (see stages.py): only
those the target needs are built, each on its own state, and stages that
do not depend on each other are built at the same time (see workers.py).
The last stage (or the --target) is the image; the others leave their
layers and their cache rows, owned by the final image, but no image.

Nothing is tagged, and no cache row is written, unless the whole build
succeeds; layers that a failed build created, in any stage, are removed
again.
"""

from __future__ import annotations

import functools
import hashlib
import os
import posixpath
import stat
import sys

from overlayctl.builder import stages as stagegraph
from overlayctl.builder.context import Context, CopyPlan
from overlayctl.builder.dockerfile import (
    Heredoc,
    Instruction,
    expand,
    expand_heredoc,
    parse,
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
    # The exit code of the RUN command whose failure this is (None for
    # any other failure): Docker's API reports it as errorDetail.code.
    command_code: int | None = None


class BuildOutput:
    """Where a build's progress goes when it is not printed: a front end
    that streams it (the Engine API) hands one in. `text` gets every piece
    as it comes: the builder's lines (each ends with a newline) and what
    the RUN commands write, in the pieces they write it (`stderr` for what
    they write there); `image` gets the new image's ID before "Successfully
    built". Called from the building thread, or from a stage's worker
    process only through that thread."""

    def text(self, text: str, stderr: bool = False) -> None:
        raise NotImplementedError

    def image(self, image_id: str) -> None:
        """The built image's ID (sha256:...), once it exists."""


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
        target: str | None = None,
        build_contexts: dict[str, str] | None = None,
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
        self.target = target  # the stage to build (with what it needs); the last one if None
        self.build_contexts = build_contexts or {}  # name -> directory or docker-image://REF
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

    def __init__(
        self, store: Store, opts: BuildOptions, out: TextIO | None = None, output: BuildOutput | None = None
    ) -> None:
        self.store = store
        self.opts = opts
        self.out = out or sys.stdout
        # Given, every line and the RUN commands' output go there, not to
        # `out` and this process's standard output.
        self.output = output
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
        try:
            self.global_ins, self.stages = stagegraph.split_stages(self.instructions)
        except stagegraph.StageError as exc:
            raise self._stage_error(exc) from None
        for ins in self.instructions:
            if ins.keyword == "ONBUILD":
                self._onbuild_trigger(ins)  # a bad trigger fails before any step runs
        self.numbers = {id(ins): n for n, ins in enumerate(self.instructions, 1)}
        for name, value in opts.build_contexts.items():
            if "://" in value and not value.startswith("docker-image://"):
                raise InvalidArgumentError(
                    f'--build-context {name}={value}: only a local directory or docker-image://IMAGE (a local '
                    "image) is supported"
                )
            if "://" not in value and not os.path.isdir(value):
                raise InvalidArgumentError(f"--build-context {name}={value}: not a directory")
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
        self.results: dict[int, _State] = {}  # stage index -> its final state
        self.stage: stagegraph.Stage | None = None  # the stage being built
        self.named_contexts: dict[str, Context] = {}

    # -- output ----------------------------------------------------------

    def say(self, text: str) -> None:
        if not self.opts.quiet:
            self._say_raw(text)

    def _fail(self, ins: Instruction, message: str) -> BuildError:
        return BuildError(f"{self.dockerfile}:{ins.line}: {ins.keyword}: {message}")

    def _stage_error(self, exc: stagegraph.StageError) -> BuildError:
        if exc.line is None:
            return BuildError(f"{self.dockerfile}: {exc.message}")
        return BuildError(f"{self.dockerfile}:{exc.line}: {exc.keyword}: {exc.message}")

    def _step_line(self, ins: Instruction) -> None:
        self.say(f"Step {self.numbers[id(ins)]}/{len(self.instructions)} : {ins.original}")

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
        if "syntax" in self.directives:
            # BuildKit would fetch that frontend image and let it parse the file.
            self.say(f"# syntax={self.directives['syntax']} is not used: overlayctl parses Dockerfiles itself")
        try:
            target = stagegraph.target_stage(self.stages, self.opts.target)
        except stagegraph.StageError as exc:
            raise self._stage_error(exc) from None
        for ins in self.global_ins:
            self._step_line(ins)
            self._arg(ins, self.global_args, None)
        meta = self._env(None)
        try:
            graph = stagegraph.dependencies(self.stages, meta, self.escape)
        except stagegraph.StageError as exc:
            raise self._stage_error(exc) from None
        except InvalidArgumentError as exc:  # from expanding a word
            raise BuildError(f"{self.dockerfile}: {exc.message}") from None
        self._build_stages(stagegraph.needed(graph, target.index), graph)
        state = self.results[target.index]
        if self.opts.labels:
            labels = dict(state.cfg.get("Labels") or {})
            labels.update(self.opts.labels)
            state.cfg["Labels"] = labels
        image = self.store.images.create(state.config)
        self.store.build_cache.record(image.id, self.cache_entries)
        for tag in self.tags:
            self.store.images.tag(image, tag)
        if self.output is not None:
            self.output.image(image.id)
        self.say(f"Successfully built {_short(image.id)}")
        for tag in self.tags:
            self.say(f"Successfully tagged {tag}")
        return image.id

    def _build_stages(self, order: list[int], graph: dict[int, set[int]]) -> None:
        """Build these stages, each once what it needs is built: in this
        process while one is ready and none runs, else one worker each."""
        from overlayctl.builder import workers

        pending = list(order)
        running: list[workers.Worker] = []
        by_worker: dict[int, int] = {}
        failure: BaseException | None = None
        while pending or running:
            ready = [i for i in pending if graph[i] <= self.results.keys()] if failure is None else []
            try:
                if len(ready) == 1 and not running:
                    pending.remove(ready[0])
                    self.results[ready[0]] = self._build_stage(self.stages[ready[0]])
                    continue
                for index in ready:
                    pending.remove(index)
                    stage = self.stages[index]
                    worker = workers.start(stage.label, functools.partial(self._stage_in_worker, stage))
                    running.append(worker)
                    by_worker[worker.pid] = index
                if not running:
                    break  # a failure: what is pending is not started
                worker, report = workers.wait_any(running, self._say_raw, self._say_error)
                try:
                    if "ok" in report:
                        self._take_report(by_worker[worker.pid], report["ok"])
                    elif failure is None:
                        failure = BuildError(report["error"], exit_code=int(report.get("code") or 1))
                finally:
                    workers.finish(worker, self._say_raw, self._say_error)
                    running.remove(worker)
            except BaseException as exc:  # noqa: BLE001 - the workers still running are waited for below
                # Stages already under way finish (a worker stopped in the
                # middle of a RUN would leave its container to the next
                # command to clean up); what they made is then removed with
                # the rest. An interrupt from the terminal reaches them too.
                if failure is None:
                    failure = exc
        if failure is not None:
            raise failure

    def _say_raw(self, text: str) -> None:
        if self.output is not None:
            self.output.text(text + "\n")
            return
        self.out.write(text + "\n")
        self.out.flush()

    def _say_error(self, text: str) -> None:
        if self.output is not None:
            self.output.text(text + "\n", stderr=True)
            return
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def _stage_in_worker(self, stage: stagegraph.Stage) -> dict:
        """A stage built in a worker: what the parent needs of it."""
        # The catalog's connection must not cross a fork: the worker opens its own.
        self._inherited_store = self.store
        self.store = Store(self.store.paths)
        self.out = sys.stdout
        # Everything goes to this process's standard output and error,
        # which the parent reads and hands to its own output.
        self.output = None
        self.new_layers, self.cache_entries, self.used_build_args = [], [], set()
        try:
            state = self._build_stage(stage)
        except BaseException:
            self._drop_new_layers()
            raise
        return {
            "config": jsonio.canonical(state.config).decode(),
            "id": state.id,
            "new_layers": self.new_layers,
            "used_build_args": sorted(self.used_build_args),
            "cache": [[e.parent, e.key, e.result, e.config.decode()] for e in self.cache_entries],
        }

    def _take_report(self, index: int, report: dict) -> None:
        config = jsonio.loads(report["config"].encode())
        # Leased before the worker may exit and take its leases with it.
        self.store.layers.lease(config["rootfs"]["diff_ids"])
        self.store.layers.lease(report["new_layers"])
        self.new_layers += report["new_layers"]
        self.used_build_args.update(report["used_build_args"])
        self.cache_entries += [CacheEntry(p, k, r, c.encode()) for p, k, r, c in report["cache"]]
        self.results[index] = _State(config, report["id"])

    def _build_stage(self, stage: stagegraph.Stage) -> _State:
        """FROM, the base's ONBUILD triggers, then the stage's steps."""
        self.stage = stage
        self.args = {}  # each stage its own ARG scope, as Docker
        self._cmd_set = False
        self._step_line(stage.from_ins)
        state, triggers = self._from(stage.from_ins)
        if triggers:
            self.say(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}")
        for ins in triggers:
            state = self._do_step(state, ins)
        self.say(f" ---> {_short(state.id) if state.id else 'scratch'}")
        for ins in stage.instructions:
            self._step_line(ins)
            state = self._do_step(state, ins)
            self.say(f" ---> {_short(state.id) if state.id else 'scratch'}")
        return state

    def _do_step(self, state: _State, ins: Instruction) -> _State:
        try:
            return self._step(state, ins)
        except BuildError:
            raise
        except OverlayctlError as exc:
            # Whatever failed in a step is the step's failure: its line, and
            # build's exit code 1 (not the 125 of the error's own kind).
            raise self._fail(ins, exc.message) from None
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise self._fail(ins, f"{exc.strerror or exc}{where}") from None

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

    def _from(self, ins: Instruction) -> tuple[_State, list[Instruction]]:
        """The stage's starting state, and the ONBUILD triggers of its base
        to run before its own steps."""
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
            return _scratch(), []
        assert self.stage is not None
        try:
            earlier = stagegraph.find_stage(self.stages, name, self.stage.index, by_index=False)
        except stagegraph.StageError as exc:
            raise self._fail(ins, exc.message) from None
        if earlier is not None:
            base_config, base_id = self.results[earlier.index].config, self.results[earlier.index].id
        else:
            if name in self.opts.build_contexts and "://" not in self.opts.build_contexts[name]:
                # A directory stands for an image of its files, as in BuildKit:
                # scratch and one layer of them.
                copy = Instruction("COPY", f"COPY --from={name} . /", [".", "/"], flags={"from": name}, line=ins.line)
                return self._copy(_scratch(), copy), []
            if name in self.opts.build_contexts:
                name = self._context_image(ins, name)
            base = self._image(ins, name, "base image")
            faults.point("build-from")
            base_config, base_id = base.config, base.id
        config = jsonio.loads(jsonio.canonical(base_config))
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
        # Docker runs the base's triggers here and does not pass them on.
        triggers = [self._onbuild_trigger(ins, text) for text in config["config"].pop("OnBuild", None) or []]
        return _State(config, base_id), triggers

    def _image(self, ins: Instruction, name: str, what: str) -> Any:
        """A local image a step reads, its layers leased for the build."""
        try:
            base = self.store.images.resolve(name)
        except NotFoundError:
            raise self._fail(
                ins, f'{what} "{name}" not found locally (pulling is not supported: import or build it first)'
            ) from None
        # The base's layers stay for the build even if the base is removed
        # meanwhile (rmi, prune): the new image will use them.
        self.store.layers.lease(layer.diff_id for layer in base.layers)
        for layer in base.layers:
            if self.store.layers.find(layer.diff_id) is None:
                raise self._fail(ins, f'{what} "{name}" was removed while the build started; try again')
        return base

    def _context_image(self, ins: Instruction, name: str) -> str:
        """The image a --build-context NAME=docker-image://REF stands for."""
        return self.opts.build_contexts[name][len("docker-image://") :]

    def _onbuild_trigger(self, ins: Instruction, text: str | None = None) -> Instruction:
        """The instruction an ONBUILD holds (or `text`, a trigger of a base
        image run at `ins`, its FROM), checked as Docker checks it."""
        trigger = text if text is not None else _with_bodies(ins)
        try:
            found = parse("FROM scratch\n" + trigger, self.dockerfile)[1:]
        except InvalidArgumentError as exc:
            raise self._fail(ins, f"trigger {trigger!r}: {exc.message}") from None
        if len(found) != 1:
            raise self._fail(ins, f"trigger {trigger!r} must be one instruction")
        keyword = found[0].keyword
        if keyword == "ONBUILD":
            raise self._fail(ins, "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if keyword in ("FROM", "MAINTAINER"):
            raise self._fail(ins, f"{keyword} isn't allowed as an ONBUILD trigger")
        found[0].line = ins.line  # errors name the line that brought the trigger in
        return found[0]

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
            trigger = _with_bodies(ins)  # with its here-documents, if any

            def apply_onbuild(cfg: dict[str, Any]) -> None:
                cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [trigger]

            return self._metadata(state, ins, f"ONBUILD {trigger}", apply_onbuild)
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
        context = self._copy_source(ins)
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
        except InvalidArgumentError as exc:
            raise self._fail(ins, exc.message) from None
        if isinstance(context, _Rootfs):
            return self._copy_rootfs(state, ins, context, sources, dest, owner, chmod, exclude)
        try:
            plan = context.plan(sources, dest, what, extract_archives=(what == "ADD"), exclude=exclude)
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
        stat_key = _step_key("stat", what, dest, context.stat_digest(plan), *options)
        cached = self._cached(state, stat_key)
        if cached is not None:
            self.cache_entries.append(CacheEntry(state.id, stat_key, cached.id, jsonio.canonical(cached.config)))
            return cached
        digest = context.digest(plan)
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
                context_fd = os.open(context.root, os.O_RDONLY | os.O_DIRECTORY)
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
                self._apply_in_chroot(ins, plan, upper, owner, chmod, context.root)
            try:
                new = self._new_layer(state, key, created_by, stage)
            except OverlayctlError as exc:
                raise self._fail(ins, exc.message) from None
            self.cache_entries.append(CacheEntry(state.id, stat_key, new.id, self.cache_entries[-1].config))
            return new

    def _apply_in_chroot(
        self, ins: Instruction, plan: Any, root: str, owner: str, chmod: Any, source: str | None = None
    ) -> None:
        from overlayctl.builder.context import apply_plan

        context_fd = os.open(source or self.context.root, os.O_RDONLY | os.O_DIRECTORY)
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

    def _copy_source(self, ins: Instruction) -> Context | _Rootfs:
        """Where a COPY reads: the build context, or what --from names."""
        if "from" not in ins.flags:
            return self.context
        return self._source(ins, self._word(ins.flags["from"], None))

    def _source(self, ins: Instruction, word: str) -> Context | _Rootfs:
        """What `--from=word` (or a mount's from=) names, as BuildKit looks
        it up: an earlier stage (name or index), a --build-context, a local
        image."""
        assert self.stage is not None
        try:
            earlier = stagegraph.find_stage(self.stages, word, self.stage.index)
        except stagegraph.StageError as exc:
            raise self._fail(ins, exc.message) from None
        if earlier is not None:
            state = self.results[earlier.index]
            return _Rootfs(earlier.label, self._stack(state), state.config["rootfs"]["diff_ids"])
        name = word
        if word in self.opts.build_contexts:
            value = self.opts.build_contexts[word]
            if not value.startswith("docker-image://"):
                if word not in self.named_contexts:
                    self.named_contexts[word] = Context(value)
                return self.named_contexts[word]
            name = value[len("docker-image://") :]
        image = self._image(ins, name, "--from image")
        return _Rootfs(word, self._stack(_State(image.config, image.id)), [layer.diff_id for layer in image.layers])

    def _copy_rootfs(
        self,
        state: _State,
        ins: Instruction,
        source: _Rootfs,
        sources: list[str],
        dest: str,
        owner: str,
        chmod: Any,
        exclude: Any,
    ) -> _State:
        """COPY --from a stage or an image: the same copy as from the
        context, reading the source's layers through a read-only overlay.
        The source is known by its layers' diff_ids, so the cache needs no
        look at its files."""
        options: tuple[str, ...] = (f"chown={owner}", f"chmod={chmod.text if chmod else None}")
        if exclude is not None:
            options += (f"exclude={exclude.patterns}",)
        created_by = f"{_NOP}COPY --from={source.label} {' '.join(sources)} {dest}"
        key = _step_key(created_by, "layers=" + ",".join(source.diff_ids), *options)
        cached = self._cached(state, key)
        if cached is not None:
            self.cache_entries.append(CacheEntry(state.id, key, cached.id, jsonio.canonical(cached.config)))
            return cached
        from overlayctl.builder.context import apply_plan
        from overlayctl.runtime.rootfs import in_rootfs

        with staging(self.store.paths.tmp, "build") as stage:
            upper = os.path.join(stage, "diff")
            view = os.path.join(stage, "from")
            for path, mode in ((upper, 0o755), (os.path.join(stage, "work"), 0o700), (view, 0o755)):
                os.mkdir(path, mode)
            lowers = self._stack(state)
            if not lowers:
                # FROM scratch: an empty lower, for an overlay to write through.
                lowers = (os.path.join(stage, "empty"),)
                os.mkdir(lowers[0], 0o755)
            mountpoint = self.store.paths.mountpoint
            what = ins.keyword
            # overlayfs wants two lowers for a mount without an upper; one
            # layer is the whole tree already.
            views = [(source.lowers, view)] if len(source.lowers) > 1 else []
            if len(source.lowers) == 1:
                view = source.lowers[0]

            def copy() -> None:
                # In the child's namespace, the source mounted at `view`.
                # Its paths are matched from inside it, so that its own
                # symlinks resolve in it (an absolute one too), then the
                # child changes root to the image's (through a descriptor
                # taken before) and copies, reading through another.
                image_fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
                os.chroot(view)
                os.chdir("/")
                # Paths in another root are from its top: "/a" is "a".
                relative = [src.lstrip("/") or "." for src in sources]
                plan = Context("/", ignore=False, where=f'"{source.label}"').plan(relative, dest, what, exclude=exclude)
                for entry in plan.entries:
                    # Read later from the image's root, where the source's
                    # symlinks would lead elsewhere: resolved now, but for
                    # an entry that is itself a symlink to copy as such.
                    full = "/" + entry.src
                    if entry.kind != "symlink":
                        entry.src = os.path.realpath(full).lstrip("/")
                    else:
                        parent, name = posixpath.split(full)
                        entry.src = posixpath.join(os.path.realpath(parent), name).lstrip("/")
                view_fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
                os.fchdir(image_fd)
                os.chroot(".")
                os.chdir("/")
                os.close(image_fd)
                apply_plan(plan, view_fd, owner, chmod)

            try:
                if source.lowers:
                    in_rootfs(
                        OverlayLayout(lowers, upper, os.path.join(stage, "work")),
                        self.store.paths.root,
                        mountpoint,
                        copy,
                        os.environ.get("OVERLAYCTL_OVERLAY_API", "new"),
                        chroot=False,
                        views=views,
                    )
                else:
                    raise InvalidArgumentError(f"{sources[0]} not found: {source.label} is an empty image")
                new = self._new_layer(state, key, created_by, stage)
            except OverlayctlError as exc:
                raise self._fail(ins, exc.message) from None
            return new

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
                failed = BuildError(
                    f"{self.dockerfile}:{ins.line}: RUN: the command '{shown}' returned a non-zero code: {code}"
                )
                failed.command_code = code
                raise failed
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
        """What `--mount ... from=NAME` shows, looked up as COPY --from looks
        it up: an earlier stage (its layers), a --build-context (its
        directory, or the image it names), a local image (its layers); the
        directories read-only, top first. The one place `from=` is resolved."""
        known = self._mount_sources.get(name)
        if known is not None:
            return known
        assert self.stage is not None
        try:
            earlier = stagegraph.find_stage(self.stages, name, self.stage.index)
        except stagegraph.StageError as exc:
            raise InvalidArgumentError(exc.message) from None
        if earlier is not None:
            state = self.results[earlier.index]
            diff_ids = state.config["rootfs"]["diff_ids"]
            source = MountSource(self._stack(state), "stage:" + ",".join(diff_ids))
            self._mount_sources[name] = source
            return source
        ref = name
        if name in self.opts.build_contexts:
            value = self.opts.build_contexts[name]
            if not value.startswith("docker-image://"):
                context = Context(value)
                digest = context.digest(context.plan(["."], "/", "--mount"))
                source = MountSource((context.root,), "context:" + digest)
                self._mount_sources[name] = source
                return source
            ref = value[len("docker-image://") :]
        try:
            image = self.store.images.resolve(ref)
        except NotFoundError:
            raise InvalidArgumentError(
                f'--mount from="{name}": no such stage or image here (pulling is not supported: import or build it)'
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
        if self.output is not None:
            return self._supervise_to_output(supervisor, spec, on_namespaces)
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

    def _supervise_to_output(self, supervisor: Any, spec: ContainerSpec, on_namespaces: Any) -> int:
        """Run the step with its standard output and error on pipes, read
        into self.output as the command writes (the supervisor's relay),
        and nothing on this process's own descriptors: in a service they
        are not the client's, and other threads use them."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        ours = [out_w, err_w, null]  # the ends the command has: closed once it runs
        quiet = self.opts.quiet
        output = self.output
        assert output is not None

        def relay(pid: int, _master: int | None) -> None:
            while ours:
                os.close(ours.pop())
            _relay_output(pid, {out_r: False, err_r: True}, None if quiet else output)

        try:
            code = supervisor.run(
                spec, attach_stdin=False, on_namespaces=on_namespaces, stdio=(null, out_w, err_w), relay=relay
            )
            return int(code)
        finally:
            for fd in (*ours, out_r, err_r):
                os.close(fd)


def _relay_output(pid: int, pipes: dict[int, bool], output: BuildOutput | None) -> None:
    """Hand what the pipes carry to output (True: the command's standard
    error) until the command's PID 1 has ended and the pipes hold nothing
    more. The end is the process's, not the pipes' EOF: a process forked
    meanwhile by another thread of this one may hold a copy of their
    write ends, and would keep them open for ever."""
    import codecs
    import select

    decoders = {fd: codecs.getincrementaldecoder("utf-8")("replace") for fd in pipes}

    def hand_on(fd: int, chunk: bytes) -> None:
        text = decoders[fd].decode(chunk, final=not chunk)
        if text and output is not None:
            output.text(text, stderr=pipes[fd])

    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    for fd in (*pipes, pidfd):
        poller.register(fd, select.POLLIN)
    open_pipes = set(pipes)
    try:
        while open_pipes:
            ready = {fd for fd, _ in poller.poll()} & (open_pipes | {pidfd})
            if ready == {pidfd}:
                # Every process of the command is gone (its PID 1's end
                # takes the namespace's with it): what they wrote is in the
                # pipes, to be read without waiting.
                for fd in open_pipes:
                    os.set_blocking(fd, False)
                    while True:
                        try:
                            chunk = os.read(fd, 65536)
                        except BlockingIOError:
                            chunk = b""
                        hand_on(fd, chunk)
                        if not chunk:
                            break
                return
            for fd in ready - {pidfd}:
                chunk = os.read(fd, 65536)
                hand_on(fd, chunk)
                if not chunk:
                    open_pipes.discard(fd)
                    poller.unregister(fd)
    finally:
        os.close(pidfd)


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


class _Rootfs:
    """Another stage's or image's tree, as a COPY --from reads it: its
    layer directories (top first) and their diff_ids (what it is)."""

    def __init__(self, label: str, lowers: tuple[str, ...], diff_ids: list[str]) -> None:
        self.label = label
        self.lowers = lowers
        self.diff_ids = diff_ids


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


def _scratch() -> _State:
    """The empty image FROM scratch starts from."""
    from overlayctl.oci.platform import host_architecture

    config: dict[str, Any] = {
        "architecture": host_architecture(),
        "os": "linux",
        "config": {"Env": [f"PATH={DEFAULT_PATH}"]},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    }
    return _State(config, "")


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


def build(store: Store, opts: BuildOptions, out: TextIO | None = None, output: BuildOutput | None = None) -> str:
    """Build the Dockerfile in opts.context; returns the image ID. The
    progress goes to output if given, else it is printed to out."""
    return Builder(store, opts, out, output).build()

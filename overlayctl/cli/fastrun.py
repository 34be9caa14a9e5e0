"""`overlayctl run`, `build` and `system service` without click: parse from
the shared option tables and go."""

from __future__ import annotations

from overlayctl.cli import runopts
from overlayctl.cli.runopts import first_command_index
from overlayctl.errors import InvalidArgumentError


def fast_run(args: list[str]) -> int:
    """Parse `[GLOBAL...] run [OPTIONS] IMAGE [COMMAND...]` and run it."""
    import gc

    # Importing the run path makes tens of thousands of objects that live
    # as long as the process, and no garbage: the cycle collector would
    # only scan them again and again (about 1.5 ms of every run). It is off
    # while they are made, then they are frozen out of its sight (which
    # also spares PID 1, a fork of this process, from copying the pages a
    # collection would touch), and it runs again for whatever follows.
    gc.disable()
    split = first_command_index(args)
    global_opts, rest = runopts.parse(args[:split], runopts.GLOBAL_OPTIONS, command="")
    if rest:
        raise InvalidArgumentError(f"unexpected argument {rest[0]}")
    opts, positional = runopts.parse(args[split + 1 :], runopts.RUN_OPTIONS)
    if not positional:
        raise InvalidArgumentError('"run" requires an image: overlayctl run [OPTIONS] IMAGE [COMMAND] [ARG...]')
    if opts.get("network") not in ("none", "host"):
        from overlayctl.engine.plugahead import plug_ahead

        # Before the run path's imports, which the plugger then overlaps
        # (run_container reaps it, whatever happens).
        plug_ahead(opts.get("network"))
    from overlayctl.cli.common import run_container

    gc.freeze()
    gc.enable()
    return run_container(global_opts, opts, positional[0], positional[1:])


def fast_build(args: list[str]) -> int:
    """Parse `[GLOBAL...] build [OPTIONS] CONTEXT` and build."""
    split = first_command_index(args)
    global_opts, rest = runopts.parse(args[:split], runopts.GLOBAL_OPTIONS, command="")
    if rest:
        raise InvalidArgumentError(f"unexpected argument {rest[0]}")
    opts, positional = runopts.parse(args[split + 1 :], runopts.BUILD_OPTIONS, interspersed=True, command="build")
    if len(positional) != 1:
        raise InvalidArgumentError('"build" requires exactly one argument: overlayctl build [OPTIONS] CONTEXT')
    from overlayctl.cli.common import build_image

    return build_image(global_opts, opts, positional[0])


def fast_service(args: list[str]) -> int:
    """Parse `[GLOBAL...] system service [OPTIONS] [ADDRESS...]` and serve:
    systemd starts it on a connection that waits for its answer."""
    import gc

    # As for `run`: the start-up imports make objects that live as long as
    # the process and no garbage (about 5% of the cold start went to the
    # cycle collector scanning them). The service freezes them and turns
    # the collector back on once it serves.
    gc.disable()
    split = first_command_index(args)
    global_opts, rest = runopts.parse(args[:split], runopts.GLOBAL_OPTIONS, command="")
    if rest:
        raise InvalidArgumentError(f"unexpected argument {rest[0]}")
    opts, addresses = runopts.parse(
        args[split + 2 :], runopts.SERVICE_OPTIONS, interspersed=True, command="system service"
    )
    from overlayctl.api.service import serve

    serve(
        addresses,
        runopts.idle_seconds(opts["idle_seconds"]),
        opts["group"],  # type: ignore[arg-type]
        global_opts["root"],  # type: ignore[arg-type]
        global_opts["runroot"],  # type: ignore[arg-type]
    )
    return 0

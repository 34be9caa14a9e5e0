"""`overlayctl run` without click: parse from the shared option table and go."""

from __future__ import annotations

from overlayctl.cli import runopts
from overlayctl.errors import InvalidArgumentError


def fast_run(args: list[str]) -> int:
    """Parse `[GLOBAL...] run [OPTIONS] IMAGE [COMMAND...]` and run it."""
    from overlayctl.cli import _first_command_index

    split = _first_command_index(args)
    global_opts, rest = runopts.parse(args[:split], runopts.GLOBAL_OPTIONS)
    if rest:
        raise InvalidArgumentError(f"unexpected argument {rest[0]}")
    opts, positional = runopts.parse(args[split + 1 :], runopts.RUN_OPTIONS)
    if not positional:
        raise InvalidArgumentError('"run" requires an image: overlayctl run [OPTIONS] IMAGE [COMMAND] [ARG...]')
    from overlayctl.cli.common import run_container

    return run_container(global_opts, opts, positional[0], positional[1:])

"""The command line: thin commands that parse, call engine/ and print.

`main` is the console script. It sends `run`, `build` and `system service`
down a fast path that never imports click, and everything else to the click
application.
"""

from __future__ import annotations

import sys

from overlayctl.cli.runopts import first_command_index
from overlayctl.errors import OverlayctlError, one_line


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `overlayctl` command."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args[: first_command_index(args)]
    try:
        fast = _fast_command(args)
        if fast == "run":
            from overlayctl.cli.fastrun import fast_run

            _exit_now(fast_run(args))
        if fast == "build":
            from overlayctl.cli.fastrun import fast_build

            sys.exit(fast_build(args))
        if fast == "service":
            from overlayctl.cli.fastrun import fast_service

            sys.exit(fast_service(args))
        from overlayctl.cli.app import cli

        cli.main(args=args, prog_name="overlayctl", standalone_mode=False)
    except OverlayctlError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        _fail(_out_of_space(args, exc) or exc.message, exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - one line for the user, --debug for us
        import click

        if isinstance(exc, click.exceptions.Abort):
            _fail("aborted", 125)
        if isinstance(exc, click.ClickException):
            # As Docker: a usage error points at the help of the command it is about.
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "overlayctl"
            _fail(exc.format_message().rstrip(".") + f'; see "{where} --help"', 125)
        if debug:
            raise
        message = _out_of_space(args, exc) or _store_state(args, exc)
        _fail(message or f"internal error: {exc!r} (run with --debug for the traceback)", 125)


def _root(args: list[str]) -> str:
    """The store root these arguments name."""
    from overlayctl.paths import Paths

    root = None
    head = args[: first_command_index(args)]
    for i, arg in enumerate(head):
        if arg == "--root" and i + 1 < len(head):
            root = head[i + 1]
        elif arg.startswith("--root="):
            root = arg.split("=", 1)[1]
    return Paths.from_env(root).root


def _out_of_space(args: list[str], exc: BaseException) -> str | None:
    """The out-of-space line (overlayctl.util.space) if that is what this is."""
    from overlayctl.util import space

    if not space.is_out_of_space(exc):
        return None
    try:
        return space.describe(_root(args))
    except OSError:
        return None


def _store_state(args: list[str], exc: BaseException) -> str | None:
    """The line for a store that cannot be written (a read-only filesystem)
    or whose catalog turned out damaged after it was opened."""
    import errno

    root = _root(args)
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        if str(exc.filename or "").startswith(root + "/"):
            return f"the store at {root} is on a read-only filesystem"
        return None
    from overlayctl.engine import store_error

    return store_error(root, exc)


def _exit_now(code: int) -> None:
    """Leave without closing the catalog.

    Closing SQLite's last connection checkpoints the WAL into the database
    and deletes it (fsyncs, unlinks), and the next command recreates it
    (more fsyncs): that alone was a fifth of a `run`. Every transaction is
    already committed to the WAL, and an exit leaves the database exactly as
    a crash would, which WAL is built to survive; the periodic
    auto-checkpoint keeps the WAL small.
    """
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"overlayctl: {one_line(message)}\n")
    sys.stderr.flush()
    sys.exit(code)


def _fast_command(args: list[str]) -> str | None:
    """`run`, `build` or `service` (`system service`) when they can skip
    click, else None."""
    i = first_command_index(args)
    if args[i : i + 2] == ["system", "service"]:
        return None if "--help" in args[i + 2 :] else "service"
    if i >= len(args) or args[i] not in ("run", "build"):
        return None
    # Help goes to click, which renders it from the same option table.
    for arg in args[i + 1 :]:
        if arg == "--help":
            return None
        if not arg.startswith("-") and args[i] == "run":
            break
    return args[i]

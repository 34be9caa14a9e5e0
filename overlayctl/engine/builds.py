"""`build`: a Dockerfile to an image, one cached layer per step.

The builder (overlayctl.builder) does the work; this is the verb front ends
call, with the options they fill in. It also takes what Docker reads from
standard input: a Dockerfile (`-f -`), or the whole context as a tar
(`build -`), which is unpacked into staging that goes with the build.
"""

from __future__ import annotations

import os

from overlayctl.builder.builder import BuildError, BuildOptions, BuildOutput
from overlayctl.errors import InvalidArgumentError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

    from overlayctl.store import Store

__all__ = ["BuildError", "BuildOptions", "BuildOutput", "build", "read_secrets"]


def read_secrets(items: list[str]) -> dict[str, bytes]:
    """`build --secret` values by id: each file read, or variable taken from
    this process's environment, now (the build never sees where from)."""
    import os

    from overlayctl.builder.mounts import parse_secret
    from overlayctl.errors import InvalidArgumentError

    secrets: dict[str, bytes] = {}
    for item in items:
        source = parse_secret(item)
        if source.env:
            if source.env not in os.environ:
                raise InvalidArgumentError(f'--secret {source.id}: the variable {source.env} is not set')
            secrets[source.id] = os.environ[source.env].encode()
            continue
        try:
            with open(os.path.expanduser(source.src), "rb") as f:
                secrets[source.id] = f.read()
        except OSError as exc:
            raise InvalidArgumentError(f"--secret {source.id}: cannot read {source.src}: {exc.strerror}") from None
    return secrets


STDIN = "-"


def build(store: Store, opts: BuildOptions, stdin: BinaryIO | None = None, output: BuildOutput | None = None) -> str:
    """Build the Dockerfile in opts.context; returns the image ID.

    A context or Dockerfile named "-" is read from `stdin` (the Engine
    API hands in the request's body). The progress, the RUN commands'
    output included, goes to `output` if given (see BuildOutput), else it
    is printed on this process's standard output.
    """
    from overlayctl.builder.builder import build as build_steps

    if STDIN not in (opts.context, opts.dockerfile):
        return build_steps(store, opts, output=output)
    if opts.context == STDIN and opts.dockerfile == STDIN:
        raise InvalidArgumentError("the build context and the Dockerfile cannot both come from standard input")
    if stdin is None:
        raise InvalidArgumentError("this build reads standard input, and there is none")
    from overlayctl.store.staging import staging

    with staging(store.paths.tmp, "buildinput") as stage:
        if opts.dockerfile == STDIN:
            opts.dockerfile = _save(stdin, os.path.join(stage, "Dockerfile"))
            opts.dockerfile_name = opts.dockerfile_name or "Dockerfile"
        else:
            _context_from(stdin, stage, opts)
        return build_steps(store, opts, output=output)


def _save(stream: BinaryIO, path: str) -> str:
    with open(path, "wb") as f:
        while chunk := stream.read(1 << 20):
            f.write(chunk)
    return path


def _context_from(stdin: BinaryIO, stage: str, opts: BuildOptions) -> None:
    """`build -`: standard input is a context tar with the Dockerfile inside
    (at -f's path, or "Dockerfile"), or, as Docker takes it, a lone
    Dockerfile and no context at all."""
    from overlayctl.builder.context import extract_context_tar, is_archive

    received = _save(stdin, os.path.join(stage, "stdin"))
    context = os.path.join(stage, "context")
    os.mkdir(context, 0o755)
    if not is_archive(received):
        if opts.dockerfile:
            raise InvalidArgumentError("-f names a file in the context, but standard input is a Dockerfile, not a tar")
        opts.dockerfile = received
        opts.dockerfile_name = "Dockerfile"
        opts.context = context
        return
    with open(received, "rb") as f:
        extract_context_tar(f, context)
    os.unlink(received)
    name = opts.dockerfile or "Dockerfile"
    inside = os.path.normpath(os.path.join(context, name.lstrip("/")))
    real = os.path.realpath(inside)
    if not real.startswith(os.path.realpath(context) + os.sep) or not os.path.isfile(real):
        raise InvalidArgumentError(f"the build context has no Dockerfile at {name}")
    opts.dockerfile = real
    opts.dockerfile_name = name
    opts.context = context

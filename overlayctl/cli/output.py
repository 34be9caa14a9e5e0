"""Printing: Docker-style tables and JSON."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

from overlayctl.util import jsonio


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell plus three spaces, as Docker's tabwriter."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for row in [list(headers)] + [list(r) for r in rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        click.echo("   ".join(cells).rstrip())


def json_lines(items: Sequence[dict[str, Any]]) -> None:
    """One JSON object per line, as `docker ps --format json` prints."""
    for item in items:
        click.echo(jsonio.dumps(item))


def json_document(value: Any) -> None:
    click.echo(jsonio.pretty(value))


def filter_option(keys: str, short: bool = True) -> Callable[[Any], Any]:
    """The `--filter KEY=VALUE` option (repeatable, into `filters`) as every
    listing and prune declares it; `keys` is its help, the keys it takes.
    Docker's prunes have no `-f` (there it is --force)."""
    flags = ("-f", "--filter") if short else ("--filter",)
    return click.option(*flags, "filters", multiple=True, metavar="KEY=VALUE", help=keys)


FORMAT_HELP = "table (default), json, a Go template ('{{.ID}}'), or 'table TEMPLATE' for a table of your columns"
INSPECT_FORMAT_HELP = "json (default) or a Go template run over each object ('{{.State.Pid}}')"


def print_documents(fmt: str | None, documents: Callable[[], Sequence[Any]]) -> None:
    """`inspect`'s output: the documents as one JSON array, or each through
    the --format template. A bad template fails before anything is looked up."""
    from overlayctl.engine import format as formats

    formats.check_template(fmt, listing=False)
    found = documents()
    text = formats.render_documents(fmt, found)
    if text is None:
        json_document(found)
    else:
        click.echo(text, nl=False)

"""`du`: the size of a container's upper dir, once or as a series over time."""

from __future__ import annotations

import sys

import click

from overlayctl.cli.common import open_store
from overlayctl.errors import ConflictError, InvalidArgumentError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from overlayctl.engine.containers import Container
    from overlayctl.engine.measure import Sample

_LIVE_HEADERS = ("TIME", "UPPER", "APPARENT", "INODES", "COPY-UPS", "NEW", "WHITEOUTS", "READ", "WRITTEN")
_LIVE_WIDTHS = (8, 10, 10, 7, 9, 6, 10, 10, 10)


@click.command("du")
@click.argument("container")
@click.option("--watch", is_flag=True, help="sample until the container stops, Ctrl-C or --duration")
@click.option("--interval", type=float, default=None, metavar="S", help="seconds between samples (default 1.0)")
@click.option("--duration", type=float, default=None, metavar="S", help="stop watching after S seconds")
@click.option("--output", "output", metavar="FILE", help="write the series to FILE.csv or FILE.json")
@click.option("--plot", "plot", metavar="FILE", help="chart the series to FILE.svg (or FILE.png with matplotlib)")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", help="output format")
@click.pass_obj
def du(
    obj: dict,
    container: str,
    watch: bool,
    interval: float | None,
    duration: float | None,
    output: str | None,
    plot: str | None,
    fmt: str,
) -> None:
    """Show the size of CONTAINER's upper dir (its copy-on-write layer):
    allocated bytes as `du -s --block-size=1`, apparent bytes, inodes, and
    its files as copy-ups of image files, new files and whiteouts. With
    --watch, sample it over time with the I/O of the container's processes."""
    from overlayctl.engine import measure

    if not watch and (interval is not None or duration is not None):
        raise InvalidArgumentError("--interval and --duration need --watch")
    if duration is not None and duration < 0:
        raise InvalidArgumentError(f"--duration must be 0 seconds or more, not {duration:g}")
    measure.check_outputs(output, plot)
    store = open_store(obj)
    target = store.containers.get(container)
    if watch:
        live = _LiveLine(fmt)
        series = measure.watch_upper(store, target, 1.0 if interval is None else interval, duration, live)
        live.close()
        if fmt == "table" and series:
            _print_summary(series)
    else:
        sample = measure.measure_upper(store, target)
        series = [sample] if sample is not None else []
        _print_once(target, sample, fmt)
    if not series:
        raise ConflictError(f'container "{target.name}" has no upper dir any more (it was removed)')
    measure.write_outputs(series, output, plot, target)


def _print_once(container: Container, sample: Sample | None, fmt: str) -> None:
    from overlayctl.cli.output import json_document, table
    from overlayctl.util.humanize import human_size

    if sample is None:
        return
    if fmt == "json":
        json_document(
            {
                "ID": container.id,
                "Name": container.name,
                "Bytes": sample.bytes,
                "Apparent": sample.apparent,
                "Inodes": sample.inodes,
                "CopyUps": sample.copy_ups,
                "NewFiles": sample.new_files,
                "Whiteouts": sample.whiteouts,
            }
        )
        return
    headers = ["CONTAINER ID", "SIZE", "BYTES", "APPARENT", "INODES", "COPY-UPS", "NEW FILES", "WHITEOUTS"]
    row = [
        container.short_id,
        human_size(sample.bytes),
        str(sample.bytes),
        str(sample.apparent),
        str(sample.inodes),
        str(sample.copy_ups),
        str(sample.new_files),
        str(sample.whiteouts),
    ]
    table(headers, [row])


class _LiveLine:
    """Prints each sample as it comes: rewritten in place on a terminal, one
    line per sample otherwise (a pipe or a file keeps the whole series), one
    JSON object per line with --format json."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.tty = sys.stdout.isatty() and fmt == "table"
        self.history: list[float] = []
        self.printed = False

    def __call__(self, sample: Sample) -> None:
        from dataclasses import asdict

        if self.fmt == "json":
            from overlayctl.util import jsonio

            click.echo(jsonio.dumps(asdict(sample)))
            return
        if not self.printed:
            click.echo(_row(_LIVE_HEADERS))
            self.printed = True
        line = _row(_live_cells(sample))
        if not self.tty:
            click.echo(line)
            return
        from overlayctl.engine.measure import sparkline

        self.history.append(sample.bytes)
        room = _terminal_width() - len(line) - 2
        recent = self.history[-room:] if room > 4 else []
        spark = "  " + sparkline(recent, top=max(self.history)) if recent else ""
        click.echo("\r\x1b[K" + line + spark, nl=False)

    def close(self) -> None:
        if self.tty and self.printed:
            click.echo()


def _row(cells: Sequence[str]) -> str:
    return " ".join(cell.ljust(width) for cell, width in zip(cells, _LIVE_WIDTHS, strict=True)).rstrip()


def _live_cells(sample: Sample) -> list[str]:
    from overlayctl.util.humanize import human_size

    return [
        f"{sample.time:.1f}s",
        human_size(sample.bytes),
        human_size(sample.apparent),
        str(sample.inodes),
        str(sample.copy_ups),
        str(sample.new_files),
        str(sample.whiteouts),
        human_size(sample.read_bytes),
        human_size(sample.write_bytes),
    ]


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((80, 24)).columns


def _print_summary(series: Sequence[Sample]) -> None:
    from overlayctl.engine.measure import ASCII_BLOCKS, BLOCKS, terminal_chart
    from overlayctl.util.humanize import human_size

    first, last = series[0], series[-1]
    grew = last.bytes - first.bytes
    sign = "+" if grew >= 0 else "-"
    click.echo()
    click.echo(
        f"upper dir: {human_size(first.bytes)} -> {human_size(last.bytes)} ({sign}{human_size(abs(grew))}) "
        f"in {last.time:g}s, {_count(len(series), 'sample')}; {_count(last.copy_ups, 'copy-up')}, "
        f"{_count(last.new_files, 'new file')}, {_count(last.whiteouts, 'whiteout')}; "
        f"processes wrote {human_size(last.write_bytes)}"
    )
    blocks = BLOCKS if _can_print(BLOCKS + "┤┼│") else ASCII_BLOCKS
    for line in terminal_chart(
        [s.time for s in series], [s.bytes for s in series], _terminal_width() - 1, blocks=blocks
    ):
        click.echo(line)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _can_print(text: str) -> bool:
    try:
        text.encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def register(cli: click.Group) -> None:
    """Attach `du` at top level and under `container`."""
    cli.add_command(du)
    group = cli.commands.get("container")
    if isinstance(group, click.Group):
        group.add_command(du)

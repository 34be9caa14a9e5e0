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
    from overlayctl.engine.measure import CopyUp, Entry, Sample

_LIVE_HEADERS = ("TIME", "UPPER", "APPARENT", "INODES", "COPY-UPS", "NEW", "WHITEOUTS", "READ", "WRITTEN")
_LIVE_WIDTHS = (8, 10, 10, 7, 9, 6, 10, 10, 10)


@click.command("du")
@click.argument("container")
@click.option("--top", "top", type=int, default=None, metavar="N", help="list the N files that take the most room")
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
    top: int | None,
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
    --top N, the N files that allocate the most, each marked as a copy-up
    (with the size of the image file copied), a new file or a whiteout (with
    what it hides). With --watch, sample it over time with the I/O of each
    of the container's processes, the growth of its volumes and binds, and
    the process that triggered each copy-up."""
    from overlayctl.engine import measure

    if top is not None:
        if watch or output or plot:
            raise InvalidArgumentError("--top lists files once: it does not go with --watch, --output or --plot")
        if top < 1:
            raise InvalidArgumentError(f"--top must be 1 or more, not {top}")
    if not watch and (interval is not None or duration is not None):
        raise InvalidArgumentError("--interval and --duration need --watch")
    if duration is not None and duration < 0:
        raise InvalidArgumentError(f"--duration must be 0 seconds or more, not {duration:g}")
    measure.check_outputs(output, plot)
    store = open_store(obj)
    target = store.containers.get(container)
    if top is not None:
        _print_top(measure.top_upper(store, target, top), fmt)
        return
    if watch:
        live = _LiveLine(fmt)
        series = measure.watch_upper(store, target, 1.0 if interval is None else interval, duration, live, live.notice)
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


def _lower_cell(entry: Entry) -> str:
    """What a copy-up copied ("1.98MB file") or a whiteout hides ("hides directory")."""
    from overlayctl.util.humanize import human_size

    what = entry.lower_type
    if what and what != "directory":
        what = f"{human_size(entry.lower_size)} {what}"
    if entry.kind == "copy-up":
        return what
    if entry.kind == "whiteout":
        return f"hides {what}" if what else "hides nothing"
    return ""


def _print_top(entries: Sequence[Entry], fmt: str) -> None:
    from overlayctl.cli.output import json_document, table
    from overlayctl.util.humanize import human_size

    if fmt == "json":
        json_document(
            [
                {
                    "Path": e.path,
                    "Kind": e.kind,
                    "Bytes": e.bytes,
                    "Apparent": e.apparent,
                    "Lower": {"Type": e.lower_type, "Size": e.lower_size} if e.lower_type else None,
                }
                for e in entries
            ]
        )
        return
    rows = [[human_size(e.bytes), str(e.bytes), e.kind, _lower_cell(e), e.path] for e in entries]
    table(["SIZE", "BYTES", "KIND", "IMAGE FILE", "PATH"], rows)


class _LiveLine:
    """Prints each sample as it comes: rewritten in place on a terminal, one
    line per sample otherwise (a pipe or a file keeps the whole series), one
    JSON object per line with --format json."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.tty = sys.stdout.isatty() and fmt == "table"
        self.history: list[float] = []
        self.printed = False

    def notice(self, text: str) -> None:
        """One line on stderr: stdout keeps the series."""
        if self.tty and self.printed:
            click.echo("\r\x1b[K", nl=False)
        click.echo(f"overlayctl: {text}", err=True)

    def __call__(self, sample: Sample) -> None:
        from dataclasses import asdict

        if self.fmt == "json":
            from overlayctl.util import jsonio

            click.echo(jsonio.dumps(asdict(sample)))
            return
        if not self.printed:
            click.echo(_row(_LIVE_HEADERS))
            self.printed = True
        for copy_up in sample.copy_up_writers:
            # Above the live line: on a terminal it is redrawn below.
            click.echo(("\r\x1b[K" if self.tty else "") + _copy_up_line(copy_up))
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


def _copy_up_line(copy_up: CopyUp) -> str:
    from overlayctl.util.humanize import human_size

    if not copy_up.pid:
        who = "by a process not seen (no write event: a chmod, a rename, or no fanotify)"
    elif copy_up.command:
        who = f"by {copy_up.pid} {_one_line(copy_up.command)}"
    else:
        who = f"by {copy_up.pid} (ended before its command line could be read)"
    return f"copy-up {copy_up.path} ({human_size(copy_up.lower_size)} copied) {who}"


def _one_line(command: str) -> str:
    """A command line on one line: its newlines and tabs as spaces (a
    `sh -c` script often has some)."""
    return " ".join(command.split()) if any(c in command for c in "\n\r\t") else command


def _print_summary(series: Sequence[Sample]) -> None:
    from overlayctl.cli.output import table
    from overlayctl.engine.measure import ASCII_BLOCKS, BLOCKS, terminal_chart, whiteout_marks
    from overlayctl.util.humanize import human_size

    first, last = series[0], series[-1]
    grew = last.bytes - first.bytes
    sign = "+" if grew >= 0 else "-"
    click.echo()
    click.echo(
        f"upper dir: {human_size(first.bytes)} -> {human_size(last.bytes)} ({sign}{human_size(abs(grew))}) "
        f"in {last.time:g}s, {_count(len(series), 'sample')}; {_count(last.copy_ups, 'copy-up')}, "
        f"{_count(last.new_files, 'new file')}, {_count(last.whiteouts, 'whiteout')}; "
        f"processes wrote {human_size(last.write_bytes)}, volumes grew {human_size(last.volume_bytes)}"
    )
    writers = _writers(series)
    if writers:
        click.echo()
        table(
            ["PID", "WRITTEN", "READ", "COMMAND"],
            [[str(p.pid), human_size(p.write_bytes), human_size(p.read_bytes), _one_line(p.command)] for p in writers],
        )
    copy_ups = [c for s in series for c in s.copy_up_writers]
    if copy_ups:
        click.echo()
        for copy_up in copy_ups:
            click.echo(_copy_up_line(copy_up))
    click.echo()
    fancy = _can_print(BLOCKS + "┤┼│░")
    for line in terminal_chart(
        [s.time for s in series],
        [s.bytes for s in series],
        _terminal_width() - 1,
        blocks=BLOCKS if fancy else ASCII_BLOCKS,
        stacked=[s.volume_bytes for s in series] if any(s.volume_bytes for s in series) else None,
        marks=whiteout_marks(series),
    ):
        click.echo(line)


def _writers(series: Sequence[Sample]) -> list:
    """Every process seen writing during the watch with its last figures,
    the biggest writers first."""
    last = {}
    for sample in series:
        for process in sample.processes:
            last[process.pid] = process
    return sorted((p for p in last.values() if p.write_bytes), key=lambda p: (-p.write_bytes, p.pid))


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

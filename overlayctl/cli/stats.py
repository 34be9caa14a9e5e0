"""`stats`: what containers use, live, as `docker stats`, plus the size of
each one's upper dir and how fast it grows."""

from __future__ import annotations

import os
import sys

import click

from overlayctl.cli.common import open_store
from overlayctl.cli.output import FORMAT_HELP, table
from overlayctl.util.humanize import binary_size, human_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from overlayctl.engine.measure import Stats

# Erase the screen and go home: what Docker writes before each refresh on a terminal.
CLEAR = "\033[2J\033[H"

HEADERS = [
    "CONTAINER ID",
    "NAME",
    "CPU %",
    "MEM USAGE / LIMIT",
    "MEM %",
    "NET I/O",
    "BLOCK I/O",
    "PIDS",
    "UPPER",
    "UPPER RATE",
    "PROCESS I/O",
]


@click.command("stats")
@click.argument("containers", nargs=-1, metavar="[CONTAINER...]")
@click.option("-a", "--all", "all_", is_flag=True, help="show all containers (default: running only)")
@click.option("--no-stream", is_flag=True, help="print one sample and exit")
@click.option("--no-trunc", is_flag=True, help="do not truncate container IDs")
@click.option("--format", "fmt", default=None, metavar="FORMAT", help=FORMAT_HELP)
@click.pass_obj
def stats(obj: dict, containers: tuple[str, ...], all_: bool, no_stream: bool, no_trunc: bool, fmt: str | None) -> None:
    """Show containers' CPU, memory, network, block I/O, processes and upper dir size, refreshed every second.

    BLOCK I/O is Docker's: bytes the container's cgroup read from and wrote
    to devices ("--" for a container started without a cgroup, i.e. without
    limits). PROCESS I/O is what its processes read from storage and dirtied
    in the page cache (/proc/PID/io): a file rewritten in the cache counts
    each time, whether or not it ever reaches the disk."""
    from overlayctl.engine import format as formats
    from overlayctl.engine import measure

    form = formats.parse(fmt)
    store = open_store(obj)
    # Names are resolved once, up front: an unknown one is an error before
    # anything is printed, and a renamed container is still followed.
    named = list(dict.fromkeys(store.containers.get(text).id for text in containers))
    clear = form.kind in ("default", "table") and not no_stream and sys.stdout.isatty()

    def emit(rows: list[Stats]) -> None:
        if not form.is_default:
            text = formats.render(
                form,
                [formats.stats_row(table_row(row, no_trunc), json_item(row, no_trunc)) for row in rows],
                formats.STATS,
            )
            if clear:
                click.echo(CLEAR, nl=False)
            click.echo(text, nl=False)
            return
        if clear:
            click.echo(CLEAR, nl=False)
        table(HEADERS, [table_row(row, no_trunc) for row in rows])

    try:
        measure.watch(store, lambda: measure.stats_containers(store, named, all_), emit, stream=not no_stream)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a live stats ends, and it ends well: exit 0, as Docker
    except BrokenPipeError:
        # The reader went away (`stats | head`): stop quietly, and keep the
        # interpreter's final flush from failing on the closed pipe too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def table_row(row: Stats, no_trunc: bool = False) -> list[str]:
    """The table's cells for one container."""
    s = row.sample
    return [
        s.id if no_trunc else s.id[:12],
        s.name,
        f"{row.cpu_percent:.2f}%",
        f"{binary_size(s.mem_usage)} / {binary_size(s.mem_limit)}",
        f"{row.mem_percent:.2f}%",
        f"{human_size(s.net_rx)} / {human_size(s.net_tx)}",
        block_text(s.block_read, s.block_write),
        str(s.pids),
        human_size(s.upper_size),
        rate_text(row.upper_rate),
        f"{human_size(s.proc_read)} / {human_size(s.proc_write)}",
    ]


def block_text(read: int | None, written: int | None) -> str:
    """BLOCK I/O: the cgroup's bytes from and to devices, "--" where the
    container has no cgroup figure (PROCESS I/O is then the one there is)."""
    if read is None or written is None:
        return "--"
    return f"{human_size(read)} / {human_size(written)}"


def json_item(row: Stats, no_trunc: bool = False) -> dict[str, Any]:
    """One container's sample as JSON: exact integers (bytes, bytes/s) under
    the main keys, Docker's human strings beside them."""
    s = row.sample
    cells = table_row(row, no_trunc)
    return {
        "ID": cells[0],
        "Name": s.name,
        "Running": s.running,
        "CPUPerc": round(row.cpu_percent, 2),
        "MemUsage": s.mem_usage,
        "MemLimit": s.mem_limit,
        "MemPerc": round(row.mem_percent, 2),
        "NetInput": s.net_rx,
        "NetOutput": s.net_tx,
        "BlockInput": s.block_read,
        "BlockOutput": s.block_write,
        "ProcessRead": s.proc_read,
        "ProcessWritten": s.proc_write,
        "PIDs": s.pids,
        "UpperSize": s.upper_size,
        "UpperRate": row.upper_rate,
        "CPUPercText": cells[2],
        "MemUsageText": cells[3],
        "MemPercText": cells[4],
        "NetIO": cells[5],
        "BlockIO": cells[6],
        "UpperSizeText": cells[8],
        "UpperRateText": cells[9],
        "ProcessIO": cells[10],
    }


def rate_text(bytes_per_second: int) -> str:
    """A signed growth rate: "+1.2MB/s", "-4.1kB/s", "0B/s"."""
    sign = "+" if bytes_per_second > 0 else "-" if bytes_per_second < 0 else ""
    return f"{sign}{human_size(abs(bytes_per_second))}/s"


def register(cli: click.Group) -> None:
    """Attach `stats` at top level, and under `container` when that group exists."""
    cli.add_command(stats)
    group = cli.commands.get("container")
    if isinstance(group, click.Group):
        group.add_command(stats)

"""`stats`: what containers use, live, as `docker stats`, plus the size of
each one's upper dir and how fast it grows."""

from __future__ import annotations

import os
import sys
import time

import click

from overlayctl.cli.common import open_store
from overlayctl.cli.output import json_lines, table
from overlayctl.errors import NotFoundError, OverlayctlError
from overlayctl.util.humanize import binary_size, human_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from overlayctl.measure.stats import Sample, Stats
    from overlayctl.store import Store
    from overlayctl.store.containers import Container

INTERVAL = 1.0  # seconds between refreshes, as Docker
FIRST_GAP = 0.5  # between the two readings behind the first figures (CPU % needs two)
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
]



@click.command("stats")
@click.argument("containers", nargs=-1, metavar="[CONTAINER...]")
@click.option("-a", "--all", "all_", is_flag=True, help="show all containers (default: running only)")
@click.option("--no-stream", is_flag=True, help="print one sample and exit")
@click.option("--no-trunc", is_flag=True, help="do not truncate container IDs")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", help="output format")
@click.pass_obj
def stats(obj: dict, containers: tuple[str, ...], all_: bool, no_stream: bool, no_trunc: bool, fmt: str) -> None:
    """Show containers' CPU, memory, network, block I/O, processes and upper dir size, refreshed every second."""
    store = open_store(obj)
    # Names are resolved once, up front: an unknown one is an error before
    # anything is printed, and a renamed container is still followed.
    named = list(dict.fromkeys(store.containers.get(text).id for text in containers))
    clear = fmt == "table" and not no_stream and sys.stdout.isatty()

    def emit(rows: list[Stats]) -> None:
        if fmt == "json":
            json_lines([json_item(row, no_trunc) for row in rows])
            return
        if clear:
            click.echo(CLEAR, nl=False)
        table(HEADERS, [table_row(row, no_trunc) for row in rows])

    try:
        watch(store, lambda: _containers(store, named, all_), emit, stream=not no_stream)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a live stats ends, and it ends well: exit 0, as Docker
    except BrokenPipeError:
        # The reader went away (`stats | head`): stop quietly, and keep the
        # interpreter's final flush from failing on the closed pipe too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def watch(
    store: Store,
    containers: Callable[[], list[Container]],
    emit: Callable[[list[Stats]], None],
    stream: bool = True,
) -> None:
    """Read every container twice FIRST_GAP apart and emit the figures,
    then (when streaming) again every INTERVAL, against the reading before."""
    from overlayctl.measure.stats import derive

    previous = {s.id: s for s in _read_all(store, containers())}
    if previous:
        time.sleep(FIRST_GAP)
    while True:
        started = time.monotonic()
        current = _read_all(store, containers())
        emit([derive(previous.get(s.id), s) for s in current])
        if not stream:
            return
        previous = {s.id: s for s in current}
        time.sleep(max(0.0, INTERVAL - (time.monotonic() - started)))


def _containers(store: Store, named: list[str], all_: bool) -> list[Container]:
    """The containers to show now: those named (while they exist), else the
    running ones (every one with -a), so that new ones appear as they start."""
    if not named:
        return store.containers.list(all=all_)
    found = []
    for container_id in named:
        try:
            found.append(store.containers.get(container_id))
        except NotFoundError:
            continue  # removed while we watch: it leaves the table, as in Docker
    return found


def _read_all(store: Store, containers: list[Container]) -> list[Sample]:
    from overlayctl.measure.stats import sample

    samples = []
    for container in containers:
        try:
            samples.append(sample(store, container))
        except OverlayctlError:
            if os.path.isdir(store.paths.container_dir(container.id)):
                raise
            # Removed between the listing and the reading.
    return samples


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
        f"{human_size(s.block_read)} / {human_size(s.block_write)}",
        str(s.pids),
        human_size(s.upper_size),
        rate_text(row.upper_rate),
    ]


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


"""What the store and its containers take: `system df`, `du` (a container's
upper dir, once or as a series) and `stats` (live use, refreshed).

The measuring is overlayctl.measure's; these sequence it for a front end,
which shows what they return. The block charts a terminal draws from a
series are handed out here too, so a front end needs nothing else.
"""

from __future__ import annotations

import os
import time

from overlayctl.errors import ConflictError, NotFoundError, OverlayctlError
from overlayctl.measure.chart import ASCII_BLOCKS, BLOCKS, sparkline, terminal_chart, whiteout_marks

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from overlayctl.measure import growth
    from overlayctl.measure.df import Report
    from overlayctl.measure.growth import CopyUp, Entry, Sample, Sampler  # noqa: F401 (CopyUp: for front ends)
    from overlayctl.measure.stats import Sample as StatsSample
    from overlayctl.measure.stats import Stats
    from overlayctl.store import Store
    from overlayctl.store.containers import Container

__all__ = [
    "ASCII_BLOCKS",
    "BLOCKS",
    "FIRST_GAP",
    "INTERVAL",
    "check_outputs",
    "disk_usage",
    "measure_upper",
    "read_stats",
    "sparkline",
    "stats_containers",
    "terminal_chart",
    "top_upper",
    "watch",
    "watch_upper",
    "whiteout_marks",
    "write_outputs",
]

INTERVAL = 1.0  # seconds between stats refreshes, as Docker
FIRST_GAP = 0.5  # between the two readings behind the first figures (CPU % needs two)


# -- system df --------------------------------------------------------------------


def disk_usage(store: Store) -> Report:
    """`system df`: images, containers, volumes, logs and build cache, in
    bytes as du counts them."""
    from overlayctl.measure import df

    return df.measure(store)


# -- du ---------------------------------------------------------------------------


def check_outputs(output: str | None, plot: str | None) -> None:
    """Refuse a bad series or plot file name now, not after minutes of sampling."""
    from overlayctl.measure import chart, growth

    if output:
        growth.series_format(output)
    if plot:
        chart.check_plot_target(plot)


def measure_upper(store: Store, container: Container) -> Sample | None:
    """The container's upper dir measured once; None when it is gone."""
    return _sampler(store, container)()


def top_upper(store: Store, container: Container, count: int) -> list[Entry]:
    """The `count` files of the container's upper dir that allocate the most
    bytes, each a copy-up, new file or whiteout (running or stopped)."""
    from overlayctl.measure import growth

    layout = store.overlay_layout(store.images.get(container.image_id), container)
    if not os.path.isdir(layout.upperdir):
        raise ConflictError(f'container "{container.name}" has no upper dir any more (it was removed)')
    return growth.top_entries(layout.upperdir, layout.lowerdirs, count)


def watch_upper(
    store: Store,
    container: Container,
    interval: float,
    duration: float | None,
    on_sample: Callable[[Sample], None],
    on_notice: Callable[[str], None] | None = None,
) -> list[Sample]:
    """Sample a running container's upper dir every interval seconds until it
    stops, duration passes or Ctrl-C; on_sample sees each sample as it comes.
    The samples also carry each process's writes, the growth of the
    container's writable volumes and binds, and who triggered each new
    copy-up; on_notice hears, in one line, why the last cannot be seen here."""
    from overlayctl.measure import growth
    from overlayctl.store.containers import RUNNING

    if not (container.status == RUNNING and container.process_alive()):
        raise ConflictError(
            f'container "{container.name}" is not running; without --watch, du measures its upper dir once'
        )
    writers = None
    lowers = store.overlay_layout(store.images.get(container.image_id), container).lowerdirs
    try:
        # The container's root mount, reached through its PID 1.
        writers = growth.Writers(f"/proc/{container.pid}/root", lowers)
    except OverlayctlError as e:
        if on_notice is not None:
            on_notice(f"cannot tell which process triggers each copy-up: {e}")
    try:
        sampler = _sampler(store, container, _writable_sources(store, container), writers)
        return growth.watch(sampler, container.process_alive, interval, duration, on_sample)
    finally:
        if writers is not None:
            writers.close()
            if writers.overflowed and on_notice is not None:
                on_notice("the kernel's fanotify queue overflowed: some copy-ups may be missing their writer")


def write_outputs(series: Sequence[Sample], output: str | None, plot: str | None, container: Container) -> None:
    """Write the series to output (.csv or .json) and chart it to plot (.svg or .png)."""
    from overlayctl.measure import chart, growth

    if output:
        growth.write_series(series, output)
    if plot:
        chart.write_plot(series, plot, f"Upper dir of {container.name} ({container.short_id})")


def _writable_sources(store: Store, container: Container) -> list[str]:
    """The host directories of the container's writable volumes and binds,
    each once (one inside another is measured with it)."""
    from overlayctl.volumes.mounts import inspect_mounts

    sources = sorted(
        {
            os.path.realpath(m["Source"])
            for m in inspect_mounts(store, container)
            if m["RW"] and m["Type"] in ("volume", "bind") and os.path.exists(m["Source"])
        }
    )
    kept: list[str] = []
    for source in sources:
        if not any(source == k or source.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(source)
    return kept


def _sampler(
    store: Store, container: Container, volumes: Sequence[str] = (), writers: growth.Writers | None = None
) -> Sampler:
    from overlayctl.measure import growth
    from overlayctl.runtime import procs

    layout = store.overlay_layout(store.images.get(container.image_id), container)

    mode = container.config.host.pid_mode

    def pids() -> list[int]:
        # The recorded pid is checked with its start time first: a recycled
        # pid would name some other namespace.
        return procs.container_pids(container.id, container.pid, mode) if container.process_alive() else []

    return growth.Sampler(layout, pids, volumes=volumes, writers=writers)


# -- stats ------------------------------------------------------------------------


def stats_containers(store: Store, named: list[str], all_: bool) -> list[Container]:
    """The containers `stats` shows now: those named (while they exist), else
    the running ones (every one with all_), so that new ones appear as they start."""
    if not named:
        return store.containers.list(all=all_)
    found = []
    for container_id in named:
        try:
            found.append(store.containers.get(container_id))
        except NotFoundError:
            continue  # removed while we watch: it leaves the table, as in Docker
    return found


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


def read_stats(store: Store, containers: list[Container]) -> list[StatsSample]:
    """One reading of each container now, as data: the cumulative counters
    and levels behind `watch`'s figures, for a front end that hands readings
    on whole (the Engine API's stats documents carry a reading and the one
    before it, and the client works out the rates). A container removed
    meanwhile is left out."""
    return _read_all(store, containers)


def _read_all(store: Store, containers: list[Container]) -> list[StatsSample]:
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

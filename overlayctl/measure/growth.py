"""How a container's upper dir grows: samples over time, and what it holds.

A sample is the upper dir's size (from ``du.disk_usage``, the one measuring
function), what its entries are against the image's layers, and the I/O of
the container's processes. The entries are classified by name only:

- a *copy-up* is a non-directory in the upper dir whose path the lower
  layers also show: the container changed (or replaced) an image file, and
  overlayfs copied the whole file up before the first write, whatever the
  size of the change;
- a *new file* is a non-directory that no lower layer shows;
- a *whiteout* (a 0:0 character device) is a deletion of a lower entry.

Directories are not counted: the upper dir holds a copy of every parent of
a changed file, and counting those would make one new file look like many
changes.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields

from overlayctl.errors import InvalidArgumentError, OverlayctlError
from overlayctl.layer.du import disk_usage
from overlayctl.layer.extract import is_opaque, is_whiteout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.runtime.overlay import OverlayLayout

COPY_UP, NEW, WHITEOUT = "copy-up", "new", "whiteout"


@dataclass(frozen=True)
class Classification:
    """How many non-directory entries of an upper dir are of each kind."""

    copy_ups: int = 0
    new_files: int = 0
    whiteouts: int = 0


@dataclass(frozen=True)
class Sample:
    """One point of the series: the upper dir and the I/O at one moment.

    ``time`` is seconds since the first sample, ``timestamp`` seconds since
    1970; ``bytes`` is allocated (``du -s --block-size=1``), ``apparent`` the
    sum of sizes; ``read_bytes``/``write_bytes`` are what the container's
    processes made the kernel read from and write to storage (summed over
    the live processes; 0 when the container is not running).
    """

    time: float
    timestamp: float
    bytes: int
    apparent: int
    inodes: int
    copy_ups: int
    new_files: int
    whiteouts: int
    read_bytes: int
    write_bytes: int


# The column order of CSV files and of JSON objects.
COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Sample))


# --- classification (names, never sizes) -----------------------------------------




def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _merged_below(lowers: Sequence[str], name: str) -> list[str]:
    """The directories called `name` in `lowers` (top first) that the merged
    view shows: down to the first layer that hides the rest (an opaque
    directory, or a whiteout or file of that name)."""
    found = []
    for directory in lowers:
        path = os.path.join(directory, name)
        st = _lstat(path)
        if st is None:
            continue
        if not stat.S_ISDIR(st.st_mode):
            break
        found.append(path)
        if is_opaque(path):
            break
    return found


def _shown_below(lowers: Sequence[str], name: str) -> bool:
    """Whether the merged `lowers` (top first) show an entry called `name`."""
    for directory in lowers:
        st = _lstat(os.path.join(directory, name))
        if st is not None:
            return not is_whiteout(st)
    return False


def upper_entries(upper: str, lowers: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(COPY_UP | NEW | WHITEOUT, "/path") for each non-directory of `upper`.

    `lowers` are the container's layer directories, top first (overlayfs
    order). The walk carries, for each upper directory, the lower directories
    that merge into it, so each name costs one lstat per layer; below an
    opaque upper directory that list is empty and everything is new. Entries
    that vanish during the walk (the container is running) are skipped.
    """
    roots = []
    for lower in lowers:
        roots.append(lower)
        if is_opaque(lower):
            break
    pending: list[tuple[str, str, list[str]]] = [(upper, "", roots)]
    while pending:
        directory, rel, below = pending.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for de in sorted(entries, key=lambda e: e.name):
            try:
                st = de.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            path = f"{rel}/{de.name}"
            if stat.S_ISDIR(st.st_mode):
                inner = [] if is_opaque(de.path) else _merged_below(below, de.name)
                pending.append((de.path, path, inner))
            elif is_whiteout(st):
                yield WHITEOUT, path
            else:
                yield (COPY_UP if _shown_below(below, de.name) else NEW), path


def classify(upper: str, lowers: Sequence[str]) -> Classification:
    """Count the copy-ups, new files and whiteouts of `upper` (see upper_entries)."""
    counts = {COPY_UP: 0, NEW: 0, WHITEOUT: 0}
    for kind, _ in upper_entries(upper, lowers):
        counts[kind] += 1
    return Classification(copy_ups=counts[COPY_UP], new_files=counts[NEW], whiteouts=counts[WHITEOUT])


# --- sampling (effects: the upper dir and /proc) ---------------------------------


def process_io(pids: Sequence[int]) -> tuple[int, int]:
    """(read_bytes, write_bytes) summed over `pids`, skipping any that ended.

    A parent's counters include its reaped children's (the kernel adds them
    at wait()), so a shell's total keeps what its finished `dd`s wrote. What
    a process wrote is lost when it ends unreaped by the container (an
    `exec`'d process is reaped outside), or when the container exits
    between two samples: the counters live with the processes, and the
    container's cgroup would count writeback instead (later, by device).
    write_bytes counts bytes dirtied in the page cache of a filesystem with
    writeback; tmpfs has none, and writes there count nothing.
    """
    from overlayctl.measure.stats import process_usage

    usage = process_usage(pids)
    return usage.read_bytes, usage.write_bytes


class Sampler:
    """Takes the samples of one container: call it for the next one.

    `pids` lists the container's processes now (empty once it stopped).
    Once they are gone their last I/O totals stand, so the final sample of
    a stopped container still shows what it wrote.
    """

    def __init__(self, layout: OverlayLayout, pids: Callable[[], Sequence[int]], since: float | None = None) -> None:
        self.layout = layout
        self.pids = pids
        self.since = time.time() if since is None else since
        self.io = (0, 0)

    def __call__(self) -> Sample | None:
        """The sample for now; None when the upper dir is gone (the
        container was removed)."""
        upper = self.layout.upperdir
        now = time.time()
        try:
            usage = disk_usage(upper)
        except OverlayctlError:
            if not os.path.isdir(upper):
                return None
            raise
        kinds = classify(upper, self.layout.lowerdirs)
        pids = self.pids()
        if pids:
            self.io = process_io(pids)
        return Sample(
            time=round(now - self.since, 3),
            timestamp=round(now, 3),
            bytes=usage.bytes,
            apparent=usage.apparent,
            inodes=usage.inodes,
            copy_ups=kinds.copy_ups,
            new_files=kinds.new_files,
            whiteouts=kinds.whiteouts,
            read_bytes=self.io[0],
            write_bytes=self.io[1],
        )


def watch(
    measure: Callable[[], Sample | None],
    running: Callable[[], bool],
    interval: float,
    duration: float | None = None,
    on_sample: Callable[[Sample], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Sample]:
    """Sample every `interval` seconds until the container stops, `duration`
    seconds have passed, or Ctrl-C; return the series.

    `running` is asked before each measurement, so the sample that ends the
    series after a stop is taken once the container is gone: it is the upper
    dir's final size. `measure` returns None when there is nothing left to
    measure (the container was removed). A measurement that takes longer
    than `interval` skips the ticks it overran instead of bunching samples.
    """
    if interval <= 0:
        raise InvalidArgumentError(f"--interval must be more than 0 seconds, not {interval}")
    series: list[Sample] = []
    start = clock()
    try:
        while True:
            alive = running()
            sample = measure()
            if sample is None:
                break
            series.append(sample)
            if on_sample is not None:
                on_sample(sample)
            elapsed = clock() - start
            if not alive or (duration is not None and elapsed >= duration):
                break
            next_tick = (int(elapsed / interval) + 1) * interval
            if duration is not None:
                next_tick = min(next_tick, duration)
            sleep(max(0.0, next_tick - (clock() - start)))
    except KeyboardInterrupt:
        pass  # Ctrl-C ends the watch as --duration does: the series is kept.
    return series


# --- series files ----------------------------------------------------------------


def series_format(path: str) -> str:
    """The series format a file name asks for, "csv" or "json"; any other name is refused."""
    ext = os.path.splitext(path)[1].lower()
    if ext in (".csv", ".json"):
        return ext[1:]
    raise InvalidArgumentError(f'cannot write the series to "{path}": name a .csv or a .json file')


def series_csv(series: Sequence[Sample]) -> str:
    """The series as CSV: a header row of COLUMNS, then one row per sample."""
    lines = [",".join(COLUMNS)]
    for sample in series:
        lines.append(",".join(str(value) for value in sample_row(sample)))
    return "\n".join(lines) + "\n"


def series_json(series: Sequence[Sample]) -> str:
    """The series as a JSON list of objects keyed by COLUMNS."""
    from overlayctl.util import jsonio

    return jsonio.pretty([asdict(sample) for sample in series]) + "\n"


def sample_row(sample: Sample) -> tuple[float | int, ...]:
    """The sample's values in COLUMNS order."""
    return tuple(getattr(sample, name) for name in COLUMNS)


def write_series(series: Sequence[Sample], path: str) -> None:
    """Write the series to `path` as CSV or JSON, chosen by its extension."""
    text = series_csv(series) if series_format(path) == "csv" else series_json(series)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise OverlayctlError(f'cannot write the series to "{path}": {e.strerror}') from e

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

While watching, a sample also says where the bytes came from: each live
process's own I/O (with its command line), the growth of the container's
writable volumes and binds (bytes that never reach the upper dir), and,
for each new copy-up, the process seen first writing that path (fanotify on
the container's root mount, where the kernel allows it).
"""

from __future__ import annotations

import heapq
import os
import select
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields

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
class Entry:
    """One non-directory of an upper dir, as upper_entries finds it.

    `bytes` is what it allocates (st_blocks * 512, as du counts a file),
    `apparent` its size. For a copy-up, `lower_type` and `lower_size` are
    the type and size of the entry it was copied from (the topmost lower
    layer that shows the path); for a whiteout, of the entry it hides
    ("" and 0 when nothing below shows the path); "" and 0 for a new file.
    """

    kind: str
    path: str
    bytes: int
    apparent: int
    lower_type: str = ""
    lower_size: int = 0


@dataclass(frozen=True)
class ProcessIO:
    """One live process of the container and its own I/O so far (a parent's
    counters include those of the children it reaped)."""

    pid: int
    command: str
    read_bytes: int
    write_bytes: int


@dataclass(frozen=True)
class CopyUp:
    """A copy-up that appeared during a watch, with the process seen first
    writing that path (pid 0 and command "" when none was seen: no
    fanotify here, or a copy-up with no write, such as a chmod)."""

    path: str
    lower_size: int
    pid: int
    command: str


@dataclass(frozen=True)
class Sample:
    """One point of the series: the upper dir and the I/O at one moment.

    ``time`` is seconds since the first sample, ``timestamp`` seconds since
    1970; ``bytes`` is allocated (``du -s --block-size=1``), ``apparent`` the
    sum of sizes; ``read_bytes``/``write_bytes`` are what the container's
    processes made the kernel read from and write to storage (summed over
    the live processes; 0 when the container is not running).
    ``volume_bytes`` is how much the container's writable volumes and bind
    sources grew since the first sample (allocated bytes; 0 when not
    watching): bytes written that the upper dir never sees.
    ``processes`` are the live processes' own figures; ``copy_up_writers``
    the copy-ups first reported in this sample, each with its writer.
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
    volume_bytes: int = 0
    processes: tuple[ProcessIO, ...] = field(default=())
    copy_up_writers: tuple[CopyUp, ...] = field(default=())


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


def _shown_below(lowers: Sequence[str], name: str) -> os.stat_result | None:
    """The entry called `name` that the merged `lowers` (top first) show
    (the topmost one), or None when none does."""
    for directory in lowers:
        st = _lstat(os.path.join(directory, name))
        if st is not None:
            return None if is_whiteout(st) else st
    return None


def lower_shows(lowers: Sequence[str], path: str) -> bool:
    """Whether a lower layer (top first) shows "/path": the topmost layer
    that has the name has it as something other than a whiteout. Opaque
    directories and whiteouts of parents are not followed, so this may say
    yes for a path the merged layers hide, never no for one they show."""
    rel = path.lstrip("/")
    for directory in lowers:
        st = _lstat(os.path.join(directory, rel))
        if st is not None:
            return not is_whiteout(st)
    return False


def _type_name(st: os.stat_result | None) -> str:
    if st is None:
        return ""
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISDIR(st.st_mode):
        return "directory"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    return "other"


def upper_entries(upper: str, lowers: Sequence[str]) -> Iterator[Entry]:
    """An Entry (COPY_UP | NEW | WHITEOUT, "/path", sizes, what it copies
    or hides) for each non-directory of `upper`.

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
            else:
                lower = _shown_below(below, de.name)
                if is_whiteout(st):
                    kind = WHITEOUT
                else:
                    kind = COPY_UP if lower is not None else NEW
                yield Entry(
                    kind, path, st.st_blocks * 512, st.st_size, _type_name(lower), lower.st_size if lower else 0
                )


def _counts(entries: Sequence[Entry]) -> Classification:
    counts = {COPY_UP: 0, NEW: 0, WHITEOUT: 0}
    for entry in entries:
        counts[entry.kind] += 1
    return Classification(copy_ups=counts[COPY_UP], new_files=counts[NEW], whiteouts=counts[WHITEOUT])


def classify(upper: str, lowers: Sequence[str]) -> Classification:
    """Count the copy-ups, new files and whiteouts of `upper` (see upper_entries)."""
    return _counts(list(upper_entries(upper, lowers)))


def top_entries(upper: str, lowers: Sequence[str], count: int) -> list[Entry]:
    """The `count` entries of `upper` that allocate the most bytes, largest
    first (then by apparent size, then by path)."""
    if count < 1:
        raise InvalidArgumentError(f"--top must be 1 or more, not {count}")
    return heapq.nsmallest(count, upper_entries(upper, lowers), key=lambda e: (-e.bytes, -e.apparent, e.path))


# --- sampling (effects: the upper dir and /proc) ---------------------------------


def command_of(pid: int) -> str:
    """The command line of `pid` as ps -ef shows it ("" once it ended);
    when the process's own name (comm) is not its program's, that name
    comes first in brackets: a busybox applet that a shell runs without
    exec keeps the shell's command line, and "[dd] sh -c ..." says which
    program wrote."""
    from overlayctl.runtime.procs import read_process

    info = read_process(pid)
    if info is None:
        return ""
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            comm = f.read().rstrip("\n")
    except OSError:
        return info.cmd
    program = os.path.basename(info.cmd.split(" ", 1)[0])[:15]  # comm holds 15 characters
    if not comm or info.cmd.startswith("[") or program.startswith(comm) or comm.startswith(program):
        return info.cmd
    return f"[{comm}] {info.cmd}"


def process_writes(pids: Sequence[int]) -> tuple[ProcessIO, ...]:
    """Each of `pids` with its command line and its own I/O counters
    (psutil's io_counters), by pid; those that ended are left out."""
    import psutil

    found = []
    for pid in sorted(pids):
        command = command_of(pid)
        try:
            io = psutil.Process(pid).io_counters()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue  # it ended between the scan and now
        found.append(ProcessIO(pid, command, io.read_bytes, io.write_bytes))
    return tuple(found)


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


class Writers:
    """The first process seen writing each path of a container's root
    mount: fanotify events (FAN_MODIFY, FAN_CLOSE_WRITE) read by a thread as
    they come, so that a short-lived writer (a `dd`) is still named. The
    command line is read at the event (see command_of); a writer that
    already ended has none. With `lowers` (the image's layer dirs, top
    first), only paths the image shows are kept. Raises KernelError where the
    kernel refuses (no fanotify, the mount not reachable)."""

    def __init__(self, root: str, lowers: Sequence[str] | None = None) -> None:
        from overlayctl.runtime.fanotify import MountWatch

        self.watch = MountWatch(root)
        # Only paths of the image can be copied up: with `lowers`, the
        # writes to new files (a log, a database) are not kept.
        self.lowers = lowers
        self.first: dict[str, tuple[int, str]] = {}
        self._not_lower: set[str] = set()
        self.overflowed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="overlayctl-writers", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.watch], [], [], 0.2)
            if not ready:
                continue
            for event in self.watch.read():
                if event.overflow:
                    self.overflowed = True
                    continue
                if not event.path or event.path in self.first or event.path in self._not_lower:
                    continue
                if self.lowers is not None and not lower_shows(self.lowers, event.path):
                    if len(self._not_lower) >= 10_000:
                        self._not_lower.clear()  # a bounded cache, not a record
                    self._not_lower.add(event.path)
                    continue
                command = command_of(event.pid)
                with self._lock:
                    self.first.setdefault(event.path, (event.pid, command))

    def who(self, path: str) -> tuple[int, str] | None:
        """(pid, command) of the first process seen writing `path` (a path
        in the container), or None."""
        with self._lock:
            return self.first.get(path)

    def close(self) -> None:
        """Stop the thread and remove the fanotify group."""
        self._stop.set()
        self._thread.join()
        self.watch.close()


class Sampler:
    """Takes the samples of one container: call it for the next one.

    `pids` lists the container's processes now (empty once it stopped).
    Once they are gone their last I/O totals stand, so the final sample of
    a stopped container still shows what it wrote. `volumes` are the host
    directories of its writable volumes and binds, whose growth is measured
    from the first sample on; `writers` names who wrote each path. A
    copy-up found in a sample is reported with its writer once the writer is
    known, or one sample later without (an open for writing copies up before
    the first write's event), or at once when the container has stopped.
    """

    def __init__(
        self,
        layout: OverlayLayout,
        pids: Callable[[], Sequence[int]],
        since: float | None = None,
        volumes: Sequence[str] = (),
        writers: Writers | None = None,
    ) -> None:
        self.layout = layout
        self.pids = pids
        self.since = time.time() if since is None else since
        self.io = (0, 0)
        self.processes: tuple[ProcessIO, ...] = ()
        self.volumes = list(volumes)
        self.volume_base: list[int] | None = None
        self.writers = writers
        self.reported: set[str] | None = None  # copy-ups already there or reported
        self.pending: dict[str, int] = {}  # copy-ups waiting a sample for their writer

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
        entries = list(upper_entries(upper, self.layout.lowerdirs))
        pids = self.pids()
        if pids:
            self.processes = process_writes(pids)
            self.io = (sum(p.read_bytes for p in self.processes), sum(p.write_bytes for p in self.processes))
        kinds = _counts(entries)
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
            volume_bytes=self._volume_growth(),
            processes=self.processes,
            copy_up_writers=self._new_copy_ups(entries, stopped=not pids),
        )

    def _volume_growth(self) -> int:
        sizes = []
        for directory in self.volumes:
            try:
                sizes.append(disk_usage(directory).bytes)
            except OverlayctlError:
                sizes.append(0)  # removed meanwhile (a bind source can be)
        if self.volume_base is None:
            self.volume_base = sizes
        return sum(now - then for now, then in zip(sizes, self.volume_base, strict=True))

    def _new_copy_ups(self, entries: Sequence[Entry], stopped: bool) -> tuple[CopyUp, ...]:
        copied = {e.path: e.lower_size for e in entries if e.kind == COPY_UP}
        if self.reported is None:
            self.reported = set(copied)  # there before the watch: nobody to name
            return ()
        ready = []
        waited, self.pending = self.pending, {}
        for path, lower_size in copied.items():
            if path in self.reported:
                continue
            who = self.writers.who(path) if self.writers else None
            if who is None and path not in waited and not stopped:
                self.pending[path] = lower_size
                continue
            pid, command = who or (0, "")
            ready.append(CopyUp(path, lower_size, pid, command))
            self.reported.add(path)
        return tuple(ready)


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
    """The series as CSV: a header row of COLUMNS, then one row per sample.
    The `processes` and `copy_up_writers` cells hold JSON lists of objects
    (as in the JSON series), quoted as CSV quotes text with commas."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for sample in series:
        writer.writerow(sample_row(sample))
    return out.getvalue()


def series_json(series: Sequence[Sample]) -> str:
    """The series as a JSON list of objects keyed by COLUMNS."""
    from overlayctl.util import jsonio

    return jsonio.pretty([asdict(sample) for sample in series]) + "\n"


def sample_row(sample: Sample) -> tuple[float | int | str, ...]:
    """The sample's values in COLUMNS order, lists as JSON text."""
    from overlayctl.util import jsonio

    row: list[float | int | str] = []
    for name in COLUMNS:
        value = getattr(sample, name)
        row.append(jsonio.dumps([asdict(item) for item in value]) if isinstance(value, tuple) else value)
    return tuple(row)


def write_series(series: Sequence[Sample], path: str) -> None:
    """Write the series to `path` as CSV or JSON, chosen by its extension."""
    text = series_csv(series) if series_format(path) == "csv" else series_json(series)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise OverlayctlError(f'cannot write the series to "{path}": {e.strerror}') from e

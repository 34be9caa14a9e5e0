"""Engine API: a container's resource use (`docker stats`), as dockerd's
stats documents: cumulative counters of this reading and the one before
(cpu_stats, precpu_stats), from which the client works out CPU % and
memory itself.

The readings are engine.measure's (read_stats), the ones `overlayctl stats`
derives its figures from, so both front ends show the same. Two fields are
made to agree with it exactly rather than read from /proc/stat as dockerd
does: system_cpu_usage is the reading's monotonic time times the online
CPUs (the CPU time the host had to give over the interval), so the client's
cpu_delta / system_delta * online_cpus * 100 is `overlayctl stats`'s CPU %;
and memory_stats.usage is the cgroup's charge with its memory.stat beside
it, from which the client takes off the inactive page cache as we do.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from overlayctl.api.http import ApiError, flag
from overlayctl.api.logs import Gone, Pump, streamed

if TYPE_CHECKING:
    from overlayctl.engine.containers import Container
    from overlayctl.engine.measure import StatsSample as Sample
    from overlayctl.store import Store

# Go's zero time, which dockerd writes for a reading it does not have.
ZERO_TIME = "0001-01-01T00:00:00Z"


def _rfc3339(sample: Sample) -> str:
    """The wall-clock time of a reading (taken at monotonic sample.at)."""
    from overlayctl.util.humanize import rfc3339_ns

    return rfc3339_ns(time.time_ns() - round((time.monotonic() - sample.at) * 1e9))


def _cpu(sample: Sample | None, cpus: int) -> dict[str, Any]:
    if sample is None or not sample.running:
        return {
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        }
    return {
        # No percpu_usage: nothing measures it per CPU (dockerd on cgroup v2
        # leaves it out too); online_cpus is what the client uses.
        "cpu_usage": {
            "total_usage": sample.cpu_ns,
            "usage_in_kernelmode": sample.cpu_system_ns,
            "usage_in_usermode": sample.cpu_user_ns,
        },
        "system_cpu_usage": round(sample.at * 1e9) * cpus,
        "online_cpus": cpus,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    }


def document(container: Container, previous: Sample | None, current: Sample | None) -> dict[str, Any]:
    """dockerd's stats JSON for one container: its current reading, and the
    one before it as precpu_stats (zeros without one)."""
    cpus = os.cpu_count() or 1
    running = current is not None and current.running
    doc: dict[str, Any] = {
        "read": _rfc3339(current) if running and current else ZERO_TIME,
        "preread": _rfc3339(previous) if running and previous and previous.running else ZERO_TIME,
        "pids_stats": {"current": current.pids} if running and current else {},
        "blkio_stats": {
            # The cgroup's bytes per device, as dockerd reads them; null
            # without a cgroup figure (the processes' page-cache writes are
            # not Docker's BLOCK I/O, and the client has no other column).
            "io_service_bytes_recursive": [
                {"major": major, "minor": minor, "op": op, "value": value}
                for major, minor, op, value in current.block_devices
            ]
            if running and current and current.block_devices
            else None,
            "io_serviced_recursive": None,
            "io_queue_recursive": None,
            "io_service_time_recursive": None,
            "io_wait_time_recursive": None,
            "io_merged_recursive": None,
            "io_time_recursive": None,
            "sectors_recursive": None,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": _cpu(current if running else None, cpus),
        "precpu_stats": _cpu(previous if running else None, cpus),
        "memory_stats": {},
        "name": "/" + container.name,
        "id": container.id,
    }
    if running and current:
        doc["memory_stats"] = {
            "usage": current.mem_charged or current.mem_usage,
            "stats": current.memory_stat,
            "limit": current.mem_limit,
        }
        doc["networks"] = {
            "eth0": {
                "rx_bytes": current.net_rx,
                "rx_packets": 0,
                "rx_errors": 0,
                "rx_dropped": 0,
                "tx_bytes": current.net_tx,
                "tx_packets": 0,
                "tx_errors": 0,
                "tx_dropped": 0,
            }
        }
    return doc


def _encode(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


async def container_stats(request: web.Request) -> web.StreamResponse:
    """GET /containers/{id}/stats?stream=&one-shot="""
    stream = flag(request, "stream", default=True)
    one_shot = flag(request, "one-shot")
    if stream and one_shot:
        raise ApiError(400, "cannot have stream=true and one-shot=true")
    ident = request.match_info["id"]

    def produce(store: Store, pump: Pump) -> None:
        from overlayctl.engine import measure

        container = store.containers.get(ident)
        pump.ready()

        def reading() -> Sample | None:
            # None once it is removed; a stopped one reads as not running.
            found = measure.stats_containers(store, [container.id], False)
            samples = measure.read_stats(store, found)
            return samples[0] if samples else None

        def pause(seconds: float) -> None:
            if pump.stop.wait(max(0.0, seconds)):
                raise Gone

        previous = None if one_shot else reading()
        if previous is not None and previous.running:
            pause(measure.FIRST_GAP)  # the first CPU figure needs two readings, as in `overlayctl stats`
        while True:
            started = time.monotonic()
            current = reading()
            pump.put(_encode(document(container, previous, current)))
            if not stream or current is None or not current.running:
                return
            previous = current
            pause(measure.INTERVAL - (time.monotonic() - started))

    return await streamed(request, produce, "application/json")


def routes() -> list[tuple[str, str, Any]]:
    return [("GET", "/containers/{id}/stats", container_stats)]

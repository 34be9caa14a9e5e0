"""Engine API: GET /events, the record of events as dockerd streams it.

The events are engine/events.py's, the ones `overlayctl events` prints:
with `since`, the record from then; then, unless `until` has passed, those
that happen from now on, until `until` or until the client goes away. Each
is one JSON document per line in Docker's message format (Type, Action,
Actor, scope, time, timeNano, and status/id/from for containers and images).

A live stream holds no thread: the record is read a step at a time in a
worker thread (engine.events.feed never sleeps) and the waiting between
steps is the event loop's, so a client that goes away is noticed at the
next step and costs nothing after it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from overlayctl.api.http import blocking, call, filters, stream_json, write_json

if TYPE_CHECKING:
    from collections.abc import Iterator

    from aiohttp import web

# Seconds between looks at the record once caught up (the CLI's too).
POLL = 0.1
# Events handed over per step, so that a long history is written as it is read.
BATCH = 500


def _step(feed: Iterator[dict[str, Any] | None]) -> tuple[list[dict[str, Any]], bool]:
    """The events ready now (up to BATCH), and whether the feed has ended."""
    ready: list[dict[str, Any]] = []
    for event in feed:
        if event is None:
            return ready, False
        ready.append(event)
        if len(ready) >= BATCH:
            return ready, False
    return ready, True


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def get_events(request: web.Request) -> web.StreamResponse:
    """GET /events?since=&until=&filters=: streamed JSON lines."""
    from overlayctl.engine.events import feed

    since = request.query.get("since") or None
    until = request.query.get("until") or None
    # Bad filters or times are a 400 before the stream begins.
    events = await call(request, feed, since, until, filters(request))
    response = await stream_json(request)
    try:
        while True:
            ready, ended = await blocking(_step, events)
            for event in ready:
                await write_json(response, event)
            if ended or _gone(request):
                break
            await asyncio.sleep(POLL)
        await response.write_eof()
    except (ConnectionResetError, BrokenPipeError):
        pass  # the client went away: nothing more to send
    finally:
        try:
            events.close()  # type: ignore[attr-defined]
        except ValueError:
            pass  # cancelled while a step runs in its thread: the step ends alone, and so does the feed
    return response


def routes() -> list[tuple[str, str, Any]]:
    return [("GET", "/events", get_events)]

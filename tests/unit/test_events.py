"""The record of events (store.events) and how `events` reads it
(engine.events): Docker's message shape, the turn-over, filters as
dockerd's, the window, and the default line."""

from __future__ import annotations

import os
import time

import pytest

from overlayctl.engine import events as engine_events
from overlayctl.errors import InvalidArgumentError
from overlayctl.paths import Paths
from overlayctl.store import events


def _paths(tmp_path) -> Paths:
    return Paths(str(tmp_path / "root"), str(tmp_path / "run"))


def test_a_record_is_dockers_message_in_the_store(tmp_path):
    paths = _paths(tmp_path)
    assert events.read(paths) == [] and events.count(paths) == 0
    attributes = events.container_attributes("web", "bb:1", {"tier": "front"}, exitCode="3")
    events.record(paths, "container", "die", "c" * 64, attributes)
    (event,) = events.read(paths)
    assert list(event) == ["status", "id", "from", "Type", "Action", "Actor", "scope", "time", "timeNano"]
    assert (event["status"], event["id"], event["from"]) == ("die", "c" * 64, "bb:1")
    assert event["Actor"] == {
        "ID": "c" * 64,
        "Attributes": {"tier": "front", "image": "bb:1", "name": "web", "exitCode": "3"},
    }
    assert event["scope"] == "local" and event["time"] == event["timeNano"] // 1_000_000_000
    assert paths.events_log == str(tmp_path / "root" / "events" / "events.jsonl")  # the store, not the runroot
    assert not (tmp_path / "run").exists()
    events.record(paths, "volume", "create", "v", {"driver": "local"})
    assert "status" not in events.read(paths)[1]  # Docker's legacy fields: containers and images only
    assert events.count(paths) == 2


def test_the_record_turns_over_and_keeps_one_generation(tmp_path, monkeypatch):
    paths = _paths(tmp_path)
    events.record(paths, "volume", "create", "a", {})
    size = os.stat(paths.events_log).st_size
    monkeypatch.setattr(events, "EVENTS_MAX_BYTES", size + size // 2)  # a line and a half
    events.record(paths, "volume", "create", "b", {})  # crosses: a and b become .1
    assert sorted(os.listdir(paths.events_dir)) == ["events.jsonl.1"]
    events.record(paths, "volume", "create", "c", {})
    assert [e["Actor"]["ID"] for e in events.read(paths)] == ["a", "b", "c"]
    events.record(paths, "volume", "create", "d", {})  # crosses: c and d replace a and b
    assert [e["Actor"]["ID"] for e in events.read(paths)] == ["c", "d"]
    assert os.path.getsize(paths.events_log + ".1") == 2 * size


def test_a_store_that_cannot_be_written_loses_the_event_not_the_operation(tmp_path):
    (tmp_path / "root").write_text("not a directory")
    events.record(_paths(tmp_path), "volume", "create", "v", {})


def test_torn_and_foreign_lines_are_skipped(tmp_path):
    paths = _paths(tmp_path)
    events.record(paths, "volume", "create", "v", {})
    with open(paths.events_log, "ab") as f:
        f.write(b'[1]\n{"Type": "vol')
    assert [e["Actor"]["ID"] for e in events.read(paths)] == ["v"]


def test_follow_starts_at_the_end_and_crosses_a_turn_over(tmp_path, monkeypatch):
    paths = _paths(tmp_path)
    events.record(paths, "volume", "create", "old", {})
    live = events.follow(paths, poll=0.01)
    assert next(live) is None
    monkeypatch.setattr(events, "EVENTS_MAX_BYTES", 300)
    events.record(paths, "volume", "create", "new1", {"pad": "x" * 300})  # turns the file over
    events.record(paths, "volume", "create", "new2", {})
    seen = []
    for event in live:
        if event is not None:
            seen.append(event["Actor"]["ID"])
        if len(seen) == 2:
            break
    live.close()
    assert seen == ["new1", "new2"]


def _event(type_: str, action: str, actor: str, **attributes: str) -> dict:
    return events.message(type_, action, actor, attributes, ns=1)


CONTAINER = _event("container", "start", "abc123" + "0" * 58, image="busybox:1.36", name="web", tier="front")
IMAGE = _event("image", "tag", "sha256:" + "f" * 64, name="registry:5000/app:2")
NETWORK = _event("network", "connect", "n" * 64, name="backend", type="bridge", container="abc123" + "0" * 58)
VOLUME = _event("volume", "create", "data", driver="local")
HEALTH = _event("container", "health_status: healthy", "abc123" + "0" * 58, image="busybox:1.36", name="web")


@pytest.mark.parametrize(
    "filters, expected",
    [
        ([], [CONTAINER, IMAGE, NETWORK, VOLUME, HEALTH]),
        (["type=container"], [CONTAINER, HEALTH]),
        (["type=volume", "type=network"], [NETWORK, VOLUME]),
        (["container=web"], [CONTAINER, HEALTH]),
        (["container=abc1"], [CONTAINER, HEALTH]),  # an ID prefix
        (["container=we"], [CONTAINER, HEALTH]),  # fuzzy, as Docker's
        (["container=other"], []),
        (["network=backend"], [NETWORK]),
        (["volume=data"], [VOLUME]),
        (["image=busybox:1.36"], [CONTAINER, HEALTH]),
        (["image=busybox"], [CONTAINER, HEALTH]),  # without the tag
        (["image=registry:5000/app"], [IMAGE]),
        (["event=start"], [CONTAINER]),
        (["event=health_status"], [HEALTH]),  # Docker's prefix match for these
        (["event=health_status: healthy"], [HEALTH]),
        (["event=start", "event=create"], [CONTAINER, VOLUME]),
        (["label=tier"], [CONTAINER]),
        (["label=tier=front"], [CONTAINER]),
        (["label=tier=back"], []),
        (["label=tier", "label=name=web"], [CONTAINER]),  # labels: every one must match
        (["type=container", "event=start"], [CONTAINER]),
        (["scope=local"], [CONTAINER, IMAGE, NETWORK, VOLUME, HEALTH]),
        (["daemon=x"], []),
    ],
)
def test_filters_match_as_dockerds(filters, expected):
    matcher = engine_events.Filters(filters)
    assert [e for e in (CONTAINER, IMAGE, NETWORK, VOLUME, HEALTH) if matcher.match(e)] == expected


@pytest.mark.parametrize(
    "item, message",
    [
        ("colour=red", "invalid filter 'colour'"),
        ("container", "bad format of filter (expected name=value)"),
        ("=x", "bad format of filter (expected name=value)"),
    ],
)
def test_bad_filters_are_refused(item, message):
    with pytest.raises(InvalidArgumentError) as raised:
        engine_events.Filters([item])
    assert message in str(raised.value)


def test_the_window_takes_dockers_times():
    now = 1_700_000_000 * 10**9
    assert engine_events.parse_window("10m", None, now) == (now - 600 * 10**9, 0)
    assert engine_events.parse_window("1700000000.5", "1700000001", now) == (
        1_700_000_000_500_000_000,
        1_700_000_001 * 10**9,
    )
    assert engine_events.parse_window(None, "2023-11-14T22:13:20Z", now) == (0, now)
    with pytest.raises(InvalidArgumentError, match="cannot be after"):
        engine_events.parse_window("1700000001", "1700000000", now)
    with pytest.raises(InvalidArgumentError, match="invalid time"):
        engine_events.parse_window("soon", None, now)


def test_the_default_line_is_dockers(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        event = events.message(
            "container", "create", "c" * 64, {"name": "web", "image": "bb:1"}, ns=1_700_000_000_000_000_042
        )
        assert engine_events.line(event) == (
            f"2023-11-14T22:13:20.000000042Z container create {'c' * 64} (image=bb:1, name=web)"
        )
        monkeypatch.setenv("TZ", "EST+5")
        time.tzset()
        assert engine_events.line(event).startswith("2023-11-14T17:13:20.000000042-05:00 ")
        assert engine_events.line(events.message("volume", "create", "v", {}, ns=0)).endswith(" volume create v")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_formats():
    event = VOLUME
    assert engine_events.formatter("json")(event) == engine_events.formatter("{{json .}}")(event)
    assert engine_events.formatter("json")(event).startswith('{"Type":"volume","Action":"create"')
    assert engine_events.formatter(None) is engine_events.line
    data = engine_events.template_data(CONTAINER)
    assert data["Actor"]["Attributes"]["name"] == "web" and data["Status"] == "start" and data["TimeNano"] == 1

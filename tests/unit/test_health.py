"""Health checks without a container: Go's durations, the --health-* options
and the image's HEALTHCHECK merged, Docker's state machine of a container's
health, the history line of HEALTHCHECK, and the ps text."""

from __future__ import annotations

import pytest

from overlayctl.builder.builder import _go_health
from overlayctl.container import health as model
from overlayctl.errors import InvalidArgumentError
from overlayctl.util.humanize import go_duration, parse_go_duration

MS = 1_000_000
S = 1_000_000_000


@pytest.mark.parametrize(
    "text, ns",
    [
        ("0", 0),
        ("300ms", 300 * MS),
        ("1.5s", 1500 * MS),
        (".5s", 500 * MS),
        ("1h30m", 5400 * S),
        ("1m0.1s", 60 * S + 100 * MS),
        ("100us", 100_000),
        ("100µs", 100_000),
        ("7ns", 7),
        ("-2s", -2 * S),
        ("+3s", 3 * S),
    ],
)
def test_go_durations_parse(text, ns):
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize(
    "text, message",
    [
        ("5", 'time: missing unit in duration "5"'),
        ("abc", 'time: invalid duration "abc"'),
        ("", 'time: invalid duration ""'),
        ("3x", 'time: unknown unit "x" in duration "3x"'),
        ("-", 'time: invalid duration "-"'),
    ],
)
def test_bad_go_durations_say_what_go_says(text, message):
    with pytest.raises(ValueError) as info:
        parse_go_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "ns, text",
    [
        (0, "0s"),
        (300 * MS, "300ms"),
        (1500 * MS, "1.5s"),
        (30 * S, "30s"),
        (60 * S, "1m0s"),
        (3600 * S, "1h0m0s"),
        (5400 * S + 500 * MS, "1h30m0.5s"),
        (100_000, "100µs"),
        (7, "7ns"),
        (-2 * S, "-2s"),
    ],
)
def test_go_durations_written_as_go_writes_them(ns, text):
    assert go_duration(ns) == text
    assert parse_go_duration(text) == ns


def test_history_line_is_gos_percent_q_of_the_health_config():
    health = {"Test": ["CMD-SHELL", 'curl -f "http://localhost/"'], "Interval": 5 * S, "Retries": 3}
    assert _go_health(health) == ('&{["CMD-SHELL" "curl -f \\"http://localhost/\\""] "5s" "0s" "0s" "0s" \'\\x03\'}')
    assert _go_health({"Test": ["NONE"]}) == '&{["NONE"] "0s" "0s" "0s" "0s" \'\\x00\'}'
    assert _go_health({"Test": ["CMD", "true"], "Retries": 65}).endswith("'A'}")


def _options(**kw) -> model.HealthOptions:
    durations = {k: kw.pop(k) for k in list(kw) if k in model.DURATION_KEYS}
    return model.HealthOptions(durations=durations, **kw)


def test_options_make_dockers_health_config():
    assert model.from_options(_options()) is None
    assert model.from_options(_options(disabled=True)) == {"Test": ["NONE"]}
    assert model.from_options(
        _options(cmd="true", Interval="300ms", Timeout="1s", StartPeriod="2s", StartInterval="50ms", retries="4")
    ) == {
        "Test": ["CMD-SHELL", "true"],
        "Interval": 300 * MS,
        "Timeout": S,
        "StartPeriod": 2 * S,
        "StartInterval": 50 * MS,
        "Retries": 4,
    }


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"disabled": True, "cmd": "true"}, "--no-healthcheck conflicts with --health-* options"),
        ({"Interval": "-1s"}, "--health-interval cannot be negative"),
        ({"Timeout": "10us"}, "--health-timeout cannot be less than 1ms"),
        ({"StartPeriod": "5"}, 'invalid argument "5" for "--health-start-period" flag'),
        ({"retries": "-1"}, "--health-retries cannot be negative"),
        ({"retries": "two"}, 'invalid argument "two" for "--health-retries" flag'),
    ],
)
def test_bad_options_are_refused(kw, message):
    with pytest.raises(InvalidArgumentError) as info:
        model.from_options(_options(**kw))
    assert message in info.value.message


def test_the_options_override_the_image_field_by_field():
    image = {"Test": ["CMD", "/bin/check"], "Interval": 10 * S, "Retries": 5}
    assert model.merged(None, image) == image
    assert model.merged(None, None) is None
    assert model.merged({"Interval": 300 * MS}, image) == {
        "Test": ["CMD", "/bin/check"],
        "Interval": 300 * MS,
        "Retries": 5,
    }
    assert model.merged({"Test": ["CMD-SHELL", "true"]}, image)["Test"] == ["CMD-SHELL", "true"]
    assert model.merged({"Test": ["NONE"]}, image)["Test"] == ["NONE"]


def test_settings_fill_dockers_defaults_and_the_shell():
    s = model.Settings({"Test": ["CMD-SHELL", "true"]})
    assert s.test == ["/bin/sh", "-c", "true"]
    assert (s.interval, s.timeout, s.start_period, s.start_interval, s.retries) == (30 * S, 30 * S, 0, 5 * S, 3)
    assert model.Settings({"Test": ["CMD-SHELL", "true"]}, shell=["/bin/ash", "-ec"]).test == [
        "/bin/ash",
        "-ec",
        "true",
    ]
    assert model.Settings({"Test": ["CMD", "/bin/check", "-v"]}).test == ["/bin/check", "-v"]
    for nothing in (None, {}, {"Test": ["NONE"]}, {"Test": ["CMD"]}, {"Test": ["WHATEVER", "x"]}):
        assert model.Settings(nothing).test is None


def test_start_interval_only_while_starting_within_the_start_period():
    s = model.Settings({"Test": ["CMD", "x"], "Interval": S, "StartPeriod": 10 * S, "StartInterval": 100 * MS})
    assert s.next_interval(model.STARTING, 0) == 100 * MS
    assert s.next_interval(model.STARTING, 11 * S) == S
    assert s.next_interval(model.HEALTHY, 0) == S  # a success ended the start period
    assert s.next_interval(model.UNHEALTHY, 0) == S


def _result(code: int, n: int = 0) -> model.Result:
    return model.Result(n, n + 1, code, f"run {n}")


def test_retries_failures_in_a_row_make_it_unhealthy_and_a_success_healthy():
    s = model.Settings({"Test": ["CMD", "x"], "Retries": 2})
    h = model.Health()
    assert not h.record(_result(1), s, False)
    assert (h.status, h.failing_streak) == (model.STARTING, 1)
    assert h.record(_result(1), s, False)
    assert (h.status, h.failing_streak) == (model.UNHEALTHY, 2)
    assert h.record(_result(0), s, False)
    assert (h.status, h.failing_streak) == (model.HEALTHY, 0)
    assert not h.record(_result(-1), s, False)  # one failure: still healthy
    assert h.record(_result(2), s, False)
    assert h.status == model.UNHEALTHY


def test_failures_in_the_start_period_do_not_count_until_a_success():
    s = model.Settings({"Test": ["CMD", "x"], "Retries": 1, "StartPeriod": 10 * S})
    h = model.Health()
    for _ in range(3):
        h.record(_result(1), s, True)
    assert (h.status, h.failing_streak) == (model.STARTING, 0)
    h.record(_result(0), s, True)
    assert h.status == model.HEALTHY
    # Once healthy, a failure counts even within the start period.
    assert h.record(_result(1), s, True)
    assert (h.status, h.failing_streak) == (model.UNHEALTHY, 1)


def test_the_log_keeps_the_last_five():
    s = model.Settings({"Test": ["CMD", "x"]})
    h = model.Health()
    for n in range(8):
        h.record(_result(0, n * 10), s, False)
    assert [entry["Output"] for entry in h.log] == [f"run {n * 10}" for n in range(3, 8)]
    entry = h.log[-1]
    assert list(entry) == ["Start", "End", "ExitCode", "Output"]
    assert entry["Start"] == "1970-01-01T00:00:00.000000070Z"


def test_output_is_cut_at_4096_bytes():
    assert model.truncated_output(b"x" * 4096) == "x" * 4096
    assert model.truncated_output(b"x" * 5000) == "x" * 4096 + "..."


def test_state_is_saved_whole_and_read_back(tmp_path):
    from overlayctl.paths import Paths

    paths = Paths(str(tmp_path / "root"), str(tmp_path / "run"))
    assert model.load(paths, "c" * 64) is None
    (tmp_path / "root" / "containers" / ("c" * 64)).mkdir(parents=True)
    h = model.Health(model.UNHEALTHY, 3, [_result(1).to_json()])
    model.save(paths, "c" * 64, h)
    back = model.load(paths, "c" * 64)
    assert back is not None and back.to_json() == h.to_json()
    assert sorted(p.name for p in (tmp_path / "root" / "containers" / ("c" * 64)).iterdir()) == ["health.json"]


def test_ps_suffixes():
    assert model.status_suffix(None) == ""
    assert model.status_suffix(model.Health(model.STARTING)) == " (health: starting)"
    assert model.status_suffix(model.Health(model.HEALTHY)) == " (healthy)"
    assert model.status_suffix(model.Health(model.UNHEALTHY)) == " (unhealthy)"

"""HEALTHCHECK on the real kernel: recorded by build, run by the supervisor's
checker through exec's way into the container, shown by inspect and ps,
and gone with the container."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

NONE = ("--network", "none")
FAST = ("--health-interval", "100ms")


def _inspect(cli, name: str) -> dict:
    return json.loads(cli.ok("inspect", name))[0]


def _health(cli, name: str) -> dict | None:
    return _inspect(cli, name)["State"].get("Health")


def _wait_health(cli, name: str, status: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    health = None
    while time.monotonic() < deadline:
        health = _health(cli, name)
        if health is not None and health["Status"] == status:
            return health
        time.sleep(0.05)
    raise AssertionError(f"{name} never became {status}: {health}")


def _ps_status(cli, name: str, *args: str) -> str:
    for line in cli.ok("ps", "-a", "--format", "json", *args).splitlines():
        row = json.loads(line)
        if row["Names"] == name:
            return row["Status"]
    return ""


def _names(cli, *args: str) -> set[str]:
    return {json.loads(line)["Names"] for line in cli.ok("ps", "-a", "--format", "json", *args).splitlines()}


def _events(cli) -> list[dict]:
    """The health_status events recorded so far, as `events` shows them."""
    out = cli.ok(
        "events", "--since", "0", "--until", str(time.time() + 0.001), "-f", "event=health_status", "--format", "json"
    )
    return [json.loads(line) for line in out.splitlines()]


def _build(cli, tmp_path: Path, tag: str, dockerfile: str):
    ctx = tmp_path / ("ctx-" + tag.replace(":", "-"))
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    return cli("build", "-t", tag, str(ctx))


def test_a_passing_check_makes_it_healthy(cli, bb):
    cid = cli.ok("run", "-d", "--name", "ok", *NONE, "--health-cmd", "echo fine", *FAST, "bb:1", "sleep", "600").strip()
    # Starting from the moment the start is reported.
    assert _health(cli, "ok")["Status"] in ("starting", "healthy")
    health = _wait_health(cli, "ok", "healthy")
    assert health["FailingStreak"] == 0
    entry = health["Log"][-1]
    assert list(entry) == ["Start", "End", "ExitCode", "Output"]
    assert (entry["ExitCode"], entry["Output"]) == (0, "fine\n")
    assert entry["Start"] <= entry["End"]
    status = _ps_status(cli, "ok")
    assert status.startswith("Up ") and status.endswith(" (healthy)")
    assert "(healthy)" in cli.ok("ps")
    assert _names(cli, "--filter", "health=healthy") == {"ok"}
    assert _names(cli, "--filter", "health=unhealthy") == set()
    config = _inspect(cli, "ok")["Config"]["Healthcheck"]
    assert config == {"Test": ["CMD-SHELL", "echo fine"], "Interval": 100_000_000}
    events = [e for e in _events(cli) if e["id"] == cid]
    assert [e["Action"] for e in events] == ["health_status: healthy"]
    assert events[0]["Actor"]["Attributes"] == {"image": "bb:1", "name": "ok"}
    # The log keeps the last five.
    deadline = time.monotonic() + 10
    while len(_health(cli, "ok")["Log"]) < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    assert len(_health(cli, "ok")["Log"]) == 5
    bad = cli("ps", "--filter", "health=fine")
    assert bad.returncode != 0 and b"health" in bad.stderr


def test_retries_failures_in_a_row_make_it_unhealthy(cli, bb):
    cli.ok(
        "run",
        "-d",
        "--name",
        "sick",
        *NONE,
        "--health-cmd",
        "echo no >&2; exit 3",
        *FAST,
        "--health-retries",
        "3",
        "bb:1",
        "sleep",
        "600",
    )
    health = _wait_health(cli, "sick", "unhealthy")
    assert health["FailingStreak"] >= 3
    assert all(entry["ExitCode"] == 3 and entry["Output"] == "no\n" for entry in health["Log"])
    assert _ps_status(cli, "sick").endswith(" (unhealthy)")
    assert _names(cli, "--filter", "health=unhealthy") == {"sick"}
    # Three failures before the change, not fewer.
    assert [e["Action"] for e in _events(cli)] == ["health_status: unhealthy"]


def test_a_hanging_check_is_killed_at_the_timeout(cli, bb):
    cli.ok(
        "run",
        "-d",
        "--name",
        "hang",
        *NONE,
        "--health-cmd",
        "sleep 77",
        "--health-interval",
        "100ms",
        "--health-timeout",
        "300ms",
        "--health-retries",
        "2",
        "bb:1",
        "sleep",
        "600",
    )
    health = _wait_health(cli, "hang", "unhealthy")
    entry = health["Log"][-1]
    assert (entry["ExitCode"], entry["Output"]) == (-1, "Health check exceeded timeout (300ms)")
    # Killed, not piling up: at most the one probe that is running now.
    for _ in range(5):
        sleepers = [line for line in cli.ok("exec", "hang", "ps").splitlines() if "sleep 77" in line]
        assert len(sleepers) <= 1, sleepers
        time.sleep(0.1)


def test_failures_in_the_start_period_do_not_count(cli, bb):
    cli.ok(
        "run",
        "-d",
        "--name",
        "slow",
        *NONE,
        "--health-cmd",
        "test -e /tmp/ready",
        "--health-interval",
        "1h",
        "--health-start-period",
        "1h",
        "--health-start-interval",
        "100ms",
        "--health-retries",
        "1",
        "bb:1",
        "sleep",
        "600",
    )
    # Probes every start interval, each failing, none counted.
    deadline = time.monotonic() + 10
    while len((_health(cli, "slow") or {}).get("Log") or []) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    health = _health(cli, "slow")
    assert len(health["Log"]) >= 3 and all(e["ExitCode"] == 1 for e in health["Log"])
    assert (health["Status"], health["FailingStreak"]) == ("starting", 0)
    assert _ps_status(cli, "slow").endswith(" (health: starting)")
    assert _names(cli, "--filter", "health=starting") == {"slow"}
    cli.ok("exec", "slow", "touch", "/tmp/ready")
    health = _wait_health(cli, "slow", "healthy")
    # A success ends the start period: the next probe waits the interval (1h).
    count = len(health["Log"])
    time.sleep(0.5)
    assert len(_health(cli, "slow")["Log"]) == count


def test_no_healthcheck_and_health_check_none(cli, bb, tmp_path):
    assert (
        _build(cli, tmp_path, "hc:1", 'FROM bb:1\nHEALTHCHECK --interval=100ms --retries=2 CMD ["true"]\n').returncode
        == 0
    )
    image = json.loads(cli.ok("image", "inspect", "hc:1"))[0]
    assert image["Config"]["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 100_000_000, "Retries": 2}
    # The image's check runs in a container made from it.
    cli.ok("run", "-d", "--name", "checked", *NONE, "hc:1", "sleep", "600")
    _wait_health(cli, "checked", "healthy")
    # --no-healthcheck: none runs, none is shown.
    cli.ok("run", "-d", "--name", "unchecked", *NONE, "--no-healthcheck", "hc:1", "sleep", "600")
    assert _inspect(cli, "unchecked")["Config"]["Healthcheck"]["Test"] == ["NONE"]
    # HEALTHCHECK NONE in a later image switches it off the same way.
    result = _build(cli, tmp_path, "hc:none", "FROM hc:1\nHEALTHCHECK NONE\n")
    assert result.returncode == 0, result.stderr
    image = json.loads(cli.ok("image", "inspect", "hc:none"))[0]
    assert image["Config"]["Healthcheck"] == {"Test": ["NONE"]}
    assert image["History"][-1]["created_by"].endswith('HEALTHCHECK &{["NONE"] "0s" "0s" "0s" "0s" \'\\x00\'}')
    cli.ok("run", "-d", "--name", "off", *NONE, "hc:none", "sleep", "600")
    time.sleep(0.5)
    for name in ("unchecked", "off"):
        assert _health(cli, name) is None
        assert _ps_status(cli, name).endswith("second") or _ps_status(cli, name).endswith("seconds")
        assert not (cli.root / "containers" / _inspect(cli, name)["Id"] / "health.json").exists()
    assert _names(cli, "--filter", "health=none") == {"unchecked", "off"}
    # A --health-* option overrides the image's field by field.
    cli.ok("create", "--name", "tuned", "--health-timeout", "2s", "hc:1", "true")
    assert _inspect(cli, "tuned")["Config"]["Healthcheck"] == {
        "Test": ["CMD", "true"],
        "Interval": 100_000_000,
        "Timeout": 2_000_000_000,
        "Retries": 2,
    }
    bad = cli("create", "--no-healthcheck", "--health-cmd", "true", "bb:1", "true")
    assert bad.returncode == 125 and b"--no-healthcheck conflicts with --health-* options" in bad.stderr
    bad = cli("create", "--health-interval", "5", "bb:1", "true")
    assert bad.returncode == 125 and b'missing unit in duration "5"' in bad.stderr


@pytest.mark.parametrize(
    "line, message",
    [
        ("HEALTHCHECK --interval=5 CMD true", 'time: missing unit in duration "5"'),
        ("HEALTHCHECK --timeout=500us CMD true", 'Interval "timeout" cannot be less than 1ms'),
        ("HEALTHCHECK --retries=-1 CMD true", "--retries cannot be negative (-1)"),
        ("HEALTHCHECK --retries=x CMD true", '--retries: invalid number "x"'),
        ("HEALTHCHECK NONE true", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK RUN true", 'unknown type "RUN" in HEALTHCHECK (try CMD)'),
        ("HEALTHCHECK CMD", "missing command after HEALTHCHECK CMD"),
    ],
)
def test_bad_healthchecks_fail_the_build_on_their_line(cli, bb, tmp_path, line, message):
    result = _build(cli, tmp_path, "bad:1", f"FROM bb:1\n{line}\n")
    assert result.returncode == 1
    err = result.stderr.decode().strip()
    assert len(err.splitlines()) == 1, err
    assert "Dockerfile:2:" in err and message in err
    assert cli("image", "inspect", "bad:1").returncode != 0


def test_shell_form_history_and_archives_keep_the_check(cli, bb, tmp_path):
    dockerfile = (
        "FROM bb:1\n"
        "HEALTHCHECK --interval=30s --timeout=3s --start-period=1m30s CMD wget -qO- http://localhost/ || exit 1\n"
    )
    assert _build(cli, tmp_path, "web:1", dockerfile).returncode == 0
    image = json.loads(cli.ok("image", "inspect", "web:1"))[0]
    want = {
        "Test": ["CMD-SHELL", "wget -qO- http://localhost/ || exit 1"],
        "Interval": 30_000_000_000,
        "Timeout": 3_000_000_000,
        "StartPeriod": 90_000_000_000,
    }
    assert image["Config"]["Healthcheck"] == want
    assert image["History"][-1]["created_by"] == (
        '/bin/sh -c #(nop)  HEALTHCHECK &{["CMD-SHELL" "wget -qO- http://localhost/ || exit 1"] '
        '"30s" "3s" "1m30s" "0s" \'\\x00\'}'
    )
    # Cached the second time.
    assert "Using cache" in cli.ok("build", "-t", "web:1", str(tmp_path / "ctx-web-1"))
    # save and load (an archive from elsewhere) keep it.
    archive = tmp_path / "web.tar"
    cli.ok("save", "-o", str(archive), "web:1")
    cli.ok("rmi", "web:1")
    cli.ok("load", "-i", str(archive))
    assert json.loads(cli.ok("image", "inspect", "web:1"))[0]["Config"]["Healthcheck"] == want


def test_a_foreground_container_is_checked_too(cli, bb):
    result = cli("run", "--name", "fg", *NONE, "--health-cmd", "exit 0", *FAST, "bb:1", "sleep", "1")
    assert result.returncode == 0, result.stderr
    health = _health(cli, "fg")
    # Checked while it ran, and unhealthy once its checks stopped, as Docker shows it.
    assert health["Status"] == "unhealthy"
    assert health["Log"] and all(e["ExitCode"] == 0 for e in health["Log"])
    assert [e["Action"] for e in _events(cli)] == ["health_status: healthy"]


def test_nothing_of_the_check_outlives_the_container(cli, bb):
    from overlayctl.runtime.cgroups.cgroup import find

    cid = cli.ok(
        "run",
        "-d",
        "--name",
        "busy",
        *NONE,
        "--pids-limit",
        "50",
        "--health-cmd",
        "sleep 300",
        "--health-interval",
        "100ms",
        "--health-timeout",
        "1h",
        "bb:1",
        "sleep",
        "600",
    ).strip()
    # Wait for a probe to be running inside.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any("sleep 300" in line for line in cli.ok("exec", "busy", "ps").splitlines()):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the probe never ran")
    supervisor = _inspect(cli, "busy")["State"]["SupervisorPid"]
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    assert len(children) == 2  # PID 1 and the checker
    checker = next(int(p) for p in children if int(p) != _inspect(cli, "busy")["State"]["Pid"])
    assert find(cid) is not None
    cli.ok("kill", "busy")
    deadline = time.monotonic() + 10
    while _inspect(cli, "busy")["State"]["Status"] != "exited" and time.monotonic() < deadline:
        time.sleep(0.05)
    # The supervisor reaps its checker before it records the end and lets the cgroup go.
    deadline = time.monotonic() + 10
    while (os.path.exists(f"/proc/{supervisor}") or find(cid) is not None) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{checker}")
    assert find(cid) is None
    assert _health(cli, "busy")["Status"] == "unhealthy"
    status = _ps_status(cli, "busy")
    assert status.startswith("Exited") and "health" not in status
    # A new start checks again, from "starting".
    cli.ok("start", "busy")
    assert _health(cli, "busy")["Status"] == "starting"
    cli.ok("rm", "-f", "busy")


def test_a_paused_container_fails_its_checks_as_in_docker(cli, bb):
    cli.ok(
        "run",
        "-d",
        "--name",
        "nap",
        *NONE,
        "--health-cmd",
        "true",
        *FAST,
        "--health-retries",
        "2",
        "bb:1",
        "sleep",
        "600",
    )
    _wait_health(cli, "nap", "healthy")
    cli.ok("pause", "nap")
    health = _wait_health(cli, "nap", "unhealthy")
    assert health["Log"][-1]["ExitCode"] == -1 and "is paused" in health["Log"][-1]["Output"]
    assert _ps_status(cli, "nap").endswith("(Paused)")
    cli.ok("unpause", "nap")
    _wait_health(cli, "nap", "healthy")

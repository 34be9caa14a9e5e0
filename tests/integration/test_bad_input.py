"""Bad input never becomes an internal error: bytes that are not UTF-8 are
kept, malformed layers are rejected in one short line, multi-container verbs
go on past a failing name, and a killed supervisor leaves a sane `ps`."""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile
import time
from pathlib import Path

import pytest

NONE = ("--network", "none")


def hex_of(out: bytes) -> str:
    return "".join(out.decode().split())


def stat_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "X"


def wait_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while stat_state(pid) not in ("Z", "X"):
        assert time.monotonic() < deadline, f"process {pid} did not end"
        time.sleep(0.05)


def assert_one_short_line(stderr: bytes) -> str:
    text = stderr.decode()
    assert text.count("\n") == 1 and text.endswith("\n"), text[:500]
    assert len(text) <= 420, len(text)
    assert "internal error" not in text and "Traceback" not in text
    return text


# --- bytes that are not UTF-8 ---------------------------------------------------------


def test_non_utf8_argv_env_and_workdir_reach_the_process(cli, bb):
    result = cli(
        "run", "--rm", *NONE, "-e", b"X=\xff\xfe", "-w", b"/w\xfd", "bb:1",
        "sh", "-c", 'printf %s "$X" | od -An -tx1; printf %s "$1" | od -An -tx1; pwd | od -An -tx1', "sh", b"a\xffb",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split("\n")[:3] == [" ff fe", " 61 ff 62", " 2f 77 fd 0a"]


def test_non_utf8_hostname_is_kept(cli, bb):
    result = cli("run", "--rm", *NONE, "-h", b"h\xff", "bb:1", "sh", "-c", "hostname | od -An -tx1")
    assert result.returncode == 0, result.stderr
    assert hex_of(result.stdout) == "68ff0a"


def test_non_utf8_bind_paths_are_kept(cli, bb, tmp_path: Path):
    source = os.path.join(os.fsencode(tmp_path), b"d\xff")
    os.mkdir(source)
    with open(os.path.join(source, b"f"), "wb") as f:
        f.write(b"inside\n")
    result = cli("run", "--rm", *NONE, "-v", source + b":/x\xfe", "bb:1", "cat", b"/x\xfe/f")
    assert (result.returncode, result.stdout) == (0, b"inside\n"), result.stderr


def test_a_detached_container_with_non_utf8_config_can_be_listed_and_inspected(cli, bb):
    cli.ok("run", "-d", "--name", "raw", *NONE, "-e", b"X=\xff", "bb:1", "sh", "-c", "sleep 60; :", b"\xfe")
    state = json.loads(cli.ok("inspect", "raw"))[0]
    assert "X=\udcff" in state["Config"]["Env"] and state["Config"]["Cmd"][-1] == "\udcfe"
    listed = cli("ps")  # (the command column holds the raw byte, as Docker prints it)
    assert listed.returncode == 0 and b"raw" in listed.stdout
    assert hex_of(cli("exec", "raw", "sh", "-c", 'printf %s "$X" | od -An -tx1').stdout) == "ff"
    assert cli("exec", "raw", "cat", "/proc/1/cmdline").stdout.endswith(b"\0\xfe\0")
    cli.ok("rm", "-f", "raw")


def test_non_utf8_volume_labels_are_kept(cli):
    cli.ok("volume", "create", "--label", b"k=\xff", "lab")
    (volume,) = json.loads(cli.ok("volume", "inspect", "lab"))
    assert os.fsencode(volume["Labels"]["k"]) == b"\xff"
    cli.ok("volume", "rm", "lab")


def test_a_non_utf8_user_is_a_clean_error(cli, bb):
    result = cli("run", "--rm", *NONE, "-u", b"\xff", "bb:1", "id")
    assert result.returncode == 125
    assert "unable to find user" in assert_one_short_line(result.stderr)


# --- malformed layers --------------------------------------------------------------


def import_tar(cli, tmp_path: Path, *members: tarfile.TarInfo):  # noqa: ANN201
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti in members:
            tf.addfile(ti, io.BytesIO(b"x" * ti.size))
    path = tmp_path / "bad.tar"
    path.write_bytes(buf.getvalue())
    return cli("import", str(path), "bad:1")


def test_a_pax_xattr_name_with_a_nul_is_a_rejected_layer(cli, tmp_path: Path):
    ti = tarfile.TarInfo("f")
    ti.size = 1
    ti.pax_headers = {"SCHILY.xattr.user.a\0b": "v"}
    result = import_tar(cli, tmp_path, ti)
    assert result.returncode == 125
    assert assert_one_short_line(result.stderr).startswith('overlayctl: layer rejected: entry "f" has an xattr')


def test_a_megabyte_entry_name_makes_a_short_error_line(cli, tmp_path: Path):
    result = import_tar(cli, tmp_path, tarfile.TarInfo("../" + "a" * 1_000_000))
    assert result.returncode == 125
    line = assert_one_short_line(result.stderr)
    assert line.startswith('overlayctl: layer rejected: entry "../aaa') and "\u2026" in line
    assert line.endswith('aaa" leaves the layer root\n')


def test_a_long_container_name_makes_a_short_error_line(cli):
    result = cli("stop", "n" * 100_000)
    assert result.returncode == 125
    assert_one_short_line(result.stderr)


# --- verbs on several containers ---------------------------------------------------


@pytest.mark.slow
def test_verbs_go_on_past_a_failing_name(cli, bb):
    # PID 1 ends on SIGTERM (a namespace's PID 1 gets only the signals it
    # handles): restart stops each at once instead of waiting out its
    # 10 s timeout for the SIGKILL, which this test is not about.
    for name in ("aa", "cc"):
        cli.ok("create", "--name", name, *NONE, "bb:1", "sh", "-c", 'trap "exit 0" TERM; sleep 60 & wait')

    def both(*args: str) -> str:
        result = cli(*args, "aa", "nope", "cc", "nope2")
        assert result.returncode == 1, (args, result.stderr)
        errors = result.stderr.decode().splitlines()
        assert errors == [
            'overlayctl: container "nope" not found; see "overlayctl ps -a"',
            'overlayctl: container "nope2" not found; see "overlayctl ps -a"',
        ], args
        return result.stdout.decode()

    for verb in ("start", "pause", "unpause", "restart", "kill"):
        assert both(verb) == "aa\ncc\n", verb
    # The kill above ended both: wait prints their exit codes.
    assert both("wait") == "137\n137\n"
    cli.ok("start", "aa", "cc")
    assert both("stop", "-t", "1") == "aa\ncc\n"
    states = [json.loads(cli.ok("inspect", n))[0]["State"]["Status"] for n in ("aa", "cc")]
    assert states == ["exited", "exited"]
    assert both("rm") == "aa\ncc\n"
    assert cli.ok("ps", "-aq") == ""


def test_rm_reports_each_container_it_cannot_remove(cli, bb):
    cli.ok("run", "-d", "--name", "busy", *NONE, "bb:1", "sleep", "60")
    cli.ok("create", "--name", "idle", *NONE, "bb:1", "true")
    result = cli("rm", "busy", "idle")
    assert result.returncode == 1
    assert result.stdout == b"idle\n"
    assert result.stderr.decode().splitlines() == [
        'overlayctl: container "busy" is running; stop it first or use "overlayctl rm -f"'
    ]
    assert cli.ok("ps", "-a", "--format", "json").count('"Names":"busy"') == 1
    assert "idle" not in cli.ok("ps", "-a")


# --- a killed supervisor ----------------------------------------------------------


def test_ps_after_a_killed_supervisor_shows_no_made_up_age(cli, bb):
    cli.ok("run", "-d", "--name", "orphan", *NONE, "bb:1", "sleep", "60")
    state = json.loads(cli.ok("inspect", "orphan"))[0]["State"]
    os.kill(state["SupervisorPid"], signal.SIGKILL)
    wait_gone(state["SupervisorPid"])
    wait_gone(state["Pid"])
    # This ps is the one that notices the loss: it is the one that rendered
    # the empty finish time as an age.
    (row,) = [line for line in cli.ok("ps", "-a").splitlines() if line.endswith("orphan")]
    assert "Exited (unknown)" in row and "years" not in row, row
    again = json.loads(cli.ok("inspect", "orphan"))[0]["State"]
    assert again["FinishedAt"] not in ("", "0001-01-01T00:00:00Z")
    assert "years" not in cli.ok("ps", "-a")

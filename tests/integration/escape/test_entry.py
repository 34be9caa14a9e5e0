"""Entering a container leaks nothing of the host.

Attacks from inside a container on the processes that enter it: an
`exec` watched through /proc by a container process (procwatch.c, built
static), and a descriptor the caller left open reaching the container's
command in `run`, `exec`, a build's RUN and a restart by the supervisor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import image_with_program, static_program
from tests.helpers import wait_for

PROCWATCH_SOURCE = Path(__file__).parent / "procwatch.c"
NONE = ("--network", "none")
SECRET = "s3cret-of-the-host-caller"
# The caller's shell holds a directory of the host's open as descriptor 9
# (`exec 9</dir`), then runs overlayctl: a program passed fd 9 that way.
WITH_FD9 = 'exec 9<"$0"; exec "$@"'


@pytest.fixture(scope="session")
def procwatch_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return static_program(PROCWATCH_SOURCE, tmp_path_factory.mktemp("procwatch"))


@pytest.fixture
def procwatch_image(cli, bb, procwatch_binary, tmp_path) -> str:
    return image_with_program(cli, procwatch_binary, tmp_path)


@pytest.fixture
def host_dir(tmp_path) -> Path:
    """A directory of the host's with a marker file in it."""
    d = tmp_path / "host-only-dir"
    d.mkdir()
    (d / "marker").write_text("HOST-MARKER\n")
    return d


def with_fd9(cli, host_dir: Path, *args: str, env: dict | None = None, timeout: float = 60):
    """overlayctl run by a shell that left `host_dir` open as fd 9."""
    return subprocess.run(
        ["sh", "-c", WITH_FD9, str(host_dir), *cli.argv(*args)],
        capture_output=True,
        timeout=timeout,
        env=env if env is not None else cli.env,
    )


# The container's command lists its own descriptors (ls adds one, for the
# directory it reads) and tries the inherited one, and the directory it
# could lead to.
FD_PROBE = "echo fds $(ls /proc/self/fd); cat /proc/self/fd/9/marker 2>/dev/null || echo no-marker"


def assert_no_inherited_fd(out: str) -> None:
    fds = next(line.split()[1:] for line in out.splitlines() if line.startswith("fds"))
    assert set(fds) <= {"0", "1", "2", "3"}, out
    assert "HOST-MARKER" not in out and "no-marker" in out, out


@pytest.mark.slow
def test_a_container_watching_proc_gets_nothing_of_an_exec(cli, procwatch_image, host_dir):
    # A container process spins over the pids the next execs will take and
    # tries their environ, fds, exe and cwd while they are still overlayctl's
    # (after their privilege drop they are of its uid and capabilities).
    cli.ok("run", "-d", "--name", "watcher", *NONE, procwatch_image, "/procwatch", "90", SECRET, host_dir.name)
    wait_for(lambda: "READY" in cli.ok("logs", "watcher"), what="the watcher")
    env = dict(cli.env, OVERLAYCTL_TEST_SECRET=SECRET)
    execs = 30
    for _ in range(execs):
        result = with_fd9(cli, host_dir, "exec", "watcher", "/bin/true", env=env)
        assert result.returncode == 0, result.stderr
    cli.ok("exec", "watcher", "touch", "/stop")
    assert cli.ok("wait", "watcher", timeout=120) == "0\n"
    out = cli.ok("logs", "watcher")
    assert "DONE" in out, out
    # It did watch them all (the touch above is one more).
    assert int(next(line.split()[1] for line in out.splitlines() if line.startswith("SEEN"))) >= execs, out
    assert not [line for line in out.splitlines() if line.startswith("GOT")], out


def test_run_passes_no_inherited_descriptor(cli, bb, host_dir):
    result = with_fd9(cli, host_dir, "run", "--rm", *NONE, "bb:1", "sh", "-c", FD_PROBE)
    assert result.returncode == 0, result.stderr
    assert_no_inherited_fd(result.stdout.decode())


def test_exec_passes_no_inherited_descriptor(cli, bb, host_dir):
    cli.ok("run", "-d", "--name", "box", *NONE, "bb:1", "sleep", "60")
    result = with_fd9(cli, host_dir, "exec", "box", "sh", "-c", FD_PROBE)
    assert result.returncode == 0, result.stderr
    assert_no_inherited_fd(result.stdout.decode())


def test_a_working_directory_through_an_inherited_descriptor_is_refused(cli, bb, host_dir):
    # CVE-2024-21626: a working directory of /proc/self/fd/N, N a directory
    # of the host's, is outside the container's root. The descriptor is
    # gone, and were it not, the check of the working directory refuses it.
    cli.ok("run", "-d", "--name", "box", *NONE, "bb:1", "sleep", "60")
    result = with_fd9(cli, host_dir, "exec", "-w", "/proc/self/fd/9", "box", "cat", "marker")
    assert result.returncode == 126 and b"HOST-MARKER" not in result.stdout, result
    result = with_fd9(cli, host_dir, "run", "--rm", *NONE, "-w", "/proc/self/fd/9", "bb:1", "cat", "marker")
    assert result.returncode != 0 and b"HOST-MARKER" not in result.stdout, result


def test_build_run_passes_no_inherited_descriptor(cli, bb, host_dir, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM bb:1\nRUN {FD_PROBE}\n")
    result = with_fd9(cli, host_dir, "build", "--no-cache", "-t", "fdprobe:1", str(ctx))
    assert result.returncode == 0, result.stderr
    assert_no_inherited_fd(result.stdout.decode())


def test_restarts_by_the_supervisor_get_no_descriptor_or_environment_of_the_caller(cli, bb, host_dir):
    env = dict(cli.env, OVERLAYCTL_TEST_SECRET=SECRET)
    script = f"{FD_PROBE}; tr '\\0' '\\n' </proc/1/environ | sed 's/^/env /'; exit 1"
    argv = ("run", "-d", "--name", "rs", "--restart", "on-failure:2", *NONE, "bb:1", "sh", "-c", script)
    result = with_fd9(cli, host_dir, *argv, env=env)
    assert result.returncode == 0, result.stderr

    def restarted_twice() -> bool:
        state = json.loads(cli.ok("inspect", "rs"))[0]
        return state["State"]["Status"] == "exited" and state["RestartCount"] == 2

    wait_for(restarted_twice, what="two restarts")
    out = cli.ok("logs", "rs")
    runs = out.split("fds ")[1:]
    assert len(runs) == 3, out
    for run in runs:
        assert_no_inherited_fd("fds " + run)
        names = {line.split()[1].partition("=")[0] for line in run.splitlines() if line.startswith("env ")}
        assert names <= {"PATH", "HOSTNAME", "HOME", "TERM"}, run
    assert SECRET not in out and "PYTHONPATH" not in out, out


def test_close_fds_except_keeps_stdio_and_the_kept_ones_only(tmp_path):
    # Descriptors 3..15 open, some kept at either end of and between the
    # gaps close_range is called on.
    code = (
        "import os, sys\n"
        "from overlayctl.runtime import syscalls as sc\n"
        "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
        "for n in range(3, 16):\n"
        "    os.dup2(fd, n)\n"
        "sc.close_fds_except([3, 7, 8, 15])\n"
        "print(' '.join(sorted(os.listdir('/proc/self/fd'), key=int)))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[3]))
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, env=env, check=True)
    # (listdir's own descriptor, the lowest free one, is listed too.)
    assert out.stdout.split() == [b"0", b"1", b"2", b"3", b"4", b"7", b"8", b"15"], out

"""docker-py (PyPI `docker`) and testcontainers-python against `system
service`, pointed at its socket by DOCKER_HOST as their users do: a generic
container started, a log line waited for by the library's own means, then
the container stopped and removed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.api.conftest import Api

if TYPE_CHECKING:
    import docker

pytestmark = pytest.mark.slow


@pytest.fixture
def client(api: Api, bb: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[docker.DockerClient]:
    """docker.from_env() with DOCKER_HOST at the service's socket."""
    docker = pytest.importorskip("docker", reason="pip install docker (pyproject's test extras list it)")
    monkeypatch.setenv("DOCKER_HOST", api.host)
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    c = docker.from_env()
    try:
        yield c
    finally:
        c.close()


def test_docker_py_runs_a_container_and_follows_its_log(client: docker.DockerClient, bb: str) -> None:
    assert client.ping() is True
    assert client.version()["ApiVersion"] == "1.41"
    assert [t for i in client.images.list() for t in i.tags] == ["bb:1"]
    assert client.images.get("bb:1").id == "sha256:" + bb.removeprefix("sha256:")

    # The short form: run a command to its end, its output returned.
    assert client.containers.run("bb:1", ["echo", "hello from docker-py"], remove=True) == b"hello from docker-py\n"

    container = client.containers.run(
        "bb:1",
        ["sh", "-c", "echo starting; sleep 0.5; echo ready-for-py; exec sleep 300"],
        detach=True,
        name="pyctr",
        labels={"org.example.by": "docker-py"},
        environment={"WHO": "py"},
    )
    try:
        # Follow the log stream until the line arrives, as users wait.
        lines: list[bytes] = []
        for chunk in container.logs(stream=True, follow=True):
            lines.append(chunk)
            if b"ready-for-py" in b"".join(lines):
                break
        assert b"".join(lines) == b"starting\nready-for-py\n"

        container.reload()
        assert container.status == "running"
        assert container.name == "pyctr"
        assert container.labels["org.example.by"] == "docker-py"
        assert "WHO=py" in container.attrs["Config"]["Env"]
        assert [c.name for c in client.containers.list(filters={"label": "org.example.by=docker-py"})] == ["pyctr"]

        code, out = container.exec_run(["sh", "-c", "echo $WHO-exec"])
        assert (code, out) == (0, b"py-exec\n")

        started = time.monotonic()
        container.stop(timeout=1)
        assert time.monotonic() - started < 10
        assert container.wait(timeout=30)["StatusCode"] == 137  # sleep ignores SIGTERM as PID 1: SIGKILL after 1 s
        container.reload()
        assert container.status == "exited"
    finally:
        container.remove(force=True)
    assert client.containers.list(all=True) == []

    import docker

    with pytest.raises(docker.errors.NotFound, match="No such container"):
        client.containers.get("pyctr")
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("no-such-image:1")


def test_testcontainers_waits_for_a_log_line(api: Api, bb: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("testcontainers", reason="pip install testcontainers (pyproject's test extras list it)")
    monkeypatch.setenv("DOCKER_HOST", api.host)
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")  # ryuk's image is on Docker Hub, out of reach
    from testcontainers.core.config import testcontainers_config
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy
    from testcontainers.core.waiting_utils import wait_for_logs

    monkeypatch.setattr(testcontainers_config, "ryuk_disabled", True)  # read once per process: set it here too

    command = 'sh -c "echo warming; sleep 1; echo ready-for-tc; exec sleep 300"'
    container = DockerContainer("bb:1").with_command(command).with_env("WHO", "tc")
    container.waiting_for(LogMessageWaitStrategy("ready-for-tc"))
    with container:
        # start() returned only once the strategy saw the line.
        stdout, stderr = container.get_logs()
        assert stdout == b"warming\nready-for-tc\n", (stdout, stderr)
        # wait_for_logs, the function form, answers at once for a line seen.
        assert wait_for_logs(container, LogMessageWaitStrategy("warming"), timeout=10) < 5
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        assert wrapped.status == "running"
        assert wrapped.labels.get("org.testcontainers.lang") == "python"
        assert container.exec(["sh", "-c", "echo $WHO"]).output == b"tc\n"
        cid = container.get_container_id()
    # stop() removed it (force, with its volumes).
    assert api.docker_ok("ps", "-aq") == ""
    gone = api.docker("inspect", cid)
    assert gone.returncode == 1
    assert f"No such object: {cid}".encode() in gone.stderr, gone.stderr

"""The container lifecycle through the Engine API: Debian's docker client
and raw HTTP against the service, and the CLI on the same store."""

from __future__ import annotations

import json
import socket
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.api.conftest import Api
from tests.helpers import wait_for


def _inspect(api: Api, name: str) -> dict[str, Any]:
    return json.loads(api.docker_ok("inspect", name))[0]


def _names(api: Api, *args: str) -> list[str]:
    return sorted(api.docker_ok("ps", *args, "--format", "{{.Names}}").split())


def _gone(api: Api, name: str) -> bool:
    return api.request("GET", f"/containers/{name}/json")[0] == 404


# --- the docker client ------------------------------------------------------------


def test_create_start_top_pause_stop_wait_rm(api: Api, bb: str) -> None:
    cid = api.docker_ok(
        "create", "--name", "life", "-e", "A=1", "-l", "team=x", "-w", "/tmp", "-h", "box", bb, "sleep", "60"
    ).strip()
    assert len(cid) == 64
    doc = _inspect(api, "life")
    assert doc["Id"] == cid and doc["Name"] == "/life"
    assert doc["State"]["Status"] == "created"
    assert "A=1" in doc["Config"]["Env"] and doc["Config"]["Labels"] == {"team": "x"}
    assert (doc["Config"]["WorkingDir"], doc["Config"]["Hostname"]) == ("/tmp", "box")
    assert doc["Config"]["Cmd"] == ["sleep", "60"]
    assert api.docker_ok("ps", "-a", "--format", "{{.Names}} {{.State}} {{.Command}}").split("\n")[0] == (
        'life created "sleep 60"'
    )
    assert _names(api) == []  # not running: only with -a

    assert api.docker_ok("start", "life").strip() == "life"
    assert api.docker_ok("inspect", "-f", "{{.State.Status}} {{.State.Running}}", cid[:12]).strip() == "running true"
    assert _names(api) == ["life"]
    status = api.docker_ok("ps", "--format", "{{.Status}}").strip()
    assert status.startswith("Up ")
    top = api.docker_ok("top", "life")
    assert top.split("\n")[0].split()[:3] == ["UID", "PID", "PPID"]
    assert "sleep 60" in top

    api.docker_ok("pause", "life")
    assert api.docker_ok("inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "life").strip() == "paused true"
    assert "(Paused)" in api.docker_ok("ps", "--format", "{{.Status}}")
    api.docker_ok("unpause", "life")
    assert api.docker_ok("inspect", "-f", "{{.State.Paused}}", "life").strip() == "false"

    # sleep as PID 1 ignores SIGTERM: the KILL after -t ends it.
    api.docker_ok("stop", "-t", "1", "life")
    assert api.docker_ok("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "life").strip() == "exited 137"
    assert api.docker_ok("wait", "life").strip() == "137"
    assert api.docker_ok("ps", "-a", "--format", "{{.Status}}").startswith("Exited (137) ")
    api.docker_ok("rm", "life")
    assert _names(api, "-a") == []
    assert api.cli.ok("ps", "-a", "-q") == ""


def test_run_detached_kill_by_name_and_number_restart(api: Api, bb: str) -> None:
    script = "trap 'exit 3' USR1; while true; do sleep 0.1; done"
    cid = api.docker_ok("run", "-d", "--name", "kk", bb, "sh", "-c", script).strip()
    assert api.docker_ok("inspect", "-f", "{{.Id}} {{.State.Running}}", "kk").strip() == f"{cid} true"
    started = api.docker_ok("inspect", "-f", "{{.State.StartedAt}}", "kk").strip()
    api.docker_ok("restart", "-t", "1", "kk")
    assert api.docker_ok("inspect", "-f", "{{.State.Running}}", "kk").strip() == "true"
    assert api.docker_ok("inspect", "-f", "{{.State.StartedAt}}", "kk").strip() != started
    api.docker_ok("kill", "-s", "USR1", "kk")
    assert api.docker_ok("wait", "kk").strip() == "3"
    api.docker_ok("start", "kk")
    api.docker_ok("kill", "-s", "9", "kk")
    assert api.docker_ok("wait", "kk").strip() == "137"
    failed = api.docker("kill", "kk")
    assert failed.returncode != 0 and b"not running" in failed.stderr
    api.docker_ok("rm", "kk")


def test_run_rm_detached_is_removed_after_it_exits(api: Api, bb: str) -> None:
    cid = api.docker_ok("run", "-d", "--rm", "--name", "gone", bb, "sh", "-c", "sleep 1").strip()
    assert api.docker_ok("inspect", "-f", "{{.HostConfig.AutoRemove}}", cid).strip() == "true"
    wait_for(lambda: _gone(api, cid), 30, "the --rm container to be removed")
    assert _names(api, "-a") == []
    assert api.cli.ok("ps", "-a", "-q") == ""


def test_rm_of_a_running_container_needs_force_and_v_removes_its_volumes(api: Api, bb: str) -> None:
    api.docker_ok("run", "-d", "--name", "vol", "-v", "/data", bb, "sleep", "60")
    volume = api.docker_ok("inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", "vol").strip()
    assert volume in api.cli.ok("volume", "ls", "-q").split()
    refused = api.docker("rm", "vol")
    assert refused.returncode == 1
    assert b"running" in refused.stderr
    status, _, body = api.request("DELETE", "/containers/vol")
    assert status == 409 and "running" in json.loads(body)["message"]
    assert api.docker_ok("rm", "-f", "-v", "vol").strip() == "vol"
    assert _gone(api, "vol")
    assert volume not in api.cli.ok("volume", "ls", "-q").split()


def test_rename_and_names_in_use(api: Api, bb: str) -> None:
    api.docker_ok("create", "--name", "aa", bb, "true")
    api.docker_ok("create", "--name", "bb", bb, "true")
    api.docker_ok("rename", "aa", "cc")
    assert _names(api, "-a") == ["bb", "cc"]
    refused = api.docker("create", "--name", "bb", bb, "true")
    assert refused.returncode != 0 and b"already in use" in refused.stderr
    status, _, body = api.request("POST", "/v1.41/containers/create?name=cc", {"Image": bb, "Cmd": ["true"]})
    assert status == 409 and "already in use" in json.loads(body)["message"]
    status, _, body = api.request("POST", "/containers/cc/rename?name=bb")
    assert status == 409
    status, _, body = api.request("POST", "/containers/cc/rename")
    assert status == 400
    api.docker_ok("rm", "bb", "cc")


def test_ps_filters_format_limit_and_size(api: Api, bb: str) -> None:
    api.docker_ok("create", "--name", "one", "-l", "tier=web", bb, "true")
    api.docker_ok("run", "-d", "--name", "two", "-l", "tier=db", bb, "sleep", "60")
    api.docker_ok("run", "-d", "--name", "three", bb, "sh", "-c", "exit 4")
    assert api.docker_ok("wait", "three").strip() == "4"
    assert _names(api, "-a", "--filter", "label=tier") == ["one", "two"]
    assert _names(api, "-a", "--filter", "label=tier=db") == ["two"]
    assert _names(api, "--filter", "status=exited") == ["three"]
    assert _names(api, "-a", "--filter", "exited=4") == ["three"]
    assert _names(api, "-a", "--filter", "name=tw") == ["two"]
    assert _names(api, "-a", "--filter", "status=created") == ["one"]
    assert _names(api) == ["two"]
    assert api.docker_ok("ps", "-a", "-n", "1", "--format", "{{.Names}}").strip() == "three"
    assert api.docker_ok("ps", "-a", "--format", '{{.Label "tier"}}', "--filter", "name=one").strip() == "web"
    sizes = api.docker_ok("ps", "-s", "--format", "{{.Size}}").strip()
    assert "virtual" in sizes
    listed = api.json("GET", "/containers/json?all=1&size=1", expect=200)
    by_name = {c["Names"][0]: c for c in listed}
    assert set(by_name) == {"/one", "/two", "/three"}
    two = by_name["/two"]
    assert two["State"] == "running" and two["Command"] == "sleep 60" and two["Labels"] == {"tier": "db"}
    assert two["Image"] == bb and two["ImageID"].startswith("sha256:")
    assert isinstance(two["Created"], int) and abs(two["Created"] - time.time()) < 120
    assert two["HostConfig"] == {"NetworkMode": "bridge"}
    assert two["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    assert two["SizeRw"] >= 0 and two["SizeRootFs"] > two["SizeRw"]
    assert by_name["/three"]["Status"].startswith("Exited (4) ")
    assert "SizeRw" not in api.json("GET", "/containers/json", expect=200)[0]
    status, _, body = api.request("GET", '/containers/json?filters={"colour":["red"]}')
    assert status == 400
    api.docker_ok("rm", "-f", "one", "two", "three")


def test_diff_and_export(api: Api, bb: str, tmp_path: Path) -> None:
    api.docker_ok("run", "-d", "--name", "fs", bb, "sh", "-c", "echo hi > /new && rm /bin/true")
    api.docker_ok("wait", "fs")
    diff = api.docker_ok("diff", "fs").splitlines()
    assert "A /new" in diff and "D /bin/true" in diff and "C /bin" in diff
    kinds = {c["Path"]: c["Kind"] for c in api.json("GET", "/containers/fs/changes", expect=200)}
    assert (kinds["/new"], kinds["/bin/true"], kinds["/bin"]) == (1, 2, 0)
    out = tmp_path / "fs.tar"
    api.docker_ok("export", "-o", str(out), "fs")
    with tarfile.open(out) as tar:
        names = tar.getnames()
        assert "new" in names and "bin/sh" in names and "bin/true" not in names
        new = tar.extractfile("new")
        assert new is not None and new.read() == b"hi\n"
    # Clients that leave mid-stream cost nothing: the export ends, the container is free to go.
    for _ in range(3):
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(api.sock))
            client.sendall(b"GET /containers/fs/export HTTP/1.1\r\nHost: docker\r\n\r\n")
            assert client.recv(64).startswith(b"HTTP/1.1 200")
    api.docker_ok("rm", "fs")


def test_prune_removes_stopped_containers_only(api: Api, bb: str) -> None:
    first = api.docker_ok("create", "--name", "p1", bb, "true").strip()
    second = api.docker_ok("run", "-d", "--name", "p2", "-l", "keep=1", bb, "true").strip()
    api.docker_ok("wait", "p2")
    api.docker_ok("run", "-d", "--name", "p3", bb, "sleep", "60")
    report = api.json("POST", '/containers/prune?filters={"label!":["keep"]}', expect=200)
    assert report["ContainersDeleted"] == [first] and report["SpaceReclaimed"] > 0
    out = api.docker_ok("container", "prune", "-f")
    assert second in out and "Total reclaimed space" in out
    assert _names(api, "-a") == ["p3"]
    assert api.json("POST", "/containers/prune", expect=200) == {"ContainersDeleted": None, "SpaceReclaimed": 0}
    api.docker_ok("rm", "-f", "p3")


def test_the_cli_and_the_api_see_the_same_containers(api: Api, bb: str) -> None:
    api.cli.ok("create", "--name", "from-cli", bb, "sleep", "60")
    api.docker_ok("create", "--name", "from-api", bb, "sleep", "60")
    assert "from-api" in api.cli.ok("ps", "-a", "--format", "{{.Names}}").split()
    assert _names(api, "-a") == ["from-api", "from-cli"]
    api.cli.ok("start", "from-api")
    api.docker_ok("start", "from-cli")
    assert sorted(api.cli.ok("ps", "--format", "{{.Names}}").split()) == ["from-api", "from-cli"]
    assert _names(api) == ["from-api", "from-cli"]
    assert api.cli.ok("inspect", "-f", "{{.Config.Cmd}}", "from-api").strip() == "[sleep 60]"
    api.cli.ok("rm", "-f", "from-api")
    api.docker_ok("rm", "-f", "from-cli")
    assert api.cli.ok("ps", "-a", "-q") == ""


# --- the same flags through both front ends --------------------------------------------

_FLAGS = (
    "-p", "8080:80", "-p", "127.0.0.1::81/udp", "--expose", "90",
    "--restart", "on-failure:3", "--cap-add", "NET_ADMIN", "--cap-drop", "MKNOD",
    "--memory", "64m", "--memory-swap", "128m", "--cpus", "0.5", "--cpu-shares", "512", "--pids-limit", "50",
    "--dns", "1.1.1.1", "--dns-search", "example.org", "--dns-option", "ndots:2", "--add-host", "db:10.1.2.3",
    "--tmpfs", "/run:size=1m", "-v", "vol1:/data:ro", "--mount", "type=bind,source=/tmp,target=/host-tmp",
    "-v", "/anon",
    "--ulimit", "nofile=100:200", "--shm-size", "1m", "--read-only", "--security-opt", "no-new-privileges",
    "--sysctl", "net.ipv4.ip_forward=1", "--group-add", "10", "--log-opt", "max-size=1m",
    "--health-cmd", "true", "--health-interval", "5s", "--health-retries", "2",
    "--stop-signal", "SIGUSR1", "--stop-timeout", "5", "-u", "1:2", "-h", "host1",
    "-e", "X=1", "-l", "a=b", "-w", "/data", "-t", "-i",
    "--entrypoint", "/bin/sh", bb_placeholder := "IMAGE", "-c", "sleep 1",
)  # fmt: skip


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    host = dict(doc["HostConfig"])
    host["Mounts"] = [dict(m, Source="" if m["Type"] == "volume" and m["Target"] == "/anon" else m["Source"])
                      for m in host.get("Mounts", [])]  # fmt: skip
    config = dict(doc["Config"])
    config.pop("Hostname")
    return {"Config": config, "HostConfig": host}


def test_create_translates_every_flag_as_the_cli_does(api: Api, bb: str) -> None:
    flags = [bb if f == bb_placeholder else f for f in _FLAGS]
    api.cli.ok("create", "--name", "by-cli", *flags)
    api.docker_ok("create", "--name", "by-api", *flags)
    by_cli, by_api = (json.loads(api.cli.ok("inspect", name))[0] for name in ("by-cli", "by-api"))
    a, c = _comparable(by_api), _comparable(by_cli)
    for part in ("Config", "HostConfig"):
        for key in sorted(set(a[part]) | set(c[part])):
            assert a[part].get(key) == c[part].get(key), (part, key)
    host = by_api["HostConfig"]
    assert host["PortBindings"]["80/tcp"] == [{"HostIp": "", "HostPort": "8080"}]
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (64 << 20, 500_000_000, 50)
    assert by_api["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
    assert by_api["Config"]["Entrypoint"] == ["/bin/sh"] and by_api["Config"]["Cmd"] == ["-c", "sleep 1"]
    api.docker_ok("rm", "-v", "by-api")
    api.cli.ok("rm", "-v", "by-cli")
    api.cli.ok("volume", "rm", "vol1")


def test_network_aliases_and_ip_on_a_user_network(api: Api, bb: str) -> None:
    api.cli.ok("network", "create", "--subnet", "10.251.7.0/24", "apinet")
    try:
        api.docker_ok(
            "run", "-d", "--name", "n1", "--network", "apinet", "--ip", "10.251.7.9", "--network-alias", "db", bb,
            "sleep", "60",
        )  # fmt: skip
        doc = _inspect(api, "n1")
        entry = doc["NetworkSettings"]["Networks"]["apinet"]
        assert entry["IPAddress"] == "10.251.7.9" and "db" in entry["Aliases"]
        listed = api.json("GET", '/containers/json?filters={"network":["apinet"]}', expect=200)
        assert [c["Names"] for c in listed] == [["/n1"]]
        assert listed[0]["NetworkSettings"]["Networks"]["apinet"]["IPAddress"] == "10.251.7.9"
        status, _, body = api.request(
            "POST",
            "/containers/create",
            {"Image": bb, "Cmd": ["true"], "NetworkingConfig": {"EndpointsConfig": {"apinet": {}, "bridge": {}}}},
        )
        assert status == 400 and b"cannot be connected to network endpoints" in body
        api.docker_ok("rm", "-f", "n1")
    finally:
        api.cli("network", "rm", "apinet")


# --- raw HTTP: status codes and messages ----------------------------------------------


def test_unknown_containers_are_404(api: Api, bb: str) -> None:
    for method, path in (
        ("GET", "/containers/nosuch/json"),
        ("POST", "/containers/nosuch/start"),
        ("POST", "/v1.41/containers/nosuch/stop"),
        ("POST", "/containers/nosuch/wait"),
        ("DELETE", "/containers/nosuch"),
        ("GET", "/containers/nosuch/top"),
    ):
        status, _, body = api.request(method, path)
        assert (status, json.loads(body)) == (404, {"message": "No such container: nosuch"}), (method, path)
    failed = api.docker("inspect", "nosuch")
    assert failed.returncode == 1 and b"No such" in failed.stderr


def test_start_and_stop_answer_304_when_there_is_nothing_to_do(api: Api, bb: str) -> None:
    created = api.json("POST", "/containers/create?name=ss", {"Image": bb, "Cmd": ["sleep", "60"]}, expect=201)
    assert set(created) == {"Id", "Warnings"} and created["Warnings"] == []
    assert api.request("POST", "/containers/ss/stop")[0] == 304
    assert api.request("POST", f"/containers/{created['Id'][:10]}/start")[0] == 204
    assert api.request("POST", "/containers/ss/start")[0] == 304
    assert api.request("POST", "/containers/ss/kill?signal=SIGKILL")[0] == 204
    assert api.request("POST", "/containers/ss/stop")[0] == 304
    status, _, body = api.request("POST", "/containers/ss/kill")
    assert status == 409
    assert api.request("DELETE", "/containers/ss?force=1")[0] == 204


def test_create_refuses_what_the_cli_refuses_with_its_message(api: Api, bb: str) -> None:
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}, ["--restart", "sometimes"]),
        ({"HostConfig": {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}}}, ["--restart", "always:2"]),
        ({"HostConfig": {"CapAdd": ["NOT_A_CAP"]}}, ["--cap-add", "NOT_A_CAP"]),
        ({"HostConfig": {"Binds": ["relative:dir"]}}, ["-v", "relative:dir"]),
        ({"HostConfig": {"NetworkMode": "nosuchnet"}}, ["--network", "nosuchnet"]),
        ({"HostConfig": {"LogConfig": {"Type": "syslog"}}}, ["--log-driver", "syslog"]),
        ({"HostConfig": {"AutoRemove": True, "RestartPolicy": {"Name": "always"}}}, ["--rm", "--restart", "always"]),
        ({"WorkingDir": "relative"}, ["-w", "relative"]),
    ]
    for extra, flags in cases:
        body = {"Image": bb, "Cmd": ["true"], **extra}
        status, _, answer = api.request("POST", "/containers/create", body)
        cli = api.cli("create", *flags, bb, "true")
        assert cli.returncode != 0
        message = json.loads(answer)["message"]
        assert status in (400, 404), (extra, status, message)
        assert message in cli.stderr.decode(), (extra, message, cli.stderr)
    assert api.cli.ok("ps", "-a", "-q") == ""


def test_create_bad_bodies_and_missing_images(api: Api, bb: str) -> None:
    status, _, body = api.request("POST", "/containers/create", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and "invalid JSON" in json.loads(body)["message"]
    status, _, body = api.request("POST", "/containers/create", {"Image": bb, "HostConfig": {"CpuQuota": 5000}})
    assert status == 400 and json.loads(body)["message"] == (
        "HostConfig.CpuQuota is not supported by overlayctl (it has no such option)"
    )
    status, _, body = api.request("POST", "/containers/create", {"Cmd": ["true"]})
    assert status == 400
    status, _, body = api.request("POST", "/containers/create", {"Image": "nosuch", "Cmd": ["true"]})
    assert (status, json.loads(body)) == (404, {"message": "No such image: nosuch:latest"})
    # The docker CLI answers a 404 by pulling, as it does against dockerd.
    failed = api.docker("create", "nosuch:1", "true")
    assert failed.returncode != 0 and b"Unable to find image 'nosuch:1' locally" in failed.stderr
    # Docker's zero values are "not given".
    zeros = {
        "Image": bb, "Cmd": ["true"], "Entrypoint": None, "Env": [], "Volumes": {}, "Labels": {},
        "ExposedPorts": {}, "Domainname": "", "StopTimeout": None,
        "HostConfig": {
            "Binds": None, "Links": [], "VolumesFrom": [], "NetworkMode": "default", "PortBindings": {},
            "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}, "LogConfig": {"Type": "", "Config": {}},
            "CpuQuota": 0, "MemorySwappiness": None, "PidsLimit": None, "Isolation": "", "ConsoleSize": [0, 0],
            "CgroupnsMode": "", "Ulimits": None, "Devices": [], "Dns": [], "DnsOptions": [], "DnsSearch": [],
        },
        "NetworkingConfig": {"EndpointsConfig": {}},
    }  # fmt: skip
    created = api.json("POST", "/containers/create", zeros, expect=201)
    api.docker_ok("rm", created["Id"])


def test_wait_next_exit_waits_through_a_later_start(api: Api, bb: str) -> None:
    cid = api.json("POST", "/containers/create", {"Image": bb, "Cmd": ["sh", "-c", "exit 7"]}, expect=201)["Id"]
    assert api.json("POST", f"/containers/{cid}/wait?condition=not-running", expect=200) == {
        "StatusCode": 0,
        "Error": None,
    }
    results: list[Any] = []
    waiter = threading.Thread(
        target=lambda: results.append(api.json("POST", f"/containers/{cid}/wait?condition=next-exit"))
    )
    waiter.start()
    time.sleep(0.5)
    assert waiter.is_alive()  # nothing has run yet
    assert api.request("POST", f"/containers/{cid}/start")[0] == 204
    waiter.join(30)
    assert results == [{"StatusCode": 7, "Error": None}]
    assert api.json("POST", f"/containers/{cid}/wait", expect=200)["StatusCode"] == 7
    status, _, _ = api.request("POST", f"/containers/{cid}/wait?condition=sometime")
    assert status == 400
    api.docker_ok("rm", cid)


def test_wait_removed_answers_once_an_auto_remove_container_is_gone(api: Api, bb: str) -> None:
    body = {"Image": bb, "Cmd": ["sh", "-c", "sleep 0.5; exit 5"], "HostConfig": {"AutoRemove": True}}
    cid = api.json("POST", "/containers/create", body, expect=201)["Id"]
    results: list[Any] = []
    waiter = threading.Thread(
        target=lambda: results.append(api.json("POST", f"/containers/{cid}/wait?condition=removed"))
    )
    waiter.start()
    assert api.request("POST", f"/containers/{cid}/start")[0] == 204
    waiter.join(30)
    assert results == [{"StatusCode": 5, "Error": None}]
    assert _gone(api, cid)


def test_a_client_that_leaves_a_wait_costs_nothing(api: Api, bb: str) -> None:
    cid = api.json("POST", "/containers/create", {"Image": bb, "Cmd": ["true"]}, expect=201)["Id"]
    for _ in range(12):  # more than the service's worker threads
        try:
            api.request("POST", f"/containers/{cid}/wait?condition=next-exit", timeout=0.2)
        except OSError:
            pass
    assert api.json("GET", f"/containers/{cid}/json", expect=200)["Id"] == cid
    api.docker_ok("rm", cid)


def test_export_of_a_running_container_is_refused(api: Api, bb: str) -> None:
    api.docker_ok("run", "-d", "--name", "busy", bb, "sleep", "60")
    status, headers, body = api.request("GET", "/containers/busy/export")
    assert status == 409 and headers["content-type"].startswith("application/json")
    assert "running" in json.loads(body)["message"]
    top = api.json("GET", "/containers/busy/top", expect=200)
    assert top["Titles"][:2] == ["UID", "PID"] and any("sleep 60" in " ".join(p) for p in top["Processes"])
    assert api.request("GET", "/containers/busy/top?ps_args=aux")[0] == 400
    api.docker_ok("rm", "-f", "busy")


def test_a_seccomp_profile_file_and_a_command_that_cannot_run(api: Api, bb: str, tmp_path: Path) -> None:
    # The docker CLI sends the profile's content; the container gets that profile.
    profile = tmp_path / "no-mkdir.json"
    rules = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }
    profile.write_text(json.dumps(rules))
    api.docker_ok("run", "-d", "--name", "sec", "--security-opt", f"seccomp={profile}", bb, "mkdir", "/x")
    assert api.docker_ok("wait", "sec").strip() == "1"
    api.docker_ok("run", "-d", "--name", "plain", bb, "mkdir", "/x")
    assert api.docker_ok("wait", "plain").strip() == "0"
    failed = api.docker("run", "-d", "--name", "bad", bb, "nosuchcmd")
    assert failed.returncode == 127 and b"nosuchcmd" in failed.stderr
    status, _, body = api.request("POST", "/containers/bad/start")
    assert status == 400 and "executable file not found" in json.loads(body)["message"]
    api.docker_ok("rm", "sec", "plain", "bad")


def test_a_compose_style_body(api: Api, bb: str) -> None:
    """What docker-py and docker-compose send: every bind's target in
    Config.Volumes too, an exec-form healthcheck in nanoseconds, a
    multi-word entrypoint, filters by label."""
    body = {
        "Image": bb,
        "Entrypoint": ["sh", "-c"],
        "Cmd": ["echo $0 && sleep 60", "arg0"],
        "Volumes": {"/data": {}, "/anon": {}},
        "Labels": {"com.docker.compose.project": "proj", "com.docker.compose.service": "web"},
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1_000_000_000, "Retries": 2},
        "HostConfig": {
            "Binds": ["projvol:/data:rw"],
            "NetworkMode": "default",
            "Links": [],
            "VolumesFrom": [],
            "LogConfig": {"Type": "", "Config": {}},
            "PortBindings": {},
            "RestartPolicy": {"Name": "", "MaximumRetryCount": 0},
        },
        "NetworkingConfig": {"EndpointsConfig": {}},
    }
    cid = api.json("POST", "/containers/create?name=proj_web_1", body, expect=201)["Id"]
    doc = api.json("GET", "/containers/proj_web_1/json", expect=200)
    mounts = {m["Destination"]: m for m in doc["Mounts"]}
    assert set(mounts) == {"/data", "/anon"}
    assert mounts["/data"]["Name"] == "projvol" and mounts["/anon"]["Type"] == "volume"
    assert doc["Config"]["Entrypoint"] == ["sh", "-c"] and doc["Path"] == "sh"
    assert doc["Config"]["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 1_000_000_000, "Retries": 2}
    wanted = '{"label":["com.docker.compose.project=proj","com.docker.compose.service=web"]}'
    listed = api.json("GET", f"/containers/json?all=1&filters={wanted}", expect=200)
    assert [c["Id"] for c in listed] == [cid]
    assert sorted(m["Destination"] for m in listed[0]["Mounts"]) == ["/anon", "/data"]
    assert api.request("POST", f"/containers/{cid}/start")[0] == 204
    health = wait_for(
        lambda: api.json("GET", f"/containers/{cid}/json")["State"].get("Health", {}).get("Status") == "healthy",
        30,
        "the exec-form healthcheck to pass",
    )
    assert health
    assert api.request("DELETE", f"/containers/{cid}?force=1&v=1")[0] == 204
    api.cli.ok("volume", "rm", "projvol")


def test_published_ports_platform_and_inspect_size(api: Api, bb: str) -> None:
    api.docker_ok("run", "-d", "--name", "web", "-p", "127.0.0.1:38471:80", "--expose", "90", bb, "sleep", "60")
    ports = api.docker_ok("ps", "--format", "{{.Ports}}").strip()
    assert "127.0.0.1:38471->80/tcp" in ports and "90/tcp" in ports
    (listed,) = api.json("GET", "/containers/json", expect=200)
    assert {"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": 38471, "Type": "tcp"} in listed["Ports"]
    assert {"PrivatePort": 90, "Type": "tcp"} in listed["Ports"]
    assert api.docker_ok("port", "web", "80").strip() == "127.0.0.1:38471"
    sized = api.json("GET", "/containers/web/json?size=1", expect=200)
    assert sized["SizeRw"] >= 0 and sized["SizeRootFs"] > sized["SizeRw"]
    assert "SizeRw" not in api.json("GET", "/containers/web/json", expect=200)
    api.docker_ok("rm", "-f", "web")
    wrong = api.docker("create", "--platform", "linux/s390x", bb, "true")
    cli = api.cli("create", "--platform", "linux/s390x", bb, "true")
    assert wrong.returncode != 0 and cli.returncode != 0
    status, _, body = api.request("POST", "/containers/create?platform=linux/s390x", {"Image": bb, "Cmd": ["true"]})
    assert status == 400 and json.loads(body)["message"] in cli.stderr.decode()
    assert _names(api, "-a") == []


def test_malformed_bodies_are_400s_never_500s(api: Api, bb: str) -> None:
    bodies: list[Any] = [
        [],
        "text",
        {"Image": 5},
        {"Image": bb, "Cmd": 5},
        {"Image": bb, "Cmd": [1, 2]},
        {"Image": bb, "Cmd": ["true"], "Env": [None]},
        {"Image": bb, "Cmd": ["true"], "User": 0},
        {"Image": bb, "Cmd": ["true"], "WorkingDir": ["/"]},
        {"Image": bb, "Cmd": ["true"], "Labels": ["a=b"]},
        {"Image": bb, "Cmd": ["true"], "StopTimeout": "5"},
        {"Image": bb, "Cmd": ["true"], "Healthcheck": {"Test": ["SOMETIMES"]}},
        {"Image": bb, "Cmd": ["true"], "ExposedPorts": {"http": {}}},
        {"Image": bb, "Cmd": ["true"], "HostConfig": "bridge"},
        {"Image": bb, "Cmd": ["true"], "HostConfig": {"Memory": "lots"}},
        {"Image": bb, "Cmd": ["true"], "HostConfig": {"Memory": -5}},
        {"Image": bb, "Cmd": ["true"], "HostConfig": {"PortBindings": {"80/tcp": "8080"}}},
        {"Image": bb, "Cmd": ["true"], "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "99999"}]}}},
        {"Image": bb, "Cmd": ["true"], "HostConfig": {"Binds": ["a"]}},
        {"Image": bb, "Cmd": ["true"], "HostConfig": {"Mounts": [{"Type": "nfs", "Target": "/x"}]}},
        {"Image": bb, "Cmd": ["true"], "HostConfig": {"Mounts": ["type=bind"]}},
        {"Image": bb, "Cmd": ["true"], "HostConfig": {"Tmpfs": {"relative": ""}}},
        {"Image": bb, "Cmd": ["true"], "HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": "x"}]}},
        {"Image": bb, "Cmd": ["true"], "HostConfig": {"Devices": [{"PathOnHost": "relative"}]}},
        {"Image": bb, "Cmd": ["true"], "HostConfig": {"Sysctls": {"kernel.hostname": "x"}}},
        {"Image": bb, "Cmd": ["true"], "HostConfig": {"RestartPolicy": {"Name": 5}}},
        {"Image": bb, "Cmd": ["true"], "HostConfig": {"NanoCpus": 1.5}},
        {"Image": bb, "Cmd": ["true"], "HostConfig": {"SecurityOpt": ["apparmor=x"]}},
        {"Image": bb, "Cmd": ["true"], "NetworkingConfig": {"EndpointsConfig": {"bridge": {"IPAMConfig": []}}}},
    ]
    for body in bodies:
        status, headers, answer = api.request("POST", "/containers/create", body)
        assert status == 400, (body, status, answer)
        assert headers["content-type"].startswith("application/json")
        message = json.loads(answer)["message"]
        assert message and "\n" not in message and "Traceback" not in message, (body, message)
    assert api.cli.ok("ps", "-a", "-q") == ""


def test_links_on_a_user_network_are_accepted_with_a_warning(api: Api, bb: str) -> None:
    # docker-compose sends Links for `run`: on a user-defined network the
    # names resolve already; on the default bridge there are no names.
    status, _, body = api.request(
        "POST", "/v1.41/containers/create", {"Image": "bb:1", "HostConfig": {"Links": ["a:b"]}}
    )
    assert status == 400 and b"user-defined network" in body
    api.cli.ok("network", "create", "linknet")
    try:
        created = api.json(
            "POST",
            "/v1.41/containers/create",
            {
                "Image": "bb:1",
                "Cmd": ["true"],
                "HostConfig": {"NetworkMode": "linknet", "Links": ["/srv:/x/db", "srv"]},
            },
            expect=201,
        )
        assert len(created["Warnings"]) == 1 and "db (for srv)" in created["Warnings"][0]
        api.cli.ok("rm", created["Id"])
    finally:
        api.cli.ok("network", "rm", "linknet")

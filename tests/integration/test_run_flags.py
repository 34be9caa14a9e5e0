"""`run`'s process and namespace flags on the real kernel: --init (tini as
PID 1), --ulimit, --shm-size, --group-add, --sysctl, --ipc, --pid,
--oom-score-adj, --cidfile, --pull, --platform; each seen from inside the
container, and each bad value refused with one line, exit 125, nothing made."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest


def _host_config(cli, name: str) -> dict:
    return json.loads(cli.ok("inspect", name))[0]["HostConfig"]


def _states(cli, name: str) -> dict[str, str]:
    """pid -> state letter of every process in a running container."""
    out = cli.ok("exec", name, "sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null")
    states = {}
    for line in out.splitlines():
        pid, _, rest = line.partition(" (")
        states[pid] = rest.rpartition(") ")[2].split()[0]
    return states


# --- --init -------------------------------------------------------------------


ORPHAN = 'sh -c "sleep 1 &"; exec sleep 60'  # the orphan's parent exits; PID 1 becomes its parent


@pytest.mark.slow
def test_init_reaps_an_orphan_that_sleep_as_pid1_leaves_a_zombie(cli, bb):
    cli.ok("run", "-d", "--name", "bare", "--network", "none", "bb:1", "sh", "-c", ORPHAN)
    cli.ok("run", "-d", "--name", "tini", "--network", "none", "--init", "bb:1", "sh", "-c", ORPHAN)
    time.sleep(2.5)  # the orphan has exited by now
    bare, tini = _states(cli, "bare"), _states(cli, "tini")
    assert "Z" in bare.values(), bare  # sleep, PID 1, never waits: the orphan stays a zombie
    assert "Z" not in tini.values(), tini
    with open(f"/proc/{json.loads(cli.ok('inspect', 'tini'))[0]['State']['Pid']}/comm") as f:
        assert f.read().strip() == "docker-init"
    assert _host_config(cli, "tini")["Init"] is True
    assert "Init" not in _host_config(cli, "bare")


@pytest.mark.slow
def test_stop_ends_sleep_at_once_with_init_and_only_by_sigkill_without(cli, bb):
    # PID 1 gets no default action for SIGTERM from the kernel: `sleep` as
    # PID 1 ignores it, and `stop` has to wait for its SIGKILL.
    cli.ok("run", "-d", "--name", "bare", "--network", "none", "bb:1", "sleep", "600")
    cli.ok("run", "-d", "--name", "tini", "--network", "none", "--init", "bb:1", "sleep", "600")
    started = time.monotonic()
    cli.ok("stop", "-t", "3", "tini")
    assert time.monotonic() - started < 2.5
    started = time.monotonic()
    cli.ok("stop", "-t", "3", "bare")
    assert time.monotonic() - started >= 3
    codes = {n: json.loads(cli.ok("inspect", n))[0]["State"]["ExitCode"] for n in ("tini", "bare")}
    assert codes == {"tini": 128 + 15, "bare": 128 + 9}


@pytest.mark.slow
def test_ctrl_c_ends_a_foreground_run_with_init(cli, bb):
    def start(*extra: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            cli.argv("run", "--name", extra[0], *extra[1:], "--network", "none", "bb:1", "sh", "-c",
                     "echo up; exec sleep 60"),
            stdout=subprocess.PIPE,
            env=cli.env,
        )
        assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
        return proc

    tini = start("tini", "--init")
    tini.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends the foreground run
    assert tini.wait(timeout=10) == 128 + 2
    bare = start("bare")
    bare.send_signal(signal.SIGINT)
    with pytest.raises(subprocess.TimeoutExpired):
        bare.wait(timeout=2)
    cli.ok("kill", "bare")
    assert bare.wait(timeout=10) == 128 + 9
    for proc in (tini, bare):
        assert proc.stdout is not None
        proc.stdout.close()


def test_init_path_and_the_init_in_the_container(cli, bb, tmp_path):
    script = "tr '\\0' ' ' < /proc/1/cmdline; echo; echo > /sbin/docker-init || echo read-only"
    out = cli.ok("run", "--rm", "--network", "none", "--init", "--init-path", "/usr/bin/tini-static", "bb:1",
                 "sh", "-c", script)
    assert out.splitlines() == [f"/sbin/docker-init -- sh -c {script} ", "read-only"]
    bad = cli("run", "--rm", "--init", "--init-path", str(tmp_path / "nothing"), "bb:1", "true")
    assert bad.returncode == 125 and bad.stderr.count(b"\n") == 1, bad.stderr
    alone = cli("run", "--rm", "--init-path", "/usr/bin/tini-static", "bb:1", "true")
    assert alone.returncode == 125 and b"--init-path needs --init" in alone.stderr


# --- limits and identity ------------------------------------------------------


def test_ulimit_is_set_in_pid1(cli, bb):
    # (Values under the host's hard limits: raising one needs CAP_SYS_RESOURCE, which a host may lack.)
    out = cli.ok("run", "--rm", "--network", "none", "--ulimit", "nofile=1024:2048", "--ulimit", "nproc=77",
                 "bb:1", "sh", "-c", "ulimit -n; ulimit -Hn; ulimit -u; ulimit -Hu")
    assert out.split() == ["1024", "2048", "77", "77"]
    cli.ok("create", "--name", "lim", "--ulimit", "core=0", "--ulimit", "core=5:10", "bb:1", "true")
    assert _host_config(cli, "lim")["Ulimits"] == [{"Name": "core", "Hard": 10, "Soft": 5}]


def test_shm_size(cli, bb):
    out = cli.ok("run", "--rm", "--network", "none", "--shm-size", "32m", "bb:1", "df", "-k", "/dev/shm")
    assert out.splitlines()[1].split()[1] == "32768"
    default = cli.ok("run", "--rm", "--network", "none", "bb:1", "df", "-k", "/dev/shm")
    assert default.splitlines()[1].split()[1] == "65536"


def test_group_add_by_name_and_gid(cli, bb):
    out = cli.ok("run", "--rm", "--network", "none", "-u", "1000", "--group-add", "nogroup", "--group-add", "4242",
                 "bb:1", "id", "-G")
    assert sorted(out.split()) == ["0", "4242", "65534"]
    missing = cli("run", "--rm", "--network", "none", "--group-add", "nosuchgroup", "bb:1", "true")
    assert missing.returncode == 125 and b"unable to find group nosuchgroup" in missing.stderr


def test_oom_score_adj(cli, bb):
    assert cli.ok("run", "--rm", "--network", "none", "--oom-score-adj", "500", "bb:1",
                  "cat", "/proc/1/oom_score_adj").strip() == "500"


def test_sysctls_are_set_in_the_containers_namespaces_only(cli, bb):
    with open("/proc/sys/kernel/shmmni") as f:
        host_shmmni = f.read()
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        host_port = f.read()
    out = cli.ok("run", "--rm", "--network", "none", "--sysctl", "net.ipv4.ip_unprivileged_port_start=99",
                 "--sysctl", "kernel.shmmni=1234", "bb:1",
                 "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start", "/proc/sys/kernel/shmmni")
    assert out.split() == ["99", "1234"]
    with open("/proc/sys/kernel/shmmni") as f:
        assert f.read() == host_shmmni
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        assert f.read() == host_port
    # On the default bridge, after eth0 exists.
    assert cli.ok("run", "--rm", "--sysctl", "net.ipv4.conf.eth0.forwarding=1", "bb:1",
                  "cat", "/proc/sys/net/ipv4/conf/eth0/forwarding").strip() == "1"


# --- namespaces ---------------------------------------------------------------


def _ns(cli, name: str, kind: str) -> str:
    return cli.ok("exec", name, "readlink", f"/proc/1/ns/{kind}").strip()


def test_ipc_modes(cli, bb):
    host_ipc = os.readlink("/proc/self/ns/ipc")
    cli.ok("run", "-d", "--name", "donor", "--network", "none", "--ipc", "shareable", "bb:1", "sh", "-c",
           "echo shared > /dev/shm/note; exec sleep 60")
    cli.ok("run", "-d", "--name", "own", "--network", "none", "bb:1", "sleep", "60")
    time.sleep(0.5)
    donor, own = _ns(cli, "donor", "ipc"), _ns(cli, "own", "ipc")
    assert len({donor, own, host_ipc}) == 3
    out = cli.ok("run", "--rm", "--network", "none", "--ipc", "container:donor", "bb:1", "sh", "-c",
                 "readlink /proc/self/ns/ipc; cat /dev/shm/note")
    assert out.split() == [donor, "shared"]
    refused = cli("run", "--rm", "--network", "none", "--ipc", "container:own", "bb:1", "true")
    assert refused.returncode == 125 and b"non-shareable IPC" in refused.stderr
    assert cli.ok("run", "--rm", "--network", "none", "--ipc", "host", "bb:1",
                  "readlink", "/proc/self/ns/ipc").strip() == host_ipc
    none = cli("run", "--rm", "--network", "none", "--ipc", "none", "bb:1", "sh", "-c",
               "readlink /proc/self/ns/ipc; test -e /dev/shm || echo no-shm")
    assert none.returncode == 0, none.stderr
    ns, note = none.stdout.decode().split()
    assert ns not in (host_ipc, donor, own) and note == "no-shm"
    assert _host_config(cli, "donor")["IpcMode"] == "shareable"
    cli.ok("stop", "-t", "0", "donor")
    stopped = cli("run", "--rm", "--network", "none", "--ipc", "container:donor", "bb:1", "true")
    assert stopped.returncode == 125 and b"cannot join IPC of a non running container: donor" in stopped.stderr


def test_pid_modes(cli, bb):
    cli.ok("run", "-d", "--name", "target", "--network", "none", "bb:1", "sleep", "60")
    time.sleep(0.5)
    out = cli.ok("run", "--rm", "--network", "none", "--pid", "container:target", "bb:1", "sh", "-c",
                 "readlink /proc/self/ns/pid; cat /proc/1/comm")
    assert out.split() == [_ns(cli, "target", "pid"), "sleep"]
    out = cli.ok("run", "--rm", "--network", "none", "--pid", "host", "bb:1", "sh", "-c",
                 "readlink /proc/self/ns/pid; cat /proc/1/comm")
    with open("/proc/1/comm") as f:
        assert out.split() == [os.readlink("/proc/self/ns/pid"), f.read().strip()]
    cli.ok("create", "--name", "later", "--pid", "container:target", "bb:1", "true")
    assert _host_config(cli, "later")["PidMode"] == "container:target"


def test_a_container_in_the_hosts_pid_namespace_is_its_own_processes_only(cli, bb):
    # No PID namespace of its own to find them by, nor to kill them with its
    # first process: its cgroup does both. `pause` must not freeze the host.
    cli.ok("run", "-d", "--name", "onhost", "--network", "none", "--pid", "host", "bb:1", "sh", "-c",
           "sleep 300 & exec sleep 301")
    time.sleep(0.5)
    top = cli.ok("top", "onhost").splitlines()[1:]
    assert sorted(line.split(None, 7)[7] for line in top) == ["sleep 300", "sleep 301"]
    pids = [int(line.split()[1]) for line in top]
    cli.ok("pause", "onhost")
    with open(f"/proc/{pids[0]}/stat") as f:
        assert f.read().rpartition(") ")[2].split()[0] in ("D", "S")  # (frozen tasks sleep)
    assert cli.ok("ps", "-q") != ""  # this process, on the host, is not frozen
    cli.ok("unpause", "onhost")
    cli.ok("stop", "-t", "1", "onhost")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    assert not [pid for pid in pids if _alive(pid)]  # the orphan `sleep 300` too
    # In the foreground, what it leaves would hold its output open: the run
    # ends with its first process all the same.
    started = time.monotonic()
    out = cli.ok("run", "--name", "fg", "--network", "none", "--pid", "host", "bb:1", "sh", "-c",
                 "sleep 302 & echo $! > /tmp/left; cat /tmp/left", timeout=20)
    assert time.monotonic() - started < 5
    assert not _alive(int(out))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(") ")[2].split()[0] != "Z"  # (killed, not yet reaped by its new parent)
    except FileNotFoundError:
        return False


# --- the container's ID, the image ------------------------------------------


def test_cidfile(cli, bb, tmp_path):
    cidfile = tmp_path / "cid"
    cid = cli.ok("create", "--cidfile", str(cidfile), "bb:1", "true").strip()
    assert cidfile.read_text() == cid
    before = cli.ok("ps", "-aq")
    again = cli("run", "--rm", "--cidfile", str(cidfile), "bb:1", "true")
    assert again.returncode == 125
    assert again.stderr.decode() == (
        f"overlayctl: container ID file found, make sure the other container isn't running or delete {cidfile}\n"
    )
    assert cli.ok("ps", "-aq") == before


def test_pull_never_and_platform(cli, bb):
    assert cli.ok("run", "--rm", "--network", "none", "--pull", "never", "--platform", "linux/amd64"
                  if os.uname().machine == "x86_64" else "linux/arm64", "bb:1", "echo", "ok") == "ok\n"
    missing = cli("run", "--rm", "--pull", "never", "nosuch:1", "true")
    assert missing.returncode == 125 and b'"nosuch:1" not found' in missing.stderr
    other = "linux/s390x"
    refused = cli("run", "--rm", "--platform", other, "bb:1", "true")
    assert refused.returncode == 125 and b"is not this host's platform" in refused.stderr


def test_platform_refuses_a_stored_image_of_another_machine(cli, bb):
    # bb:1 loaded again as an arm64 image: its config says so, its files are the same.
    import hashlib
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(cli("save", "--format", "docker-archive", "bb:1").stdout)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]
    manifest = json.loads(files["manifest.json"])
    config = json.loads(files.pop(manifest[0]["Config"]))
    config["architecture"] = "arm64" if os.uname().machine == "x86_64" else "amd64"
    raw = json.dumps(config).encode()
    manifest[0]["Config"], manifest[0]["RepoTags"] = hashlib.sha256(raw).hexdigest() + ".json", ["other:1"]
    files[manifest[0]["Config"]], files["manifest.json"] = raw, json.dumps(manifest).encode()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    cli.ok("load", input=archive.getvalue())
    host = "linux/amd64" if os.uname().machine == "x86_64" else "linux/arm64"
    refused = cli("run", "--rm", "--network", "none", "--platform", host, "other:1", "true")
    assert refused.returncode == 125
    assert refused.stderr.decode().startswith(
        f"overlayctl: image with reference other:1 was found but does not match the specified platform: wanted {host}"
    )
    assert refused.stderr.decode().endswith(f", actual: linux/{config['architecture']}\n")
    assert cli.ok("ps", "-aq") == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ulimit", "nofile=10:5"), b"ulimit soft limit must be less than or equal to hard limit: 10 > 5"),
        (("--ulimit", "bogus=1"), b"invalid ulimit type: bogus"),
        (("--sysctl", "kernel.hostname=x"), b"sysctl 'kernel.hostname=x' is not allowed"),
        (("--network", "host", "--sysctl", "net.ipv4.ip_forward=1"), b"not allowed in host network namespace"),
        (("--ipc", "host", "--sysctl", "kernel.shmmax=1"), b"not allowed with --ipc host"),
        (("--ipc", "bogus"), b"invalid IPC mode: bogus"),
        (("--pid", "bogus"), b"invalid PID mode: bogus"),
        (("--pid", "container:nosuch"), b'container "nosuch" not found'),
        (("--oom-score-adj", "1001"), b"range for oom score adj is [-1000, 1000]"),
        (("--shm-size", "lots"), b'invalid argument "lots" for "--shm-size" flag'),
        (("--pull", "sometimes"), b"invalid pull option: 'sometimes'"),
    ],
)
def test_bad_values_are_refused_before_anything_exists(cli, bb, args, message):
    result = cli("run", "--rm", *args, "bb:1", "true")
    assert result.returncode == 125
    assert message in result.stderr and result.stderr.count(b"\n") == 1, result.stderr
    assert cli.ok("ps", "-aq") == ""


def test_exec_gets_the_containers_ulimits_and_groups(cli, bb):
    cli.ok("run", "-d", "--name", "lim", "--network", "none", "-u", "1000", "--group-add", "nogroup",
           "--ulimit", "nofile=321:456", "bb:1", "sleep", "60")
    out = cli.ok("exec", "lim", "sh", "-c", "id -G; ulimit -n; ulimit -Hn")
    assert out.split() == ["0", "65534", "321", "456"]

"""The systemd units: the files in systemd/ are what overlayctl.systemd.units
renders, systemd-analyze accepts them and rates their exposure, and a
generated unit takes exactly the protections its container leaves alone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from overlayctl.container.model import ContainerConfig, Device
from overlayctl.errors import InvalidArgumentError
from overlayctl.runtime.capabilities import DEFAULT_CAPABILITIES
from overlayctl.store.containers import Container
from overlayctl.systemd import units as systemd

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
TEMPLATE = UNITS / "overlayctl@.service"
RECONCILE = UNITS / "overlayctl-reconcile.service"
BOOT = UNITS / "overlayctl-boot.service"
GC = UNITS / "overlayctl-gc.service"
GC_TIMER = UNITS / "overlayctl-gc.timer"
API_SOCKET = UNITS / "overlayctl-api.socket"
API_SERVICE = UNITS / "overlayctl-api.service"

# Exposure scores of `systemd-analyze security --offline=yes` (0 safest,
# 10 least safe) as of systemd 252; a change that raises one fails here.
# The template is high because it must run any container: namespaces,
# mounts, every capability, any host path. See docs/systemd.md, "Hardening".
# A container on a bridge network keeps the host's kernel tunables writable
# (its set-up turns IPv6 off on the bridge and the veth): 0.2 more. The API
# service starts containers as the CLI does, so it is as open as the template
# and reaches the network too (pulls, pushes).
MAX_EXPOSURE = {
    "template": 9.4,
    "generated": 6.1,
    "generated-bridge": 6.3,
    "reconcile": 2.4,
    "gc": 2.0,
    "api": 9.6,
}


def _container(name: str = "web", **host_config: object) -> Container:
    config = {"Config": {"Cmd": ["sh"]}, "HostConfig": {"NetworkMode": "bridge", **host_config}}
    return Container(
        "ab" * 32, name, "cd" * 32, "bb:1", ContainerConfig.from_json(config), "", "created", 0, 0, None, "", "", ""
    )


def _keys(lines: list[tuple[str, str]]) -> dict[str, str]:
    return {key: value for key, value in lines if key != "#"}


def _analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is missing (package systemd): the unit files cannot be checked")
    return found


# --- the files ----------------------------------------------------------------


def test_unit_files_are_the_rendered_units() -> None:
    for name, text in systemd.unit_files().items():
        stale = f"systemd/{name} is stale: python3 -m overlayctl.systemd.units systemd"
        assert (UNITS / name).read_text() == text, stale


def test_template_runs_the_instance_in_the_foreground() -> None:
    service = _keys(systemd.service_lines("%I"))
    assert service["Type"] == "notify"
    assert service["ExecStart"] == "/usr/local/bin/overlayctl start -a %I"
    assert service["KillMode"] == "mixed"
    assert service["Restart"] == "on-failure"
    assert service["SuccessExitStatus"] == "129 130 141 143"
    text = TEMPLATE.read_text()
    assert "After=network-online.target overlayctl-reconcile.service" in text
    # Nothing a container could notice: it may bind any path and hold any capability.
    keys = {line.split("=", 1)[0] for line in text.splitlines() if "=" in line and not line.startswith("#")}
    assert not keys & {"ProtectSystem", "ProtectHome", "PrivateTmp", "CapabilityBoundingSet", "NoNewPrivileges"}


def _settings(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_api_units_activate_the_service_on_its_socket() -> None:
    socket = _settings(API_SOCKET)
    assert socket["ListenStream"] == "/run/overlayctl/docker.sock"
    assert (socket["SocketMode"], socket["SocketUser"], socket["SocketGroup"]) == ("0660", "root", "root")
    assert "WantedBy=sockets.target" in API_SOCKET.read_text()
    service = _settings(API_SERVICE)
    assert service["Type"] == "notify"
    assert service["ExecStart"] == "/usr/local/bin/overlayctl system service --time 60"
    assert service["Requires"] == "overlayctl-api.socket"
    # Containers started through the API outlive the service's idle exit.
    assert service["KillMode"] == "process"
    # Started by the socket only: no [Install] of its own.
    assert "[Install]" not in API_SERVICE.read_text()


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    analyze = _analyze()
    generated = tmp_path / "container-web.service"
    generated.write_text(systemd.generate_unit(_container()))
    for unit in (TEMPLATE, RECONCILE, BOOT, GC, GC_TIMER, API_SOCKET, API_SERVICE, generated):
        result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, cwd=UNITS)
        assert result.returncode == 0 and not result.stderr.strip(), (unit.name, result.stderr)


def _exposure(analyze: str, unit: Path) -> float:
    result = subprocess.run([analyze, "security", "--offline=yes", str(unit)], capture_output=True, text=True)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, (unit.name, result.returncode, result.stdout[-2000:], result.stderr)
    return float(match.group(1))


def test_systemd_analyze_security_exposure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    analyze = _analyze()
    generated = tmp_path / "container-web.service"
    generated.write_text(systemd.generate_unit(_container(NetworkMode="none")))
    bridged = tmp_path / "container-webb.service"
    bridged.write_text(systemd.generate_unit(_container()))
    scores = {
        "template": _exposure(analyze, TEMPLATE),
        "generated": _exposure(analyze, generated),
        "generated-bridge": _exposure(analyze, bridged),
        "reconcile": _exposure(analyze, RECONCILE),
        "gc": _exposure(analyze, GC),
        "api": _exposure(analyze, API_SERVICE),
    }
    with capsys.disabled():
        print("\nsystemd-analyze security exposure:", ", ".join(f"{k} {v}" for k, v in scores.items()))
    for unit, score in scores.items():
        assert score <= MAX_EXPOSURE[unit], f"{unit} unit: exposure {score} > {MAX_EXPOSURE[unit]}"


# --- command lines ----------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "quoted"),
    [
        ("/var/lib/overlayctl", "/var/lib/overlayctl"),
        ("/srv/my store", '"/srv/my store"'),
        ("50%", "50%%"),
        ("$HOME", "$$HOME"),
        ('a"b', '"a\\"b"'),
        ("back\\slash", '"back\\\\slash"'),
        ("", '""'),
    ],
)
def test_exec_quote_keeps_words_literal(word: str, quoted: str) -> None:
    assert systemd.exec_quote(word) == quoted


@pytest.mark.parametrize(
    ("word", "quoted"),
    [
        ("a\tb", '"a\\x09b"'),
        ("\x1b[0m", '"\\x1b[0m"'),
        ("caf\u00e9", "caf\u00e9"),
        ("\u0085", '"\\xc2\\x85"'),  # a C1 control, as its UTF-8 bytes
        ("\ufdd0", '"\\xef\\xb7\\x90"'),  # a noncharacter systemd would call invalid UTF-8
        ("/srv/\udcff\udc80", '"/srv/\\xff\\x80"'),  # a path's undecodable bytes, exactly
        ("a;", '"a;"'),
        ("it's", '"it\'s"'),
    ],
)
def test_exec_quote_escapes_what_cannot_stand_raw(word: str, quoted: str) -> None:
    assert systemd.exec_quote(word) == quoted


@pytest.mark.parametrize(("word", "reason"), [("a\nb", "a newline"), ("a\rb", "a carriage return"), ("a\0", "a NUL")])
def test_line_breaks_are_refused_in_one_line(word: str, reason: str) -> None:
    for quote in (systemd.exec_quote, systemd.unit_text, systemd.path_word):
        with pytest.raises(InvalidArgumentError, match=reason) as refused:
            quote(word)
        assert "\n" not in str(refused.value) and "\r" not in str(refused.value)


def test_exec_quote_refuses_text_that_has_no_bytes() -> None:
    with pytest.raises(InvalidArgumentError, match="neither UTF-8 nor escaped bytes"):
        systemd.exec_quote("\ud800")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("a\x01b", "a control character"),
        ("tab\there", "a control character"),
        ("\u009b", "a control character"),
        ("/srv/\udcff", "bytes that are not UTF-8"),
        ("\ufffe", "a Unicode noncharacter"),
    ],
)
def test_other_settings_refuse_what_systemd_would_not_read_back(value: str, reason: str) -> None:
    for quote in (systemd.unit_text, systemd.path_word):
        with pytest.raises(InvalidArgumentError, match=reason):
            quote(value)


def test_unit_text_doubles_specifiers_and_refuses_a_trailing_backslash() -> None:
    assert systemd.unit_text("50% of $HOME \\ x") == "50%% of $HOME \\ x"
    with pytest.raises(InvalidArgumentError, match="trailing backslash"):
        systemd.unit_text("ends\\")


@pytest.mark.parametrize(
    ("path", "word"),
    [
        ("/srv/a", "/srv/a"),
        ("/srv/a b", '"/srv/a b"'),
        ('/q"\\', '"/q\\"\\\\"'),
        ("/pc%t", "/pc%%t"),
        ("/x\\", '"/x\\\\"'),
    ],
)
def test_path_word_quotes_without_c_escapes(path: str, word: str) -> None:
    assert systemd.path_word(path) == word


@pytest.mark.parametrize(
    "executable", ["overlayctl", "-/bin/true", "/usr/bin/", "/usr//bin/x", "/a/../x", '/a"b', "/a$b"]
)
def test_the_executable_must_be_a_path_systemd_runs_as_written(executable: str) -> None:
    with pytest.raises(InvalidArgumentError, match="executable"):
        systemd.service_lines("web", executable)


@pytest.mark.parametrize(
    "name", ["web", "my-app", "a.b_c:d", ".dot", "a/b", "sp ace", "caf\u00e9", "x\\y", "@", "\udcff"]
)
def test_instance_unit_escapes_as_systemd_escape_does(name: str) -> None:
    escape = shutil.which("systemd-escape")
    if escape is None:
        pytest.skip("systemd-escape is missing (package systemd)")
    arg = os.fsencode(name)
    result = subprocess.run([escape, "--template=overlayctl@.service", "--", arg], capture_output=True, check=True)
    assert systemd.instance_unit(name) == os.fsdecode(result.stdout.strip())


def test_instance_unit_refuses_what_no_instance_can_name() -> None:
    for name in ("", "a\nb", "x" * 300):
        with pytest.raises(InvalidArgumentError):
            systemd.instance_unit(name)


def test_global_args_only_for_another_store() -> None:
    assert systemd.global_args() == []
    assert systemd.global_args("/srv/octl", "/run/octl") == ["--root", "/srv/octl", "--runroot", "/run/octl"]


# --- generate systemd -------------------------------------------------------


def test_generated_unit_names_the_container_by_id_or_name() -> None:
    c = _container()
    by_id = systemd.generate_unit(c)
    assert f"ExecStart=/usr/local/bin/overlayctl start -a {c.id}\n" in by_id
    assert by_id.startswith(f"# container-{c.id}.service\n")
    by_name = systemd.generate_unit(c, use_name=True, header=False)
    assert "ExecStart=/usr/local/bin/overlayctl start -a web\n" in by_name
    assert not by_name.startswith("#")
    assert systemd.unit_name(c, use_name=True) == "container-web.service"


def test_generated_unit_reaches_a_store_elsewhere() -> None:
    text = systemd.generate_unit(_container(), root="/srv/my store", runroot="/run/octl%1", executable="/opt/octl")
    assert 'ExecStart=/opt/octl --root "/srv/my store" --runroot /run/octl%%1 start -a ' in text
    assert 'RequiresMountsFor="/srv/my store" /run/octl%%1\n' in text


def test_the_unit_stops_the_container_with_overlayctl_stop() -> None:
    lines = systemd.service_lines("%I")
    stops = [value for key, value in lines if key == "ExecStop"]
    # One ExecStop: `overlayctl stop` itself waits for the supervisor's exit.
    assert stops == ["/usr/local/bin/overlayctl stop %I"]
    service = _keys(lines)
    assert (service["KillMode"], service["KillSignal"], service["TimeoutStopSec"]) == ("mixed", "SIGTERM", "70")
    lines = systemd.service_lines("web", stop_timeout=30, restart="always", stop_signal=3)
    assert [v for k, v in lines if k == "ExecStop"][0] == "/usr/local/bin/overlayctl stop -t 30 web"
    service = _keys(lines)
    assert (service["TimeoutStopSec"], service["Restart"]) == ("90", "always")
    assert service["SuccessExitStatus"] == "129 130 131 141 143"


def test_generated_unit_follows_the_containers_stop_settings_and_policy() -> None:
    c = _container(RestartPolicy={"Name": "unless-stopped", "MaximumRetryCount": 0})
    c.config.config.stop_signal, c.config.config.stop_timeout = "SIGQUIT", 100
    service = _keys(systemd.service_lines("x"))  # the defaults, for comparison
    text = systemd.generate_unit(c, use_name=True)
    assert "ExecStop=/usr/local/bin/overlayctl stop web\n" in text  # the stop reads the container's own
    assert "TimeoutStopSec=160\n" in text and service["TimeoutStopSec"] == "70"
    assert "SuccessExitStatus=129 130 131 141 143\n" in text
    assert "Restart=always\n" in text
    text = systemd.generate_unit(c, use_name=True, stop_timeout=5, restart="no")
    assert "ExecStop=/usr/local/bin/overlayctl stop -t 5 web\n" in text and "TimeoutStopSec=65\n" in text
    assert "Restart=no\n" in text
    assert "Restart=on-failure\n" in systemd.generate_unit(_container())


def test_generated_unit_name_is_a_unit_name() -> None:
    assert systemd.unit_name(_container("my-app.1"), use_name=True) == "container-my-app.1.service"
    for name in ("../../etc/cron.d/x", "a b", "caf\u00e9"):
        with pytest.raises(InvalidArgumentError, match="not a valid systemd unit name"):
            systemd.unit_name(_container(name), use_name=True)
        assert systemd.unit_name(_container(name)) == f"container-{'ab' * 32}.service"


def test_generate_refuses_an_auto_remove_container() -> None:
    with pytest.raises(InvalidArgumentError, match="--rm"):
        systemd.generate_unit(_container(AutoRemove=True))


def test_generate_refuses_an_unknown_restart_policy() -> None:
    with pytest.raises(InvalidArgumentError, match="restart policy"):
        systemd.generate_unit(_container(), restart="sometimes")


# --- hardening: what a container leaves alone ---------------------------------

STORE = [("/var/lib/overlayctl", True), ("/run/overlayctl", True)]


def _hardening(paths=(), capabilities=DEFAULT_CAPABILITIES, **kw: bool) -> dict[str, str]:
    return _keys(systemd.hardening(systemd.HostNeeds(STORE + list(paths), capabilities, **kw)))


def test_a_default_container_gets_every_protection() -> None:
    h = _hardening()
    expected = {
        "PrivateMounts": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "full",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "ProtectProc": "invisible",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "DevicePolicy": "closed",
        "RestrictRealtime": "yes",
        "RestrictNamespaces": "~user",
        "SystemCallFilter": "~@module @raw-io @reboot @swap",
        "SystemCallErrorNumber": "EPERM",
    }
    assert {k: h[k] for k in expected} == expected
    dropped = h["CapabilityBoundingSet"].lstrip("~").split()
    assert "CAP_SYS_MODULE" in dropped and "CAP_SYS_TIME" in dropped
    # Nothing overlayctl or Docker's default set uses is taken away.
    for needed in ("SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "MKNOD", "SETPCAP", "DAC_READ_SEARCH", "SYS_RESOURCE"):
        assert f"CAP_{needed}" not in dropped
    for capability in DEFAULT_CAPABILITIES:
        assert f"CAP_{capability.upper()}" not in dropped


def test_never_what_a_container_would_feel() -> None:
    h = _hardening()
    for key in ("ProtectHostname", "PrivateUsers", "PrivateNetwork", "PrivateDevices", "ProtectClock", "UMask"):
        assert key not in h
    for key in ("ProtectControlGroups", "ProcSubset", "PrivateIPC"):
        assert key not in h
    for key in ("SystemCallArchitectures", "MemoryDenyWriteExecute", "RestrictSUIDSGID", "LockPersonality"):
        assert key not in h
    assert "RestrictAddressFamilies" not in h and "ProcSubset" not in h


def test_binds_under_home() -> None:
    assert "ProtectHome" not in _hardening([("/home/u/site", True)])
    assert _hardening([("/home/u/site", False)])["ProtectHome"] == "read-only"
    assert "ProtectHome" not in _hardening([("/root", True)])


def test_binds_under_the_os_tree() -> None:
    assert "ProtectSystem" not in _hardening([("/etc/app", True)])
    assert _hardening([("/etc/app", False)])["ProtectSystem"] == "full"
    assert _hardening([("/srv/www", True)])["ProtectSystem"] == "full"


def test_a_bind_of_the_root_reaches_everything_below() -> None:
    h = _hardening([("/", False)])
    assert h["ProtectHome"] == "read-only"
    assert h["ProtectSystem"] == "full"  # read-only: writes there fail either way
    for key in ("PrivateTmp", "ProtectProc", "ProtectKernelTunables", "DevicePolicy", "ProtectKernelModules"):
        assert key not in h


def test_a_store_under_tmp_keeps_tmp_shared() -> None:
    h = systemd.hardening(systemd.HostNeeds([("/tmp/t/root", True), ("/tmp/t/run", True)], DEFAULT_CAPABILITIES))
    assert "PrivateTmp" not in _keys(h)


def test_similar_prefixes_do_not_count() -> None:
    h = _hardening([("/homes", True), ("/etcetera", True), ("/tmpdata", True)])
    assert (h["ProtectHome"], h["ProtectSystem"], h["PrivateTmp"]) == ("yes", "full", "yes")


def test_privileged_keeps_everything_a_privileged_container_may_use() -> None:
    h = _hardening(privileged=True)
    for key in ("NoNewPrivileges", "CapabilityBoundingSet", "DevicePolicy", "RestrictNamespaces", "SystemCallFilter"):
        assert key not in h
    for key in ("ProtectKernelModules", "ProtectKernelLogs", "RestrictRealtime", "ProtectKernelTunables"):
        assert key not in h
    assert h["ProtectSystem"] == "full" and h["ProtectHome"] == "yes"


def test_added_capabilities_keep_what_they_need() -> None:
    h = _hardening(capabilities=(*DEFAULT_CAPABILITIES, "sys_module", "sys_nice", "syslog", "sys_admin"))
    assert "ProtectKernelModules" not in h and "ProtectKernelLogs" not in h and "RestrictRealtime" not in h
    assert h["SystemCallFilter"] == "~@raw-io @reboot"
    assert "RestrictNamespaces" not in h  # the default profile lets CAP_SYS_ADMIN make user namespaces
    dropped = h["CapabilityBoundingSet"].lstrip("~").split()
    assert "CAP_SYS_MODULE" not in dropped and "CAP_SYSLOG" not in dropped and "CAP_SYS_NICE" not in dropped


def test_the_cgroup_tree_stays_writable() -> None:
    # For limits, and for the freezer `pause` makes: the supervisor removes both.
    h = _hardening()
    assert "ProtectControlGroups" not in h and h["ProtectKernelTunables"] == "yes"


def test_an_unconfined_container_may_make_user_namespaces() -> None:
    assert "RestrictNamespaces" not in _hardening(default_seccomp=False)


def test_needs_of_a_stored_container() -> None:
    c = _container(
        Mounts=[
            {"Type": "bind", "Source": "/home/u/site", "Target": "/www", "ReadOnly": True},
            {"Type": "volume", "Source": "data", "Target": "/data", "ReadOnly": False},
            {"Type": "tmpfs", "Source": "", "Target": "/scratch", "ReadOnly": False},
        ],
        CapAdd=["NET_ADMIN"],
        CapDrop=["MKNOD"],
        SecurityOpt=["seccomp=unconfined"],
        Limits={"memory": "64m"},
    )
    needs = systemd.needs_of(c, "/var/lib/overlayctl", "/run/overlayctl")
    assert needs.paths == STORE + [("/home/u/site", False)]
    assert "net_admin" in needs.capabilities and "mknod" not in needs.capabilities
    assert not needs.default_seccomp and not needs.privileged
    text = systemd.generate_unit(c)
    assert (
        "ProtectHome=read-only" in text and "RequiresMountsFor=/var/lib/overlayctl /run/overlayctl /home/u/site" in text
    )


def test_the_boot_unit_starts_containers_after_the_reconcile() -> None:
    text = BOOT.read_text()
    assert "ExecStart=/usr/local/bin/overlayctl system reconcile --boot\n" in text
    assert "After=network-online.target overlayctl-reconcile.service\n" in text
    assert "KillMode=process\n" in text  # the supervisors it starts outlive it


def test_a_bridge_network_keeps_the_kernel_tunables_writable() -> None:
    # The bridge's and the veth's IPv6 sysctls are written from the host's
    # /proc/sys, which ProtectKernelTunables makes read-only.
    assert "ProtectKernelTunables" not in _hardening(bridge=True)
    assert _hardening(bridge=False)["ProtectKernelTunables"] == "yes"


def test_a_granted_device_opens_the_device_policy() -> None:
    container = _container()
    container.config.host.devices = [Device("/dev/fuse", "/dev/fuse", "rwm")]
    needs = systemd.needs_of(container, "/var/lib/overlayctl", "/run/overlayctl")
    assert "DevicePolicy" not in _keys(systemd.hardening(needs))
    assert "DevicePolicy" in _keys(systemd.hardening(systemd.needs_of(_container(), "/x", "/y")))


def test_sysctls_host_ipc_and_init_are_host_needs() -> None:
    # PID 1 writes --sysctl values through the unit's /proc/sys; --ipc host
    # binds the host's /dev/shm; --init binds the host's tini.
    plain = systemd.needs_of(_container(NetworkMode="none"), "/x", "/y")
    assert _keys(systemd.hardening(plain))["ProtectKernelTunables"] == "yes"
    c = _container(NetworkMode="none", Sysctls={"kernel.shmmax": "1"}, IpcMode="host", Init=True)
    needs = systemd.needs_of(c, "/x", "/y")
    assert needs.paths[2:] == [("/usr/bin/tini-static", False), ("/dev/shm", True), ("/proc/sys", True)]
    assert "ProtectKernelTunables" not in _keys(systemd.hardening(needs))

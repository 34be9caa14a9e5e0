"""Docker's current seccomp rules and masked paths, from inside containers.

socket(AF_ALG) is refused by the default profile (EPERM, the filter's
answer) and reaches the kernel without it; /proc/interrupts is masked;
Docker's own default.json loads and confines a container; a profile with
an architecture and a syscall this libseccomp does not know loads with
one warning.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from overlayctl.runtime import seccomp
from tests.conftest import image_with_program, static_program

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="Docker's profile is checked on x86_64")

SOURCE = Path(__file__).with_name("seccomp_moby.c")
MOBY_PROFILE = Path(__file__).resolve().parents[2] / "data" / "moby-seccomp-default.json"
AF_UNIX, AF_ALG, AF_VSOCK = 1, 38, 40
REFUSED = "errno 1"  # EPERM: the profile's default action


@pytest.fixture(scope="module")
def socket_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return static_program(SOURCE, tmp_path_factory.mktemp("sockets"))


@pytest.fixture
def socket_image(cli, bb, socket_binary, tmp_path) -> str:
    return image_with_program(cli, socket_binary, tmp_path)


def _run(cli, *args: str) -> subprocess.CompletedProcess:
    return cli("run", "--rm", "--network", "none", *args)


def _sockets(out: bytes) -> dict[int, str]:
    lines = [line.split(": ", 1) for line in out.decode().splitlines() if ": " in line]
    return {int(family): result for family, result in lines if family.isdigit()}


def test_af_alg_socket_is_refused_by_the_default_profile(cli, socket_image):
    families = [str(f) for f in (AF_UNIX, AF_ALG, AF_VSOCK)]
    result = _run(cli, socket_image, "/seccomp_moby", *families)
    assert result.returncode == 0, result.stderr
    assert _sockets(result.stdout) == {AF_UNIX: "ok", AF_ALG: REFUSED, AF_VSOCK: REFUSED}
    # Without the filter the same calls reach the kernel: they open, or
    # answer EAFNOSUPPORT from a kernel built without the family.
    result = _run(cli, "--security-opt", "seccomp=unconfined", socket_image, "/seccomp_moby", *families)
    assert result.returncode == 0, result.stderr
    opened = _sockets(result.stdout)
    assert opened[AF_UNIX] == "ok"
    assert opened[AF_ALG] in ("ok", "errno 97") and opened[AF_VSOCK] in ("ok", "errno 97"), opened


def test_proc_interrupts_is_masked_unless_privileged(cli, bb):
    script = "wc -c < /proc/interrupts; grep -c ' /proc/interrupts ' /proc/self/mountinfo"
    assert _run(cli, "bb:1", "sh", "-c", script).stdout.split() == [b"0", b"1"]
    out = _run(cli, "--privileged", "bb:1", "sh", "-c", script).stdout.split()
    assert int(out[0]) > 0 and out[1] == b"0", out


def test_dockers_default_profile_runs_a_confined_container(cli, socket_image):
    script = f"grep Seccomp: /proc/self/status; /seccomp_moby {AF_UNIX} {AF_ALG}; unshare -U true || echo unshare=$?"
    result = _run(cli, "--security-opt", f"seccomp={MOBY_PROFILE}", socket_image, "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == ["Seccomp:\t2", "1: ok", f"38: {REFUSED}", "unshare=1"]
    assert b"WARNING" not in result.stderr  # on x86_64 libseccomp 2.5 knows all it needs


def test_unknown_architecture_and_syscall_load_with_one_warning(cli, bb, tmp_path):
    profile = tmp_path / "newer.json"
    doc = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_LOONGARCH64"],
        "syscalls": [{"names": ["mkdir", "mkdirat", "frobnicate_at"], "action": "SCMP_ACT_ERRNO"}],
    }
    profile.write_text(json.dumps(doc))
    expected = seccomp.skipped_warning(seccomp.parse_profile(profile.read_bytes(), str(profile)))
    assert "frobnicate_at" in expected
    for _ in ("compiled", "from the cache"):
        result = _run(cli, "--security-opt", f"seccomp={profile}", "bb:1", "sh", "-c", "mkdir /d || echo refused")
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"refused\n"  # the rest of the profile applies
        warnings = [line for line in result.stderr.decode().splitlines() if "WARNING" in line]
        assert warnings == [f"WARNING: {expected}"]


def test_a_build_run_step_is_confined_as_a_container_is(cli, socket_image, tmp_path):
    # A Dockerfile's RUN is someone else's code run as root: the default
    # profile must hold there too (AF_ALG refused, no user namespace).
    ctx = tmp_path / "run-ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {socket_image}\n"
        f"RUN grep Seccomp: /proc/self/status; /seccomp_moby {AF_ALG}; unshare -U true || echo unshare=$?\n"
    )
    result = cli("build", "--no-cache", "-t", "confined:1", str(ctx))
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "Seccomp:\t2" in out, out
    assert f"{AF_ALG}: {REFUSED}" in out, out
    assert "unshare=" in out, out

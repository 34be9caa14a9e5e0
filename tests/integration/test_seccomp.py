"""Seccomp filters on the real kernel: a child process loads a compiled
program exactly as PID 1 does (no_new_privs, then seccomp_set_filter) and
tries syscalls; then the same through the CLI.

The syscalls are made through libc's syscall(2) with ctypes, here in the
tests only, with arguments that do nothing harmful when a call is allowed
(bad pointers, missing paths, a wrong reboot magic), because as root
without a filter most of them would be allowed.
"""

from __future__ import annotations

import ctypes
import errno
import json
import marshal
import os
import shutil
import subprocess
import sys
from collections.abc import Callable

import _prctl
import pytest

from overlayctl.runtime import seccomp
from overlayctl.runtime import syscalls as sc
from overlayctl.runtime.capabilities import DEFAULT_CAPABILITIES
from tests.conftest import kernel_at_least

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers below are x86_64's")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

SIGCHLD = 17
AT_FDCWD = -100
AF_UNIX, AF_ALG, AF_VSOCK = 1, 38, 40
SOCK_STREAM, SOCK_SEQPACKET = 1, 5
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWUSER, CLONE_NEWNET = 0x20000, 0x4000000, 0x10000000, 0x40000000
KEY_SPEC_SESSION_KEYRING = -3


def _nr(number: int, *args: int | bytes) -> Callable[[], int]:
    """A raw syscall; returns 0 on success, else the errno."""

    def call() -> int:
        cargs = [ctypes.c_char_p(a) if isinstance(a, bytes) else ctypes.c_long(a) for a in args]
        return ctypes.get_errno() if _libc.syscall(ctypes.c_long(number), *cargs) == -1 else 0

    return call


def _clone(flags: int) -> Callable[[], int]:
    """clone(2) as fork does, plus `flags`; the child exits at once."""

    def call() -> int:
        pid = _libc.syscall(ctypes.c_long(56), ctypes.c_long(flags | SIGCHLD), 0, 0, 0, 0)
        if pid == 0:
            os._exit(0)
        if pid < 0:
            return ctypes.get_errno()
        os.waitpid(pid, 0)
        return 0

    return call


def _kcmp_self() -> int:
    """kcmp(2) of this process's memory with itself: 0 when allowed."""
    pid = os.getpid()
    return _nr(312, pid, pid, 1, 0, 0)()  # KCMP_VM


def _confine(program: bytes) -> None:
    """What PID 1 does last before exec."""
    _prctl.prctl(_prctl.PR_SET_NO_NEW_PRIVS, 1)
    sc.seccomp_set_filter(program)


def _errno_under(program: bytes, call: Callable[[], int]) -> int:
    """Run `call` in a child confined by `program`; its errno (0: allowed)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            _confine(program)
            os.write(w, marshal.dumps(call()))
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data, "the confined child failed"
    return marshal.loads(data)


@pytest.fixture(scope="module")
def default_program(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    program = seccomp.compile_profile(None, DEFAULT_CAPABILITIES, str(tmp_path_factory.mktemp("seccomp")))
    assert program is not None
    return program


def _program(tmp_path, caps=DEFAULT_CAPABILITIES, profile=None) -> bytes:
    program = seccomp.compile_profile(profile, caps, str(tmp_path / "cache"))
    assert program is not None
    return program


DENIED = {
    "keyctl": _nr(250, 0, KEY_SPEC_SESSION_KEYRING, 0),
    "add_key": _nr(248, b"no-such-key-type", b"d", 0, 0, KEY_SPEC_SESSION_KEYRING),
    "request_key": _nr(249, b"no-such-key-type", b"d", 0, KEY_SPEC_SESSION_KEYRING),
    "bpf": _nr(321, 5, 0, 0),
    "perf_event_open": _nr(298, 0, 0, -1, -1, 0),
    "open_by_handle_at": _nr(304, -1, 0, 0),
    "init_module": _nr(175, 0, 0, b""),
    "finit_module": _nr(313, -1, b"", 0),
    "delete_module": _nr(176, b"no_such_module_here", 0o4000),
    "kexec_file_load": _nr(320, -1, -1, 0, 0, 0),
    "mount": _nr(165, b"none", b"/nonexistent/seccomp-test", b"tmpfs", 0, 0),
    "umount2": _nr(166, b"/nonexistent/seccomp-test", 0),
    "pivot_root": _nr(155, b"/nonexistent/a", b"/nonexistent/b"),
    "setns": _nr(308, -1, 0),
    "unshare user": _nr(272, CLONE_NEWUSER),
    "unshare mount": _nr(272, CLONE_NEWNS),
    "clone user": _clone(CLONE_NEWUSER),
    "clone net": _clone(CLONE_NEWNET),
    "swapon": _nr(167, b"/nonexistent/swap", 0),
    "swapoff": _nr(168, b"/nonexistent/swap"),
    "reboot": _nr(169, 0, 0, 0, 0),  # a wrong magic: EINVAL if ever allowed
    "acct": _nr(163, b"/nonexistent/acct"),
    "settimeofday": _nr(164, 0, 0),  # both NULL: a no-op if ever allowed
    "clock_settime": _nr(227, 0, 0),
    "userfaultfd": _nr(323, 0),
    "io_uring_setup": _nr(425, 0, 0),
    "personality ADDR_NO_RANDOMIZE": _nr(135, 0x0040000),
    "socket AF_VSOCK": _nr(41, AF_VSOCK, SOCK_STREAM, 0),
    # The kernel's crypto API (this kernel may lack it: EAFNOSUPPORT if allowed).
    "socket AF_ALG": _nr(41, AF_ALG, SOCK_SEQPACKET, 0),
    "sethostname": _nr(170, b"x", 1),
    "syslog": _nr(103, 10, 0, 0),
    "iopl": _nr(172, 0),
    "kcmp": _kcmp_self,
}


@pytest.mark.parametrize("name", sorted(DENIED))
def test_default_denies_with_eperm(default_program, name):
    assert _errno_under(default_program, DENIED[name]) == errno.EPERM


ALLOWED = {
    "getpid": (_nr(39), 0),
    "fork": (_clone(0), 0),
    "personality query": (_nr(135, 0xFFFFFFFF), 0),
    "personality linux": (_nr(135, 0), 0),
    "socket AF_UNIX": (_nr(41, AF_UNIX, SOCK_STREAM, 0), 0),
    # Making a file handle (opening one is denied); a NULL handle: EFAULT.
    "name_to_handle_at": (_nr(303, AT_FDCWD, b"/", 0, 0, 0), errno.EFAULT),
    # Reading the clock (setting it needs CAP_SYS_TIME); a NULL timex: EFAULT.
    "clock_adjtime": (_nr(305, 0, 0), errno.EFAULT),
    "chroot": (_nr(161, b"/nonexistent/root"), errno.ENOENT),
    "ptrace": (_nr(101, 12, 0x7FFFFFFF, 0, 0), errno.ESRCH),
    "mkdirat": (_nr(258, AT_FDCWD, b"/nonexistent/dir", 0o755), errno.ENOENT),
    "rmdir": (_nr(84, b"/nonexistent/dir"), errno.ENOENT),
    # (Linux 6.8 added it; an older kernel answers ENOSYS itself.)
    "statmount (newer than libseccomp 2.5)": (
        _nr(457, 0, 0, 0, 0),
        errno.EFAULT if kernel_at_least(6, 8) else errno.ENOSYS,
    ),
}


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_default_allows(default_program, name):
    call, expected = ALLOWED[name]
    assert _errno_under(default_program, call) == expected


def test_clone3_and_unknown_syscalls_answer_enosys(default_program):
    # clone3's flags are out of the filter's reach: ENOSYS makes glibc
    # fall back to clone; a syscall newer than libseccomp looks absent.
    assert _errno_under(default_program, _nr(435, 0, 0)) == errno.ENOSYS
    assert _errno_under(default_program, _nr(500)) == errno.ENOSYS


def test_lsm_syscalls_need_cap_sys_admin(default_program, tmp_path):
    # NULL buffers: the kernel answers EFAULT or EINVAL. Without the
    # capability the filter answers: EPERM, or ENOSYS where libseccomp is
    # older than these syscalls (Linux 6.8), as for any syscall it does not know.
    calls = {"lsm_get_self_attr": _nr(459, 0, 0, 0, 0), "lsm_list_modules": _nr(461, 0, 0, 0)}
    admin = _program(tmp_path, [*DEFAULT_CAPABILITIES, "sys_admin"])
    for name, call in calls.items():
        assert _errno_under(default_program, call) in (errno.EPERM, errno.ENOSYS), name
        assert _errno_under(admin, call) in (errno.EFAULT, errno.EINVAL), name


def test_cap_sys_admin_opens_namespaces_and_mounts(tmp_path):
    program = _program(tmp_path, [*DEFAULT_CAPABILITIES, "sys_admin"])
    assert _errno_under(program, _nr(272, CLONE_NEWUTS)) == 0
    assert _errno_under(program, _clone(CLONE_NEWNET)) == 0
    assert _errno_under(program, DENIED["mount"]) == errno.ENOENT
    assert _errno_under(program, _nr(435, 0, 0)) == errno.EINVAL  # clone3 reaches the kernel
    assert _errno_under(program, DENIED["keyctl"]) == errno.EPERM  # never allowed


def test_cap_sys_ptrace_allows_kcmp(tmp_path):
    program = _program(tmp_path, [*DEFAULT_CAPABILITIES, "CAP_SYS_PTRACE"])
    assert _errno_under(program, DENIED["kcmp"]) == 0


def _confined_run(program: bytes, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, preexec_fn=lambda: _confine(program), capture_output=True, timeout=60)


BUSYBOX = shutil.which("busybox") or "/bin/busybox"


@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs busybox (busybox-static)")
def test_busybox_shell_works_under_the_default(default_program, tmp_path):
    script = (
        f"cd {tmp_path} && mkdir -p a/b && echo hi > a/b/f && cat a/b/f && mv a/b/f a/g && rm -r a/b"
        " && ls a && ps >/dev/null && date >/dev/null && sleep 0 && (echo sub) && grep Seccomp: /proc/self/status"
    )
    result = _confined_run(default_program, [BUSYBOX, "sh", "-c", script])
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == ["hi", "g", "sub", "Seccomp:", "2"]


@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs busybox (busybox-static)")
def test_busybox_unshare_and_mount_fail(default_program, tmp_path):
    result = _confined_run(default_program, [BUSYBOX, "unshare", "-U", "true"])
    assert result.returncode != 0 and b"Operation not permitted" in result.stderr
    result = _confined_run(default_program, [BUSYBOX, "mount", "-t", "tmpfs", "none", str(tmp_path)])
    assert result.returncode != 0 and b"permission denied" in result.stderr  # busybox's words for EPERM


def test_python_threads_and_subprocesses_work_under_the_default(default_program):
    code = (
        "import threading, subprocess, socket, os\n"
        "out = []\n"
        "t = threading.Thread(target=out.append, args=(1,)); t.start(); t.join()\n"
        "assert out == [1]\n"
        "assert subprocess.run(['true']).returncode == 0\n"
        "socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()\n"
        "print(len(os.listdir('/')))\n"
    )
    result = _confined_run(default_program, [sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr


def test_custom_profile_denies_mkdir(tmp_path):
    profile = tmp_path / "deny-mkdir.json"
    profile.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
                    {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES},
                ],
            }
        )
    )
    program = _program(tmp_path, profile=str(profile))
    assert _errno_under(program, ALLOWED["mkdirat"][0]) == errno.EPERM
    assert _errno_under(program, ALLOWED["rmdir"][0]) == errno.EACCES
    # Everything else is allowed: the default action.
    assert _errno_under(program, DENIED["keyctl"]) != errno.EPERM
    assert _errno_under(program, _nr(500)) == errno.ENOSYS  # from the kernel


# --- through the CLI ----------------------------------------------------------


def _run(cli, *args: str) -> subprocess.CompletedProcess:
    return cli("run", "--rm", "--network", "none", *args)


def test_cli_default_container_is_confined(cli, bb):
    result = _run(
        cli,
        "bb:1",
        "sh",
        "-c",
        "grep Seccomp: /proc/self/status; unshare -U true || echo unshare=$?; mkdir /d && echo ok",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == ["Seccomp:", "2", "unshare=1", "ok"]
    assert b"unshare(0x10000000): Operation not permitted" in result.stderr


def test_cli_unconfined_and_privileged_have_no_filter(cli, bb):
    result = _run(cli, "--security-opt", "seccomp=unconfined", "bb:1", "sh", "-c", "unshare -U true && echo ok")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"ok\n"
    out = cli.ok("run", "--rm", "--network", "none", "--privileged", "bb:1", "grep", "Seccomp:", "/proc/self/status")
    assert out.split() == ["Seccomp:", "0"]


def test_cli_cap_add_sys_admin_lifts_the_namespace_rules(cli, bb):
    result = _run(cli, "--cap-add", "SYS_ADMIN", "bb:1", "unshare", "-U", "true")
    assert result.returncode == 0, result.stderr


def test_cli_custom_profile(cli, bb, tmp_path):
    profile = tmp_path / "deny-mkdir.json"
    profile.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
            }
        )
    )
    result = _run(cli, "--security-opt", f"seccomp={profile}", "bb:1", "mkdir", "/d")
    assert result.returncode == 1
    assert b"Operation not permitted" in result.stderr


def test_cli_bad_profile_is_one_line(cli, bb, tmp_path):
    profile = tmp_path / "bad.json"
    profile.write_text(
        '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_DENY"}]}'
    )
    result = _run(cli, "--security-opt", f"seccomp={profile}", "bb:1", "true")
    assert result.returncode == 125
    message = result.stderr.decode().strip()
    assert f"seccomp profile {profile}" in message and 'unknown action "SCMP_ACT_DENY"' in message
    assert len(message.splitlines()) == 1

"""Seccomp profiles: parsing, the rules a container gets, the cache. No root
needed: programs are compiled (libseccomp) but never loaded here."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from overlayctl.errors import InvalidArgumentError
from overlayctl.runtime import seccomp
from overlayctl.runtime.capabilities import DEFAULT_CAPABILITIES

REPO = Path(__file__).resolve().parents[2]


def _default():
    return seccomp.parse_profile(Path(seccomp.DEFAULT_PROFILE).read_bytes(), seccomp.DEFAULT_PROFILE)


def _ruled(rules, action=seccomp.RET_ALLOW) -> set[str]:
    return {name for rule in rules if rule.action == action for name in rule.names}


def _write(tmp_path: Path, doc: object, name: str = "profile.json") -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


# --- the default profile ------------------------------------------------------


def test_default_profile_digest_is_current():
    # The cache key of the default profile is this constant: it must follow
    # every edit of seccomp_default.json.
    digest = hashlib.sha256(Path(seccomp.DEFAULT_PROFILE).read_bytes()).hexdigest()
    assert seccomp.DEFAULT_PROFILE_SHA256 == digest, "update DEFAULT_PROFILE_SHA256 in runtime/seccomp.py"


def test_default_profile_is_shipped_as_package_data():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert "seccomp_default.json" in pyproject


NEVER = {
    "add_key", "keyctl", "request_key", "kexec_load", "kexec_file_load", "swapon", "swapoff",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "uselib", "ustat", "_sysctl", "nfsservctl",
    "vm86", "vm86old", "create_module", "get_kernel_syms", "query_module",
}  # fmt: skip
SYS_ADMIN_ONLY = {
    "mount", "umount2", "pivot_root", "unshare", "setns", "fsopen", "move_mount", "open_tree", "sethostname",
}  # fmt: skip
DEFAULT_DENIED = {
    "open_by_handle_at", "name_to_handle_at", "init_module", "finit_module", "delete_module", "bpf",
    "perf_event_open", "reboot", "acct", "settimeofday", "clock_settime", "userfaultfd", "kcmp", "iopl",
    "ioperm", "syslog", "vhangup", "mbind", "set_mempolicy",
} | SYS_ADMIN_ONLY | NEVER  # fmt: skip


def test_default_denies_what_docker_denies():
    allowed = _ruled(seccomp.select_rules(_default(), DEFAULT_CAPABILITIES, "x86_64", "6.18.0"))
    assert not allowed & DEFAULT_DENIED, allowed & DEFAULT_DENIED
    assert {"read", "openat", "execve", "mkdir", "chroot", "ptrace", "socketcall", "mmap2"} <= allowed


def test_default_denies_nothing_common():
    # What shells, busybox, glibc and Python call all the time.
    allowed = _ruled(seccomp.select_rules(_default(), DEFAULT_CAPABILITIES, "x86_64", "6.18.0"))
    common = {
        "read", "write", "openat", "close", "fstat", "newfstatat", "statx", "mmap", "mprotect", "munmap",
        "brk", "rt_sigaction", "rt_sigprocmask", "ioctl", "pread64", "access", "pipe2", "dup2", "dup3",
        "fcntl", "getdents64", "getcwd", "chdir", "rename", "mkdir", "rmdir", "unlink", "execve", "wait4",
        "exit_group", "kill", "futex", "set_robust_list", "rseq", "prlimit64", "getrandom", "clock_gettime",
        "socket", "connect", "sendto", "recvfrom", "poll", "epoll_wait", "vfork", "set_tid_address",
        "arch_prctl", "sched_getaffinity", "setuid", "setgid", "setgroups", "capget", "capset", "prctl",
        "faccessat2", "close_range", "pidfd_open", "fchmodat2", "mknod", "chown", "uname", "sysinfo",
    }  # fmt: skip
    assert common <= allowed, common - allowed


def test_caps_conditions_follow_docker():
    profile = _default()
    base = seccomp.select_rules(profile, DEFAULT_CAPABILITIES, "x86_64", "6.18.0")
    admin = seccomp.select_rules(profile, [*DEFAULT_CAPABILITIES, "sys_admin"], "x86_64", "6.18.0")
    assert SYS_ADMIN_ONLY <= _ruled(admin)
    assert not SYS_ADMIN_ONLY & _ruled(base)
    # Without CAP_SYS_ADMIN clone is allowed only without namespace flags
    # and clone3 answers ENOSYS, so libc falls back to clone.
    (clone,) = [r for r in base if "clone" in r.names]
    assert [(a.index, a.op, a.value, a.value_two) for a in clone.args] == [
        (0, seccomp.OPS["SCMP_CMP_MASKED_EQ"], 0x7E020000, 0)
    ]
    assert "clone3" in _ruled(base, seccomp.RET_ERRNO | seccomp.ENOSYS)
    assert {"clone", "clone3"} <= {n for r in admin if not r.args and r.action == seccomp.RET_ALLOW for n in r.names}
    assert "clone3" not in _ruled(admin, seccomp.RET_ERRNO | seccomp.ENOSYS)
    # CAP_ names and lower-case ones are the same capability.
    upper = seccomp.select_rules(profile, ["CAP_SYS_ADMIN"], "x86_64", "6.18.0")
    lower = seccomp.select_rules(profile, ["sys_admin"], "x86_64", "6.18.0")
    assert [repr(r) for r in upper] == [repr(r) for r in lower]
    for cap, names in [
        ("sys_ptrace", {"kcmp", "pidfd_getfd", "process_madvise", "userfaultfd"}),
        ("sys_time", {"settimeofday", "clock_settime"}),
        ("sys_boot", {"reboot"}),
        ("sys_module", {"init_module", "finit_module", "delete_module"}),
        ("dac_read_search", {"open_by_handle_at"}),
    ]:
        assert names <= _ruled(seccomp.select_rules(profile, [cap], "x86_64", "6.18.0")), cap
        assert not names & _ruled(base), cap


def test_ptrace_follows_the_kernel_version():
    profile = _default()
    assert "ptrace" in _ruled(seccomp.select_rules(profile, [], "x86_64", "4.8.0"))
    assert "ptrace" not in _ruled(seccomp.select_rules(profile, [], "x86_64", "4.4.0-210-generic"))
    assert "ptrace" in _ruled(seccomp.select_rules(profile, ["CAP_SYS_PTRACE"], "x86_64", "4.4.0"))


def test_personality_values_are_alternatives():
    rules = [r for r in seccomp.select_rules(_default(), [], "x86_64", "6.18.0") if r.names == ("personality",)]
    # One argument named five times: five rules, any of which allows.
    assert sorted(r.args[0].value for r in rules) == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert all(len(r.args) == 1 for r in rules)


def test_newer_syscalls_of_other_machines_are_not_errors():
    # uretprobe exists on x86_64 only: another machine skips it.
    profile = _default()
    rules = seccomp.select_rules(profile, DEFAULT_CAPABILITIES, "aarch64", "6.18.0")
    assert seccomp.build_program(profile, rules, machine="aarch64")


def test_arches_of_the_filter():
    profile = _default()
    assert seccomp.filter_arches(profile, "x86_64") == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert seccomp.filter_arches(profile, "aarch64") == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    listed = seccomp.Profile("p", seccomp.RET_ALLOW, arches=("SCMP_ARCH_X86", "SCMP_ARCH_X86_64"))
    assert seccomp.filter_arches(listed, "x86_64") == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]


def test_includes_arches_use_docker_names():
    doc = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
            {"names": ["cacheflush"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
        ],
    }
    profile = seccomp.parse_profile(json.dumps(doc).encode(), "p.json")
    assert _ruled(seccomp.select_rules(profile, [], "x86_64", "6.1")) == {"arch_prctl"}
    assert _ruled(seccomp.select_rules(profile, [], "aarch64", "6.1")) == {"cacheflush", "getpid"}


# --- parsing errors ---------------------------------------------------------------


def _one(entry: dict, default: str = "SCMP_ACT_ERRNO") -> dict:
    return {"defaultAction": default, "syscalls": [entry]}


def _clone_arg(**arg: object) -> dict:
    return _one({"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [arg]})


@pytest.mark.parametrize(
    "doc, message",
    [
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ({"syscalls": []}, "defaultAction is missing"),
        ({"defaultAction": "SCMP_ACT_MAYBE"}, 'unknown action "SCMP_ACT_MAYBE"'),
        ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}, "defaultErrnoRet must be an integer"),
        ({"defaultAction": "SCMP_ACT_NOTIFY"}, "SCMP_ACT_NOTIFY needs a listener"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}}, "syscalls must be a list"),
        (_one({"action": "SCMP_ACT_ERRNO"}), "syscalls[0] names no syscall"),
        (_one({"names": ["mkdir"]}), "syscalls[0]: action is missing"),
        (_one({"names": "mkdir", "action": "SCMP_ACT_ERRNO"}), "syscalls[0].names must be a list"),
        (_one({"names": ["mkdir"], "action": "SCMP_ACT_DENY"}), 'syscalls[0]: unknown action "SCMP_ACT_DENY"'),
        (
            _one({"names": ["mkdir"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}),
            "syscalls[0].errnoRet only goes with SCMP_ACT_ERRNO",
        ),
        (_clone_arg(index=6, op="SCMP_CMP_EQ"), "syscalls[0].args[0].index must be an integer from 0 to 5"),
        (_clone_arg(index=0, op="SCMP_CMP_ABOUT"), 'syscalls[0].args[0]: unknown op "SCMP_CMP_ABOUT"'),
        (_clone_arg(index=0, value=-1, op="SCMP_CMP_EQ"), "syscalls[0].args[0].value must be an integer from 0"),
        (
            _one({"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "four"}}),
            "syscalls[0].includes.minKernel must be a kernel version",
        ),
        ({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_Z80"]}, 'unknown architecture "SCMP_'),
        (
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "architectures": ["SCMP_ARCH_X86"],
                "archMap": [{"architecture": "SCMP_ARCH_X86_64"}],
            },
            "architectures and archMap are both set",
        ),
        ({"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_MAGIC"]}, 'unknown flag "SECCOMP_'),
        ({"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/l.sock"}, "listenerPath"),
    ],
)
def test_bad_profiles_say_what_is_wrong(tmp_path, doc, message):
    path = _write(tmp_path, doc)
    with pytest.raises(InvalidArgumentError) as err:
        seccomp.compile_profile(path, [], str(tmp_path / "cache"))
    text = str(err.value)
    assert text.startswith(f"seccomp profile {path}: "), text
    assert message in text
    assert "\n" not in text
    assert not (tmp_path / "cache").exists()


def test_unknown_syscall_name_is_an_error(tmp_path):
    path = _write(
        tmp_path, {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdri"], "action": "SCMP_ACT_ERRNO"}]}
    )
    with pytest.raises(InvalidArgumentError, match=r'profile .*: syscalls\[0\]: unknown syscall "mkdri"'):
        seccomp.compile_profile(path, [], str(tmp_path / "cache"))


def test_missing_profile_file(tmp_path):
    path = str(tmp_path / "nope.json")
    with pytest.raises(InvalidArgumentError, match=f"seccomp profile {path}: No such file or directory"):
        seccomp.compile_profile(path, [], str(tmp_path / "cache"))


def test_docker_profile_shapes_are_accepted(tmp_path):
    # The older single "name" form, comments, unknown keys, load flags,
    # syscalls that exist only on other architectures or are newer than
    # libseccomp, and rules that repeat the default action.
    doc = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"name": "read", "action": "SCMP_ACT_ALLOW", "args": [], "comment": "x", "whatever": 1},
            {"names": ["write", "socketcall", "cacheflush", "mseal", "statmount"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["uname"], "action": "SCMP_ACT_LOG"},
            {"names": ["keyctl"], "action": "SCMP_ACT_KILL_PROCESS"},
        ],
    }
    program = seccomp.compile_profile(_write(tmp_path, doc), [], str(tmp_path / "cache"))
    assert program and len(program) % 8 == 0


# --- compiling and the cache --------------------------------------------------------


def test_unconfined_is_no_filter(tmp_path):
    assert seccomp.compile_profile("unconfined", DEFAULT_CAPABILITIES, str(tmp_path / "cache")) is None
    assert not (tmp_path / "cache").exists()


def test_default_program_fits_the_kernel(tmp_path):
    program = seccomp.compile_profile(None, DEFAULT_CAPABILITIES, str(tmp_path))
    assert program and len(program) % 8 == 0
    assert len(program) // 8 <= 4096  # BPF_MAXINSNS
    assert seccomp.compile_profile("builtin", DEFAULT_CAPABILITIES, str(tmp_path)) == program
    assert len(list(tmp_path.iterdir())) == 1


def test_cache_hit_reads_one_file_and_imports_nothing(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = seccomp.compile_profile(None, DEFAULT_CAPABILITIES, str(cache))
    assert [p.suffix for p in cache.iterdir()] == [".bpf"]  # no temporary file left
    # A hit must not need the binding (nor json): make importing it fail.
    monkeypatch.setitem(sys.modules, "pyseccomp", None)
    monkeypatch.setitem(sys.modules, "json", None)
    assert seccomp.compile_profile(None, list(reversed(DEFAULT_CAPABILITIES)), str(cache)) == first


def test_cache_hit_in_a_fresh_interpreter(tmp_path):
    seccomp.compile_profile(None, DEFAULT_CAPABILITIES, str(tmp_path))
    code = (
        "import sys\n"
        "from overlayctl.runtime.seccomp import compile_profile\n"
        "from overlayctl.runtime.capabilities import DEFAULT_CAPABILITIES\n"
        f"assert compile_profile(None, DEFAULT_CAPABILITIES, {str(tmp_path)!r})\n"
        "loaded = {'pyseccomp', 'json', 'hashlib', 'ctypes'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # -S as the installed launcher: no site module and what it would import.
    subprocess.run([sys.executable, "-S", "-c", code], check=True, env=env, cwd=str(REPO))


def test_cache_key_follows_profile_and_caps(tmp_path):
    cache = tmp_path / "cache"
    doc = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    path = _write(tmp_path, doc)
    a = seccomp.compile_profile(path, [], str(cache))
    assert seccomp.compile_profile(path, ["chown"], str(cache)) == a
    assert len(list(cache.iterdir())) == 2  # the caps are part of the key
    doc["syscalls"][0]["names"].append("rmdir")
    _write(tmp_path, doc)
    b = seccomp.compile_profile(path, [], str(cache))
    assert b != a and len(list(cache.iterdir())) == 3


def test_damaged_cache_entry_is_recompiled(tmp_path):
    program = seccomp.compile_profile(None, DEFAULT_CAPABILITIES, str(tmp_path))
    (entry,) = tmp_path.iterdir()
    entry.write_bytes(b"short")
    assert seccomp.compile_profile(None, DEFAULT_CAPABILITIES, str(tmp_path)) == program
    assert entry.read_bytes() == program


def test_unwritable_cache_still_compiles(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert seccomp.compile_profile(None, DEFAULT_CAPABILITIES, str(blocker / "cache"))


def test_kernel_version_parsing():
    assert seccomp.kernel_version("6.18.0-13-amd64") == (6, 18, 0)
    assert seccomp.kernel_version("4.8") == (4, 8, 0)
    assert seccomp.kernel_version("5.15.0+") == (5, 15, 0)

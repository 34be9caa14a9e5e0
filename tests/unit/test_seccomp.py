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
# Docker's default profile, verbatim (tests/data/README.md says from where).
MOBY_PROFILE = REPO / "tests" / "data" / "moby-seccomp-default.json"


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
    "open_by_handle_at", "init_module", "finit_module", "delete_module", "bpf",
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
        ("sys_ptrace", {"kcmp", "pidfd_getfd", "process_madvise"}),
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


# --- level with Docker's default profile -------------------------------------

# Where our default profile differs from Docker's on purpose, and why. Any
# other difference fails test_default_rules_are_dockers: close it, or add it
# here with its reason.
OURS_ONLY = {
    # Linux 6.17's syscalls for what the FS_IOC_FSGETXATTR/FSSETXATTR ioctls,
    # allowed to everyone, already do; Docker's profile predates them.
    "file_getattr": "allowed",
    "file_setattr": "allowed",
    # open_tree and mount_setattr in one call; both are allowed with CAP_SYS_ADMIN.
    "open_tree_attr": "CAP_SYS_ADMIN",
    # With CAP_SYS_ADMIN a container may mount and unshare already; a
    # runtime nested in it needs pivot_root too. Docker leaves it out.
    "pivot_root": "CAP_SYS_ADMIN",
}


def _rules_by_name(profile: seccomp.Profile) -> dict[str, set[tuple]]:
    """Each syscall name's rules, as select_rules reads them: one argument
    named several times makes alternatives, so each is a rule of its own."""
    by_name: dict[str, set[tuple]] = {}
    for entry in profile.entries:
        indexes = [a.index for a in entry.args]
        alternatives = [entry.args] if len(set(indexes)) == len(indexes) else [(a,) for a in entry.args]
        inc, exc = entry.includes, entry.excludes
        for args in alternatives:
            rule = (
                entry.action,
                tuple(sorted((a.index, a.op, a.value, a.value_two) for a in args)),
                tuple(sorted(inc.caps)), tuple(sorted(inc.arches)), inc.min_kernel,
                tuple(sorted(exc.caps)), tuple(sorted(exc.arches)), exc.min_kernel,
            )  # fmt: skip
            for name in entry.names:
                by_name.setdefault(name, set()).add(rule)
    return by_name


def test_default_rules_are_dockers():
    ours = _default()
    moby = seccomp.parse_profile(MOBY_PROFILE.read_bytes(), str(MOBY_PROFILE))
    assert (ours.default_action, ours.arch_map) == (moby.default_action, moby.arch_map)
    ours_rules, moby_rules = _rules_by_name(ours), _rules_by_name(moby)
    differ = {n for n in set(ours_rules) | set(moby_rules) if ours_rules.get(n) != moby_rules.get(n)}
    assert differ == set(OURS_ONLY), {n: (ours_rules.get(n), moby_rules.get(n)) for n in differ ^ set(OURS_ONLY)}
    for name, gate in OURS_ONLY.items():
        assert name not in moby_rules, f"Docker rules {name} now: take its rule and drop it from OURS_ONLY"
        (rule,) = ours_rules[name]
        assert (rule[0], rule[1], rule[2]) == (seccomp.RET_ALLOW, (), () if gate == "allowed" else (gate,)), name


def _verdict(rules: list[seccomp.Rule], name: str, *args: int) -> int | None:
    """The action the rules give `name` called with `args`, or None for the
    profile's default: what the filter decides, without a kernel."""
    compare = {
        seccomp.OPS["SCMP_CMP_LT"]: lambda v, a: v < a.value,
        seccomp.OPS["SCMP_CMP_EQ"]: lambda v, a: v == a.value,
        seccomp.OPS["SCMP_CMP_GT"]: lambda v, a: v > a.value,
        seccomp.OPS["SCMP_CMP_NE"]: lambda v, a: v != a.value,
        seccomp.OPS["SCMP_CMP_MASKED_EQ"]: lambda v, a: v & a.value == a.value_two,
    }
    for rule in rules:
        if name in rule.names and all(compare[a.op](args[a.index], a) for a in rule.args):
            return rule.action
    return None


def test_af_alg_and_af_vsock_sockets_are_refused():
    rules = seccomp.select_rules(_default(), DEFAULT_CAPABILITIES, "x86_64", "6.18.0")
    for family in (1, 2, 10, 16, 17, 37, 39, 41, 45):  # unix, inet, inet6, netlink, packet, ..., mctp
        assert _verdict(rules, "socket", family) == seccomp.RET_ALLOW, family
    for family in (38, 40):  # AF_ALG, AF_VSOCK: the default, EPERM
        assert _verdict(rules, "socket", family) is None, family


def test_lsm_name_to_handle_at_and_clock_adjtime_as_docker_has_them():
    profile = _default()
    base = _ruled(seccomp.select_rules(profile, DEFAULT_CAPABILITIES, "x86_64", "6.18.0"))
    admin = _ruled(seccomp.select_rules(profile, [*DEFAULT_CAPABILITIES, "sys_admin"], "x86_64", "6.18.0"))
    lsm = {"lsm_get_self_attr", "lsm_set_self_attr", "lsm_list_modules"}
    assert not lsm & base and lsm <= admin
    # Making a file handle is harmless; opening one needs CAP_DAC_READ_SEARCH.
    assert "name_to_handle_at" in base and "open_by_handle_at" not in base
    # The kernel lets clock_adjtime read the clock and asks CAP_SYS_TIME to set it.
    assert {"clock_adjtime", "clock_adjtime64"} <= base and "clock_settime" not in base


def test_dockers_profile_compiles_here(tmp_path):
    program = seccomp.compile_profile(str(MOBY_PROFILE), DEFAULT_CAPABILITIES, str(tmp_path))
    assert program and len(program) // 8 <= 4096


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


def test_unknown_syscall_name_is_skipped_with_a_warning(tmp_path):
    # As runc: a name libseccomp does not know (newer than it, or misspelt)
    # is left out and the rest applies; the warning names it.
    doc = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdri", "rmdir", "frobnicate_at"], "action": "SCMP_ACT_ERRNO"}],
    }
    path = _write(tmp_path, doc)
    warnings: list[str] = []
    program = seccomp.compile_profile(path, [], str(tmp_path / "cache"), warnings)
    assert warnings == [
        f"seccomp profile {path}: skipped 2 syscalls (frobnicate_at, mkdri) unknown to {_libseccomp()}"
    ]
    doc["syscalls"][0]["names"] = ["rmdir"]
    assert program == seccomp.compile_profile(_write(tmp_path, doc, "known.json"), [], str(tmp_path / "cache"))


def _libseccomp() -> str:
    version = seccomp.libseccomp_version()
    return f"libseccomp {version}" if version else "this libseccomp"


def test_unknown_architecture_is_skipped_with_the_syscalls_in_one_warning(tmp_path):
    doc = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_LOONGARCH64"],
        "syscalls": [{"names": ["read", "write", "frobnicate_at"], "action": "SCMP_ACT_ALLOW"}],
    }
    path = _write(tmp_path, doc)
    warnings: list[str] = []
    program = seccomp.compile_profile(path, [], str(tmp_path / "cache"), warnings)
    if "architecture" not in " ".join(warnings):
        pytest.skip("this libseccomp and its binding know LoongArch")
    assert warnings == [
        f"seccomp profile {path}: skipped 1 architecture (SCMP_ARCH_LOONGARCH64) and 1 syscall (frobnicate_at) "
        f"unknown to {_libseccomp()}"
    ]
    # The same program as without the unknown architecture.
    doc["architectures"] = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    assert program == seccomp.compile_profile(_write(tmp_path, doc, "known.json"), [], str(tmp_path / "cache"))


def test_the_warning_comes_back_on_a_cache_hit(tmp_path):
    doc = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["frobnicate_at"], "action": "SCMP_ACT_ERRNO"}]}
    path = _write(tmp_path, doc)
    first: list[str] = []
    program = seccomp.compile_profile(path, [], str(tmp_path / "cache"), first)
    again: list[str] = []
    assert seccomp.compile_profile(path, [], str(tmp_path / "cache"), again) == program
    assert again == first and len(first) == 1
    # Without a list to fill (the start of a container), nothing is read but the program.
    assert seccomp.compile_profile(path, [], str(tmp_path / "cache")) == program


def test_a_profile_libseccomp_knows_whole_has_no_warning(tmp_path):
    warnings: list[str] = []
    seccomp.compile_profile(None, DEFAULT_CAPABILITIES, str(tmp_path / "cache"), warnings)
    seccomp.compile_profile(str(MOBY_PROFILE), DEFAULT_CAPABILITIES, str(tmp_path / "cache"), warnings)
    assert warnings == []
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".bpf", ".bpf"]


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

"""Seccomp: a profile in Docker's format compiled into the BPF program that
PID 1 loads just before exec.

Three steps, each on its own: `parse_profile` checks the JSON (defaultAction,
defaultErrnoRet, architectures or archMap, syscalls with names, action,
errnoRet, args, includes and excludes) and says what is wrong with it;
`select_rules` keeps the rules that apply to this container (its
capabilities, this machine, this kernel); `build_program` hands them to
libseccomp, through the pyseccomp binding, which writes the BPF. No BPF is
written here. Architectures and syscall names libseccomp does not know are
left out of the program, and `skipped_warning` says which.

All three run only on a cache miss. The program is cached under a digest of
everything it depends on, so that `run` reads one small file and imports
neither json nor the binding (which alone costs ~45 ms).
"""

from __future__ import annotations

import os

from overlayctl.errors import InvalidArgumentError, KernelError
from overlayctl.runtime.seccompcache import (  # noqa: F401  (names this module has always offered)
    _COMPILER,
    DEFAULT_PROFILE,
    DEFAULT_PROFILE_SHA256,
    _libseccomp_path,
    _read_cached,
    _read_warning,
    _sha256,
    _write_cached,
    cache_key,
    cap_names,
    libseccomp_version,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~8 ms) on every `run`
if TYPE_CHECKING:
    from collections.abc import Iterable

EPERM = 1
ENOSYS = 38

# Filter return values (<linux/seccomp.h>): what libseccomp's SCMP_ACT_* are.
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000

ACTIONS = {
    "SCMP_ACT_KILL": RET_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": RET_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": RET_KILL_PROCESS,
    "SCMP_ACT_TRAP": RET_TRAP,
    "SCMP_ACT_ERRNO": RET_ERRNO,
    "SCMP_ACT_TRACE": RET_TRACE,
    "SCMP_ACT_LOG": RET_LOG,
    "SCMP_ACT_ALLOW": RET_ALLOW,
}

# enum scmp_compare (<seccomp.h>).
OPS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# Profile architecture names and the pyseccomp.Arch attribute for each.
ARCHES = {
    "SCMP_ARCH_X86": "X86",
    "SCMP_ARCH_X86_64": "X86_64",
    "SCMP_ARCH_X32": "X32",
    "SCMP_ARCH_ARM": "ARM",
    "SCMP_ARCH_AARCH64": "AARCH64",
    "SCMP_ARCH_MIPS": "MIPS",
    "SCMP_ARCH_MIPS64": "MIPS64",
    "SCMP_ARCH_MIPS64N32": "MIPS64N32",
    "SCMP_ARCH_MIPSEL": "MIPSEL",
    "SCMP_ARCH_MIPSEL64": "MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32": "MIPSEL64N32",
    "SCMP_ARCH_PPC": "PPC",
    "SCMP_ARCH_PPC64": "PPC64",
    "SCMP_ARCH_PPC64LE": "PPC64LE",
    "SCMP_ARCH_S390": "S390",
    "SCMP_ARCH_S390X": "S390X",
    "SCMP_ARCH_PARISC": "PARISC",
    "SCMP_ARCH_PARISC64": "PARISC64",
    "SCMP_ARCH_RISCV64": "RISCV64",
    # Known to libseccomp 2.6 and later, not to Debian 12's 2.5.4 nor to the
    # pyseccomp binding: a profile naming them still loads, without them.
    "SCMP_ARCH_LOONGARCH64": "LOONGARCH64",
    "SCMP_ARCH_M68K": "M68K",
    "SCMP_ARCH_SH": "SH",
    "SCMP_ARCH_SHEB": "SHEB",
}

# uname's machine -> (its profile architecture, the names that
# includes/excludes "arches" use for it: Docker writes Go's, e.g. "amd64").
MACHINES = {
    "x86_64": ("SCMP_ARCH_X86_64", ("amd64", "x86_64")),
    "aarch64": ("SCMP_ARCH_AARCH64", ("arm64", "aarch64")),
    "riscv64": ("SCMP_ARCH_RISCV64", ("riscv64",)),
    "ppc64le": ("SCMP_ARCH_PPC64LE", ("ppc64le",)),
    "s390x": ("SCMP_ARCH_S390X", ("s390x",)),
}

# Syscalls newer than the libseccomp some distributions ship (Debian 12's
# 2.5.4 stops at futex_requeue, Linux 6.7). A profile may name them; they
# are then ruled by number, on the native architecture only. Syscalls added
# since Linux 5.1 have one number on every architecture but alpha.
NEWER_SYSCALLS = {
    "statmount": 457,
    "listmount": 458,
    "lsm_get_self_attr": 459,
    "lsm_set_self_attr": 460,
    "lsm_list_modules": 461,
    "mseal": 462,
    "setxattrat": 463,
    "getxattrat": 464,
    "listxattrat": 465,
    "removexattrat": 466,
    "open_tree_attr": 467,
    "file_getattr": 468,
    "file_setattr": 469,
}
NEWER_MACHINE_SYSCALLS = {"x86_64": {"uretprobe": 335}, "riscv64": {"riscv_hwprobe": 258}}
# Native syscall numbers past the last one libseccomp knows, up to here,
# fail with ENOSYS rather than the profile's default: a program then falls
# back as on an older kernel instead of giving up on EPERM (runc does the
# same). x86_64's 512 and above are x32's.
NEW_SYSCALL_LIMIT = 512


class Arg:
    """One argument condition: `index` (0-5) compared with `op`; for
    SCMP_CMP_MASKED_EQ, `value` is the mask and `value_two` the result."""

    __slots__ = ("index", "op", "value", "value_two")

    def __init__(self, index: int, op: int, value: int, value_two: int = 0) -> None:
        self.index = index
        self.op = op
        self.value = value
        self.value_two = value_two

    def __repr__(self) -> str:
        op = next(k for k, v in OPS.items() if v == self.op)
        return f"Arg({self.index} {op} {self.value:#x}, {self.value_two:#x})"


class Condition:
    """An entry's includes or excludes: capabilities (all of them for
    includes, any for excludes), architectures, and the kernel version."""

    __slots__ = ("caps", "arches", "min_kernel")

    def __init__(
        self, caps: frozenset[str] = frozenset(), arches: tuple[str, ...] = (), min_kernel: tuple[int, ...] = ()
    ) -> None:
        self.caps = caps
        self.arches = arches
        self.min_kernel = min_kernel


class Entry:
    """One element of the profile's "syscalls" list."""

    __slots__ = ("where", "names", "action", "args", "includes", "excludes")

    def __init__(
        self,
        where: str,
        names: tuple[str, ...],
        action: int,
        args: tuple[Arg, ...] = (),
        includes: Condition | None = None,
        excludes: Condition | None = None,
    ) -> None:
        self.where = where  # "syscalls[3]", for error messages
        self.names = names
        self.action = action
        self.args = args
        self.includes = includes or Condition()
        self.excludes = excludes or Condition()


class Profile:
    """A checked profile: nothing in it is left to validate but syscall
    names, which only libseccomp knows."""

    __slots__ = ("path", "default_action", "arches", "arch_map", "entries")

    def __init__(
        self,
        path: str,
        default_action: int,
        arches: tuple[str, ...] = (),
        arch_map: dict[str, tuple[str, ...]] | None = None,
        entries: list[Entry] | None = None,
    ) -> None:
        self.path = path
        self.default_action = default_action
        self.arches = arches
        self.arch_map = arch_map or {}
        self.entries = entries or []


class Rule:
    """What libseccomp is told: `action` for `names`, when all `args` hold."""

    __slots__ = ("where", "names", "action", "args")

    def __init__(self, where: str, names: tuple[str, ...], action: int, args: tuple[Arg, ...] = ()) -> None:
        self.where = where
        self.names = names
        self.action = action
        self.args = args

    def __repr__(self) -> str:
        return f"Rule({self.where} {','.join(self.names)} {self.action:#x} {list(self.args)})"


# --- the entry point --------------------------------------------------------


def compile_profile(
    profile: str | None, capabilities: Iterable[str], cache_dir: str, warnings: list[str] | None = None
) -> bytes | None:
    """The BPF program (struct sock_filter array) for a container.

    `profile`: None (or "builtin", as Docker spells it) for the default
    profile, "unconfined" for no filter (returns None), or the path of a
    profile in Docker's JSON format.
    `capabilities`: those the container keeps ("sys_admin" or
    "CAP_SYS_ADMIN"), for the rules that depend on them. Compiled programs
    are kept in `cache_dir`; a hit reads one file.
    `warnings`: when given, gets the line saying which architectures and
    syscalls of the profile this libseccomp does not know and were left
    out, on a cache hit as on a compile (a hit then reads a second file).
    """
    if profile == "unconfined":
        return None
    caps = cap_names(capabilities)
    raw = None
    if profile is None or profile == "builtin":
        path, digest = DEFAULT_PROFILE, DEFAULT_PROFILE_SHA256
    else:
        path = profile
        raw = _read_profile(path)
        digest = _sha256(raw).hexdigest()
    cache_file = os.path.join(cache_dir, cache_key(digest, caps) + ".bpf")
    # Beside the program, written before it: a hit finds both.
    warning_file = cache_file[: -len(".bpf")] + ".warning"
    program = _read_cached(cache_file)
    if program is not None:
        if warnings is not None:
            warnings.extend(_read_warning(warning_file))
        return program
    if raw is None:
        raw = _read_profile(path)
    parsed = parse_profile(raw, path)
    warning = skipped_warning(parsed)
    program = build_program(parsed, select_rules(parsed, caps))
    if warnings is not None and warning:
        warnings.append(warning)
    # A program cached without its warning would hide the warning on a hit.
    if not warning or _write_cached(warning_file, warning.encode()):
        _write_cached(cache_file, program)
    return program


def profile_error(path: str, what: str) -> InvalidArgumentError:
    """The one-line error for a bad profile, naming the file."""
    return InvalidArgumentError(f"seccomp profile {path}: {what}")


def _read_profile(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise profile_error(path, exc.strerror or str(exc)) from None


# --- parsing: Docker's JSON, checked ------------------------------------------


def parse_profile(raw: bytes, path: str) -> Profile:
    """Check a profile and turn it into a `Profile`; InvalidArgumentError
    names the file and what is wrong in one line."""
    import json

    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise profile_error(path, f"not valid JSON ({exc})") from None
    p = _Parser(path)
    if not isinstance(doc, dict):
        raise p.error("the profile must be a JSON object")
    if "defaultAction" not in doc:
        raise p.error("defaultAction is missing")
    default_action = p.action(doc["defaultAction"], doc.get("defaultErrnoRet"), "defaultAction", "defaultErrnoRet")
    if doc.get("listenerPath"):
        raise p.error("listenerPath (SCMP_ACT_NOTIFY) is not supported")
    for flag in p.strings(doc.get("flags"), "flags"):
        if flag not in _FILTER_FLAGS:
            raise p.error(f'flags: unknown flag "{flag}"')
    arches = tuple(p.arch(a, "architectures") for a in p.strings(doc.get("architectures"), "architectures"))
    arch_map = p.arch_map(doc.get("archMap"))
    if arches and arch_map:
        raise p.error("architectures and archMap are both set: use one of them")
    syscalls = doc.get("syscalls")
    if syscalls is None:
        syscalls = []
    if not isinstance(syscalls, list):
        raise p.error("syscalls must be a list")
    entries = [p.entry(item, f"syscalls[{i}]") for i, item in enumerate(syscalls)]
    return Profile(path, default_action, arches, arch_map, entries)


# Load-time flags a Docker profile may ask for. The exported program cannot
# carry them: they are accepted and not applied (TSYNC and LOG change no
# verdict; without SPEC_ALLOW the kernel keeps its speculation mitigation).
_FILTER_FLAGS = (
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
)


class _Parser:
    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, what: str) -> InvalidArgumentError:
        return profile_error(self.path, what)

    def integer(self, value: object, where: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(f"{where} must be an integer from {low} to {high}, not {value!r}")
        return value

    def strings(self, value: object, where: str) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.error(f"{where} must be a list of names")
        return value

    def action(self, name: object, errno_ret: object, where: str, errno_where: str) -> int:
        if name == "SCMP_ACT_NOTIFY":
            raise self.error(f"{where}: SCMP_ACT_NOTIFY needs a listener, which overlayctl does not support")
        if not isinstance(name, str) or name not in ACTIONS:
            raise self.error(f"{where}: unknown action {json_str(name)}")
        action = ACTIONS[name]
        if action in (RET_ERRNO, RET_TRACE):
            # As runc: without errnoRet, a rule's errno is EPERM.
            return action | (EPERM if errno_ret is None else self.integer(errno_ret, errno_where, 0, 4095))
        if errno_ret is not None and where != "defaultAction":
            raise self.error(f"{errno_where} only goes with SCMP_ACT_ERRNO or SCMP_ACT_TRACE")
        return action

    def arch(self, name: str, where: str) -> str:
        if name not in ARCHES:
            raise self.error(f'{where}: unknown architecture "{name}"')
        return name

    def arch_map(self, value: object) -> dict[str, tuple[str, ...]]:
        if value is None:
            return {}
        if not isinstance(value, list):
            raise self.error("archMap must be a list")
        arch_map = {}
        for i, item in enumerate(value):
            where = f"archMap[{i}]"
            if not isinstance(item, dict) or not isinstance(item.get("architecture"), str):
                raise self.error(f"{where} must have an architecture")
            main = self.arch(item["architecture"], where)
            subs = self.strings(item.get("subArchitectures"), f"{where}.subArchitectures")
            arch_map[main] = tuple(self.arch(sub, where) for sub in subs)
        return arch_map

    def entry(self, item: object, where: str) -> Entry:
        if not isinstance(item, dict):
            raise self.error(f"{where} must be an object")
        names = self.strings(item.get("names"), f"{where}.names")
        if isinstance(item.get("name"), str) and item["name"]:
            names = names + [item["name"]]  # the older single-name form
        if not names:
            raise self.error(f"{where} names no syscall")
        if "action" not in item:
            raise self.error(f"{where}: action is missing")
        action = self.action(item["action"], item.get("errnoRet"), where, f"{where}.errnoRet")
        args = item.get("args") or []
        if not isinstance(args, list):
            raise self.error(f"{where}.args must be a list of conditions")
        return Entry(
            where,
            tuple(names),
            action,
            tuple(self.arg(a, f"{where}.args[{i}]") for i, a in enumerate(args)),
            self.condition(item.get("includes"), f"{where}.includes"),
            self.condition(item.get("excludes"), f"{where}.excludes"),
        )

    def arg(self, item: object, where: str) -> Arg:
        if not isinstance(item, dict):
            raise self.error(f"{where} must be an object")
        op = item.get("op")
        if not isinstance(op, str) or op not in OPS:
            raise self.error(f"{where}: unknown op {json_str(op)}")
        return Arg(
            self.integer(item.get("index"), f"{where}.index", 0, 5),
            OPS[op],
            self.integer(item.get("value", 0), f"{where}.value", 0, 2**64 - 1),
            self.integer(item.get("valueTwo", 0), f"{where}.valueTwo", 0, 2**64 - 1),
        )

    def condition(self, item: object, where: str) -> Condition:
        if item is None:
            return Condition()
        if not isinstance(item, dict):
            raise self.error(f"{where} must be an object")
        min_kernel: tuple[int, ...] = ()
        if item.get("minKernel"):
            text = item["minKernel"]
            if not isinstance(text, str) or not _is_version(text):
                raise self.error(f"{where}.minKernel must be a kernel version like 4.8, not {json_str(text)}")
            min_kernel = kernel_version(text)
        return Condition(
            cap_names(self.strings(item.get("caps"), f"{where}.caps")),
            tuple(self.strings(item.get("arches"), f"{where}.arches")),
            min_kernel,
        )


def json_str(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _is_version(text: str) -> bool:
    parts = text.split(".")
    return 2 <= len(parts) <= 3 and all(p.isdigit() for p in parts)


def kernel_version(release: str) -> tuple[int, ...]:
    """(major, minor, patch) of "6.18.0-13-amd64" or "4.8"."""
    numbers = []
    for part in release.split("-", 1)[0].split(".")[:3]:
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        numbers.append(int(digits or 0))
    return tuple(numbers + [0] * (3 - len(numbers)))


# --- selection: the rules that apply to this container ----------------------


def select_rules(
    profile: Profile, caps: Iterable[str], machine: str | None = None, kernel: str | None = None
) -> list[Rule]:
    """The profile's entries that apply to a container keeping `caps`, on
    `machine` (uname's) under `kernel` (a release), as Docker applies them:
    includes.caps all held, excludes.caps none held, includes.arches naming
    this machine, includes.minKernel reached.

    Docker's argument semantics: conditions on distinct arguments must all
    hold (one rule); when an argument is named twice, each condition is a
    rule of its own (any may hold), as personality's allowed values are.
    Rules with the default action change nothing and are left out
    (libseccomp refuses them).
    """
    caps = cap_names(caps)
    uname = os.uname()
    arch_names = MACHINES.get(machine or uname.machine, ("", (machine or uname.machine,)))[1]
    version = kernel_version(kernel or uname.release)
    rules = []
    for entry in profile.entries:
        if entry.action == profile.default_action or not _applies(entry, caps, arch_names, version):
            continue
        indexes = [a.index for a in entry.args]
        if len(set(indexes)) == len(indexes):
            rules.append(Rule(entry.where, entry.names, entry.action, entry.args))
        else:
            rules.extend(Rule(entry.where, entry.names, entry.action, (a,)) for a in entry.args)
    return rules


def _applies(entry: Entry, caps: frozenset[str], arch_names: tuple[str, ...], kernel: tuple[int, ...]) -> bool:
    inc, exc = entry.includes, entry.excludes
    if not inc.caps <= caps or caps & exc.caps:
        return False
    if inc.arches and not set(inc.arches) & set(arch_names):
        return False
    if exc.arches and set(exc.arches) & set(arch_names):
        return False
    if inc.min_kernel and kernel < inc.min_kernel:
        return False
    return not (exc.min_kernel and kernel >= exc.min_kernel)


def filter_arches(profile: Profile, machine: str | None = None) -> list[str]:
    """The architectures the filter covers, the native one first: the
    profile's list, or its archMap entry for this machine, as Docker does."""
    native = MACHINES.get(machine or os.uname().machine, ("", ()))[0]
    listed = list(profile.arches) or [a for main, subs in profile.arch_map.items() if main == native for a in subs]
    return [native] + [a for a in dict.fromkeys(listed) if a != native]


# --- building: libseccomp writes the BPF -------------------------------------


def _binding():  # type: ignore[no-untyped-def]
    try:
        import pyseccomp
    except ImportError:
        raise KernelError(
            "seccomp: the pyseccomp package is missing: reinstall overlayctl (scripts/setup.sh), "
            "or run with --security-opt seccomp=unconfined"
        ) from None
    except (OSError, RuntimeError) as exc:
        raise KernelError(
            f"seccomp: cannot load libseccomp ({exc}): apt-get install libseccomp2, "
            "or run with --security-opt seccomp=unconfined"
        ) from None
    return pyseccomp


def build_program(profile: Profile, rules: list[Rule], machine: str | None = None) -> bytes:
    """Compile rules with libseccomp into a BPF program for this machine.

    Two filters are merged into one: the native architecture's, where
    syscalls newer than libseccomp can be ruled by number, and the others'
    (x86 and x32 beside x86_64), where everything goes by name."""
    seccomp = _binding()
    machine = machine or os.uname().machine
    native = _new_filter(seccomp, profile.default_action)
    others = [a for a in filter_arches(profile, machine)[1:] if _arch_token(seccomp, a) is not None]
    compat = None
    if others:
        compat = _new_filter(seccomp, profile.default_action)
        for arch in others:
            compat.add_arch(getattr(seccomp.Arch, ARCHES[arch]))
        compat.remove_arch(seccomp.Arch.NATIVE)
    compat_tokens = [getattr(seccomp.Arch, ARCHES[a]) for a in others]
    newer = dict(NEWER_SYSCALLS, **NEWER_MACHINE_SYSCALLS.get(machine, {}))
    ruled = set()
    for rule in rules:
        for name in rule.names:
            number = seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)
            if number == -1:  # __NR_SCMP_ERROR: a name libseccomp does not know
                # None: not a syscall of this architecture, or one newer than
                # libseccomp and us, left out as runc leaves it out (the
                # warning of skipped_warning names it).
                number = newer.get(name)
            elif number < 0:
                number = None  # a syscall of other architectures only
            if number is not None:
                _add(profile, native, rule, name, number)
                ruled.add(number)
            if compat is not None and any(seccomp.resolve_syscall(t, name) >= 0 for t in compat_tokens):
                _add(profile, compat, rule, name, seccomp.resolve_syscall(seccomp.Arch.NATIVE, name))
    if profile.default_action not in (RET_ALLOW, RET_LOG):
        for number in range(_last_known_syscall(seccomp) + 1, NEW_SYSCALL_LIMIT):
            if number not in ruled:
                native.add_rule(RET_ERRNO | ENOSYS, number)
    if compat is not None:
        native.merge(compat)
    return _export(native)


def _is_newer_syscall(name: str) -> bool:
    return name in NEWER_SYSCALLS or any(name in table for table in NEWER_MACHINE_SYSCALLS.values())


def _arch_token(seccomp, arch: str) -> int | None:  # type: ignore[no-untyped-def]
    """libseccomp's token for a profile architecture, or None when the
    binding or the library does not know it."""
    token = getattr(seccomp.Arch, ARCHES[arch], None)
    # For an architecture it does not support libseccomp resolves no name.
    if token is None or seccomp.resolve_syscall(token, "read") < 0:
        return None
    return token


def skipped_warning(profile: Profile, machine: str | None = None) -> str:
    """The one line that says what of `profile` this libseccomp cannot
    rule and is left out, or "": architectures the filter would cover and
    syscall names it does not know (nor NEWER_SYSCALLS). As Docker and
    runc, the rest of the profile applies: a profile written for a newer
    libseccomp stays usable, and the line shows a misspelt name."""
    seccomp = _binding()
    arches = [a for a in filter_arches(profile, machine) if a and _arch_token(seccomp, a) is None]
    names = sorted(
        {
            name
            for entry in profile.entries
            for name in entry.names
            if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) == -1 and not _is_newer_syscall(name)
        }
    )
    parts = []
    if arches:
        parts.append(f"{_counted(len(arches), 'architecture')} ({', '.join(arches)})")
    if names:
        parts.append(f"{_counted(len(names), 'syscall')} ({', '.join(names)})")
    if not parts:
        return ""
    version = libseccomp_version()
    library = f"libseccomp {version}" if version else "this libseccomp"
    return f"seccomp profile {profile.path}: skipped {' and '.join(parts)} unknown to {library}"


def _counted(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _new_filter(seccomp, default_action: int):  # type: ignore[no-untyped-def]
    flt = seccomp.SyscallFilter(default_action)
    # Syscall numbers in a binary tree rather than a list: a verdict in ~10
    # comparisons instead of up to ~400, and the kernel, which runs the
    # filter once per syscall number when it is loaded to cache the
    # constant verdicts, loads it in ~1.5 ms instead of ~2.5. libseccomp
    # before 2.5 does not know the attribute and keeps the list.
    try:
        flt.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)
    except OSError:
        pass
    return flt


def _add(profile: Profile, flt, rule: Rule, name: str, number: int) -> None:  # type: ignore[no-untyped-def]
    import pyseccomp

    conditions = [pyseccomp.Arg(a.index, a.op, a.value, a.value_two) for a in rule.args]
    try:
        flt.add_rule(rule.action, number, *conditions)
    except OSError as exc:
        raise profile_error(
            profile.path, f"{rule.where}: libseccomp refused the rule for {name}: {exc.strerror or exc}"
        ) from None


def _last_known_syscall(seccomp) -> int:  # type: ignore[no-untyped-def]
    last = -1
    for number in range(NEW_SYSCALL_LIMIT):
        try:
            seccomp.resolve_syscall(seccomp.Arch.NATIVE, number)
        except ValueError:
            continue
        last = number
    return last


def _export(flt) -> bytes:  # type: ignore[no-untyped-def]
    # libseccomp writes the program to a file descriptor: an anonymous
    # memory file, read back whole.
    fd = os.memfd_create("overlayctl-seccomp", os.MFD_CLOEXEC)
    with open(fd, "w+b", buffering=0) as f:
        flt.export_bpf(f)
        f.seek(0)
        return f.read()

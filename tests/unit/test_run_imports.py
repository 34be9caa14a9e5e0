"""The run path is a declared set of modules.

`overlayctl run --rm --network none IMAGE true` pays for every module it
imports, on every run: start-up time is a feature (docs/benchmarks.md,
"Where the time of `run` goes"). RUN_PATH below declares what that command
may import, in the supervisor and in the container's PID 1 (a fork, which
imports what it needs before pivot_root). A module outside it fails the
test, named with the module that imported it; the fix is to import it
inside the function that needs it, or to declare it here with its cost.
HEAVY names modules that must never be on the path at all.

The interpreter runs as the launcher (scripts/setup.sh) runs it, `python
-IS`, with this checkout first on sys.path and the venv's site-packages
after it; what the bare interpreter loads at start-up is not counted. A
meta path finder that finds nothing notes who asked for each new module;
the supervisor reports at its exit and PID 1 just before its execve.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The standard library (and python-prctl's C module) on the run path.
RUN_PATH_STDLIB = {
    "__future__",  # `from __future__ import annotations` imports it, once
    "os", "os.path", "posixpath", "genericpath", "stat", "_stat", "_collections_abc",
    "errno",
    "gc",  # built in: cli.fastrun turns the collector off while the path is imported
    "_functools",  # lru_cache for _sqlite3 (store.catalog), without functools
    "_sqlite3",  # the catalog, without the sqlite3 package (datetime)
    # runtime.syscalls calls the kernel through its own C module, not ctypes
    # (~6 ms to load on the project's VM; ctypes is the fallback when the
    # module was not compiled, and then on the path).
    "_json",  # util.jsonio, without json (re, enum)
    "_sha256",  # the seccomp cache's key, without hashlib
    "_prctl",  # python-prctl's C layer, without prctl (a property per capability)
    "fcntl",  # with a size limit: runtime.quota's ioctls (its records are packed by hand)
}  # fmt: skip

# overlayctl's modules on the run path. A name ending in ".*" would admit a
# package and every module of it. No cgroup module is here: a start
# without limits finds a freezer left by `pause` through paths.cgroup_dir.
RUN_PATH_OVERLAYCTL = {
    "overlayctl", "overlayctl.errors", "overlayctl.paths",
    "overlayctl.cli", "overlayctl.cli.runopts", "overlayctl.cli.fastrun", "overlayctl.cli.common",
    "overlayctl.engine", "overlayctl.engine.containers",
    "overlayctl.supervise", "overlayctl.supervise.supervisor", "overlayctl.supervise.foreground",
    "overlayctl.container", "overlayctl.container.spec", "overlayctl.container.resources",
    "overlayctl.container.teardown",
    "overlayctl.container.model",  # the typed Config and HostConfig: plain classes, no dataclasses
    "overlayctl.store", "overlayctl.store.store", "overlayctl.store.catalog", "overlayctl.store.containers",
    "overlayctl.store.images", "overlayctl.store.layers", "overlayctl.store.staging",
    "overlayctl.store.events",  # (~0.14 ms) create, start, die and destroy are recorded as they happen
    "overlayctl.store.storageopts",  # every create reads the store's default size limit (storage.json)
    # A create with a size limit (--storage-opt size=, or the store's default).
    "overlayctl.store.projects", "overlayctl.store.locks", "overlayctl.runtime.quota", "overlayctl.util.sizes",
    "overlayctl.runtime", "overlayctl.runtime.spec", "overlayctl.runtime.overlay", "overlayctl.runtime.syscalls",
    "overlayctl.runtime.capabilities", "overlayctl.runtime.seccompcache", "overlayctl.runtime.init",
    "overlayctl.runtime.mountplan", "overlayctl.runtime._kernel",
    "overlayctl.util", "overlayctl.util.faults", "overlayctl.util.humanize", "overlayctl.util.jsonio",
    "overlayctl.util.names", "overlayctl.util.proc", "overlayctl.util.reference",
    "overlayctl.util.codebundle",  # the launcher's first import: the rest from one file
}  # fmt: skip

RUN_PATH = RUN_PATH_STDLIB | RUN_PATH_OVERLAYCTL

# Never on the run path, nor any module of these packages (the cost of each
# on this project's VM, `python -IS -c "import X"` less `-c pass`, in
# brackets where measured).
HEAVY = (
    # Libraries the other commands use.
    "click",  # (~25 ms) the CLI; `run` parses with cli.runopts
    "psutil",  # (~20 ms)
    "pyroute2",  # (~125 ms) only a bridged network loads its message classes
    "nftables", "pyseccomp", "prctl", "zstandard", "jsonschema",
    # The standard library's heavy corners.
    "dataclasses",  # (~14 ms, with inspect, ast, dis, re and enum)
    "typing",  # (~9 ms) annotations are strings; TYPE_CHECKING is a plain False
    "inspect", "ast", "dis", "enum", "re", "json", "functools", "collections", "contextlib",
    "datetime", "sqlite3", "signal", "hashlib", "random", "uuid", "base64", "locale", "copy", "weakref",
    "pathlib", "shutil", "tempfile", "argparse", "logging", "traceback", "warnings", "tokenize",
    "threading", "subprocess", "selectors", "socket",  # (socket: -t only)
    "asyncio", "concurrent", "multiprocessing",
    "tarfile", "zipfile", "gzip", "zlib", "lzma", "bz2",
    "http", "urllib", "ssl", "email", "xml", "html",
)  # fmt: skip

MARK = "RUN-PATH-IMPORTS "

# Run by `python -IS -c`: argv is CHECKOUT SITE_PACKAGES MODE ARGS...; MODE
# "run" is the real `overlayctl ARGS`, "import" imports ARGS (modules) the
# way the fast path does and reports.
HOOK = r"""
import sys

base = set(sys.modules)
importers = {}


class Recorder:
    # A finder that finds nothing: it notes who asked for each new module.
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name not in importers:
            frame = sys._getframe(1)
            while frame is not None and (
                frame.f_code.co_filename.startswith("<frozen importlib")
                or frame.f_globals.get("__name__") == "__main__"
            ):
                frame = frame.f_back
            importers[name] = frame.f_globals.get("__name__", "?") if frame is not None else "the launcher"
        return None


sys.meta_path.insert(0, Recorder)
import os

real_exit, real_execve = os._exit, os.execve


def report(who):
    seen = [(name, importers.get(name, "?")) for name in sorted(set(sys.modules) - base)]
    os.write(2, ("MARK" + who + " " + repr(seen) + "\n").encode())


def _exit(code):
    report("supervisor")
    real_exit(code)


def execve(*args):
    report("pid1")
    real_execve(*args)


sys.path[:0] = sys.argv[1:3]
mode, args = sys.argv[3], sys.argv[4:]
if mode == "run":
    os._exit, os.execve = _exit, execve
    from overlayctl.util.codebundle import install

    install()  # as the launcher does (with no bundle made, nothing changes)
    from overlayctl.cli import main

    main(args)
else:
    for name in args:
        __import__(name)
    report("imports")
""".replace("MARK", MARK)


def _traced(mode: str, *args: str, env: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Run the hook; for each reporting process, {module: who imported it}."""
    site = sysconfig.get_path("purelib")
    proc = subprocess.run(
        [sys.executable, "-IS", "-c", HOOK, str(REPO), site, mode, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    found: dict[str, dict[str, str]] = {}
    for line in proc.stderr.splitlines():
        if line.startswith(MARK):
            who, _, seen = line[len(MARK) :].partition(" ")
            found[who] = dict(ast.literal_eval(seen))
    return found


def _declared(name: str) -> bool:
    if name in RUN_PATH:
        return True
    return any(
        pattern.endswith(".*") and (name == pattern[:-2] or name.startswith(pattern[:-1])) for pattern in RUN_PATH
    )


def _heavy(name: str) -> bool:
    return any(name == heavy or name.startswith(heavy + ".") for heavy in HEAVY)


def _problems(found: dict[str, dict[str, str]]) -> list[str]:
    problems = []
    for who, seen in sorted(found.items()):
        for name, importer in sorted(seen.items()):
            if _heavy(name):
                problems.append(f"{who}: {name} (imported by {importer}) must never be on the run path")
            elif not _declared(name):
                problems.append(
                    f"{who}: {name} (imported by {importer}) is not on the declared run path "
                    "(RUN_PATH in tests/unit/test_run_imports.py): import it where it is used, or declare it"
                )
    return problems


def test_declarations_do_not_overlap():
    assert not [name for name in RUN_PATH if _heavy(name.removesuffix(".*"))]


def test_run_path_entry_modules_import_only_the_declared_set():
    """What the fast path imports before it starts a container, and what
    PID 1 imports: no root needed."""
    found = _traced(
        "import",
        "overlayctl.cli",
        "overlayctl.cli.fastrun",
        "overlayctl.cli.common",
        "overlayctl.supervise.foreground",
        "overlayctl.supervise.supervisor",
        "overlayctl.runtime.init",
    )
    assert "overlayctl.store.catalog" in found["imports"]
    assert _problems(found) == []


@pytest.mark.root
def test_run_rm_network_none_imports_only_the_declared_set(cli, bb):
    """The real `run --rm --network none bb:1 true`, supervisor and PID 1.
    The second run: the first compiles the seccomp filter into the store's
    cache, which a run then only reads."""
    args = ("--root", str(cli.root), "--runroot", str(cli.runroot), "run", "--rm", "--network", "none", "bb:1", "true")
    cli.ok(*args[4:])
    found = _traced("run", *args, env=cli.env)
    assert set(found) == {"supervisor", "pid1"}, found.keys()
    assert "overlayctl.runtime.init" in found["pid1"]
    assert "overlayctl.store.catalog" in found["supervisor"]
    assert _problems(found) == []


def test_a_size_limit_brings_no_heavy_module():
    """`run --storage-opt size=` adds the size parser and the quota calls
    to the run path (its goal: under 2 ms more than a plain run). Checked
    by import, since the run itself needs a kernel with project quotas; in
    the Vagrant VM `python -X importtime` showed the rest it adds
    (store.projects, store.locks, struct, fcntl)."""
    found = _traced(
        "import", "overlayctl.cli", "overlayctl.util.sizes", "overlayctl.runtime.quota", "overlayctl.store.projects"
    )
    assert _problems(found) == []


def test_the_hook_names_an_undeclared_module_and_its_importer():
    found = _traced("import", "overlayctl.cli", "overlayctl.util.space")
    problems = _problems(found)
    assert any(p.startswith("imports: overlayctl.util.space (imported by the launcher)") for p in problems), problems


def test_the_catalog_loads_sqlite_without_functools_and_leaves_the_real_one_importable():
    code = (
        "import sys\n"
        "from overlayctl.store import catalog\n"
        "print('functools' in sys.modules, 'collections' in sys.modules)\n"
        "conn = catalog._sqlite.connect(':memory:')\n"
        "print(sum(conn.execute('SELECT ?', (i % 200,)).fetchone()[0] for i in range(1000)))\n"
        "import functools\n"
        "print(functools.partial(int, '7')(), functools.lru_cache(maxsize=2)(abs)(-3))\n"
    )
    site = sysconfig.get_path("purelib")
    proc = subprocess.run(
        [sys.executable, "-IS", "-c", f"import sys; sys.path[:0] = [{str(REPO)!r}, {site!r}]\n" + code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False", "99500", "7", "3"]

"""The run path's compiled code in one file, loaded with one read.

`overlayctl run` imports some forty modules of its own on every start, and
each normal import costs a path search, stats, an open and a read of its
.pyc before its code runs: about 3 ms of a 50 ms run on the project's VM
(measured: importing the run path's modules, 20.9 ms through the normal
import and 18.0 ms from the bundle, mean of 10 fresh interpreters each).
The bundle holds the compiled code of the declared run-path modules
(RUN_PATH below; tests/unit/test_run_imports.py holds it to the set that
`run` imports) in one marshal file beside the package's .pyc files, and the
launcher puts a finder before the normal path search that serves them.

Correctness first, as for a .pyc: a module is served from the bundle only
while its source file has the size and modification time recorded when
the bundle was made (one stat). An edited module, a missing or unreadable
bundle, one made by another Python: the normal import takes over, module
by module. scripts/setup.sh makes the bundle when it installs the package:

    python -m overlayctl.util.codebundle [PACKAGE_DIR]
"""

from __future__ import annotations

import os
import sys

# The modules `run --rm` imports, in the supervisor and in PID 1, but the
# two packages loaded before the bundle can be (overlayctl, overlayctl.util)
# and this module.
RUN_PATH = (
    "overlayctl.errors", "overlayctl.paths",
    "overlayctl.cli", "overlayctl.cli.runopts", "overlayctl.cli.fastrun", "overlayctl.cli.common",
    "overlayctl.engine", "overlayctl.engine.containers",
    "overlayctl.supervise", "overlayctl.supervise.supervisor", "overlayctl.supervise.foreground",
    "overlayctl.container", "overlayctl.container.spec", "overlayctl.container.resources",
    "overlayctl.container.teardown", "overlayctl.container.model",
    "overlayctl.store", "overlayctl.store.store", "overlayctl.store.catalog", "overlayctl.store.containers",
    "overlayctl.store.images", "overlayctl.store.layers", "overlayctl.store.staging", "overlayctl.store.events",
    "overlayctl.store.storageopts", "overlayctl.store.projects", "overlayctl.store.locks",
    "overlayctl.runtime", "overlayctl.runtime.spec", "overlayctl.runtime.overlay", "overlayctl.runtime.syscalls",
    "overlayctl.runtime.capabilities", "overlayctl.runtime.seccompcache", "overlayctl.runtime.init",
    "overlayctl.runtime.mountplan", "overlayctl.runtime.quota",
    "overlayctl.util.faults", "overlayctl.util.humanize", "overlayctl.util.jsonio",
    "overlayctl.util.names", "overlayctl.util.proc", "overlayctl.util.reference", "overlayctl.util.sizes",
)  # fmt: skip

BUNDLE_NAME = "run-path.bundle"
_FORMAT = 1


def _magic() -> bytes:
    """The running interpreter's bytecode magic: a bundle is for it alone.
    (From its own loader, already loaded: importlib.util would import
    functools, contextlib and warnings to say the same.)"""
    import _frozen_importlib_external

    return _frozen_importlib_external.MAGIC_NUMBER


def bundle_path(package_dir: str) -> str:
    """Where the bundle of the package at package_dir lives."""
    return os.path.join(package_dir, "__pycache__", BUNDLE_NAME)


def _source(package_dir: str, name: str) -> tuple[str, bool]:
    """The source file of module `name` and whether it is a package."""
    base = os.path.join(package_dir, *name.split(".")[1:])
    if os.path.isdir(base):
        return os.path.join(base, "__init__.py"), True
    return base + ".py", False


def build(package_dir: str) -> str:
    """Compile RUN_PATH from package_dir into its bundle; return its path.
    Written under a temporary name and renamed: a reader never sees half."""
    import marshal

    entries = {}
    for name in RUN_PATH:
        path, is_package = _source(package_dir, name)
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            source = f.read()
        code = compile(source, path, "exec", dont_inherit=True)
        entries[name] = (path, is_package, st.st_mtime_ns, st.st_size, marshal.dumps(code))
    out = bundle_path(package_dir)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = f"{out}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(marshal.dumps((_FORMAT, _magic(), entries)))
    os.replace(tmp, out)
    return out


class _BundleFinder:
    """Finds and loads the modules of one bundle; declines the rest."""

    def __init__(self, entries: dict) -> None:
        self.entries = entries

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        entry = self.entries.get(name)
        if entry is None:
            return None
        origin, is_package, mtime_ns, size = entry[:4]
        try:
            st = os.stat(origin)
        except OSError:
            return None
        if st.st_mtime_ns != mtime_ns or st.st_size != size:
            del self.entries[name]  # changed since the bundle was made: the normal import
            return None
        from _frozen_importlib import ModuleSpec

        spec = ModuleSpec(name, self, origin=origin, is_package=is_package)
        if is_package:
            spec.submodule_search_locations = [os.path.dirname(origin)]
        spec.has_location = True
        return spec

    def create_module(self, spec: object) -> None:
        return None  # the default module

    def exec_module(self, module: object) -> None:
        import marshal

        entry = self.entries.pop(module.__name__)  # type: ignore[attr-defined]
        exec(marshal.loads(entry[4]), module.__dict__)  # type: ignore[attr-defined]


def install(package_dir: str | None = None) -> bool:
    """Serve the run path from the bundle of package_dir (default: this
    package's). The finder goes just before the path search, so built-in
    and frozen modules, and any finder put first, come first. False, and
    nothing changed, without a usable bundle."""
    import marshal

    if package_dir is None:
        package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        with open(bundle_path(package_dir), "rb") as f:
            version, magic, entries = marshal.loads(f.read())
    except (OSError, ValueError, EOFError, TypeError):
        return False
    if version != _FORMAT or magic != _magic() or not isinstance(entries, dict):
        return False
    finders = sys.meta_path
    where = next((i for i, f in enumerate(finders) if getattr(f, "__name__", "") == "PathFinder"), len(finders))
    finders.insert(where, _BundleFinder(entries))
    return True


if __name__ == "__main__":
    here = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print(build(os.path.abspath(here)))

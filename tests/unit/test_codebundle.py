"""The run path's code bundle (overlayctl/util/codebundle.py): it holds the
declared run path, serves it from one file, and gives way to the normal
import for anything edited since, or when it is not the interpreter's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from overlayctl.util import codebundle
from tests.unit.test_run_imports import RUN_PATH_OVERLAYCTL

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import sys
sys.path[:0] = sys.argv[1:3]
from overlayctl.util.codebundle import install
print(install())
import overlayctl.cli.common, overlayctl.runtime.init
served = sorted(n for n, m in sys.modules.items() if type(getattr(m, "__loader__", None)).__name__ == "_BundleFinder")
print(" ".join(served))
import overlayctl.util.humanize as h
print(getattr(h, "EDITED", "no"))
"""


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    shutil.copytree(REPO / "overlayctl", root / "overlayctl", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _probe(root: Path) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-IS", "-c", PROBE, str(root), sysconfig.get_path("purelib")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.splitlines()


def test_it_holds_the_declared_run_path() -> None:
    loaded_first = {"overlayctl", "overlayctl.util", "overlayctl.util.codebundle", "overlayctl.runtime._kernel"}
    assert set(codebundle.RUN_PATH) == RUN_PATH_OVERLAYCTL - loaded_first


def test_the_run_path_is_served_from_the_bundle(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    assert _probe(root)[0] == "False"  # no bundle: the normal import, nothing changed
    codebundle.build(str(root / "overlayctl"))
    installed, served, edited = _probe(root)
    assert installed == "True"
    assert "overlayctl.cli.common" in served.split() and "overlayctl.runtime.init" in served.split()
    assert edited == "no"


def test_an_edited_module_is_imported_from_its_source(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    codebundle.build(str(root / "overlayctl"))
    with open(root / "overlayctl" / "util" / "humanize.py", "a") as f:
        f.write("\nEDITED = 'yes'\n")
    installed, served, edited = _probe(root)
    assert installed == "True" and edited == "yes"
    assert "overlayctl.util.humanize" not in served.split()
    assert "overlayctl.cli.common" in served.split()


def test_a_bundle_of_another_python_is_ignored(tmp_path: Path) -> None:
    import marshal

    root = _copy(tmp_path)
    path = codebundle.build(str(root / "overlayctl"))
    with open(path, "rb") as f:
        version, _, entries = marshal.loads(f.read())
    with open(path, "wb") as f:
        f.write(marshal.dumps((version, b"\0\0\r\n", entries)))
    assert _probe(root)[0] == "False"
    os.truncate(path, 100)  # cut short: unreadable
    assert _probe(root)[0] == "False"

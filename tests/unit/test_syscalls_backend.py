"""runtime/_kernel.c and its ctypes fallback make the same calls: each is
tried on real syscalls, and a run's syscalls load no ctypes when the C
module is built."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from overlayctl.runtime import syscalls

REPO = Path(__file__).resolve().parents[2]
GETPID = {"x86_64": 39, "aarch64": 172}[os.uname().machine]
UMOUNT2 = {"x86_64": 166, "aarch64": 39}[os.uname().machine]


def _backends() -> list:
    backends = [pytest.param(syscalls._ctypes_backend(), id="ctypes")]
    try:
        from overlayctl.runtime import _kernel
    except ImportError:
        backends.append(pytest.param(None, id="c", marks=pytest.mark.skip(reason="runtime/_kernel.c not built")))
    else:
        backends.append(pytest.param((_kernel.syscall, _kernel.address), id="c"))
    return backends


@pytest.mark.parametrize("backend", _backends())
def test_results_and_errors(backend) -> None:
    call, address = backend
    assert call(GETPID) == os.getpid()
    # umount2 of a path that is no mount point: -EINVAL, or -ENOENT for none.
    assert call(UMOUNT2, b"/nonexistent-overlayctl-path", 0) == -errno.ENOENT
    assert call(UMOUNT2, None, 0) == -errno.EFAULT


@pytest.mark.parametrize("backend", _backends())
def test_the_kernel_writes_into_a_bytearray(backend, tmp_path: Path) -> None:
    call, address = backend
    # getcwd(2) fills the buffer it is given.
    getcwd = {"x86_64": 79, "aarch64": 17}[os.uname().machine]
    buf = bytearray(4096)
    n = call(getcwd, buf, len(buf))
    assert n > 0
    assert bytes(buf[: n - 1]).decode() == os.getcwd()
    assert address(buf) != 0 and address(b"x") != 0


def test_a_run_path_syscall_loads_no_ctypes() -> None:
    pytest.importorskip("overlayctl.runtime._kernel")
    code = (
        "import sys\n"
        "from overlayctl.runtime import syscalls\n"
        "syscalls.unshare(0)\n"
        "assert 'ctypes' not in sys.modules, 'ctypes was loaded'\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-S", "-c", code], check=True, env=env, cwd=str(REPO))

"""pyroute2 on the run path: only its rtnetlink message classes are loaded,
and the rest of the library still works in the same process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


def _python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": str(REPO)}
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_attach_imports_no_pyroute2():
    out = _python(
        "import sys\n"
        "from overlayctl.network import attach, manage\n"
        "from overlayctl.cli import network\n"
        "print(sorted(m for m in sys.modules if m.startswith('pyroute2')))\n"
    )
    assert out.strip() == "[]"


def test_lean_import_skips_the_package_init():
    out = _python(
        "import sys\n"
        "from overlayctl.network import netlink\n"
        "rtnl = netlink._rtnl()\n"
        "print('asyncio' in sys.modules, 'pyroute2.iproute' in sys.modules, 'pyroute2.ndb' in sys.modules)\n"
        "msg = rtnl.ifinfmsg()\n"
        "msg['attrs'] = [('IFLA_IFNAME', 'vethx'), ('IFLA_LINKINFO', {'attrs': [('IFLA_INFO_KIND', 'veth'),\n"
        "    ('IFLA_INFO_DATA', {'attrs': [('VETH_INFO_PEER', {'attrs': [('IFLA_IFNAME', 'eth0')]})]})]})]\n"
        "msg.encode()\n"
        "print(b'vethx' in msg.data, b'eth0' in msg.data, b'veth' in msg.data)\n"
        # The rest of the library is still there: the package __init__ runs on demand.
        "from pyroute2 import IPRoute\n"
        "print(IPRoute.__module__)\n"
    )
    assert out.splitlines() == ["False False False", "True True True", "pyroute2.iproute.linux"]

"""The plugger: `run` forks it to load the rtnetlink classes ahead of the
start, and the supervisor hands it the veth plugging (network.plugger)."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys

import psutil

from tests.conftest import REPO
from tests.integration.test_network import net  # noqa: F401  (fixture)

# Runs in a fresh interpreter, so that whether pyroute2's message classes
# were imported there says where the plugging happened.
_SCRIPT = r"""
import json, os, subprocess, sys, time
from overlayctl.errors import KernelError
from overlayctl.network import plugger

bridge, dummy, prefix = sys.argv[1:4]
CLASSES = "pyroute2.netlink.rtnl.ifinfmsg"
out = {}

def reaped(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False

own = os.readlink("/proc/self/ns/net")
inside = subprocess.Popen(["unshare", "--net", "sleep", "60"])
try:
    while os.readlink(f"/proc/{inside.pid}/ns/net") == own:
        time.sleep(0.01)
    request = {
        "bridge": bridge, "bridge_gateway": prefix + ".1", "prefixlen": 24,
        "broadcast": prefix + ".255", "bridge_mac": "02:42:0a:fe:fe:01", "internal": True,
        "bridge6": None, "veth": "vethplugtest0", "address": prefix + ".2",
        "gateway": prefix + ".1", "mac": "02:42:0a:fe:fe:02", "interface": "eth0", "ipv6": None,
    }
    plugger.prewarm()
    helper = plugger._current.pid
    plugger.plug(inside.pid, [request])
    out["plugged_here"] = CLASSES in sys.modules
    out["reaped"] = reaped(helper)
    out["eth0"] = subprocess.run(
        ["nsenter", "-t", str(inside.pid), "-n", "ip", "-4", "-o", "addr", "show", "eth0"],
        capture_output=True, text=True,
    ).stdout
    out["route"] = subprocess.run(
        ["nsenter", "-t", str(inside.pid), "-n", "ip", "-4", "route", "show", "default"],
        capture_output=True, text=True,
    ).stdout

    # A failure comes back as the same one-line error as in-process.
    plugger.prewarm()
    helper = plugger._current.pid
    try:
        plugger.plug(inside.pid, [dict(request, bridge=dummy, veth="vethplugtest1", interface="eth1")])
        out["error"] = None
    except KernelError as exc:
        out["error"] = exc.message
    out["failed_here"] = CLASSES in sys.modules
    out["reaped_after_error"] = reaped(helper)

    # A start that never plugs: the plugger ends when let go.
    plugger.prewarm()
    helper = plugger._current.pid
    plugger.finish()
    out["reaped_unused"] = reaped(helper)
finally:
    inside.kill()
    inside.wait()
    from overlayctl.network import netlink
    netlink.delete_link(bridge, "bridge")
print(json.dumps(out))
"""


def test_the_plugger_plugs_and_reports_failures_and_is_reaped(net):  # noqa: F811
    bridge = "octlp" + os.urandom(3).hex()
    dummy = "octld" + os.urandom(3).hex()  # a device that is not a bridge
    prefix = str(ipaddress.IPv4Network(net.spare).network_address).rsplit(".", 1)[0]
    subprocess.run(["ip", "link", "add", dummy, "type", "veth", "peer", "name", dummy + "p"], check=True)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT, bridge, dummy, prefix],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
    finally:
        subprocess.run(["ip", "link", "del", dummy], check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    # Plugged by the plugger: this process never loaded the classes.
    assert out["plugged_here"] is False and out["failed_here"] is False
    assert f"{prefix}.2/24" in out["eth0"] and f"via {prefix}.1 dev eth0" in out["route"]
    assert out["error"] == (
        f'device "{dummy}" exists and is not a bridge (veth); '
        "give the network another device (OVERLAYCTL_BRIDGE_NAME for the default bridge)"
    )
    assert out["reaped"] and out["reaped_after_error"] and out["reaped_unused"]


def test_run_leaves_no_plugger_behind(net):  # noqa: F811
    cli = net.cli
    cid = cli.ok("run", "-d", "-p", "127.0.0.1::80", "bb:1", "sleep", "60").strip()
    try:
        # Every process forked from `run` itself (the plugger is one) has
        # gone; only the container's monitor and command remain.
        left = [p.pid for p in psutil.process_iter(["cmdline"]) if _is_run(p.info["cmdline"] or [], str(cli.root))]
        assert left == []
        assert json.loads(cli.ok("inspect", cid))[0]["State"]["Running"] is True
    finally:
        cli.ok("rm", "-f", cid)


def _is_run(cmdline: list[str], root: str) -> bool:
    return root in cmdline and "run" in cmdline and "-d" in cmdline

"""--device parsing and the cgroup device program, without root."""

from __future__ import annotations

import struct

import pytest

from overlayctl.container.model import Device as ConfigDevice
from overlayctl.errors import InvalidArgumentError
from overlayctl.runtime.devices import Device, device_program, needs_program, parse_device
from overlayctl.runtime.mountplan import GrantedDevice, HostDevices, rootfs_plan
from overlayctl.runtime.overlay import OverlayLayout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/dev/null", Device("/dev/null", "/dev/null", "rwm")),
        ("/dev/null:/dev/n", Device("/dev/null", "/dev/n", "rwm")),
        ("/dev/null:r", Device("/dev/null", "/dev/null", "r")),
        ("/dev/sda:/dev/xvdc:rw", Device("/dev/sda", "/dev/xvdc", "rw")),
        ("/dev/zero:/x//z/:mr", Device("/dev/zero", "/x/z", "mr")),
    ],
)
def test_device_syntax_is_dockers(text, expected):
    assert parse_device(text) == expected


@pytest.mark.parametrize("text", ["", ":/dev/x", "null", "/dev/null:x", "/dev/null:/dev/x:rx", "/a:/b:r:w", "/a:/dev"])
def test_bad_device_syntax_is_refused(text):
    with pytest.raises(InvalidArgumentError):
        parse_device(text)


def test_only_narrowed_permissions_need_a_program():
    assert not Device("/a", "/a", "rw").restricted
    assert Device("/a", "/a", "rm").restricted
    assert needs_program([ConfigDevice("/a", "/a", "w")])
    assert not needs_program([ConfigDevice("/a", "/a", "rwm")])


def _decode(program: bytes) -> list[tuple[int, int, int, int, int]]:
    out = []
    for i in range(0, len(program), 8):
        code, regs, off, imm = struct.unpack("<BBhi", program[i : i + 8])
        out.append((code, regs & 0xF, regs >> 4, off, imm))
    return out


def test_the_device_program_jumps_land_on_deny():
    insns = _decode(device_program([("c", 1, 5, "r"), ("b", 8, 0, "w"), ("c", 1, 3, "rw")]))
    # 6 to load the context, 4 per narrowed device (rw needs none), allow, deny.
    assert len(insns) == 6 + 4 * 2 + 4
    deny = len(insns) - 2
    assert insns[deny] == (0xB7, 0, 0, 0, 0) and insns[-1][0] == 0x95
    assert insns[deny - 2] == (0xB7, 0, 0, 0, 1)
    jsets = [(i, insn) for i, insn in enumerate(insns) if insn[0] == 0x45]
    assert [insn[4] for _, insn in jsets] == [4, 2]  # r only: write denied; w only: read denied
    for i, insn in jsets:
        assert i + 1 + insn[3] == deny
    for i, insn in enumerate(insns):
        if insn[0] == 0x55:  # a mismatch skips to the next check
            assert (i + 1 + insn[3] - 6) % 4 == 0


def test_the_plan_binds_granted_devices_and_privileged_gets_the_hosts():
    layout = OverlayLayout(["/l"], "/u", "/w")
    plan = rootfs_plan(layout, "/s", devices=[("/dev/zero", "/dev/z")])
    assert GrantedDevice("/dev/zero", "/dev/z") in plan.ops
    assert not any(isinstance(op, HostDevices) for op in plan.ops)
    assert any(isinstance(op, HostDevices) for op in rootfs_plan(layout, "/s", privileged=True).ops)

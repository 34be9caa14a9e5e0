"""The paths hidden from an unprivileged container, held level with Docker's."""

from __future__ import annotations

from overlayctl.runtime import mountplan
from overlayctl.runtime.mountplan import MaskedPath, ReadonlyPath, rootfs_plan
from overlayctl.runtime.overlay import OverlayLayout

# moby/moby daemon/pkg/oci/defaults.go (commit b985e2313a86, 2026-08-23):
# defaultLinuxMaskedPaths and ReadonlyPaths. Docker adds each CPU's
# thermal_throttle directory that exists, as thermal_throttle_paths does.
DOCKER_MASKED = {
    "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/sched_debug", "/proc/scsi", "/proc/timer_list", "/proc/timer_stats", "/sys/devices/virtual/powercap",
    "/sys/firmware",
}  # fmt: skip
DOCKER_READONLY = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}

LAYOUT = OverlayLayout(("/s/layers/a/diff",), "/s/c/upper", "/s/c/work")


def test_masked_and_read_only_paths_are_dockers():
    assert set(mountplan.MASKED_PATHS) == DOCKER_MASKED
    assert set(mountplan.READONLY_PATHS) == DOCKER_READONLY
    plan = rootfs_plan(LAYOUT, "/s")
    assert {op.target for op in plan.ops if isinstance(op, MaskedPath)} == DOCKER_MASKED
    assert {op.target for op in plan.ops if isinstance(op, ReadonlyPath)} == DOCKER_READONLY


def test_privileged_masks_nothing_and_the_caller_adds_paths():
    plan = rootfs_plan(LAYOUT, "/s", privileged=True)
    assert not [op for op in plan.ops if isinstance(op, (MaskedPath, ReadonlyPath))]
    extra = "/sys/devices/system/cpu/cpu0/thermal_throttle"
    plan = rootfs_plan(LAYOUT, "/s", masked=(*mountplan.MASKED_PATHS, extra))
    assert extra in {op.target for op in plan.ops if isinstance(op, MaskedPath)}


def test_thermal_throttle_paths_are_those_this_kernel_has():
    assert mountplan._cpu_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert mountplan._cpu_list("0\n") == [0]
    for path in mountplan.thermal_throttle_paths():
        assert path.startswith("/sys/devices/system/cpu/cpu") and path.endswith("/thermal_throttle")

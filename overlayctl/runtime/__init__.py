"""The container runtime: PID 1 and the kernel. Syscalls (the only direct
kernel calls: runtime/_kernel.c, or ctypes without it),
the mount plan, overlay, seccomp, capabilities, devices, cgroups, exec,
users, processes, network devices.

Nothing here knows about the catalog or imports anything above it: the
runtime is handed a ContainerSpec (layers, upper, work, command); the
supervisor that forks PID 1 and reaps it lives in supervise/.
"""

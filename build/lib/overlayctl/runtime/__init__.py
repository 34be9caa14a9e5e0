"""The container runtime: syscalls, the mount plan, the container's PID 1
set-up and the supervisor that owns it from the host namespaces.

Nothing here knows about the catalog: the runtime is handed a ContainerSpec
(layers, upper, work, command) and returns an exit status.
"""

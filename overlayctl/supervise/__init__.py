"""Supervisors: what owns a running container from the host side.

The foreground supervisor, the detached monitor (and its re-exec entry point),
the attach protocol, container logs and sd_notify. The monitor loads this
package in a process that must stay small: keep this file empty of imports.
"""

"""The container model: its spec built from the stored config, the resources
a start holds (network plan, cgroup, freezer), signals, the restart policy and
teardown.
"""

"""Volumes, bind mounts and tmpfs: parsing the -v/--mount/--tmpfs options,
preparing what a container mounts, and releasing it again.
"""

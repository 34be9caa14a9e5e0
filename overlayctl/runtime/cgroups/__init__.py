"""A container's cgroups: resource limits (`--memory`, `--memory-swap`,
`--pids-limit`, `--cpus`, `--cpu-shares`), the freezer of `pause`, and the
cgroups `exec` joins.

Three host layouts exist and all are handled:

- v2 (unified): one tree at /sys/fs/cgroup; the container's cgroup is
  /sys/fs/cgroup/overlayctl/<id>, with memory, pids and cpu enabled in the
  parent's cgroup.subtree_control.
- v1: one tree per controller; the container gets
  /sys/fs/cgroup/<controller>/overlayctl/<id> in the memory, pids, cpu and
  cpuacct trees (one directory when controllers share a mount, as
  "cpu,cpuacct" usually does).
- hybrid: v1 trees plus a cgroup2 mount without controllers
  (/sys/fs/cgroup/unified). The limits go to the v1 trees; the container
  also gets a directory in the cgroup2 tree, for its cgroup.kill.

One module per concern; import the one you need. This package imports
nothing, and a start without limits or devices imports none of it.

- `layout`: where the host mounts its trees (a container's directory in a
  tree is spelt once, by `overlayctl.paths.cgroup_dir`);
- `limits`: the options as Docker parses and checks them, and the kernel
  writes that apply them (pure);
- `cgroup`: one container's cgroup: create with limits, join, find, remove;
- `stats`: what the kernel counts for a cgroup (usage, OOM kills);
- `stale`: the sweep of cgroups no running container owns;
- `freezer`: `pause` and `unpause`;
- `join`: the cgroups of another process, which `exec` joins;
- `files`: reading and writing cgroupfs files, and the error that names one.

Parsing and the list of writes are pure (the unit tests check them without
root); creating, joining and removing touch the kernel.
"""

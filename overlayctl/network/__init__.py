"""Container networks: none, host, the default bridge and user-defined bridges.

- `attach`: what a container start and removal call (prepare a plan with a
  lease on each of its networks and /etc files, configure the namespace
  from the host, release).
- `join`: `network connect` and `disconnect`, on running and stopped containers.
- `manage`: the networks a user creates, lists, inspects and removes.
- `leases`: leases held by a lock file, host-wide address claims,
  `release_stale`, which frees what no living supervisor holds, and
  `leases_changed`, which every change to the leases ends in.
- `ipam`: subnets, addresses and overlap checks, as pure functions.
- `etcfiles`: the generated /etc/hosts, /etc/hostname and /etc/resolv.conf.
- `netlink`: bridge, veth, address and route requests; the only user of
  pyroute2, imported only when a bridge network is used. (Whether a device
  exists and turning IPv6 off on one need no netlink: runtime.netdev.)
- `plugger`: a start's veth plugging; `run` forks it early, so that it
  loads the rtnetlink classes while the container is being prepared.
- `firewall`: the nftables table `inet overlayctl` (isolation between our
  networks, DNAT of published ports), through libnftables' binding, used
  only when a bridge is made or deleted and when ports are published.
- `portspec`: `-p`, `--expose` and `-P` parsed, checked and stored as
  Docker stores them (pure).
- `ports`: published host ports chosen, claimed host-wide, recorded and
  released.
- `dns`, `dnsserver`: the DNS responder of each user-defined network
  (names from the catalog's leases, the rest forwarded), started by the
  first container on it and gone with the last; `resolvopts`: --dns,
  --dns-search, --dns-option and --add-host.
- `lockfile`: lock files their last holder removes.
"""

"""`--dns`, `--dns-search`, `--dns-option` and `--add-host`: checked at
create with Docker's wording, and turned into the lines of a container's
/etc/resolv.conf and /etc/hosts at start. Pure functions.
"""

from __future__ import annotations

from overlayctl.errors import InvalidArgumentError

HOST_GATEWAY = "host-gateway"
# Added to the options of a resolv.conf naming the responder unless they
# set ndots themselves: as Docker's on a user-defined network, every name is
# first asked as given, so a container name is not sent to a search domain.
RESPONDER_OPTIONS = ("ndots:0",)


def _flag_error(value: str, flag: str, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(f'invalid argument "{value}" for "{flag}" flag: {why}')


def _ip(text: str) -> str | None:
    import ipaddress

    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def _is_domain(text: str) -> bool:
    """Docker's rule: dot-separated labels of letters, digits and inner
    hyphens, an optional final dot, at most 255 characters."""
    name = text.rstrip()
    name = name[:-1] if name.endswith(".") else name
    if not name or len(text) > 255:
        return False
    for label in name.split("."):
        if not label or not label.isascii() or not label.replace("-", "").isalnum():
            return False
        if label.startswith("-") or label.endswith("-"):
            return False
    return True


def check_dns(servers: list[str]) -> list[str]:
    """--dns values: IP addresses."""
    for server in servers:
        if _ip(server) is None:
            raise _flag_error(server, "--dns", f"IP address is not correctly formatted: {server}")
    return [s.strip() for s in servers]


def check_dns_search(domains: list[str]) -> list[str]:
    """--dns-search values: domains, or "." for no search domain."""
    for domain in domains:
        if domain != "." and not _is_domain(domain):
            raise _flag_error(domain, "--dns-search", f"{domain} is not a valid domain")
    return list(domains)


def check_dns_options(options: list[str]) -> list[str]:
    """--dns-option values: one word each (a space or a line break would
    write lines of its own into resolv.conf)."""
    for option in options:
        if not option or any(c.isspace() or not c.isprintable() for c in option):
            raise _flag_error(option, "--dns-option", f"bad format for dns-option: {option!r}")
    return list(options)


def parse_extra_host(value: str) -> tuple[str, str]:
    """One --add-host: (name, address or "host-gateway"). NAME:IP or
    NAME=IP; an IPv6 address may be bracketed."""
    sep = "=" if "=" in value else ":"
    name, found, address = value.partition(sep)
    if not found or not name or any(c.isspace() or not c.isprintable() or c == "#" for c in name):
        raise _flag_error(value, "--add-host", f'bad format for add-host: "{value}"')
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if address == HOST_GATEWAY:
        return name, address
    ip = _ip(address)
    if ip is None or address != address.strip():
        raise _flag_error(value, "--add-host", f'invalid IP address in add-host: "{address}"')
    return name, ip


def check_extra_hosts(values: list[str]) -> list[str]:
    for value in values:
        parse_extra_host(value)
    return list(values)


def host_lines(extra_hosts: list[str], host_gateway: str) -> list[tuple[str, str]]:
    """(address, name) for each --add-host, host-gateway replaced."""
    lines = []
    for value in extra_hosts:
        name, address = parse_extra_host(value)
        lines.append((host_gateway if address == HOST_GATEWAY else address, name))
    return lines


def resolv_conf(
    base: str,
    dns: list[str] | None,
    search: list[str] | None,
    options: list[str] | None,
    responder: str | None = None,
) -> str:
    """A container's resolv.conf: `base` (the host's, already cut to what a
    container reaches) with its nameserver, search and options lines
    replaced by --dns, --dns-search and --dns-option when given, as Docker
    does. With a `responder` (a user-defined network's gateway) it is the
    only nameserver, and --dns servers become its upstreams instead."""
    kept, servers, searches, opts = [], [], [], []
    for line in base.splitlines():
        fields = line.split()
        key = fields[0] if fields else ""
        if key == "nameserver":
            servers.append(line)
        elif key in ("search", "domain"):
            searches.append(line)
        elif key == "options":
            opts.append(line)
        else:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    if responder is not None:
        servers = [f"nameserver {responder}"]
    elif dns:
        servers = [f"nameserver {s}" for s in dns]
    if search:
        searches = [] if search == ["."] else ["search " + " ".join(search)]
    if options:
        opts = ["options " + " ".join(options)]
    if responder is not None:
        words = [w for line in opts for w in line.split()[1:]]
        if not any(w.startswith("ndots:") for w in words):
            opts = ["options " + " ".join(words + list(RESPONDER_OPTIONS))]
    return "\n".join(kept + servers + searches + opts) + "\n"

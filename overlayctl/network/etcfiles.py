"""The /etc/hosts, /etc/hostname and /etc/resolv.conf a container sees.

Written on the host under the runroot and bind-mounted over the image's
files, as Docker does: the image is never changed, and the container may
still edit them.
"""

from __future__ import annotations

import os

# Docker's /etc/hosts preamble, byte for byte.
HOSTS_PREAMBLE = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)
# Docker's fallback when the host has no nameserver a container can reach.
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
SYSTEMD_RESOLVED_STUB = "127.0.0.53"
SYSTEMD_RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"

FILES = ("hosts", "hostname", "resolv.conf")


def hosts_content(
    addresses: list[str], hostname: str, aliases: list[str], extra: list[tuple[str, str]] | None = None
) -> str:
    """The localhost lines, the `extra` (address, name) lines of --add-host,
    then "<address> <hostname> <aliases...>" for each address of the
    container's own (one per network it is on, as Docker adds a line when a
    container joins a network and drops it when it leaves): Docker's order."""
    text = HOSTS_PREAMBLE + extra_lines(extra or [])
    return text + "".join(hosts_line(address, hostname, aliases) for address in addresses if address)


def extra_lines(extra: list[tuple[str, str]]) -> str:
    """The /etc/hosts lines of --add-host: "<address>\t<name>" each."""
    return "".join(f"{ip}\t{name}\n" for ip, name in extra)


def hosts_line(address: str, hostname: str, aliases: list[str]) -> str:
    """One line of /etc/hosts: "<address>\t<hostname> <aliases...>"."""
    names = " ".join([hostname] + [a for a in aliases if a and a != hostname])
    return f"{address}\t{names}\n"


def edit_hosts(directory: str, add: str = "", drop_address: str = "") -> None:
    """Change a running container's /etc/hosts as Docker does when it joins
    or leaves a network: append the line `add`, drop every line of
    `drop_address`; the rest, the container's own edits included, stays.

    Written in place: the file is bind-mounted into the container, and a
    renamed-over file would leave the mount on the old one."""
    path = os.path.join(directory, "hosts")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # not running with generated files: the next start writes them
    try:
        with open(fd, "r+", encoding="utf-8", errors="surrogateescape", closefd=False) as f:
            lines = f.read().splitlines(keepends=True)
            if drop_address:
                lines = [line for line in lines if line.split()[:1] != [drop_address]]
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            if add:
                lines.append(add)
            f.seek(0)
            f.write("".join(lines))
            f.truncate()
    finally:
        os.close(fd)


def hostname_content(hostname: str) -> str:
    return hostname + "\n"


def _nameservers(text: str) -> list[str]:
    rows = [line.split() for line in text.splitlines()]
    return [fields[1] for fields in rows if fields[:1] == ["nameserver"] and len(fields) > 1]


def _is_loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "0:0:0:0:0:0:0:1")


def resolv_content(host_text: str) -> str:
    """The host's resolv.conf with what a container cannot reach taken out:
    loopback nameservers (the container's loopback is its own) and IPv6
    ones (containers get no IPv6 address). With none left, Docker's
    fallback public nameservers."""
    lines, kept = [], 0
    for line in host_text.splitlines():
        fields = line.split()
        if fields[:1] == ["nameserver"] and len(fields) > 1:
            if _is_loopback(fields[1]) or ":" in fields[1]:
                continue
            kept += 1
        lines.append(line)
    while lines and not lines[-1].strip():
        lines.pop()
    if not kept:
        lines += [f"nameserver {ns}" for ns in FALLBACK_NAMESERVERS]
    return "\n".join(lines) + "\n"


HOST_RESOLV_CONF = "/etc/resolv.conf"


def host_resolv_path() -> str:
    """The host's resolver file: /etc/resolv.conf, or OVERLAYCTL_RESOLV_CONF
    (tests point it at a file of their own; the host's is never touched)."""
    return os.environ.get("OVERLAYCTL_RESOLV_CONF") or HOST_RESOLV_CONF


def host_resolv_conf(read=None) -> str:  # type: ignore[no-untyped-def]
    """The host's resolver configuration. Behind systemd-resolved's stub
    (127.0.0.53, unreachable from a container), its upstream file."""
    read = read or _read
    text = read(host_resolv_path())
    if _nameservers(text) == [SYSTEMD_RESOLVED_STUB]:
        upstream = read(SYSTEMD_RESOLVED_UPSTREAM)
        if upstream:
            return upstream
    return text


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def write_files(directory: str, contents: dict[str, str]) -> None:
    """Write each file as <directory>/<name>, mode 0644, replacing old ones."""
    os.makedirs(directory, 0o755, exist_ok=True)
    for name, text in contents.items():
        path = os.path.join(directory, name)
        tmp = path + ".tmp"
        # surrogateescape: a hostname given in bytes that are not UTF-8 is
        # written as those bytes.
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)


def remove_files(directory: str) -> None:
    """Remove what write_files made, and the directory if nothing else is in it."""
    for name in FILES:
        for path in (os.path.join(directory, name), os.path.join(directory, name + ".tmp")):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    try:
        os.rmdir(directory)
    except OSError:
        pass  # not empty (someone else's files) or already gone

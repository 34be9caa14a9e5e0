"""Published and exposed ports as the user writes them, and as Docker stores them.

Pure functions, checked at `create` (nothing touches the host here):

- `-p/--publish [HOSTIP:][HOSTPORT:]CONTAINERPORT[/PROTO]`, with ranges
  (`8000-8010:80-90`, one host port per container port; `8000-8010:80`,
  one host port picked from the range, as Docker does);
- `--expose PORT[-PORT][/PROTO]`;
- the stored shapes: Config.ExposedPorts (`{"80/tcp": {}}`) and
  HostConfig.PortBindings (`{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`,
  HostPort "" for "any free port", "8000-8010" for "one of these");
- `wanted_bindings`, what a start must publish: the bindings, plus every
  exposed port without one when -P (PublishAllPorts) was given.

Messages are Docker's where Docker has one (`invalid containerPort: 99999`,
`invalid proto: foo`, `invalid ranges specified for container and host
Ports: 80-90 and 8000`).
"""

from __future__ import annotations

from overlayctl.errors import InvalidArgumentError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PROTOCOLS = ("tcp", "udp", "sctp")


class Binding:
    """One container port to publish on the host: the host port is a
    number, a range to pick one from, or 0 for any free port."""

    __slots__ = ("protocol", "container_port", "host_ip", "host_low", "host_high")

    def __init__(self, protocol: str, container_port: int, host_ip: str, host_low: int, host_high: int) -> None:
        self.protocol = protocol
        self.container_port = container_port
        self.host_ip = host_ip  # "" for every address of the host
        self.host_low = host_low  # 0: any free port of the ephemeral range
        self.host_high = host_high

    def __repr__(self) -> str:
        return f"Binding({self.host_ip or '0.0.0.0'}:{self.host_low}-{self.host_high}->{self.key})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Binding) and all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    @property
    def key(self) -> str:
        """ "80/tcp", the key of ExposedPorts, PortBindings and NetworkSettings.Ports."""
        return f"{self.container_port}/{self.protocol}"


def _split_proto(text: str) -> tuple[str, str]:
    port, _sep, proto = text.partition("/")
    if not port:
        raise InvalidArgumentError(f"no port specified: {text}<empty>")
    proto = proto.lower() or "tcp"
    if proto not in PROTOCOLS:
        raise InvalidArgumentError(f"invalid proto: {proto}")
    return port, proto


def _port_range(text: str, what: str, zero_ok: bool) -> tuple[int, int]:
    """(low, high) of "80" or "80-90"; `what` names the part in the error."""
    low_text, dash, high_text = text.partition("-")
    try:
        if not low_text.isdigit() or (dash and not high_text.isdigit()):
            raise ValueError
        low = int(low_text)
        high = int(high_text) if dash else low
    except ValueError:
        raise InvalidArgumentError(f"invalid {what}: {text}") from None
    if high > 65535 or (low == 0 and not (zero_ok and not dash)):
        raise InvalidArgumentError(f"invalid {what}: {text}")
    if high < low:
        raise InvalidArgumentError(f"invalid range specified for port: {text}")
    return low, high


def _host_ip(text: str) -> str:
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text:
        return ""
    import ipaddress

    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgumentError(f"invalid IP address: {text}") from None
    if address.version == 6:
        raise InvalidArgumentError(f"invalid IP address: {text}: overlayctl publishes ports on IPv4 addresses only")
    return "" if text == "0.0.0.0" else str(address)


def parse_publish(text: str) -> list[Binding]:
    """One -p value as the bindings it asks for (a range gives several)."""
    parts = text.rsplit(":", 2)
    if len(parts) == 3:
        ip_text, host_text, container_text = parts
        if ip_text.count(":") and not ip_text.startswith("["):
            raise InvalidArgumentError(f"invalid IP address: {ip_text}: write an IPv6 address in brackets")
    elif len(parts) == 2:
        ip_text, (host_text, container_text) = "", parts
    else:
        ip_text, host_text, container_text = "", "", parts[0]
    host_ip = _host_ip(ip_text)
    port_text, proto = _split_proto(container_text)
    low, high = _port_range(port_text, "containerPort", zero_ok=False)
    if not host_text:
        return [Binding(proto, port, host_ip, 0, 0) for port in range(low, high + 1)]
    host_low, host_high = _port_range(host_text, "hostPort", zero_ok=True)
    if high - low != host_high - host_low:
        if high != low:
            raise InvalidArgumentError(
                f"invalid ranges specified for container and host Ports: {port_text} and {host_text}"
            )
        # One container port, a range of host ports: one of them, picked at start.
        return [Binding(proto, low, host_ip, host_low, host_high)]
    return [Binding(proto, low + i, host_ip, host_low + i, host_low + i) for i in range(high - low + 1)]


def parse_expose(text: str) -> list[str]:
    """One --expose value as ExposedPorts keys ("80/tcp"; a range gives several)."""
    port_text, proto = _split_proto(text)
    low, high = _port_range(port_text, "containerPort", zero_ok=False)
    return [f"{port}/{proto}" for port in range(low, high + 1)]


def port_bindings(bindings: list[Binding]) -> dict[str, list[dict[str, str]]]:
    """HostConfig.PortBindings of these bindings, in Docker's shape."""
    out: dict[str, list[dict[str, str]]] = {}
    for b in bindings:
        if b.host_low == 0:
            host_port = ""
        elif b.host_low == b.host_high:
            host_port = str(b.host_low)
        else:
            host_port = f"{b.host_low}-{b.host_high}"
        out.setdefault(b.key, []).append({"HostIp": b.host_ip, "HostPort": host_port})
    return out


def exposed_ports(image_exposed: dict[str, Any] | None, expose: list[str], bindings: list[Binding]) -> dict[str, Any]:
    """Config.ExposedPorts: the image's EXPOSE, --expose and every published
    container port, as Docker merges them."""
    out: dict[str, Any] = {}
    for key in image_exposed or {}:
        port_text, proto = _split_proto(str(key))
        out[f"{port_text}/{proto}"] = {}
    for value in expose:
        for key in parse_expose(value):
            out[key] = {}
    for b in bindings:
        out[b.key] = {}
    return out


def split_key(key: str) -> tuple[int, str]:
    """(port, protocol) of "80/tcp"."""
    port_text, proto = _split_proto(key)
    return int(port_text), proto


def wanted_bindings(
    port_bindings_json: dict[str, Any] | None, exposed: dict[str, Any] | None, publish_all: bool
) -> list[Binding]:
    """What a start publishes: each stored binding, then with -P each exposed
    port that has none, on any free host port. Sorted by protocol and port,
    so `port` and `ps` list them in a stable order."""
    out: list[Binding] = []
    for key, entries in (port_bindings_json or {}).items():
        port, proto = split_key(key)
        for entry in entries or [{}]:
            host_text = (entry or {}).get("HostPort") or ""
            low, high = _port_range(host_text, "hostPort", zero_ok=True) if host_text else (0, 0)
            out.append(Binding(proto, port, _host_ip((entry or {}).get("HostIp") or ""), low, high))
    if publish_all:
        bound = set(port_bindings_json or {})
        for key in exposed or {}:
            if key not in bound:
                port, proto = split_key(key)
                out.append(Binding(proto, port, "", 0, 0))
    out.sort(key=lambda b: (b.container_port, b.protocol, b.host_ip, b.host_low))
    return out

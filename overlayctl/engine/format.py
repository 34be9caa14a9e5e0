"""Docker's `--format` for listings and inspect: Go templates, `json`,
`table` and `table TEMPLATE`, over rows that carry Docker's field names.

A listing (ps, images, network ls, ...) is a list of Row: one object per
line, its fields named as in the docker CLI's formatter contexts (.ID,
.Names, .RunningFor, ...), its JSON (for `--format json` and `{{json .}}`)
what overlayctl has always printed for that command. `render` turns rows
into the text to print, the way the docker CLI's formatter does:

- `json`: `{{json .}}` per row;
- `table TEMPLATE`: a header row made by running TEMPLATE over the
  command's column titles, then the rows, aligned by Go's tabwriter;
- anything else: the template per row, each followed by a newline.

As in the docker CLI, the two-character sequences \\t and \\n in a listing's
template stand for a tab and a newline. Everything is rendered before
anything is printed, so a template that fails on the third row prints
nothing. The Engine API renders with the same functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from overlayctl.errors import InvalidArgumentError
from overlayctl.util import tabwriter
from overlayctl.util.gotemplate import GoMap, Template

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.store import Store
    from overlayctl.store.containers import Container
    from overlayctl.store.images import Image


class Row:
    """One listed object as a template sees it: its fields by Docker's
    names, methods such as .Label "key", and the Go type errors name."""

    def __init__(
        self,
        go_type: str,
        fields: dict[str, Any],
        json: dict[str, Any] | None = None,
        methods: dict[str, Callable[..., Any]] | None = None,
    ) -> None:
        self.GO_TYPE = go_type
        self._fields = fields
        self._json = json
        self._methods = methods or {}

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not attributes: the fields.
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._fields:
            return self._fields[name]
        if name in self._methods:
            return self._methods[name]
        raise AttributeError(name)

    def go_string(self) -> str:
        """What `{{.}}` prints: the fields, as Go prints a struct pointer."""
        from overlayctl.util.gotemplate import printable

        return "&{" + " ".join(printable(v, False) for v in self._fields.values()) + "}"

    def json_value(self) -> dict[str, Any]:
        """What `{{json .}}` encodes: the command's JSON line."""
        return self._json if self._json is not None else dict(sorted(self._fields.items()))


class Listing:
    """One command's columns: the Go type of its rows, the title of each
    field for table headers, and its default table template."""

    def __init__(self, go_type: str, headers: dict[str, str], default: str) -> None:
        self.go_type = go_type
        self.headers = headers
        self.default = default


PS = Listing(
    "*formatter.ContainerContext",
    {
        "ID": "CONTAINER ID",
        "Image": "IMAGE",
        "Command": "COMMAND",
        "CreatedAt": "CREATED AT",
        "RunningFor": "CREATED",
        "Ports": "PORTS",
        "State": "STATE",
        "Status": "STATUS",
        "Size": "SIZE",
        "Names": "NAMES",
        "Labels": "LABELS",
        "Label": "LABEL",
        "Mounts": "MOUNTS",
        "LocalVolumes": "LOCAL VOLUMES",
        "Networks": "NETWORKS",
        "Platform": "PLATFORM",
    },
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}",
)
IMAGES = Listing(
    "*formatter.imageContext",
    {
        "ID": "IMAGE ID",
        "Repository": "REPOSITORY",
        "Tag": "TAG",
        "Digest": "DIGEST",
        "CreatedSince": "CREATED",
        "CreatedAt": "CREATED AT",
        "Size": "SIZE",
        "Containers": "CONTAINERS",
        "VirtualSize": "VIRTUAL SIZE",
        "SharedSize": "SHARED SIZE",
        "UniqueSize": "UNIQUE SIZE",
    },
    "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}",
)
NETWORKS = Listing(
    "*formatter.networkContext",
    {
        "ID": "NETWORK ID",
        "Name": "NAME",
        "Driver": "DRIVER",
        "Scope": "SCOPE",
        "IPv6": "IPV6",
        "Internal": "INTERNAL",
        "Labels": "LABELS",
        "Label": "LABEL",
        "CreatedAt": "CREATED AT",
    },
    "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
)
VOLUMES = Listing(
    "*formatter.volumeContext",
    {
        "Name": "VOLUME NAME",
        "Driver": "DRIVER",
        "Scope": "SCOPE",
        "Mountpoint": "MOUNTPOINT",
        "Labels": "LABELS",
        "Label": "LABEL",
        "Links": "LINKS",
        "Size": "SIZE",
        "Availability": "AVAILABILITY",
        "Group": "GROUP",
        "Status": "STATUS",
    },
    "table {{.Driver}}\t{{.Name}}",
)
HISTORY = Listing(
    "*formatter.historyContext",
    {
        "ID": "IMAGE",
        "CreatedSince": "CREATED",
        "CreatedAt": "CREATED AT",
        "CreatedBy": "CREATED BY",
        "Size": "SIZE",
        "Comment": "COMMENT",
    },
    "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
)
STATS = Listing(
    "*formatter.statsContext",
    {
        "Container": "CONTAINER",
        "ID": "CONTAINER ID",
        "Name": "NAME",
        "CPUPerc": "CPU %",
        "MemUsage": "MEM USAGE / LIMIT",
        "MemPerc": "MEM %",
        "NetIO": "NET I/O",
        "BlockIO": "BLOCK I/O",
        "PIDs": "PIDS",
        "UpperSize": "UPPER",
        "UpperRate": "UPPER RATE",
        "ProcessIO": "PROCESS I/O",
    },
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}",
)
DISK_USAGE = Listing(
    "*formatter.diskUsageContext",
    {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE"},
    "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
)


# The header row runs the row template over the titles, with Docker's
# functions reduced to passing their first argument on (a title is not
# json, nor something to split or cut); pad stays, to keep the title over
# its padded column.
def _first(value: Any, *_rest: Any) -> Any:
    return value


_HEADER_FUNCS = {name: _first for name in ("json", "split", "join", "title", "lower", "upper", "truncate")}


class Format:
    """A parsed --format: "" or "table" (the command's default table),
    "json", "table TEMPLATE" or a bare TEMPLATE. Parsing checks the
    template, so a bad one fails before the command does anything."""

    def __init__(self, spec: str | None, listing: bool = True) -> None:
        self.spec = spec or ""
        self.template: Template | None = None
        self.header: Template | None = None
        stripped = self.spec.strip(" ")
        if stripped in ("", "table"):
            self.kind = "default"
            return
        if stripped == "json":
            self.kind = "json"
            return
        text = self.spec
        self.kind = "template"
        if listing and text.startswith("table"):
            self.kind = "table"
            text = text[len("table") :]
        if listing:
            text = text.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
        self.template = Template(text)
        if self.kind == "table":
            self.header = Template(text, funcs=_HEADER_FUNCS).option("missingkey=default")

    @property
    def is_default(self) -> bool:
        """No template: the command prints its own table."""
        return self.kind == "default"

    def uses(self, field: str) -> bool:
        """Whether the template names `.field` (ps computes sizes only then, as Docker)."""
        return self.template is not None and f".{field}" in self.template.text


def parse(spec: str | Format | None, listing: bool = True) -> Format:
    """The --format value `spec` parsed (see Format)."""
    return spec if isinstance(spec, Format) else Format(spec, listing)


def _execute(template: Template, data: Any) -> str:
    try:
        return template.execute(data)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"template parsing error: {exc.message}") from None


def render(spec: str | Format, rows: Sequence[Any], listing: Listing) -> str:
    """The text `--format spec` prints for `rows` (Row or dicts), every
    line ending in a newline; raises InvalidArgumentError, having printed
    nothing, when the template fails on any row."""
    form = parse(spec)
    if form.is_default:
        form = Format(listing.default)
    if form.kind == "json":
        from overlayctl.util.gotemplate import DOCKER_FUNCS

        return "".join(DOCKER_FUNCS["json"].call(row) + "\n" for row in rows)
    assert form.template is not None
    body = "".join(_execute(form.template, row) + "\n" for row in rows)
    if form.kind != "table":
        return body
    assert form.header is not None
    header: list[str] = []
    # Docker ignores an error in the header row and keeps what was written
    # before it (a .Label "x" title, say).
    try:
        form.header.render(_Titles(listing.headers), header)
    except InvalidArgumentError:
        pass
    return tabwriter.align("".join(header) + "\n" + body)


class _Titles(Mapping[str, str]):
    """The header row's data: each field's column title. A Mapping other
    than a dict, so an unknown field prints <no value> as in Docker."""

    def __init__(self, titles: dict[str, str]) -> None:
        self._titles = titles

    def __getitem__(self, key: str) -> str:
        return self._titles[key]

    def __iter__(self) -> Any:
        return iter(self._titles)

    def __len__(self) -> int:
        return len(self._titles)


# Keys whose JSON objects are Go maps in Docker's inspect types (their keys
# are data: label names, network names, ports), as opposed to structs.
# Docker runs an inspect template over its typed structs first, where a
# missing map key is <no value>; only a missing struct field is an error.
_GO_MAPS = frozenset(
    {
        "Labels",
        "Options",
        "Networks",
        "Ports",
        "ExposedPorts",
        "Volumes",
        "Data",
        "Sysctls",
        "DriverOpts",
        "Containers",
        "Annotations",
        "Tmpfs",
        "StorageOpt",
    }
)


def as_go_values(value: Any, key: str = "") -> Any:
    """An inspect document with its Go maps marked (GoMap), for templates."""
    if isinstance(value, dict):
        converted = {k: as_go_values(v, k) for k, v in value.items()}
        return GoMap(converted) if key in _GO_MAPS else converted
    if isinstance(value, list):
        return [as_go_values(v) for v in value]
    return value


def render_documents(spec: str | None, documents: Sequence[Any]) -> str | None:
    """`inspect -f`: the template run over each document, each result
    followed by a newline; None when there is no template (print JSON)."""
    if spec is None or spec.strip(" ") in ("", "json"):
        return None
    template = Template(spec)
    return "".join(_execute(template, as_go_values(doc)) + "\n" for doc in documents)


def check_template(spec: str | None, listing: bool = True) -> None:
    """Fail now on a bad --format, before any work is done."""
    if spec is not None:
        parse(spec, listing)


# ---------------------------------------------------------------- rows


def _go_time(rfc3339: str) -> str:
    """A timestamp as Go's time.Time.String() prints it in local time:
    "2024-05-01 10:00:00 +0200 CEST", as Docker's CreatedAt columns."""
    from overlayctl.util.humanize import parse_rfc3339

    seconds = parse_rfc3339(rfc3339) if rfc3339 else 0.0
    if seconds <= 0:
        return ""
    local = time.localtime(seconds)
    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", local)


def _labels_text(labels: Mapping[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))


def _label_method(labels: Mapping[str, str] | None) -> Callable[[str], str]:
    def label(name: str) -> str:
        return (labels or {}).get(name, "")

    return label


def container_labels(container: Container) -> dict[str, str]:
    """The container's labels (none before labels were recorded)."""
    # Containers recorded before labels existed have no such attribute.
    return dict(getattr(container.config.config, "labels", None) or {})


def _mount_name(source: str, no_trunc: bool) -> str:
    """A MOUNTS entry: a volume's name or a bind's host path, cut at 15
    characters with an ellipsis unless --no-trunc, as Docker's."""
    return source if no_trunc or len(source) <= 15 else source[:14] + "…"


def ps_rows(store: Store, containers: Sequence[Container], no_trunc: bool = False, size: bool = False) -> list[Row]:
    """`ps` rows: Docker's ContainerContext fields (.ID .Image .Command
    .CreatedAt .RunningFor .Ports .State .Status .Size .Names .Labels
    .Label .Mounts .LocalVolumes .Networks), the JSON of `ps --format json`."""
    from overlayctl.engine.inspect import (
        ago,
        command_text,
        container_health,
        container_sizes,
        ports_text,
        state_name,
        status_text,
    )
    from overlayctl.util.humanize import human_size

    now = time.time()
    sizes = container_sizes(store, list(containers)) if size else {}
    ports = ports_text(store, list(containers))
    rows = []
    for c in containers:
        status = status_text(c, now, container_health(store, c))
        mounts = c.config.host.mounts or []
        labels = container_labels(c)
        fields: dict[str, Any] = {
            "ID": c.id if no_trunc else c.short_id,
            "Image": c.image_name,
            "Command": command_text(c, 10**6 if no_trunc else 20),
            "CreatedAt": _go_time(c.created),
            "RunningFor": ago(c.created, now),
            "Ports": ports.get(c.id, ""),
            "State": state_name(c),
            "Status": status,
            "Size": "0B",
            "Names": c.name,
            "Labels": _labels_text(labels),
            "Mounts": ",".join(_mount_name(m.source, no_trunc) for m in mounts if m.source),
            "LocalVolumes": str(sum(1 for m in mounts if m.type == "volume")),
            "Networks": ",".join(sorted(c.config.endpoints())),
            "Platform": "linux",
        }
        item: dict[str, Any] = {
            "ID": fields["ID"],
            "Image": c.image_name,
            "Command": command_text(c, 10**6),
            "CreatedAt": c.created,
            "RunningFor": fields["RunningFor"],
            "State": fields["State"],
            "Status": status,
            "Names": c.name,
            "Ports": fields["Ports"],
        }
        if size:
            rw, virtual = sizes[c.id]
            fields["Size"] = f"{human_size(rw)} (virtual {human_size(virtual)})"
            item.update(SizeRw=rw, SizeRootFs=virtual, Size=fields["Size"])
        rows.append(Row(PS.go_type, fields, item, {"Label": _label_method(labels)}))
    return rows


def image_rows(store: Store, no_trunc: bool = False, filters: list[str] | None = None) -> list[Row]:
    """`images` rows: .ID .Repository .Tag .Digest .CreatedSince .CreatedAt
    .Size .Containers ..., the JSON of `images --format json`."""
    from overlayctl.engine.images import list_images, repo_digest
    from overlayctl.engine.inspect import ago
    from overlayctl.util.humanize import human_size

    now = time.time()
    in_use: dict[str, int] = {}
    for c in store.containers.list(all=True):
        in_use[c.image_id] = in_use.get(c.image_id, 0) + 1
    rows = []
    for repo, tag, image in list_images(store, filters or []):
        image_id = image.id if no_trunc else image.short_id
        fields = {
            "ID": image_id,
            "Repository": repo,
            "Tag": tag,
            "Digest": repo_digest(image, repo),
            "CreatedSince": ago(image.created, now),
            "CreatedAt": _go_time(image.created),
            "Size": human_size(image.size),
            "VirtualSize": human_size(image.size),
            "SharedSize": "N/A",
            "UniqueSize": "N/A",
            "Containers": str(in_use.get(image.id, 0)),
        }
        item = {
            "Repository": repo,
            "Tag": tag,
            "Digest": fields["Digest"],
            "ID": image_id,
            "CreatedAt": image.created,
            "CreatedSince": fields["CreatedSince"],
            "Size": image.size,
            "Containers": None,
        }
        rows.append(Row(IMAGES.go_type, fields, item))
    return rows


def network_labels(network: Any) -> dict[str, str]:
    """A network's labels, kept in its options (none for the predefined ones)."""
    if network is None:
        return {}
    return dict(getattr(network, "labels", None) or network.options.get("labels") or {})


def network_rows(store: Store, no_trunc: bool = False, filters: list[str] | None = None) -> list[Row]:
    """`network ls` rows: .ID .Name .Driver .Scope .IPv6 .Internal .Labels .CreatedAt."""
    from overlayctl.engine.networks import list_networks
    from overlayctl.network.manage import is_internal

    rows = []
    for listed in list_networks(store, filters or []):
        network_id = listed.id if no_trunc else listed.id[:12]
        network = listed.network
        labels = network_labels(network)
        ipv6 = "true" if network is not None and network.subnet6 else "false"
        internal = "true" if network is not None and is_internal(network) else "false"
        fields = {
            "ID": network_id,
            "Name": listed.name,
            "Driver": listed.driver,
            "Scope": "local",
            "IPv6": ipv6,
            "Internal": internal,
            "Labels": _labels_text(labels),
            "CreatedAt": _go_time(listed.created),
        }
        item = {
            "ID": network_id,
            "Name": listed.name,
            "Driver": listed.driver,
            "Scope": "local",
            "CreatedAt": listed.created,
            "IPv6": ipv6,
            "Internal": internal,
            "Labels": fields["Labels"],
        }
        rows.append(Row(NETWORKS.go_type, fields, item, {"Label": _label_method(labels)}))
    return rows


def volume_rows(store: Store, volumes: Sequence[Any]) -> list[Row]:
    """`volume ls` rows: .Name .Driver .Scope .Mountpoint .Labels .Links .Size."""
    rows = []
    for volume in volumes:
        item = {
            "Availability": "N/A",
            "Driver": volume.driver,
            "Group": "N/A",
            "Labels": _labels_text(volume.labels),
            "Links": "N/A",
            "Mountpoint": store.paths.volume_data(volume.name),
            "Name": volume.name,
            "Scope": "local",
            "Size": "N/A",
            "Status": "N/A",
        }
        rows.append(Row(VOLUMES.go_type, dict(item), item, {"Label": _label_method(volume.labels)}))
    return rows


def history_rows(store: Store, image: Image, no_trunc: bool = False) -> list[Row]:
    """`history` rows: .ID .CreatedSince .CreatedAt .CreatedBy .Size .Comment."""
    from overlayctl.engine.images import image_history
    from overlayctl.engine.inspect import ago
    from overlayctl.util.humanize import human_size

    now = time.time()
    rows = []
    for entry in image_history(store, image):
        image_id = entry["id"]
        if not no_trunc and image_id != "<missing>":
            image_id = image_id.split(":", 1)[1][:12]
        created_by = entry["created_by"]
        if not no_trunc:
            created_by = " ".join(created_by.split())
            created_by = created_by if len(created_by) <= 45 else created_by[:44] + "…"
        fields = {
            "ID": image_id,
            "CreatedSince": ago(entry["created"], now),
            "CreatedAt": _go_time(entry["created"]),
            "CreatedBy": created_by,
            "Size": human_size(entry["size"]),
            "Comment": entry["comment"],
        }
        item = {
            "Comment": entry["comment"],
            "CreatedAt": entry["created"],
            "CreatedBy": entry["created_by"],
            "CreatedSince": fields["CreatedSince"],
            "ID": image_id,
            "Size": fields["Size"],
        }
        rows.append(Row(HISTORY.go_type, fields, item))
    return rows


def stats_row(cells: Sequence[str], item: dict[str, Any]) -> Row:
    """A `stats` row from the table's cells (CONTAINER ID, NAME, CPU %,
    MEM USAGE / LIMIT, MEM %, NET I/O, BLOCK I/O, PIDS, UPPER, UPPER RATE,
    PROCESS I/O) and the JSON line of `stats --format json`."""
    names = (
        "ID",
        "Name",
        "CPUPerc",
        "MemUsage",
        "MemPerc",
        "NetIO",
        "BlockIO",
        "PIDs",
        "UpperSize",
        "UpperRate",
        "ProcessIO",
    )
    fields: dict[str, Any] = dict(zip(names, cells, strict=True))
    fields["Container"] = fields["ID"]
    return Row(STATS.go_type, fields, item)


def disk_usage_rows(kinds: Sequence[Any]) -> list[Row]:
    """`system df` rows: .Type .TotalCount .Active .Size .Reclaimable."""
    from overlayctl.util.humanize import human_size

    rows = []
    for k in kinds:
        percent = f" ({round(100 * k.reclaimable / k.size)}%)" if k.size else ""
        fields = {
            "Type": k.type,
            "TotalCount": str(k.total),
            "Active": str(k.active),
            "Size": human_size(k.size),
            "Reclaimable": human_size(k.reclaimable) + percent,
        }
        item = {"Type": k.type, "TotalCount": k.total, "Active": k.active, "Size": k.size, "Reclaimable": k.reclaimable}
        rows.append(Row(DISK_USAGE.go_type, fields, item))
    return rows


def port_document(store: Store, container: Container) -> GoMap:
    """What `port --format` runs over: the published ports as inspect's
    NetworkSettings.Ports shows them, {"80/tcp": [{"HostIp", "HostPort"}]}."""
    from overlayctl.engine.inspect import port_mappings

    document: dict[str, list[dict[str, str]]] = {}
    for key, host_ip, host_port in port_mappings(store, container):
        document.setdefault(key, []).append({"HostIp": host_ip, "HostPort": str(host_port)})
    return GoMap(document)

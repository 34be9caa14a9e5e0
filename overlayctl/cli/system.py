"""System commands: `system reconcile` (run at boot by
overlayctl-reconcile.service), `system fsck`, `system backup` and `system
restore`, `system df` and `generate systemd` (a unit for one container)."""

from __future__ import annotations

import click

from overlayctl.cli import runopts
from overlayctl.cli.common import open_store
from overlayctl.cli.output import FORMAT_HELP, filter_option
from overlayctl.engine.system import RESTART_POLICIES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.engine.measure import Report


@click.group("system")
def system() -> None:
    """Manage overlayctl's own state."""


@system.command("reconcile")
@click.option(
    "--boot",
    is_flag=True,
    help="then start containers with --restart always, and unless-stopped ones not stopped by hand",
)
@click.pass_obj
def reconcile(obj: dict, boot: bool) -> None:
    """Mark containers whose supervisor is gone as exited, and free what they held.

    Removes those that were started with --rm, leases and veth devices
    nobody holds, cgroups of containers that are not running, and staging
    left by crashed commands. Safe while containers run: it touches only
    what no living process holds. overlayctl-reconcile.service runs it at
    boot, before any overlayctl@ unit; overlayctl-boot.service then runs
    it with --boot, which starts what Docker's daemon starts when it comes
    up.
    """
    from overlayctl.engine import control
    from overlayctl.engine.reconcile import reconcile_store

    store = open_store(obj)
    for line in reconcile_store(store):
        click.echo(line)
    if boot:
        for name in control.restart_on_boot(store):
            click.echo(f"started: {name}")


@system.command("service")
@click.argument("addresses", metavar="[unix:///PATH | tcp://HOST:PORT]...", nargs=-1)
@runopts.click_options(runopts.SERVICE_OPTIONS)
@click.pass_obj
def service(obj: dict, addresses: tuple[str, ...], idle_seconds: str | None, group: str | None) -> None:
    """Serve the Docker Engine API (docker, docker-compose, docker-py) on a
    unix socket, /run/overlayctl/docker.sock by default.

    The socket is as powerful as root: keep it 0660 and give --group only to
    users who may be root. Containers never depend on the service; it exits
    when idle and systemd's overlayctl-api.socket starts it again."""
    from overlayctl.api.service import serve

    serve(list(addresses), runopts.idle_seconds(idle_seconds), group, obj["root"], obj["runroot"])


@system.command("fsck")
@click.option("--repair", is_flag=True, help="also fix what can be fixed without losing anything, then check again")
@click.option(
    "--verify-content",
    is_flag=True,
    help="read every layer's files and compare them with what was recorded when the layer was stored",
)
@click.pass_obj
def fsck(obj: dict, repair: bool, verify_content: bool) -> None:
    """Check the store: the catalog against the layer, container, volume,
    blob and staging directories, reference counts, and the runroot against
    the processes that really run.

    Prints one line per problem and exits 1 while any is left. --repair
    removes leftovers nothing refers to (crash leftovers, staging of dead
    processes), forgets blob files that are gone, and records containers
    whose processes are gone as exited; lost layers and containers are
    reported with what they break and left for you to remove. It deletes
    nothing unless the catalog is proven healthy (see `system restore`).
    """
    from overlayctl.engine.system import check_store, repair_store

    store = open_store(obj)
    findings = check_store(store, verify_content)
    if repair:
        for line in repair_store(store, findings):
            click.echo(f"reconciled: {line}")
    for finding in findings:
        click.echo(finding.line())
    left = [f for f in findings if not f.repaired]
    if repair and len(left) < len(findings):
        # Checked again: a repair may have uncovered something.
        left = check_store(store, verify_content)
        for finding in left:
            click.echo(f"still: {finding.line()}")
    if left:
        click.echo(_backup_line(store.paths.root))
        raise SystemExit(1)
    if not findings:
        click.echo("no problems found")


def _backup_line(root: str) -> str:
    from overlayctl.engine.system import newest_backup

    newest = newest_backup(root)
    if newest is None:
        return 'catalog backup: none kept ("overlayctl system backup" makes one)'
    return f'catalog backup: {newest} (the newest good one; "overlayctl system restore" brings it back)'


@system.command("backup")
@click.pass_obj
def backup_command(obj: dict) -> None:
    """Back up the catalog (SQLite's online backup, safe while other commands
    run) into ROOT/backups and print the backup's path. One is also made
    before each schema upgrade and each `system fsck --repair`; `system gc`
    keeps the newest few."""
    store = open_store(obj)
    click.echo(store.backup("manual"))


@system.command("restore")
@click.argument("backup_file", metavar="[BACKUP]", required=False)
@click.pass_obj
def restore(obj: dict, backup_file: str | None) -> None:
    """Put a backup of the catalog in place (default: the newest good one in
    ROOT/backups), keeping the current catalog aside as
    catalog.db.damaged-TIME, and reconcile it with the disk.

    Refuses while containers run. Layer and container directories the
    backup does not know (made after it) are moved to ROOT/kept-after-restore, not
    deleted; a container whose directory is gone is forgotten; a layer whose
    directory is gone is reported with the images it breaks.
    """
    from overlayctl.engine.reconcile import reconcile_store
    from overlayctl.engine.system import restore_catalog

    chosen, report = restore_catalog(obj.get("root"), obj.get("runroot"), backup_file)
    click.echo(f"restored: {chosen}")
    for line in report:
        click.echo(line)
    store = open_store(obj)
    for line in reconcile_store(store):
        click.echo(f"reconciled: {line}")


@system.command("df")
@click.option("-v", "--verbose", is_flag=True, help="per image, container and volume")
@click.option("--format", "fmt", default=None, metavar="FORMAT", help=FORMAT_HELP)
@click.pass_obj
def df(obj: dict, verbose: bool, fmt: str | None) -> None:
    """Disk usage: Images, Containers, Local Volumes, Logs, Events, Build Cache.

    Exact (bytes as `du` counts them). Each row adds up the figures its
    objects show everywhere (image ls, ps -s, inspect -s): a container's size
    is its upper dir, an image's its layers; a layer shared by several images
    is counted once, and -v shows each image's SHARED and UNIQUE SIZE. The
    store metadata line holds the rest (catalog, layer indexes and tars,
    containers' work dirs): rows plus it equal `du -s --block-size=1` of the
    store root.
    """
    from overlayctl.engine import format as formats
    from overlayctl.engine.measure import disk_usage
    from overlayctl.errors import InvalidArgumentError

    form = formats.parse(fmt)
    if verbose and form.kind in ("table", "template"):
        raise InvalidArgumentError("--format with a template shows the summary rows: leave out -v")
    report = disk_usage(open_store(obj))
    if form.kind == "json":
        _df_json(report, verbose)
    elif form.is_default:
        _df_table(report, verbose)
    else:
        click.echo(formats.render(form, formats.disk_usage_rows(report.kinds), formats.DISK_USAGE), nl=False)


def _percent(part: int, whole: int) -> str:
    return f" ({round(100 * part / whole)}%)" if whole else ""


def _df_table(report: Report, verbose: bool) -> None:
    import time

    from overlayctl.cli.output import table
    from overlayctl.engine.images import repo_tags
    from overlayctl.engine.inspect import ago, command_text, status_text
    from overlayctl.util.humanize import human_size

    table(
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        [
            [
                k.type,
                str(k.total),
                str(k.active),
                human_size(k.size),
                human_size(k.reclaimable) + _percent(k.reclaimable, k.size),
            ]
            for k in report.kinds
        ],
    )
    parts = ", ".join(f"{name} {human_size(size)}" for name, size in report.metadata.items() if size)
    click.echo(
        f"Store metadata: {human_size(report.metadata_size)} ({parts}); "
        f"total {human_size(report.total)} ({report.total} bytes)"
    )
    if not verbose:
        return
    now = time.time()
    click.echo("\nImages space usage:\n")
    rows = []
    for i in report.images:
        for repo, tag in repo_tags(i.tags):
            rows.append(
                [
                    repo,
                    tag,
                    i.id.split(":", 1)[1][:12],
                    ago(i.created, now),
                    human_size(i.size),
                    human_size(i.shared),
                    human_size(i.unique),
                    str(i.containers),
                ]
            )
    table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"], rows)
    click.echo("\nContainers space usage:\n")
    table(
        ["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "LOGS", "CREATED", "STATUS", "NAMES"],
        [
            [
                u.container.short_id,
                u.container.image_name,
                command_text(u.container, 20),
                str(u.volumes),
                human_size(u.size),
                human_size(u.logs),
                ago(u.container.created, now),
                status_text(u.container, now),
                u.container.name,
            ]
            for u in report.containers
        ],
    )
    click.echo("\nLocal Volumes space usage:\n")
    table(["VOLUME NAME", "LINKS", "SIZE"], [[v.name, str(v.links), human_size(v.size)] for v in report.volumes])
    click.echo(
        f"\nBuild cache usage: {human_size(report.staging + report.cache_mounts_size)} "
        f"({report.build_cache_entries} cache entries, their layers belong to images; "
        f"{len(report.cache_mounts)} cache mounts)"
    )
    if report.cache_mounts:
        table(
            ["CACHE ID", "SIZE", "IN USE"],
            [[cache_id, human_size(size), "true" if used else "false"] for cache_id, size, used in report.cache_mounts],
        )
    click.echo("\nStore metadata space usage:\n")
    table(["PART", "SIZE"], [[name, human_size(size)] for name, size in report.metadata.items()])


def _df_json(report: Report, verbose: bool) -> None:
    from overlayctl.cli.output import json_document, json_lines

    kinds = [
        {"Type": k.type, "TotalCount": k.total, "Active": k.active, "Size": k.size, "Reclaimable": k.reclaimable}
        for k in report.kinds
    ]
    if not verbose:
        json_lines(kinds + [{"Type": "Metadata", "Size": report.metadata_size}])
        return
    json_document(
        {
            "Types": kinds,
            "MetadataSize": report.metadata_size,
            "Total": report.total,
            "Images": [
                {
                    "Id": i.id,
                    "RepoTags": i.tags,
                    "Created": i.created,
                    "Size": i.size,
                    "SharedSize": i.shared,
                    "UniqueSize": i.unique,
                    "Containers": i.containers,
                }
                for i in report.images
            ],
            "Containers": [
                {
                    "Id": u.container.id,
                    "Names": [u.container.name],
                    "Image": u.container.image_name,
                    "ImageID": u.container.image_id,
                    "SizeRw": u.size,
                    "LogSize": u.logs,
                    "MetadataSize": u.other,
                    "LocalVolumes": u.volumes,
                    "State": u.container.status,
                }
                for u in report.containers
            ],
            "Volumes": [{"Name": v.name, "Links": v.links, "Size": v.size} for v in report.volumes],
            "BuildCache": {
                "Entries": report.build_cache_entries,
                "Staging": report.staging,
                "CacheMounts": [{"ID": i, "Size": size, "InUse": used} for i, size, used in report.cache_mounts],
            },
            "Metadata": report.metadata,
        }
    )


@click.command("info")
@click.option("-f", "--format", "fmt", default=None, metavar="FORMAT", help="json or a Go template ('{{.Containers}}')")
@click.pass_obj
def info(obj: dict, fmt: str | None) -> None:
    """Show the host and the store: containers by state, images, the
    storage driver, the store root, the kernel and the machine."""
    from overlayctl.engine import format as formats
    from overlayctl.engine.system import system_info
    from overlayctl.util.humanize import binary_size

    form = formats.parse(fmt, listing=False)
    data = system_info(open_store(obj))
    if form.kind == "json":
        click.echo(formats.render_documents("{{json .}}", [data]), nl=False)
        return
    text = formats.render_documents(fmt, [data])
    if text is not None:
        click.echo(text, nl=False)
        return
    for line in (
        f"Containers: {data['Containers']}",
        f" Running: {data['ContainersRunning']}",
        f" Paused: {data['ContainersPaused']}",
        f" Stopped: {data['ContainersStopped']}",
        f"Images: {data['Images']}",
        f"Server Version: {data['ServerVersion']}",
        f"Storage Driver: {data['Driver']}",
        *(f" {key}: {value or 'none'}" for key, value in data["DriverStatus"]),
        f"Cgroup Version: {data['CgroupVersion']}",
        f"Kernel Version: {data['KernelVersion']}",
        f"Operating System: {data['OperatingSystem']}",
        f"OSType: {data['OSType']}",
        f"Architecture: {data['Architecture']}",
        f"CPUs: {data['NCPU']}",
        f"Total Memory: {binary_size(data['MemTotal'])}",
        f"Name: {data['Name']}",
        f"Docker Root Dir: {data['DockerRootDir']}",
    ):
        click.echo(line)


@click.group("generate")
def generate() -> None:
    """Generate files for other tools (systemd units)."""


@generate.command("systemd")
@click.argument("container")
@click.option("--name", "use_name", is_flag=True, help="name the container by its name, not its ID, in the unit")
@click.option(
    "-t",
    "--time",
    "stop_timeout",
    type=click.IntRange(min=0),
    default=None,
    help="seconds a stop waits before SIGKILL (default: the container's --stop-timeout, else 10)",
)
@click.option(
    "--restart-policy",
    type=click.Choice(RESTART_POLICIES),
    default=None,
    help="the unit's Restart= (default: always for a container made with --restart always or unless-stopped, "
    "else on-failure)",
)
@click.option("-f", "--files", is_flag=True, help="write container-NAME.service here and print its path")
@click.option("--no-header", is_flag=True, help="leave out the comment naming the unit and overlayctl's version")
@click.pass_obj
def generate_systemd(
    obj: dict,
    container: str,
    use_name: bool,
    stop_timeout: int | None,
    restart_policy: str | None,
    files: bool,
    no_header: bool,
) -> None:
    """Print a systemd unit that runs CONTAINER in the foreground (Type=notify).

    The unit starts the existing container (it does not create one), stops
    it with `overlayctl stop`, and adds every sandboxing option the
    container's binds, capabilities and seccomp profile allow. To install one:

    \b
      overlayctl generate systemd --name -f web
      mv container-web.service /etc/systemd/system/
      systemctl daemon-reload; systemctl enable --now container-web
    """
    from overlayctl.engine.system import systemd_unit

    store = open_store(obj)
    found = store.containers.get(container)
    text, path = systemd_unit(store, found, use_name, stop_timeout, restart_policy, not no_header, files)
    if path is None:
        click.echo(text, nl=False)
        return
    click.echo(path)


@click.command("events")
@click.option("--since", metavar="TIME", help="show events since TIME: a duration (10m), Unix seconds or RFC 3339")
@click.option("--until", metavar="TIME", help="stream events until TIME (same forms); without it, follow live")
@filter_option("container, event, image, label, network, type, volume (repeatable)")
@click.option("--format", "fmt", metavar="FORMAT", help="json, or a Go template ('{{json .}}', '{{.Action}}')")
@click.pass_obj
def events(obj: dict, since: str | None, until: str | None, filters: tuple[str, ...], fmt: str | None) -> None:
    """Show the events of containers, images, networks and volumes.

    Without --since and --until, only the events that happen from now on,
    until interrupted. --since replays the record from TIME first; with
    --until, the stream ends at TIME. The record lives in the store
    (ROOT/events/) and keeps about the last 1 to 2 MiB of events.
    """
    import os
    import sys

    from overlayctl.engine import events as engine_events

    store = open_store(obj)
    shown = engine_events.formatter(fmt)
    out = sys.stdout
    try:
        for event in engine_events.stream(store, since, until, filters):
            out.write(shown(event) + "\n")
            out.flush()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a live stream ends, and it ends well: exit 0, as Docker
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def register(cli: click.Group) -> None:
    cli.add_command(system)
    cli.add_command(generate)
    cli.add_command(info)
    system.add_command(info)
    cli.add_command(events)
    system.add_command(events)

"""System commands: `system reconcile` (run at boot by
overlayctl-reconcile.service) and `generate systemd` (a unit for one
container)."""

from __future__ import annotations

import click

from overlayctl.cli.common import open_store
from overlayctl.systemd import EXECUTABLE, RESTART_POLICIES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.store import Store


@click.group("system")
def system() -> None:
    """Manage overlayctl's own state."""


@system.command("reconcile")
@click.pass_obj
def reconcile(obj: dict) -> None:
    """Mark containers whose supervisor is gone as exited, and free what they held.

    Removes those that were started with --rm, leases and veth devices
    nobody holds, cgroups of containers that are not running, and staging
    left by crashed commands. Safe while containers run: it touches only
    what no living process holds. overlayctl-reconcile.service runs it at
    boot, before any overlayctl@ unit.
    """
    for line in reconcile_store(open_store(obj)):
        click.echo(line)


def reconcile_store(store: Store) -> list[str]:
    """What `system reconcile` does; one line per thing it changed."""
    from overlayctl import lifecycle
    from overlayctl.network import attach
    from overlayctl.runtime import cgroups
    from overlayctl.store import staging
    from overlayctl.store.containers import CREATED, EXITED

    # A row that is neither created nor exited claims a living container;
    # reading it back through the store checks the claim against /proc.
    rows = store.conn.execute("SELECT id FROM containers WHERE status NOT IN (?, ?)", (CREATED, EXITED))
    claimed = {row["id"] for row in rows}
    containers = store.containers.list(all=True)
    lost = [c for c in containers if c.id in claimed and c.status == EXITED]
    report = [f"exited: {c.name} ({c.short_id}): {c.error or 'its supervisor is gone'}" for c in lost]
    for container in lost:
        if container.config.get("HostConfig", {}).get("AutoRemove"):
            lifecycle.remove(store, container, force=True, volumes=True)
            report.append(f"removed: {container.name} ({container.short_id}), started with --rm")
    attach.release_stale(store)
    running = {c.id for c in containers if c.status not in (CREATED, EXITED)}
    report += [f"cgroup removed: {cid[:12]}" for cid in cgroups.remove_stale(running)]
    staging.sweep(store.paths.tmp)
    return report


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
    import os

    from overlayctl import systemd

    store = open_store(obj)
    found = store.containers.get(container)
    text = systemd.generate_unit(
        found,
        use_name=use_name,
        root=store.paths.root,
        runroot=store.paths.runroot,
        stop_timeout=stop_timeout,
        restart=restart_policy,
        executable=_executable(),
        header=not no_header,
    )
    if not files:
        click.echo(text, nl=False)
        return
    path = os.path.abspath(systemd.unit_name(found, use_name))
    with open(path, "w") as f:
        f.write(text)
    click.echo(path)


def _executable() -> str:
    """The overlayctl a unit should run: the one on PATH (setup.sh's
    launcher is /usr/local/bin/overlayctl), or that path when none is found."""
    import os
    import shutil

    found = shutil.which("overlayctl")
    return os.path.abspath(found) if found else EXECUTABLE


def register(cli: click.Group) -> None:
    cli.add_command(system)
    cli.add_command(generate)

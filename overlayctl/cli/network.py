"""Network commands: network ls, create, rm, inspect, connect, disconnect."""

from __future__ import annotations

import click

from overlayctl.cli.common import open_store
from overlayctl.cli.output import FORMAT_HELP, INSPECT_FORMAT_HELP, filter_option, print_documents, table


@click.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="only show network IDs")
@click.option("--no-trunc", is_flag=True, help="do not truncate IDs")
@click.option("--format", "fmt", default=None, metavar="FORMAT", help=FORMAT_HELP)
@filter_option("name, id, label, driver, dangling, type, scope")
@click.pass_obj
def network_ls(obj: dict, quiet: bool, no_trunc: bool, fmt: str | None, filters: tuple[str, ...]) -> None:
    """List networks: NETWORK ID NAME DRIVER SCOPE."""
    from overlayctl.engine import format as formats
    from overlayctl.engine.networks import list_networks

    form = formats.parse(fmt)
    store = open_store(obj)
    if not form.is_default and not quiet:
        listed = formats.network_rows(store, no_trunc, list(filters))
        click.echo(formats.render(form, listed, formats.NETWORKS), nl=False)
        return
    rows = list_networks(store, list(filters))
    ids = [row.id if no_trunc else row.id[:12] for row in rows]
    if quiet:
        for network_id in ids:
            click.echo(network_id)
        return
    table(
        ["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
        [(network_id, row.name, row.driver, "local") for network_id, row in zip(ids, rows, strict=True)],
    )


@click.command("create")
@click.argument("name")
@click.option(
    "--subnet",
    "subnets",
    multiple=True,
    metavar="CIDR",
    help="the network's subnet (default: a free /24 of 10.78.0.0/16); with --ipv6, also its IPv6 one",
)
@click.option("--gateway", metavar="IP", help="the bridge's own address (default: the subnet's first)")
@click.option("-d", "--driver", default="bridge", show_default=True, help="network driver (bridge only)")
@click.option("--internal", is_flag=True, help="no way out: no masquerade, nothing forwarded beyond its bridge")
@click.option("--ipv6", is_flag=True, help="give the network an IPv6 subnet (default: a random fdXX: /64)")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="set a label (repeatable)")
@click.option("--label-file", "label_files", multiple=True, metavar="FILE", help="read labels from a file")
@click.pass_obj
def network_create(
    obj: dict,
    name: str,
    subnets: tuple[str, ...],
    gateway: str | None,
    driver: str,
    internal: bool,
    ipv6: bool,
    labels: tuple[str, ...],
    label_files: tuple[str, ...],
) -> None:
    """Create a bridge network with its own device and subnet."""
    from overlayctl.engine.networks import create_network
    from overlayctl.errors import InvalidArgumentError
    from overlayctl.util.kvfile import labels_from

    label_map = labels_from(label_files, labels)

    v6 = [s for s in subnets if ":" in s]
    v4 = [s for s in subnets if ":" not in s]
    if len(v4) > 1 or len(v6) > 1:
        raise InvalidArgumentError("give at most one IPv4 and one IPv6 --subnet")
    network = create_network(
        open_store(obj),
        name,
        v4[0] if v4 else None,
        gateway,
        driver,
        ipv6,
        v6[0] if v6 else None,
        internal=internal,
        labels=label_map,
    )
    click.echo(network.id)


@click.command("rm")
@click.argument("names", nargs=-1, required=True, metavar="NETWORK...")
@click.pass_obj
def network_rm(obj: dict, names: tuple[str, ...]) -> None:
    """Remove networks and their bridge devices; refused while a container uses one."""
    from overlayctl.engine.networks import remove_network

    store = open_store(obj)
    for name in names:
        click.echo(remove_network(store, name))


@click.command("inspect")
@click.argument("names", nargs=-1, required=True, metavar="NETWORK...")
@click.option("-f", "--format", "fmt", default=None, metavar="FORMAT", help=INSPECT_FORMAT_HELP)
@click.pass_obj
def network_inspect(obj: dict, names: tuple[str, ...], fmt: str | None) -> None:
    """Show networks as JSON: IPAM config, attached containers, options."""
    from overlayctl.engine.networks import inspect_networks

    print_documents(fmt, lambda: inspect_networks(open_store(obj), list(names)))


@click.command("connect")
@click.option("--ip", metavar="IP", help="IPv4 address on the network")
@click.option("--alias", "aliases", multiple=True, metavar="NAME", help="another name on the network (repeatable)")
@click.argument("network_name", metavar="NETWORK")
@click.argument("container", metavar="CONTAINER")
@click.pass_obj
def network_connect(obj: dict, ip: str | None, aliases: tuple[str, ...], network_name: str, container: str) -> None:
    """Connect a container to a network (a running one gets its interface at once)."""
    from overlayctl.engine.networks import connect_network

    connect_network(open_store(obj), network_name, container, ip, list(aliases))


@click.command("disconnect")
@click.option("-f", "--force", is_flag=True, help="also when the network no longer exists")
@click.argument("network_name", metavar="NETWORK")
@click.argument("container", metavar="CONTAINER")
@click.pass_obj
def network_disconnect(obj: dict, force: bool, network_name: str, container: str) -> None:
    """Disconnect a container from a network."""
    from overlayctl.engine.networks import disconnect_network

    disconnect_network(open_store(obj), network_name, container, force)


def register(cli: click.Group) -> None:
    """Attach `network` and its commands."""

    @cli.group("network")
    def network() -> None:
        """Manage networks."""

    network.add_command(network_ls)
    network.add_command(network_ls, "list")
    network.add_command(network_create)
    network.add_command(network_rm)
    network.add_command(network_rm, "remove")
    network.add_command(network_inspect)
    network.add_command(network_connect)
    network.add_command(network_disconnect)

"""--format through the CLI, as a script written for the docker CLI uses it:
Go templates on ps, images, inspect (-f), network and volume ls/inspect,
history, port, info and system df; `table TEMPLATE` headers; bad templates
as one line, exit 125, nothing on stdout."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import CLI


def _sleeper(cli: CLI, name: str, *opts: str) -> str:
    return cli.ok("run", "-d", "--name", name, *opts, "bb:1", "sleep", "300").strip()


def test_ps_template_names_and_status(cli: CLI, bb: str) -> None:
    _sleeper(cli, "web")
    cli.ok("create", "--name", "idle", "bb:1", "true")
    out = cli.ok("ps", "-a", "--format", "{{.Names}} {{.Status}}")
    lines = sorted(out.splitlines())
    assert lines[0] == "idle Created"
    assert lines[1].startswith("web Up")
    assert cli.ok("ps", "--format", "{{.Names}}|{{.State}}|{{.Image}}") == "web|running|bb:1\n"
    # Docker's \t in a template is a tab.
    assert cli.ok("ps", "--format", r"{{.Names}}\t{{.State}}") == "web\trunning\n"


def test_ps_table_template_has_docker_headers(cli: CLI, bb: str) -> None:
    _sleeper(cli, "web")
    out = cli.ok("ps", "--format", r"table {{.ID}}\t{{.Image}}\t{{.Names}}")
    header, row = out.splitlines()
    assert header.split("   ")[0].strip() == "CONTAINER ID"
    assert header.split() == ["CONTAINER", "ID", "IMAGE", "NAMES"]
    # Columns start where the header's do (tabwriter: widest cell + 3).
    assert row.index("bb:1") == header.index("IMAGE")
    assert row.index("web") == header.index("NAMES")


def test_ps_mounts_networks_and_labels_columns(cli: CLI, bb: str) -> None:
    cli.ok("create", "--name", "vol", "-v", "data:/data", "bb:1", "true")
    out = cli.ok("ps", "-a", "--format", '{{.Mounts}} {{.LocalVolumes}} {{.Networks}} [{{.Label "x"}}]')
    assert out == "data 1 bridge []\n"


def test_ps_json_is_one_object_per_line(cli: CLI, bb: str) -> None:
    _sleeper(cli, "web")
    for spec in ("json", "{{json .}}"):
        (line,) = cli.ok("ps", "--format", spec).splitlines()
        item = json.loads(line)
        assert item["Names"] == "web" and item["State"] == "running"


def test_ps_size_in_template_asks_for_sizes(cli: CLI, bb: str) -> None:
    cli.ok("run", "--name", "wr", "bb:1", "sh", "-c", "head -c 5000 /dev/zero > /f")
    out = cli.ok("ps", "-a", "--format", "{{.Names}} {{.Size}}")
    assert out.startswith("wr ") and "(virtual" in out and not out.startswith("wr 0B")


def test_inspect_templates(cli: CLI, bb: str) -> None:
    _sleeper(cli, "web")
    pid = int(cli.ok("inspect", "-f", "{{.State.Pid}}", "web"))
    assert pid > 1 and os.path.exists(f"/proc/{pid}")
    assert cli.ok("inspect", "--format", "{{.Name}} {{.State.Running}}", "web") == "/web true\n"
    addresses = cli.ok("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "web").strip()
    expected = json.loads(cli.ok("inspect", "web"))[0]["NetworkSettings"]["Networks"]
    assert addresses == "".join(n["IPAddress"] for _, n in sorted(expected.items()))
    assert addresses.count(".") == 3
    assert json.loads(cli.ok("inspect", "-f", "{{json .Config.Cmd}}", "web")) == ["sleep", "300"]
    assert cli.ok("inspect", "-f", '{{join .Config.Cmd " , "}}', "web") == "sleep , 300\n"
    assert cli.ok("inspect", "-f", "{{upper .Name}}", "web") == "/WEB\n"
    # One line per object, in order.
    assert cli.ok("inspect", "-f", "{{.Id}}", "web", "bb:1").splitlines()[1] == bb


def test_inspect_networks_volumes_and_images(cli: CLI, bb: str) -> None:
    cli.ok("volume", "create", "data")
    assert cli.ok("volume", "inspect", "-f", "{{.Name}} {{.Driver}}", "data") == "data local\n"
    assert cli.ok("inspect", "-f", "{{.Mountpoint}}", "data").strip().endswith("/data/_data")
    assert cli.ok("inspect", "--type", "volume", "-f", "{{.Scope}}", "data") == "local\n"
    assert cli.ok("network", "inspect", "-f", "{{.Name}}", "bridge") == "bridge\n"
    assert cli.ok("image", "inspect", "-f", "{{.Id}}", "bb:1") == bb + "\n"
    assert cli.ok("volume", "ls", "--format", "{{.Name}}:{{.Driver}}") == "data:local\n"
    names = cli.ok("network", "ls", "--format", "{{.Name}}").split()
    assert "bridge" in names


def test_images_and_history_templates(cli: CLI, bb: str) -> None:
    out = cli.ok("images", "--format", r"table {{.Repository}}\t{{.Tag}}")
    header, row = out.splitlines()
    assert header.split() == ["REPOSITORY", "TAG"]
    assert row.split() == ["bb", "1"]
    # As Go's tabwriter in Docker: a column is at least 10 wide, padding 3.
    assert header.index("TAG") == 13
    assert cli.ok("image", "ls", "--format", "{{.ID}}") == bb.split(":")[1][:12] + "\n"
    assert cli.ok("history", "--format", "{{.ID}} {{.Size}}", "bb:1").split()[0] == bb.split(":")[1][:12]


def test_port_info_and_df_templates(cli: CLI, bb: str) -> None:
    _sleeper(cli, "web", "-p", "127.0.0.1:18081:80")
    assert cli.ok("port", "web", "--format", '{{(index (index . "80/tcp") 0).HostPort}}') == "18081\n"
    assert cli.ok("info", "--format", "{{.ContainersRunning}} {{.Images}} {{.Driver}}") == "1 1 overlay\n"
    assert json.loads(cli.ok("info", "--format", "json"))["Containers"] == 1
    assert cli.ok("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}") == "web 1\n"
    header = cli.ok("stats", "--no-stream", "--format", r"table {{.Name}}\t{{.MemUsage}}").splitlines()[0]
    assert header.split() == ["NAME", "MEM", "USAGE", "/", "LIMIT"]
    types = cli.ok("system", "df", "--format", "{{.Type}}").splitlines()
    assert types[:2] == ["Images", "Containers"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ps", "--format", "{{.Names}"), 'template parsing error: template: :1: unexpected "}" in operand'),
        (
            ("ps", "--format", "{{.Nope}}"),
            'template parsing error: template: :1:2: executing "" at <.Nope>: '
            "can't evaluate field Nope in type *formatter.ContainerContext",
        ),
        (
            ("inspect", "-f", "{{.Foo}}", "web"),
            'template parsing error: template: :1:2: executing "" at <.Foo>: map has no entry for key "Foo"',
        ),
        (("images", "--format", "{{if .ID}}"), "template parsing error: template: :1: unexpected EOF"),
        (("volume", "ls", "--format", "{{nope .Name}}"), 'function "nope" not defined'),
    ],
)
def test_bad_templates_fail_in_one_line(cli: CLI, bb: str, args: tuple[str, ...], message: str) -> None:
    _sleeper(cli, "web")
    result = cli(*args)
    assert result.returncode == 125, result
    assert result.stdout == b""
    err = result.stderr.decode()
    assert err.count("\n") == 1 and message in err, err

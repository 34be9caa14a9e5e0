"""The Go template interpreter against what Docker and Go document: the
examples of Docker's "Format command and log output" page and of the
--format sections of the ps, images and inspect references, Go's own
text/template examples, trim markers, and Go's error wording."""

from __future__ import annotations

import pytest

from overlayctl.engine import format as formats
from overlayctl.errors import InvalidArgumentError
from overlayctl.util import tabwriter
from overlayctl.util.gotemplate import Template

# What `docker inspect` decodes an object to when a template runs over it.
CONTAINER = {
    "Id": "4fa6e0f0c6786287e131c3852c58a2e01cc697a68231826813597e4994f1d6e2",
    "Name": "/Web_App",
    "Args": ["-c", "sleep 30"],
    "Image": "busybox:latest",
    "LogPath": "/var/lib/docker/containers/4fa6e0f0/4fa6e0f0-json.log",
    "State": {"Status": "running", "Running": True, "Pid": 4242, "ExitCode": 0, "Health": None},
    "Config": {"Image": "busybox", "Cmd": ["sh", "-c", "sleep 30"], "Labels": {"com.example": "x", "a": "b"}},
    "Mounts": [{"Type": "volume", "Name": "data", "Destination": "/data", "RW": True}],
    "NetworkSettings": {
        "Ports": {"8787/tcp": [{"HostIp": "0.0.0.0", "HostPort": "16001"}], "80/tcp": None},
        "Networks": {
            "bridge": {"IPAddress": "172.17.0.2", "MacAddress": "02:42:ac:11:00:02"},
            "front": {"IPAddress": "10.1.0.3", "MacAddress": "02:42:0a:01:00:03"},
        },
    },
}

DOCUMENTED = [
    # docs.docker.com/engine/cli/formatting
    ('{{join .Args " , "}}', "-c , sleep 30"),
    ("{{json .Mounts}}", '[{"Type":"volume","Name":"data","Destination":"/data","RW":true}]'),
    ("{{lower .Name}}", "/web_app"),
    ('{{split .Image ":"}}', "[busybox latest]"),
    ("{{title .Name}}", "/Web_App"),
    ('{{title "hello world-wide_web"}}', "Hello World-Wide_web"),
    ("{{upper .Name}}", "/WEB_APP"),
    ("{{println .Name}}", "/Web_App\n"),
    ("{{range .NetworkSettings.Networks}}{{println .IPAddress}}{{end}}", "172.17.0.2\n10.1.0.3\n"),
    ('{{split (join .Args "/") "/"}}', "[-c sleep 30]"),
    # docs.docker.com/reference/cli/docker/inspect
    ("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "172.17.0.210.1.0.3"),
    ("{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}", "02:42:ac:11:00:0202:42:0a:01:00:03"),
    ("{{.LogPath}}", "/var/lib/docker/containers/4fa6e0f0/4fa6e0f0-json.log"),
    ("{{.Config.Image}}", "busybox"),
    (
        "{{range $p, $conf := .NetworkSettings.Ports}} {{$p}} -> {{(index $conf 0).HostPort}} {{end}}",
        None,  # 80/tcp maps to null: index of nil fails, as in Docker
    ),
    ('{{(index (index .NetworkSettings.Ports "8787/tcp") 0).HostPort}}', "16001"),
    ("{{json .Config}}", '{"Image":"busybox","Cmd":["sh","-c","sleep 30"],"Labels":{"com.example":"x","a":"b"}}'),
    ("{{.NetworkSettings.Networks.front.IPAddress}}", "10.1.0.3"),
    ("{{.State.Pid}}", "4242"),
    ("{{.State.Running}}", "true"),
    ('{{index .Config.Labels "com.example"}}', "x"),
    # Go values printed as fmt does: maps sorted, slices bracketed, null as <no value>
    ("{{.Config.Labels}}", "map[a:b com.example:x]"),
    ("{{.Config.Cmd}}", "[sh -c sleep 30]"),
    ("{{.State.Health}}", "<no value>"),
    ("{{.Mounts}}", "[map[Destination:/data Name:data RW:true Type:volume]]"),
    # control structures, variables, comparisons
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ('{{if eq .State.Status "exited"}}x{{else if eq .State.Status "running"}}r{{else}}?{{end}}', "r"),
    ("{{if and .State.Running (gt .State.Pid 1)}}ok{{end}}", "ok"),
    ("{{if or .State.ExitCode .State.Running}}ok{{end}}", "ok"),
    ("{{if not .State.ExitCode}}zero{{end}}", "zero"),
    (
        "{{if ne .State.Pid 1}}{{if lt .State.Pid 5000}}{{if le 4242 .State.Pid}}"
        "{{if ge .State.Pid 4242}}y{{end}}{{end}}{{end}}{{end}}",
        "y",
    ),
    ("{{with .Config}}{{.Image}}{{end}}", "busybox"),
    ("{{with .State.Health}}{{.Status}}{{else}}no health check{{end}}", "no health check"),
    ("{{$n := .Name}}{{$n}}{{$n = upper $n}} {{$n}}", "/Web_App /WEB_APP"),
    ("{{range $i, $a := .Config.Cmd}}{{if $i}},{{end}}{{$i}}={{$a}}{{end}}", "0=sh,1=-c,2=sleep 30"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "a=b;com.example=x;"),
    ('{{range .Config.Cmd}}{{if eq . "-c"}}{{continue}}{{end}}{{.}}.{{end}}', "sh.sleep 30."),
    ('{{range .Config.Cmd}}{{if eq . "-c"}}{{break}}{{end}}{{.}}{{end}}', "sh"),
    ("{{range .Nothing}}x{{else}}empty{{end}}", None),
    ("{{range $.Args}}[{{.}}]{{end}}", "[-c][sleep 30]"),
    ("{{len .Args}} {{len .Config.Labels}} {{len .Name}}", "2 2 8"),
    ("{{index .Args 1}}", "sleep 30"),
    ("{{slice .Name 1 4}}", "Web"),
    ('{{.Name | upper | printf "%s!"}}', "/WEB_APP!"),
    ("{{truncate .Id 12}}", "4fa6e0f0c678"),
    ("[{{pad .Image 2 1}}]", "[  busybox:latest ]"),
    ('[{{pad "" 2 1}}]', "[]"),
    ('{{printf "%d-%5.1f-%x-%t-%v" 42 3.14159 255 true .Args}}', "42-  3.1-ff-true-[-c sleep 30]"),
    ('{{print 1 2 "a" 3}}', "1 2a3"),
    ('{{printf "%s" 42}}', "%!s(int=42)"),
    # Go's text/template documentation
    ('{{"\\"output\\""}}', '"output"'),
    ('{{`"output"`}}', '"output"'),
    ('{{printf "%q" "output"}}', '"output"'),
    ('{{"output" | printf "%q"}}', '"output"'),
    ('{{printf "%q" (print "out" "put")}}', '"output"'),
    ('{{"put" | printf "%s%s" "out" | printf "%q"}}', '"output"'),
    ('{{"output" | printf "%s" | printf "%q"}}', '"output"'),
    ('{{with "output"}}{{printf "%q" .}}{{end}}', '"output"'),
    ('{{with $x := "output" | printf "%q"}}{{$x}}{{end}}', '"output"'),
    ('{{with $x := "output"}}{{printf "%q" $x}}{{end}}', '"output"'),
    ('{{with $x := "output"}}{{$x | printf "%q"}}{{end}}', '"output"'),
    ("{{23 -}} < {{- 45}}", "23<45"),
    # Go's escapers
    ('{{html "<a href=\\"x\\">&</a>"}}', "&lt;a href=&#34;x&#34;&gt;&amp;&lt;/a&gt;"),
    ('{{urlquery "a b&c/d"}}', "a+b%26c%2Fd"),
    ('{{js "it\'s <b>\\n"}}', "it\\'s \\u003Cb\\u003E\\u000A"),
    # literals
    ("{{-3}} {{0x1F}} {{1e3}} {{'a'}} {{true}} {{1.5}}", "-3 31 1000 97 true 1.5"),
    # trim markers and comments
    ("a  \n {{- .Image -}} \n  b", "abusybox:latestb"),
    ("{{/* a comment */}}x{{- /* trimmed */ -}}  y", "xy"),
    ("{{.Image}}\n", "busybox:latest\n"),
]


@pytest.mark.parametrize(("text", "expected"), [d for d in DOCUMENTED if d[1] is not None])
def test_documented_examples(text: str, expected: str) -> None:
    assert Template(text).execute(CONTAINER) == expected


def test_range_else_and_index_of_null() -> None:
    assert Template("{{range .State.Health}}x{{else}}empty{{end}}").execute(CONTAINER) == "empty"
    with pytest.raises(InvalidArgumentError) as info:
        Template(
            "{{range $p, $conf := .NetworkSettings.Ports}} {{$p}} -> {{(index $conf 0).HostPort}} {{end}}"
        ).execute(CONTAINER)
    assert "error calling index: index of untyped nil" in str(info.value)


PARSE_ERRORS = [
    ("{{.Names}", 'template: :1: unexpected "}" in operand'),
    ("{{.Name", "template: :1: unclosed action"),
    ("{{if .X}}", "template: :1: unexpected EOF"),
    ("{{end}}", "template: :1: unexpected {{end}}"),
    ("{{else}}", "template: :1: unexpected {{else}}"),
    ("{{foo .X}}", 'template: :1: function "foo" not defined'),
    ("{{$y}}", 'template: :1: undefined variable "$y"'),
    ('{{"abc}}', "template: :1: unterminated quoted string"),
    ("{{(.X}}", "template: :1: unclosed left paren"),
    ("{{.X)}}", "template: :1: unexpected right paren"),
    ("{{}}", "template: :1: missing value for command"),
    ("{{if}}x{{end}}", "template: :1: missing value for if"),
    ("{{.X | 1}}", "template: :1: non executable command in pipeline stage 2"),
    ("{{/* x */ .X}}", "template: :1: comment ends before closing delimiter"),
    ("{{/* x", "template: :1: unclosed comment"),
    ("a\nb\n{{.X.}}", "template: :3: unexpected <.> in operand"),
    ("{{break}}", "template: :1: {{break}} outside {{range}}"),
    ("{{range $a, $b, $c := .X}}{{end}}", "template: :1: too many declarations in range"),
    ("{{3.X}}", 'template: :1: bad number syntax: "3.X"'),
]


@pytest.mark.parametrize(("text", "message"), PARSE_ERRORS)
def test_parse_errors_are_worded_as_docker(text: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        Template(text)
    assert str(info.value) == "template parsing error: " + message
    assert info.value.exit_code == 125


class _Context:
    """Stands for one of Docker's formatter contexts."""

    GO_TYPE = "*formatter.ContainerContext"

    def Names(self) -> str:  # noqa: N802 - Go's exported name
        return "web"

    def Label(self, name: str) -> str:  # noqa: N802
        return {"a": "b"}.get(name, "")


EXEC_ERRORS = [
    (CONTAINER, "{{.Foo}}", 'template: :1:2: executing "" at <.Foo>: map has no entry for key "Foo"'),
    (CONTAINER, "x {{.State.Foo}}", 'template: :1:4: executing "" at <.State.Foo>: map has no entry for key "Foo"'),
    (
        CONTAINER,
        "{{.State.Health.Status}}",
        'template: :1:2: executing "" at <.State.Health.Status>: nil pointer evaluating interface {}.Status',
    ),
    (
        CONTAINER,
        "{{.State.Pid.X}}",
        'template: :1:2: executing "" at <.State.Pid.X>: can\'t evaluate field X in type interface {}',
    ),
    (
        CONTAINER,
        "{{range .Args}}{{.Foo}}{{end}}",
        'template: :1:17: executing "" at <.Foo>: can\'t evaluate field Foo in type interface {}',
    ),
    (
        CONTAINER,
        "{{upper .State.Pid}}",
        'template: :1:8: executing "" at <.State.Pid>: wrong type for value; expected string; got int',
    ),
    (
        CONTAINER,
        "{{index .Args 5}}",
        'template: :1:2: executing "" at <index>: error calling index: index out of range: 5',
    ),
    (
        CONTAINER,
        "{{eq .Name 1}}",
        'template: :1:2: executing "" at <eq>: error calling eq: incompatible types for comparison',
    ),
    (CONTAINER, "{{len .State.Pid}}", 'template: :1:2: executing "" at <len>: error calling len: len of type int'),
    (CONTAINER, "{{upper}}", 'template: :1:2: executing "" at <upper>: wrong number of args for upper: want 1 got 0'),
    (
        CONTAINER,
        "{{range .Name}}{{end}}",
        'template: :1:8: executing "" at <.Name>: range can\'t iterate over /Web_App',
    ),
    (CONTAINER, "\n{{.Args 1}}", 'template: :2:2: executing "" at <.Args>: Args is not a method but has arguments'),
    (
        _Context(),
        "{{.Names}} {{.Nope}}",
        'template: :1:13: executing "" at <.Nope>: can\'t evaluate field Nope in type *formatter.ContainerContext',
    ),
    (
        _Context(),
        "{{.Names.X}}",
        'template: :1:2: executing "" at <.Names.X>: can\'t evaluate field X in type string',
    ),
]


@pytest.mark.parametrize(("data", "text", "message"), EXEC_ERRORS)
def test_execution_errors_are_worded_as_go(data: object, text: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        Template(text).execute(data)
    assert str(info.value) == message


def test_objects_fields_and_methods() -> None:
    assert Template('{{.Names}} {{.Label "a"}}[{{.Label "z"}}]').execute(_Context()) == "web b[]"
    assert Template("{{json .}}").execute({"a": [1, None, "<&>"]}) == '{"a":[1,null,"<&>"]}'


def test_missingkey_default_prints_no_value() -> None:
    assert Template("{{.Foo}}").option("missingkey=default").execute({}) == "<no value>"


def test_caller_functions() -> None:
    assert Template("{{twice .}}", funcs={"twice": lambda s: s * 2}).execute("ab") == "abab"


def test_tabwriter_as_docker_sets_it_up() -> None:
    # minwidth 10, padding 3; the last cell of a line is never padded.
    text = "CONTAINER ID\tIMAGE\tNAMES\nabc\tbb:1\tweb\n"
    assert tabwriter.align(text) == "CONTAINER ID   IMAGE     NAMES\nabc            bb:1      web\n"
    # A line with fewer cells ends the column blocks right of it.
    assert tabwriter.align("a\tb\tc\nlong-long-long\tb\nx\ty\tz\n") == (
        "a" + " " * 16 + "b" + " " * 9 + "c\nlong-long-long   b\nx" + " " * 16 + "y" + " " * 9 + "z\n"
    )


def _ps_row(name: str, labels: dict[str, str]) -> formats.Row:
    return formats.Row(
        formats.PS.go_type,
        {
            "ID": "0123456789ab",
            "Image": "bb:1",
            "Command": '"sleep 9"',
            "RunningFor": "2 seconds ago",
            "Status": "Up 1 second",
            "Ports": "",
            "Names": name,
        },
        {"Names": name},
        {"Label": lambda key: labels.get(key, "")},
    )


def test_render_table_template_with_headers() -> None:
    rows = [_ps_row("web", {"tier": "front"}), _ps_row("db-primary", {})]
    out = formats.render(r"table {{.Names}}\t{{.Status}}", rows, formats.PS)
    assert out == ("NAMES        STATUS\nweb          Up 1 second\ndb-primary   Up 1 second\n")
    # A method in the header: the title stops there, as Docker's does.
    out = formats.render(r'table {{.Names}}\t{{.Label "tier"}}', rows, formats.PS)
    assert out.splitlines() == ["NAMES        ", "web          front", "db-primary   "]
    assert formats.render("{{.Names}}", rows, formats.PS) == "web\ndb-primary\n"
    # Header functions keep the title, but pad pads it as it pads its column.
    out = formats.render(r"table {{upper .Names}}\t{{pad .Status 2 0}}|", rows[:1], formats.PS)
    assert out.splitlines() == ["NAMES       STATUS|", "WEB         Up 1 second|"]
    assert formats.render("json", rows, formats.PS) == '{"Names":"web"}\n{"Names":"db-primary"}\n'
    assert formats.render("{{json .}}", rows[:1], formats.PS) == '{"Names":"web"}\n'
    # The default table is the command's own.
    assert formats.render("table", rows[:1], formats.PS).splitlines() == [
        "CONTAINER ID   IMAGE     COMMAND     CREATED         STATUS        PORTS     NAMES",
        '0123456789ab   bb:1      "sleep 9"   2 seconds ago   Up 1 second             web',
    ]


def test_render_fails_whole_with_docker_prefix() -> None:
    rows = [_ps_row("web", {})]
    with pytest.raises(InvalidArgumentError) as info:
        formats.render("{{.Names}} {{.Size}}", rows, formats.PS)
    assert str(info.value) == (
        'template parsing error: template: :1:13: executing "" at <.Size>: '
        "can't evaluate field Size in type *formatter.ContainerContext"
    )


def test_inspect_documents() -> None:
    assert formats.render_documents("{{.State.Pid}}", [CONTAINER, CONTAINER]) == "4242\n4242\n"
    # Labels, Networks, Ports are Go maps in Docker's types: a missing key
    # is no value (a string map's index gives ""), not an error.
    template = (
        '{{.Config.Labels.nope}}|{{index .Config.Labels "nope"}}|{{.NetworkSettings.Networks.nope.IPAddress}}'
        "|{{len .Config.Labels}}|{{.Config.Labels}}|{{json .Config.Labels}}"
    )
    assert formats.render_documents(template, [CONTAINER]) == (
        '<no value>||<no value>|2|map[a:b com.example:x]|{"a":"b","com.example":"x"}\n'
    )
    with pytest.raises(InvalidArgumentError, match='map has no entry for key "Nope"'):
        formats.render_documents("{{.Config.Nope}}", [CONTAINER])
    assert formats.render_documents(None, [CONTAINER]) is None
    assert formats.render_documents("json", [CONTAINER]) is None

"""`--filter`, labels and env files through the CLI, as a script uses them:
ps, images, volume ls, network ls and the prune commands; -l/--label-file
on create, run, network create and volume create; --env-file on run and
exec. Bad filters and files fail with one line, exit 125, and change nothing."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from tests.integration.test_network import net  # noqa: F401  (a fixture)
from tests.integration.test_ports import free_ports, ports  # noqa: F401  (a fixture)

NONE = ("--network", "none")


def _ids(cli, *args: str) -> set[str]:
    return set(cli.ok(*args).split())


def _fails(cli, *args: str) -> str:
    result = cli(*args)
    err = result.stderr.decode()
    assert result.returncode == 125, (args, result.returncode, result.stdout, err)
    assert err.count("\n") == 1 and err.startswith("overlayctl: "), err
    return err


def _build(cli, tmp_path: Path, dockerfile: str, *tags: str) -> str:
    ctx = tmp_path / f"ctx{len(list(tmp_path.iterdir()))}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    args = [a for t in tags for a in ("-t", t)]
    return cli.ok("build", "-q", *args, str(ctx)).strip()


def _short(image_id: str) -> str:
    return image_id.split(":", 1)[1][:12]


def test_ps_filters(cli, bb, tmp_path):
    _build(cli, tmp_path, "FROM bb:1\nRUN touch /child\nLABEL team=img role=base\n", "child:1")
    labels = tmp_path / "labels"
    labels.write_text("# the web tier\ntier=front\nrole=file\n")
    web = cli.ok(
        "run", "-d", "--name", "web", *NONE, "-l", "role=web", "--label-file", str(labels),
        "-v", "data:/data", "child:1", "sleep", "60",
    ).strip()  # fmt: skip
    assert cli("run", "--name", "job", *NONE, "bb:1", "sh", "-c", "exit 3").returncode == 3
    job = cli.ok("ps", "-aq", "--no-trunc", "--filter", "name=job").strip()
    fresh = cli.ok("create", "--name", "fresh", *NONE, "--label", "role", "bb:1", "true").strip()

    # Labels: the image's, then the file's, then -l (later wins); shown by inspect.
    config = json.loads(cli.ok("inspect", "web"))[0]["Config"]
    assert config["Labels"] == {"team": "img", "role": "web", "tier": "front"}
    assert json.loads(cli.ok("inspect", "job"))[0]["Config"].get("Labels", {}) == {}

    def ps(*filters: str, all_: bool = True) -> set[str]:
        args = ["ps", "-q", "--no-trunc", *(("-a",) if all_ else ())]
        return _ids(cli, *args, *[a for f in filters for a in ("--filter", f)])

    assert ps() == {web, job, fresh} and ps(all_=False) == {web}
    # name: a regular expression, with or without Docker's leading slash.
    assert ps("name=web") == {web} and ps("name=^/web$") == {web} and ps("name=^job$") == {job}
    assert ps("name=e") == {web, fresh}  # a substring
    assert ps("name=web", "name=job") == {web, job}  # one key: OR
    assert ps("name=web", "status=exited") == set()  # two keys: AND
    assert ps(f"id={job[:8]}") == {job}
    # status lists stopped containers without -a, as Docker's does.
    assert ps("status=exited", all_=False) == {job} and ps("status=created", all_=False) == {fresh}
    assert ps("status=running", "status=created") == {web, fresh}
    assert ps("exited=3") == {job} and ps("exited=0") == set()
    assert ps("label=role") == {web, fresh} and ps("label=role=web") == {web} and ps("label=role=db") == set()
    assert ps("label=tier=front", "label=team") == {web} and ps("label=tier", "label=nope") == set()
    # ancestor: the image by name or ID, and the images built on it.
    assert ps("ancestor=bb:1") == {web, job, fresh} and ps(f"ancestor={bb}") == {web, job, fresh}
    assert ps("ancestor=child:1") == {web} and ps("ancestor=nosuch:1") == set()
    assert ps("before=fresh") == {web, job} and ps("since=web") == {job, fresh} and ps("since=job") == {fresh}
    assert ps("volume=data") == {web} and ps("volume=/data") == {web} and ps("volume=other") == set()
    assert ps("network=none") == {web, job, fresh} and ps("network=bridge") == set()
    assert ps("health=none") == {web, job, fresh} and ps("health=healthy") == set()
    # The other outputs list the same set.
    rows = [
        json.loads(line) for line in cli.ok("ps", "-a", "--filter", "label=role=web", "--format", "json").splitlines()
    ]
    assert [r["Names"] for r in rows] == ["web"]
    table = cli.ok("ps", "--filter", "status=exited").splitlines()
    assert len(table) == 2 and table[1].split()[-1] == "job"

    # Bad filters: one line, 125.
    assert "invalid filter 'foo'" in _fails(cli, "ps", "--filter", "foo=1")
    assert "invalid filter 'status=sleeping'" in _fails(cli, "ps", "--filter", "status=sleeping")
    assert "invalid filter 'exited=x'" in _fails(cli, "ps", "-a", "--filter", "exited=x")
    assert "bad format of filter (expected name=value)" in _fails(cli, "ps", "--filter", "status")
    assert "Unrecognised filter value for health: fine" in _fails(cli, "ps", "--filter", "health=fine")
    assert "should not contain ':'" in _fails(cli, "ps", "--filter", "publish=80:80")
    assert "not found" in _fails(cli, "ps", "--filter", "before=nosuch")
    cli.ok("rm", "-f", web)
    assert fresh


def test_publish_and_expose_filters(ports):  # noqa: F811
    cli = ports.cli
    (host_port,) = free_ports(1)
    served = cli.ok(
        "run", "-d", "--name", "served", "-p", f"127.0.0.1:{host_port}:80", "--expose", "9000-9001/udp",
        "bb:1", "sleep", "60",
    ).strip()  # fmt: skip
    idle = cli.ok("run", "-d", "--name", "idle", "--expose", "80", "bb:1", "sleep", "60").strip()

    def ps(*filters: str) -> set[str]:
        return _ids(cli, "ps", "-q", "--no-trunc", *[a for f in filters for a in ("--filter", f)])

    assert ps(f"publish={host_port}") == {served} and ps(f"publish={host_port}/tcp") == {served}
    assert ps(f"publish={host_port}/udp") == set() and ps("publish=80") == set()
    # expose: container ports, published or not.
    assert ps("expose=80") == {served, idle} and ps("expose=9001/udp") == {served}
    assert ps("expose=8990-9000/udp") == {served} and ps("expose=9000") == set()
    bridge_id = cli.ok("network", "ls", "-q", "--no-trunc", "--filter", "name=^bridge$").strip()
    assert ps("network=bridge") == {served, idle} and ps(f"network={bridge_id[:12]}") == {served, idle}
    assert ps("network=none") == set()
    cli.ok("stop", "-t", "0", idle)
    assert ps("expose=80") == {served}  # a stopped container has no ports


def test_image_filters(cli, bb, tmp_path):
    first = _build(cli, tmp_path, "FROM bb:1\nRUN echo 1 > /v\n", "app:1")
    child = _build(cli, tmp_path, "FROM bb:1\nLABEL team=img\nRUN echo c > /v\n", "child:1", "acme/tool:2")
    # Built again: app:1 moves on, the first build is left dangling.
    second = _build(cli, tmp_path, "FROM bb:1\nRUN echo 2 > /v\n", "app:1")

    def images(*filters: str) -> list[str]:
        out = cli.ok("images", "-q", *[a for f in filters for a in ("--filter", f)])
        return out.split()

    short = {i: _short(i) for i in (bb, first, child, second)}
    assert set(images()) == set(short.values())
    assert images("dangling=true") == [short[first]]
    assert short[first] not in images("dangling=false") and len(images("dangling=false")) == 3
    assert images("reference=app") == [short[second]] and images("reference=app:1") == [short[second]]
    assert set(images("reference=*:1")) == {short[bb], short[child], short[second]}
    assert images("reference=acme/*") == [short[child]] and images("reference=*") != []
    assert images("reference=nosuch*") == []
    assert images("label=team=img") == [short[child]] and images("label=team=other") == []
    assert set(images("since=bb:1")) == {short[first], short[child], short[second]}
    assert set(images("before=child:1")) == {short[first], short[bb]}
    assert short[bb] in images("before=app:1") and short[second] not in images("before=app:1")
    # With reference=, only the matching tags are rows.
    table = cli.ok("images", "--filter", "reference=acme/*").splitlines()
    assert len(table) == 2 and table[1].split()[:2] == ["acme/tool", "2"]
    assert [
        json.loads(r)["Repository"] for r in cli.ok("images", "-f", "reference=child", "--format", "json").splitlines()
    ] == ["child"]
    assert "invalid filter 'dangling=maybe'" in _fails(cli, "images", "--filter", "dangling=maybe")
    assert "invalid filter 'name'" in _fails(cli, "images", "--filter", "name=x")
    assert "not found" in _fails(cli, "images", "--filter", "since=nosuch:1")


def test_volume_filters_and_label_files(cli, tmp_path):
    labels = tmp_path / "labels"
    labels.write_text("team=a\n# comment\n\n  env=test\n")
    cli.ok("volume", "create", "--label-file", str(labels), "--label", "env=prod", "v1")
    cli.ok("volume", "create", "-l", "team=b", "v2")
    assert json.loads(cli.ok("volume", "inspect", "v1"))[0]["Labels"] == {"team": "a", "env": "prod"}
    assert cli.ok("volume", "ls", "-q", "--filter", "label=env=prod") == "v1\n"
    assert _ids(cli, "volume", "ls", "-q", "--filter", "label=team") == {"v1", "v2"}
    assert cli.ok("volume", "ls", "-q", "--filter", "name=^v2$") == "v2\n"
    assert _ids(cli, "volume", "ls", "-q", "-f", "driver=local", "-f", "dangling=true") == {"v1", "v2"}
    assert "invalid filter 'size'" in _fails(cli, "volume", "ls", "--filter", "size=1")
    # A bad label file: one line, and no volume made.
    bad = tmp_path / "bad"
    bad.write_text("ok=1\nnot ok=2\n")
    assert "variable 'not ok' contains whitespaces" in _fails(cli, "volume", "create", "--label-file", str(bad), "v3")
    assert "no such file or directory" in _fails(cli, "volume", "create", "--label-file", str(tmp_path / "no"), "v3")
    assert _ids(cli, "volume", "ls", "-q") == {"v1", "v2"}
    # volume prune: label= and label!=.
    out = cli.ok("volume", "prune", "-a", "-f", "--filter", "label!=env")
    assert "Deleted Volumes:\nv2\n" in out
    assert "invalid filter 'until'" in _fails(cli, "volume", "prune", "-f", "--filter", "until=1h")
    assert "invalid filter 'all=maybe'" in _fails(cli, "volume", "prune", "-f", "--filter", "all=maybe")
    assert "Deleted Volumes" not in cli.ok("volume", "prune", "-f", "--filter", "label=team=a")  # named: kept
    out = cli.ok("volume", "prune", "-f", "--filter", "all=true", "--filter", "label=team=a")
    assert out.startswith("Deleted Volumes:\nv1\n")
    assert cli.ok("volume", "ls", "-q") == ""


def test_network_labels_and_filters(net, tmp_path):  # noqa: F811
    cli = net.cli
    halves = [str(s) for s in ipaddress.IPv4Network(net.spare).subnets(new_prefix=25)]
    labels = tmp_path / "labels"
    labels.write_text("stage=dev\n")
    front = cli.ok(
        "network", "create", "--subnet", halves[0], "--label-file", str(labels), "--label", "app=shop", "front"
    )
    back = cli.ok("network", "create", "--subnet", halves[1], "--label", "app=db", "back").strip()
    assert json.loads(cli.ok("network", "inspect", "front"))[0]["Labels"] == {"stage": "dev", "app": "shop"}
    cli.ok("create", "--name", "user", "--network", "back", "bb:1", "true")

    def names(*filters: str) -> set[str]:
        out = cli.ok("network", "ls", "--format", "json", *[a for f in filters for a in ("--filter", f)])
        return {json.loads(line)["Name"] for line in out.splitlines()}

    assert names("label=app") == {"front", "back"} and names("label=app=shop") == {"front"}
    assert names("label=stage", "label=app=db") == set()
    assert names("name=ont") == {"front"} and names(f"id={back[:10]}") == {"back"}
    assert names("driver=bridge") == {"bridge", "front", "back"} and names("driver=null") == {"none"}
    assert names("type=custom") == {"front", "back"} and names("type=builtin") == {"bridge", "host", "none"}
    assert names("dangling=true") == {"front"} and "back" in names("dangling=false")
    row = next(json.loads(r) for r in cli.ok("network", "ls", "--format", "json").splitlines() if "front" in r)
    assert row["Labels"] == "app=shop,stage=dev"
    assert "invalid filter 'type=other'" in _fails(cli, "network", "ls", "--filter", "type=other")
    bad = tmp_path / "bad"
    bad.write_text("=x\n")
    assert "no variable name" in _fails(cli, "network", "create", "--label-file", str(bad), "third")
    assert "third" not in names()
    # network prune: label!= keeps the labelled one.
    cli.ok("rm", "user")
    assert cli.ok("network", "prune", "-f", "--filter", "label!=stage") == "Deleted Networks:\nback\n\n"
    assert cli.ok("network", "prune", "-f", "--filter", "label=app=shop") == "Deleted Networks:\nfront\n\n"
    assert front


def test_env_file_on_run_create_and_exec(cli, bb, tmp_path):
    env = tmp_path / "app.env"
    env.write_bytes(
        b'# app settings\n\nA=from-file\nQUOTED="kept as is"\n  LEAD=trimmed-key\nFROM_CALLER\nUNSET_ONE\nB=file\n'
    )
    cli.env["FROM_CALLER"] = "caller"
    cli.env.pop("UNSET_ONE", None)
    out = cli.ok("run", "--rm", *NONE, "--env-file", str(env), "-e", "B=flag", "bb:1", "env")
    lines = set(out.splitlines())
    assert {"A=from-file", 'QUOTED="kept as is"', "LEAD=trimmed-key", "FROM_CALLER=caller", "B=flag"} <= lines
    assert not any(line.startswith("UNSET_ONE") for line in lines)
    cid = cli.ok("create", *NONE, "--env-file", str(env), "bb:1", "sleep", "60").strip()
    assert "A=from-file" in json.loads(cli.ok("inspect", cid))[0]["Config"]["Env"]
    cli.ok("start", cid)
    other = tmp_path / "exec.env"
    other.write_text("X=1\nA=exec\n")
    out = cli.ok("exec", "--env-file", str(other), "-e", "X=2", cid, "env")
    assert {"X=2", "A=exec"} <= set(out.splitlines())
    cli.ok("rm", "-f", cid)
    # Bad files: one line, nothing created.
    bad = tmp_path / "bad.env"
    bad.write_text("GOOD=1\nBAD KEY=2\n")
    assert "poorly formatted environment: variable 'BAD KEY' contains whitespaces" in _fails(
        cli, "run", "--rm", *NONE, "--env-file", str(bad), "bb:1", "true"
    )
    assert "open " in _fails(cli, "create", "--env-file", str(tmp_path / "missing.env"), "bb:1", "true")
    assert "label must not contain whitespace" in _fails(cli, "create", "-l", "a b=1", "bb:1", "true")
    assert cli.ok("ps", "-aq") == ""


def test_prune_filters(cli, bb, tmp_path):
    keep = cli.ok("create", "--name", "keep", *NONE, "-l", "keep=yes", "bb:1", "true").strip()
    tmp = cli.ok("create", "--name", "tmp", *NONE, "-l", "env=test", "bb:1", "true").strip()
    plain = cli.ok("create", "--name", "plain", *NONE, "bb:1", "true").strip()
    # Bad filters fail before anything goes, asked or not.
    assert "invalid filter 'name'" in _fails(cli, "container", "prune", "-f", "--filter", "name=x")
    assert "failed to parse value as time or duration" in _fails(
        cli, "container", "prune", "-f", "--filter", "until=later"
    )
    assert _ids(cli, "ps", "-aq", "--no-trunc") == {keep, tmp, plain}
    # until: made before then (an hour ago: none of these).
    assert cli.ok("container", "prune", "-f", "--filter", "until=1h").endswith("Total reclaimed space: 0B\n")
    out = cli.ok("container", "prune", "-f", "--filter", "label=env=test")
    assert out.startswith(f"Deleted Containers:\n{tmp}\n")
    out = cli.ok("container", "prune", "-f", "--filter", "label!=keep")
    assert out.startswith(f"Deleted Containers:\n{plain}\n")
    assert _ids(cli, "ps", "-aq", "--no-trunc") == {keep}
    cli.ok("rm", keep)

    labelled = _build(cli, tmp_path, "FROM bb:1\nLABEL purpose=scratch\nRUN echo a > /a\n", "scratch:1")
    other = _build(cli, tmp_path, "FROM bb:1\nRUN echo b > /b\n", "other:1")
    assert "invalid filter 'reference'" in _fails(cli, "image", "prune", "-f", "--filter", "reference=x")
    # Tagged images go only with -a (or dangling=false), and only those selected.
    assert "Deleted Images" not in cli.ok("image", "prune", "-f", "--filter", "label=purpose")
    out = cli.ok("image", "prune", "-f", "--filter", "dangling=false", "--filter", "label=purpose=scratch")
    assert f"deleted: {labelled}" in out and other not in out
    holder = cli.ok("create", *NONE, "bb:1", "true").strip()  # bb:1 in use: it stays
    assert "Deleted Images" not in cli.ok("image", "prune", "-a", "-f", "--filter", "until=1h")  # all newer
    out = cli.ok("image", "prune", "-a", "-f", "--filter", "until=2999-01-01T00:00:00Z", "--filter", "label!=x")
    assert f"deleted: {other}" in out and "untagged: other:1" in out and "bb:1" not in out
    cli.ok("rm", holder)
    assert "filter 'until' is not supported by builder prune" in _fails(
        cli, "builder", "prune", "-f", "--filter", "until=1h"
    )


def test_system_prune_filters(cli, bb):
    keep = cli.ok("create", *NONE, "-l", "keep", "bb:1", "true").strip()
    gone = cli.ok("create", *NONE, "bb:1", "true").strip()
    assert 'the "until" filter is not supported with "--volumes"' in _fails(
        cli, "system", "prune", "-f", "--volumes", "--filter", "until=1h"
    )
    assert "invalid filter 'dangling'" in _fails(cli, "system", "prune", "-f", "--filter", "dangling=true")
    assert _ids(cli, "ps", "-aq", "--no-trunc") == {keep, gone}
    out = cli.ok("system", "prune", "--filter", "label!=keep", input=b"y\n")
    assert "all stopped containers\n" in out and "build cache" not in out
    assert "\n  Items to be pruned will be filtered with:\n  - label!=keep\n" in out
    assert f"Deleted Containers:\n{gone}\n" in out
    assert _ids(cli, "ps", "-aq", "--no-trunc") == {keep}

"""`events` through the CLI, as a script uses it: each kind of event is
recorded where the change is made and read back with Docker's shape,
window, filters and formats; following shows what happens after it
started; the record survives writers racing and stays bounded; `system df`
counts it."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time

import pytest

NONE = ("--network", "none")


def _events(cli, *args: str) -> list[dict]:
    """Everything recorded so far (a window that has ended: no following)."""
    out = cli.ok("events", "--since", "0", "--until", str(time.time() + 0.001), "--format", "json", *args, timeout=30)
    return [json.loads(line) for line in out.splitlines()]


def _actions(events: list[dict], type_: str | None = None) -> list[str]:
    return [e["Action"] for e in events if type_ is None or e["Type"] == type_]


def _one(events: list[dict], type_: str, action: str) -> dict:
    found = [e for e in events if e["Type"] == type_ and e["Action"] == action]
    assert len(found) == 1, (type_, action, _actions(events))
    return found[0]


def test_container_life_is_recorded_in_dockers_shape(cli, bb):
    cid = cli.ok("create", "--name", "life", *NONE, "bb:1", "sleep", "100").strip()
    cli.ok("start", "life")
    cli.ok("pause", "life")
    cli.ok("unpause", "life")
    cli.ok("rename", "life", "life2")
    cli.ok("exec", "life2", "true")
    cli.ok("kill", "-s", "USR1", "life2")
    cli.ok("stop", "-t", "1", "life2")
    cli.ok("rm", "life2")
    assert cli("run", "--name", "code", *NONE, "bb:1", "sh", "-c", "exit 3").returncode == 3

    events = _events(cli)
    mine = [e for e in events if e["Actor"]["ID"] == cid]
    assert _actions(mine) == [
        "create",
        "start",
        "pause",
        "unpause",
        "rename",
        "exec_create: true",
        "exec_start: true",
        "exec_die",
        "kill",
        "kill",
        "kill",
        "die",
        "stop",
        "destroy",
    ]
    create = mine[0]
    assert set(create) == {"status", "id", "from", "Type", "Action", "Actor", "scope", "time", "timeNano"}
    assert (create["status"], create["id"], create["from"], create["scope"]) == ("create", cid, "bb:1", "local")
    assert create["Actor"] == {"ID": cid, "Attributes": {"image": "bb:1", "name": "life"}}
    assert create["time"] == create["timeNano"] // 1_000_000_000
    assert abs(create["time"] - time.time()) < 120
    assert mine[4]["Actor"]["Attributes"] == {"image": "bb:1", "name": "life2", "oldName": "/life"}
    assert [e["Actor"]["Attributes"]["signal"] for e in mine if e["Action"] == "kill"] == ["10", "15", "9"]
    assert mine[7]["Actor"]["Attributes"]["exitCode"] == "0"
    # sleep as PID 1 has no handler, so the kernel drops SIGUSR1 and SIGTERM: SIGKILL ends it.
    assert mine[11]["Actor"]["Attributes"]["exitCode"] == "137"
    times = [e["timeNano"] for e in mine]
    assert times == sorted(times)

    code = [e for e in events if e["Actor"]["Attributes"].get("name") == "code"]
    assert _actions(code) == ["create", "start", "die"]
    assert code[-1]["Actor"]["Attributes"]["exitCode"] == "3"


def test_commit_and_export(cli, bb, tmp_path):
    cid = cli.ok("create", "--name", "snap", *NONE, "bb:1", "true").strip()
    cli.ok("commit", "-m", "why", "snap", "snapped:1")
    cli.ok("export", "-o", str(tmp_path / "fs.tar"), "snap")
    mine = [e for e in _events(cli) if e["Actor"]["ID"] == cid]
    assert _actions(mine) == ["create", "commit", "export"]
    attributes = mine[1]["Actor"]["Attributes"]
    assert attributes["comment"] == "why" and attributes["imageID"].startswith("sha256:")
    assert "snapped" in attributes["imageRef"]


def test_restart_and_run_rm(cli, bb):
    cli.ok("run", "-d", "--name", "rs", *NONE, "bb:1", "sleep", "100")
    cli.ok("restart", "-t", "0", "rs")
    cli.ok("run", "--rm", "--name", "gone", *NONE, "bb:1", "true")
    events = _events(cli)
    rs = [e["Action"] for e in events if e["Actor"]["Attributes"].get("name") == "rs"]
    assert rs == ["create", "start", "kill", "kill", "die", "stop", "start", "restart"]
    gone = [e["Action"] for e in events if e["Actor"]["Attributes"].get("name") == "gone"]
    assert gone == ["create", "start", "die", "destroy"]


def test_image_network_and_volume_events(cli, bb, tmp_path):
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM bb:1\nLABEL kind=child\n")
    cli.ok("build", "-t", "child:1", str(tmp_path / "ctx"))
    archive = tmp_path / "bb.tar"
    cli.ok("save", "-o", str(archive), "bb:1")
    cli.ok("rmi", "bb:1")
    cli.ok("load", "-i", str(archive))
    cli.ok("network", "create", "evnet")
    cli.ok("run", "--rm", "--name", "netc", "--network", "evnet", "bb:1", "true")
    cli.ok("network", "rm", "evnet")
    cli.ok("volume", "create", "evvol")
    cli.ok("volume", "rm", "evvol")

    events = _events(cli)
    images = [e for e in events if e["Type"] == "image"]
    assert _actions(images)[0] == "import"
    assert images[0]["Actor"]["ID"] == bb and images[0]["id"] == bb and images[0]["status"] == "import"
    assert "save" in _actions(images) and "load" in _actions(images)
    tag = _one(events, "image", "tag")
    assert tag["Actor"]["Attributes"] == {"kind": "child", "name": "child:1"} and tag["Actor"]["ID"] != bb
    save = _one(events, "image", "save")
    assert save["Actor"] == {"ID": bb, "Attributes": {"name": bb}}
    untags = [e for e in images if e["Action"] == "untag"]
    assert untags and untags[-1]["Actor"]["ID"] == bb
    assert "bb:1" in untags[-1]["Actor"]["Attributes"]["name"]

    nets = [e for e in events if e["Type"] == "network"]
    assert [a for a in _actions(nets)] == ["create", "connect", "disconnect", "destroy"]
    net_id = nets[0]["Actor"]["ID"]
    assert len(net_id) == 64 and all(e["Actor"]["ID"] == net_id for e in nets)
    assert nets[0]["Actor"]["Attributes"] == {"name": "evnet", "type": "bridge"}
    netc = [e for e in events if e["Type"] == "container" and e["Actor"]["Attributes"].get("name") == "netc"]
    assert nets[1]["Actor"]["Attributes"]["container"] == netc[0]["Actor"]["ID"]
    assert "status" not in nets[0] and "id" not in nets[0]

    vols = [e for e in events if e["Type"] == "volume"]
    assert [(e["Action"], e["Actor"]["ID"]) for e in vols] == [("create", "evvol"), ("destroy", "evvol")]
    assert vols[0]["Actor"]["Attributes"] == {"driver": "local"}


def test_an_image_deleted_says_untag_then_delete(cli, bb):
    cli.ok("rmi", "bb:1")
    images = [e for e in _events(cli) if e["Type"] == "image"]
    assert [(e["Action"], e["Actor"]["ID"]) for e in images] == [("import", bb), ("untag", bb), ("delete", bb)]


def test_since_until_and_filters(cli, bb):
    cli.ok("create", "--name", "early", *NONE, "bb:1", "true")
    time.sleep(1.1)
    middle = time.time()
    time.sleep(0.05)
    cli.ok("create", "--name", "late", *NONE, "bb:1", "true")
    cli.ok("volume", "create", "v1")
    now = str(time.time() + 0.001)

    def names(*args: str) -> list[str]:
        out = cli.ok("events", *args, "--format", "{{json .}}")
        return [
            json.loads(line)["Actor"]["Attributes"].get("name") or json.loads(line)["Actor"]["ID"]
            for line in out.splitlines()
        ]

    everything = names("--since", "0", "--until", now)
    assert everything == [bb, "early", "late", "v1"]  # (import names the image by its ID, as Docker's)
    assert names("--since", f"{middle:.6f}", "--until", now) == ["late", "v1"]
    assert names("--since", "0", "--until", f"{middle:.6f}").count("early") == 1
    assert "late" not in names("--since", "0", "--until", f"{middle:.6f}")
    # Durations and RFC 3339, as Docker takes them.
    assert names("--since", "10m", "--until", now)[-2:] == ["late", "v1"]
    assert names("--since", "2000-01-01T00:00:00Z", "--until", now) == everything
    assert names("--since", "2000-01-01", "--until", "2000-01-02T00:00:00+01:00") == []

    assert names("--since", "0", "--until", now, "--filter", "type=volume") == ["v1"]
    assert names("--since", "0", "--until", now, "-f", "container=late") == ["late"]
    assert names("--since", "0", "--until", now, "-f", "container=early", "-f", "container=late") == ["early", "late"]
    assert names("--since", "0", "--until", now, "-f", "event=create", "-f", "type=container") == ["early", "late"]
    assert names("--since", "0", "--until", now, "-f", "volume=v1") == ["v1"]
    assert names("--since", "0", "--until", now, "-f", "image=bb:1", "-f", "type=container") == ["early", "late"]
    assert names("--since", "0", "--until", now, "-f", "image=bb", "-f", "type=container") == ["early", "late"]
    assert names("--since", "0", "--until", now, "-f", "label=nope") == []
    assert names("--since", "0", "--until", now, "-f", "network=x") == []

    # The default line: time, type, action, ID, attributes sorted.
    line = cli.ok("events", "--since", "0", "--until", now, "-f", "container=late").strip()
    stamp, type_, action, actor, rest = line.split(" ", 4)
    assert (type_, action, rest) == ("container", "create", "(image=bb:1, name=late)")
    assert len(actor) == 64 and len(stamp.split(".")[1]) >= 9


@pytest.mark.parametrize(
    "args, message",
    [
        (("-f", "nokey"), "bad format of filter (expected name=value)"),
        (("-f", "colour=red"), "invalid filter 'colour'"),
        (("--since", "yesterday"), 'invalid time "yesterday"'),
        (("--since", "20", "--until", "10"), "cannot be after `until` time"),
        (("--format", "{{.Action}}"), None),
    ],
)
def test_bad_arguments_are_one_line_and_125(cli, args, message):
    result = cli("events", "--until", "1", *args)
    if message is None:  # a template: printed through util.gotemplate, or refused until it is there
        assert result.returncode in (0, 125)
        if result.returncode == 125:
            assert "Go templates are not available" in result.stderr.decode()
        return
    assert result.returncode == 125, result
    err = result.stderr.decode().strip()
    assert message in err and len(err.splitlines()) == 1, err


def _spawn_events(cli, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        cli.argv("events", "--format", "json", *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli.env,
        bufsize=0,  # unbuffered: select() then sees every line not yet read
    )


def _read_event(proc: subprocess.Popen, timeout: float = 20.0) -> dict:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no event arrived"
    return json.loads(proc.stdout.readline())


def _ready(cli, proc: subprocess.Popen, kind: str = "volume") -> None:
    """Wait until the follower is positioned: events from before it are not
    shown (as docker's), so volumes (or containers) named sync-N are made
    until one of them comes out, and every one made after it is read too."""
    made = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if kind == "volume":
            cli.ok("volume", "create", f"sync-{made}")
        else:
            cli.ok("create", "--name", f"sync-{made}", *NONE, "bb:1", "true")
        made += 1
        if select.select([proc.stdout], [], [], 0.5)[0]:
            first = json.loads(proc.stdout.readline())
            seen = int(((first["Actor"]["Attributes"].get("name") or first["Actor"]["ID"]).split("-"))[1])
            for _ in range(made - 1 - seen):
                _read_event(proc)
            return
    raise AssertionError("the follower never showed an event")


def test_follow_shows_what_happens_after_it_started_and_ctrl_c_ends_it(cli, bb):
    cli.ok("create", "--name", "before", *NONE, "bb:1", "true")
    proc = _spawn_events(cli, "--filter", "type=container")
    try:
        _ready(cli, proc, "container")
        cli.ok("create", "--name", "after", *NONE, "bb:1", "true")
        cli.ok("volume", "create", "filtered-out")
        cli.ok("rm", "after")
        first, second = _read_event(proc), _read_event(proc)
        assert (first["Action"], first["Actor"]["Attributes"]["name"]) == ("create", "after")
        assert (second["Action"], second["Actor"]["Attributes"]["name"]) == ("destroy", "after")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0 and err == b"" and out == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_follow_until_a_time_to_come_ends_there(cli, bb):
    start = time.time()
    proc = _spawn_events(cli, "--until", "4s")  # (a duration is back from now: already past)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0 and time.time() - start < 10
    proc = _spawn_events(cli, "--until", f"{time.time() + 5:.3f}")
    try:
        # --until alone replays what is kept first, as dockerd its buffer
        # (and the follower is in place before the replay).
        assert _read_event(proc)["Action"] == "import"
        cli.ok("volume", "create", "inwindow")
        assert _read_event(proc)["Actor"]["ID"] == "inwindow"
        proc.wait(timeout=15)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_follow_goes_on_across_a_turn_over(cli, bb):
    from overlayctl.store import events as record

    log = cli.root / "events" / "events.jsonl"
    proc = _spawn_events(cli, "-f", "type=volume")
    try:
        _ready(cli, proc)
        # Fill the current file to just under the limit, then one volume
        # event crosses it and turns the file over.
        with open(log, "ab") as f:
            f.write(b'{"Type":"filler"}\n' * ((record.EVENTS_MAX_BYTES - log.stat().st_size) // 18))
        cli.ok("volume", "create", "crossing")
        cli.ok("volume", "create", "next")
        assert _read_event(proc)["Actor"]["ID"] == "crossing"
        assert _read_event(proc)["Actor"]["ID"] == "next"
        assert (cli.root / "events" / "events.jsonl.1").exists()
        assert log.stat().st_size < 4096
    finally:
        proc.kill()
        proc.wait()


def test_two_writers_never_tear_a_line_and_the_record_stays_bounded(cli):
    from overlayctl.paths import Paths
    from overlayctl.store import events as record

    cli.ok("volume", "ls")  # makes the store
    paths = Paths(str(cli.root), str(cli.runroot))
    code = (
        "import sys\n"
        "from overlayctl.paths import Paths\n"
        "from overlayctl.store import events\n"
        "paths = Paths(sys.argv[1], sys.argv[2])\n"
        "for i in range(int(sys.argv[4])):\n"
        "    events.record(paths, 'volume', 'create', sys.argv[3] + str(i), {'driver': 'local', 'pad': 'x' * 200})\n"
    )
    count = 4000  # ~1.3 MB each: both writers cross the limit, often together
    writers = [
        subprocess.Popen(
            [os.sys.executable, "-c", code, str(cli.root), str(cli.runroot), who, str(count)],
            env=cli.env,
        )
        for who in ("a", "b")
    ]
    for w in writers:
        assert w.wait(timeout=120) == 0
    files = [cli.root / "events" / name for name in ("events.jsonl.1", "events.jsonl")]
    for f in files:
        for line in f.read_bytes().splitlines():
            json.loads(line)  # whole lines only: none torn, none interleaved
    total = sum(f.stat().st_size for f in files)
    assert total <= 2 * record.EVENTS_MAX_BYTES + 2 * 4096
    kept = record.read(paths)
    ids = [e["Actor"]["ID"] for e in kept]
    assert len(ids) == len(set(ids))
    # The newest events are all kept, of both writers.
    for who in ("a", "b"):
        assert f"{who}{count - 1}" in ids
    # Dropped only from the oldest end: what is kept of each writer is a run to its last.
    for who in ("a", "b"):
        mine = sorted(int(i[1:]) for i in ids if i.startswith(who))
        assert mine == list(range(mine[0], count))
    listed = _events(cli, "-f", "type=volume")
    assert len(listed) == len(kept)


def test_system_df_counts_the_record(cli, bb):
    cli.ok("create", "--name", "counted", *NONE, "bb:1", "true")
    kinds = {k["Type"]: k for k in map(json.loads, cli.ok("system", "df", "--format", "json").splitlines())}
    events_dir = cli.root / "events"
    size = sum(os.lstat(events_dir / n).st_blocks * 512 for n in os.listdir(events_dir))
    size += os.lstat(events_dir).st_blocks * 512
    assert kinds["Events"]["Size"] == size > 0
    assert kinds["Events"]["TotalCount"] == len(_events(cli)) >= 2
    table = cli.ok("system", "df")
    assert any(line.startswith("Events ") for line in table.splitlines())

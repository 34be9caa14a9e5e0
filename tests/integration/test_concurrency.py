"""Many overlayctl processes on one store at once: nothing fails, shared
layers are stored once, and a layer never vanishes under a command that
relies on it (leases)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

NONE = ("--network", "none")


def spawn(cli, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(cli.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or cli.env)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(), err.decode()


def wait_for_file(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, finish(proc)
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def layer_rows(cli) -> list[str]:
    conn = sqlite3.connect(cli.root / "catalog.db")
    try:
        return [row[0] for row in conn.execute("SELECT diff_id FROM layers")]
    finally:
        conn.close()


@pytest.mark.slow
def test_a_hundred_concurrent_detached_runs(cli, bb):
    procs = [spawn(cli, "run", "-d", "--name", f"c{i}", *NONE, "bb:1", "sleep", "300") for i in range(100)]
    results = [finish(p) for p in procs]
    try:
        failures = [r for r in results if r[0] != 0 or r[2]]
        assert failures == [], failures[:3]
        running = cli.ok("ps", "-q", "--no-trunc").split()
        assert sorted(running) == sorted(r[1].strip() for r in results)
    finally:
        ids = cli.ok("ps", "-aq").split()
        if ids:
            cli.ok("rm", "-f", *ids)


@pytest.mark.slow
def test_twenty_concurrent_builds_share_their_base(cli, bb, tmp_path):
    procs = []
    for i in range(20):
        ctx = tmp_path / f"ctx{i}"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM bb:1\nRUN echo {i} > /own\n")
        procs.append(spawn(cli, "build", "-q", "-t", f"b{i}:1", str(ctx)))
    results = [finish(p) for p in procs]
    # A build that waits for another's layer commit says so on stderr; it never fails.
    failures = [r for r in results if r[0] != 0]
    assert failures == [], failures[:3]
    base = json.loads(cli.ok("image", "inspect", "bb:1"))[0]["RootFS"]["Layers"]
    layers = layer_rows(cli)
    assert len(layers) == len(base) + 20 and set(base) <= set(layers)
    assert cli.ok("run", "--rm", *NONE, "b7:1", "cat", "/own") == "7\n"
    assert cli.ok("system", "fsck") == "no problems found\n"


def paused(cli, point: str, tmp_path: Path) -> tuple[dict, Path]:
    gate = tmp_path / f"gate-{point}"
    return dict(cli.env, OVERLAYCTL_FAULTS=f"{point}=pause:{gate}"), gate


def test_removing_the_base_during_a_build_leaves_its_layers_to_the_build(cli, bb, tmp_path):
    ctx = tmp_path / "base"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb:1\nRUN echo base > /base\n")
    cli.ok("build", "-q", "-t", "base:1", str(ctx))
    base_layers = json.loads(cli.ok("image", "inspect", "base:1"))[0]["RootFS"]["Layers"]
    app = tmp_path / "app"
    app.mkdir()
    (app / "Dockerfile").write_text("FROM base:1\nRUN cat /base > /app\n")
    env, gate = paused(cli, "build-from", tmp_path)
    build = spawn(cli, "build", "-q", "-t", "app:1", str(app), env=env)
    wait_for_file(Path(str(gate) + ".reached"), build)
    # The base goes while the build stands on it: its image, not its layers.
    out = cli.ok("rmi", "base:1").splitlines()
    assert out[0] == "Untagged: base:1" and all(d not in out for d in (f"Deleted: {x}" for x in base_layers))
    cli.ok("rmi", "bb:1")
    out = cli.ok("system", "gc")  # no dangling image or unreferenced layer it may take
    assert out.endswith("Removed 0 items. Total reclaimed space: 0B\n"), out
    gate.touch()
    rc, out, err = finish(build)
    assert rc == 0, err
    assert cli.ok("run", "--rm", *NONE, "app:1", "cat", "/app") == "base\n"
    assert set(base_layers) <= set(json.loads(cli.ok("image", "inspect", "app:1"))[0]["RootFS"]["Layers"])
    assert cli.ok("system", "fsck", "--verify-content") == "no problems found\n"


def test_a_failed_build_drops_its_own_layers_but_not_leased_ones(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb:1\nRUN echo one > /one\nRUN exit 3\n")
    before = set(layer_rows(cli))
    result = cli("build", "-t", "bad:1", str(ctx))
    assert result.returncode != 0
    assert set(layer_rows(cli)) == before
    assert not [n for n in os.listdir(cli.root / "leases") if "sha256:" + n not in before]


def test_a_reboot_in_the_middle_of_everything(cli, bb, tmp_path):
    """Containers running, a build killed while it held the layer store's
    lock, then every process gone and /run wiped, as a power cut and a
    boot do: the containers are reported exited, no lock is left held,
    and everything runs again."""
    import shutil
    import signal

    for name in ("web", "db"):
        cli.ok("run", "-d", "--name", name, *NONE, "bb:1", "sleep", "300")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb:1\nRUN echo half > /half\n")
    env = dict(cli.env, OVERLAYCTL_FAULTS="layer-placed=kill")
    build = subprocess.Popen(
        cli.argv("build", "-t", "half:1", str(ctx)),
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert build.wait(timeout=300) == -signal.SIGKILL
    conn = sqlite3.connect(cli.root / "catalog.db")
    try:
        pids = conn.execute("SELECT pid, supervisor_pid FROM containers").fetchall()
    finally:
        conn.close()
    for pid, supervisor in pids:
        os.kill(supervisor, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while any(
        os.path.exists(f"/proc/{p}/stat") and open(f"/proc/{p}/stat").read().split(") ")[1][0] != "Z" for p, _ in pids
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    shutil.rmtree(cli.runroot)
    # At boot: overlayctl-reconcile.service, then the repair a crash may need.
    cli.ok("system", "reconcile")
    states = {
        json.loads(line)["Names"]: json.loads(line)["State"]
        for line in cli.ok("ps", "-a", "--format", "json").splitlines()
    }
    assert states == {"web": "exited", "db": "exited"}
    cli.env["OVERLAYCTL_FSCK_GRACE"] = "0"
    result = cli("system", "fsck", "--repair")
    assert result.returncode == 0, result.stdout.decode()
    assert cli.ok("system", "fsck") == "no problems found\n"
    # No lock is held by the dead: nothing waits.
    again = cli("build", "-q", "-t", "half:1", str(ctx))
    assert again.returncode == 0 and b"waiting" not in again.stderr, again.stderr
    cli.ok("start", "web")
    assert cli.ok("run", "--rm", *NONE, "half:1", "cat", "/half") == "half\n"
    cli.ok("rm", "-f", "web", "db")
